"""Cattle nodes as Terraform creates them: names, and the Consul services each one registers. Pure."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from fleet.model.definition import Fleet, Role
from fleet.model.grammar import RoleClass

# Where a node renders the addresses of the services its role depends on (see watches());
# beside it, weights.json: each instance's share of new work (packer/base/fleet-node).
UPSTREAMS_FILE = "/etc/fleet/upstreams.json"


@dataclass(frozen=True)
class Node:
    """One cattle node of a server group (role x version) in one environment."""

    name: str
    role: str
    env: str
    version: str
    image: str       # the image id: never a name, so nothing is pulled from a registry
    services: str    # Consul service definitions, JSON

    def tfvar(self) -> dict[str, str]:
        return {"image": self.image, "role": self.role, "env": self.env,
                "version": self.version, "class": "cattle", "services": self.services}


def node_name(fleet: str, role: str, env: str, version: str, index: int) -> str:
    """fleet-role-env-version-N, as a hostname and container name allow."""
    safe = re.sub(r"[^a-z0-9-]", "-", version.lower())
    return f"{fleet}-{role}-{env}-{safe}-{index}"


def tags(fleet: str, role: Role, env: str, version: str) -> list[str]:
    return [f"fleet:{fleet}", f"role:{role.name}", f"env:{env}", f"version:{version}",
            f"class:{role.cls.value}"]


def services_json(fleet: str, role: Role, env: str, version: str, weight: int,
                  warning: int = 1, extra_tags: tuple[str, ...] = ()) -> str:
    """The agent's service definitions: tags, a health check per service, and Weights."""
    services = []
    for service in role.services:
        check: dict[str, str] = {"interval": service.check.interval,
                                 "timeout": service.check.timeout}
        if service.check.kind == "http":
            check["http"] = f"http://127.0.0.1:{service.port}{service.check.path}"
        else:
            check["tcp"] = f"127.0.0.1:{service.port}"
        services.append({
            "name": service.name,
            "port": service.port,
            "tags": [*tags(fleet, role, env, version), *extra_tags],
            "meta": {"fleet": fleet, "role": role.name, "env": env, "version": version},
            "weights": {"passing": weight, "warning": warning},
            "checks": [check],
        })
    return json.dumps({"services": services}, sort_keys=True)


def group(fleet: str, role: Role, env: str, version: str, image: str, count: int,
          weight: int) -> list[Node]:
    """The nodes of one server group."""
    services = services_json(fleet, role, env, version, weight)
    return [Node(node_name(fleet, role.name, env, version, i), role.name, env, version, image,
                 services) for i in range(count)]


FAILED = "its agent is a failed member of Consul (it died without leaving)"
NO_CONTAINER = "its container is gone or not running"


def gone(listed: Iterable[str], members: Mapping[str, bool],
         containers: Collection[str] | None) -> dict[str, str]:
    """The nodes among `listed` (those Consul has a service check of) that are gone all the
    same, each with why: node -> reason.

    members: node -> whether its serfHealth passes, for every node that has one; containers:
    the lab's container names (None: not listed).
    - A failed member (serfHealth critical) is gone: its agent died without leaving, and
      Consul keeps it, with its services' last statuses, for 72 h.
    - A member whose container is gone, or there but not running (killed or stopped: its
      restart policy brings back only what the host restarts), is gone: Consul notices a dead
      agent only after its probes and suspicion time out (~30-50 s in the lab); a container
      draining away has been renamed, so it no longer counts. `containers` are the running
      ones.
    - A node without serfHealth is taken at Consul's word: it was never a member (a node
      registered through the catalog API, as the plan benchmark's synthetic ones) or it has
      just left, and the leader drops what its last sync left at its next reconcile.
    """
    found = {}
    for node in listed:
        member = members.get(node)
        if member is False:
            found[node] = FAILED
        elif member and containers is not None and node not in containers:
            found[node] = NO_CONTAINER
    return found


MEMBER_STATUS = {1: "alive", 2: "leaving", 3: "left", 4: "failed"}  # Consul's serf status
SHOWN = 3      # nodes a gate's failure describes; the rest are counted
OUTPUT = 80    # characters of a check's output it quotes


def not_passing(names: Iterable[str], checks: Mapping[str, Sequence[tuple[str, str, str, str]]],
                members: Mapping[str, int], shown: int = SHOWN) -> str:
    """What Consul says of the nodes (names, in order) a gate waited for in vain, in one line:
    "NODE: WHY; NODE: WHY; N more". checks: node -> its checks in the catalog, (check ID,
    name, status, output), the member check (serfHealth) among them when the leader
    registered the node; members: node -> serf status (MEMBER_STATUS), every member the
    server knows; only the first `shown` nodes need their checks. A node is, first of what
    holds:
    - not in the catalog at all (its agent never synced, or it was taken out);
    - in it without serfHealth: its agent registered its services, but the leader has not
      registered the node as a member (it missed the join, or the member left);
    - a member whose serfHealth, or else one of its services' checks, is not passing."""
    names = list(names)
    said = []
    for node in names[:shown]:  # the rest are only counted
        found = checks.get(node, ())
        member = members.get(node)
        status = f"member {MEMBER_STATUS.get(member, str(member))}" if member else "no member"
        serf = [c for c in found if c[0] == "serfHealth"]
        failing = [c for c in serf if c[2] != "passing"] or [
            c for c in found if c[2] != "passing"]
        if not found:
            why = "not in Consul's catalog"
        elif not serf:
            why = "services registered, but the leader has not registered the node (no serfHealth)"
        elif failing:
            _, name, state, output = failing[0]
            text = " ".join(output.split())
            text = text if len(text) <= OUTPUT else text[:OUTPUT - 3] + "..."
            why = f"{name} {state}" + (f": {text}" if text else "")
        else:
            why = "passing now"
        said.append(f"{node}: {why} ({status})")
    more = len(names) - shown
    return "; ".join(said + ([f"{more} more"] if more > 0 else []))


def upstream_services(fleet: Fleet, role: Role) -> list[str]:
    """The services of the roles this role depends on (web: gitaly, postgres, redis)."""
    return sorted({s.name for dep in role.depends_on for s in fleet.roles[dep].services})


def upstreams(fleet: Fleet, role: Role, env: str) -> dict[str, str]:
    """Each upstream service of a node of role in env -> the environment whose instances
    serve it: a pet's, the environment whose pets env uses (pets_from: canary's web reaches
    production's gitaly, postgres and redis); any other role's, env itself. The node's own
    services keep env's tags whatever it borrows, so it never joins the lender's traffic."""
    found = next((e for e in fleet.environments if e.name == env), None)
    pets_env = found.pets_env if found is not None else env  # verify's nodes: no such env
    return {s.name: pets_env if fleet.roles[dep].cls is RoleClass.PET else env
            for dep in sorted(role.depends_on) for s in fleet.roles[dep].services}


def with_watches(services: str, fleet: str, upstreams: Mapping[str, str]) -> str:
    """Add to the agent's config one `consul watch` per upstream service (service -> the
    environment to find it in, see upstreams()): the agent runs fleet-node with the passing
    instances whenever they change, and fleet-node re-renders UPSTREAMS_FILE with the
    addresses of those in this fleet and that environment."""
    if not upstreams:
        return services
    config = json.loads(services)
    config["watches"] = [{
        "type": "service", "service": name, "tag": f"fleet:{fleet}", "passingonly": True,
        "handler_type": "script",
        "args": ["/usr/local/sbin/fleet-node", "upstreams", name, fleet, env, UPSTREAMS_FILE],
    } for name, env in sorted(upstreams.items())]
    return json.dumps(config, sort_keys=True)
