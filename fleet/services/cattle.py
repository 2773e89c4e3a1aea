"""Cattle on Terraform: apply a set of nodes for one environment, then read their health.

fleet never starts or stops a node itself: it computes the nodes an environment should have and
Terraform (terraform/lab/cattle, state in the consul backend, one state per environment)
makes it so. Health comes from Consul, where each node's agent registers its services.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from fleet.adapters import terraform
from fleet.adapters.consul import Consul, Instance
from fleet.errors import FleetError
from fleet.model import nodes
from fleet.model.nodes import Node, upstreams, with_watches
from fleet.model.secret import Secret
from fleet.services import delivery, topology
from fleet.services.context import Context, token_environ


@dataclass(frozen=True)
class NodeWorkspace(terraform.Workspace):
    """A lab module's state. Its create provisioner runs `fleet secrets deliver`, which
    needs the tokens this fleet runs with: they go to Terraform's environment only, which
    Terraform never writes to its state (the node's inputs, which it does keep, hold none).
    The cattle module's destroy provisioner runs the consul CLI (force-leave of a node that
    could not leave): CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN tell it where and as whom."""

    tokens: Mapping[str, Secret] = field(default_factory=dict, repr=False)
    consul_http_addr: str = ""

    def env(self) -> dict[str, str]:
        addr = {"CONSUL_HTTP_ADDR": self.consul_http_addr} if self.consul_http_addr else {}
        return {**super().env(), **addr, **{k: v.reveal() for k, v in self.tokens.items()}}


def lab_workspace(ctx: Context, module: str, env: str) -> NodeWorkspace:
    """One environment's state of a lab module (cattle, machines) in the consul backend, at
    the server topology.terraform_consul chooses."""
    address = topology.terraform_consul(ctx)
    url = urlparse(address)
    return NodeWorkspace(
        module=ctx.root / "terraform" / "lab" / module,
        data_dir=ctx.state_dir / "terraform" / module / env,
        consul_address=f"{url.hostname}:{url.port}",
        state_path=f"{ctx.fleet.kv_prefix}/terraform/{module}/{env}",
        state_dir=ctx.state_dir,
        tokens={k: Secret(v) for k, v in token_environ(ctx).items()},
        consul_http_addr=address,
    )


def workspace(ctx: Context, env: str) -> NodeWorkspace:
    return lab_workspace(ctx, "cattle", env)


def apply(ctx: Context, env: str, nodes: Iterable[Node], *,
          replace: Iterable[str] = ()) -> dict[str, str]:
    """Make the environment's cattle exactly these nodes; return node -> version (Terraform's
    module outputs the same: tests/integration/test_cattle.py reads both).

    Every node gets its Consul token, and a role with secrets its Vault credentials, as
    Terraform creates it: the module's create provisioner asks this process for them
    (fleet.services.delivery), or, where it has gone, runs `fleet secrets deliver NODE ROLE
    ENV`, so a fleet killed mid-apply leaves no node without them.

    replace: nodes to destroy and create afresh (Terraform's -replace, not `taint`, which
    would skip the destroy provisioner): their drain forces a dead one out of Consul before
    the new one starts; a node the state does not hold is simply created.
    """
    nodes = list(nodes)
    _vault_ready(ctx, {n.role for n in nodes})
    net = topology.network(ctx)
    fleet = ctx.fleet
    with delivery.desk(ctx) as deliver:  # nodes ask this process (fleet.services.delivery)
        workspace(ctx, env).apply({
            "fleet": fleet.name,
            "network": net.name,
            "consul_join": topology.consul_join(ctx),
            "deliver": deliver,
            "authorized_keys": str(cattle_keys(ctx)),
            "nodes": {n.name: {**n.tfvar(), "services": with_watches(
                n.services, fleet.name, upstreams(fleet, fleet.roles[n.role], env))}
                for n in nodes},
        }, refresh=False,  # terraform_data only: a refresh reads nothing, at a cost per step
            replace=[f'terraform_data.node["{name}"]' for name in replace],
            outputs=False)  # what it made is what it was given: no second run to read it
    return {n.name: n.version for n in nodes}


def cattle_keys(ctx: Context) -> Path:
    """The authorized_keys file cattle nodes mount read-only: the lab key (topology.key_pair,
    the one pets, snowflakes and Vagrant machines take), with OpenSSH's `restrict` option.

    Cattle are never changed in place, so their SSH is for diagnostics (`fleet run`): a
    command runs, but no port, agent or X11 forwarding and no pty (`restrict`), so a node
    is no way into the lab's network. The key is mounted at boot, never baked. fleet does
    not stop a command as root from writing (a read-only root filesystem per session would
    need CAP_SYS_ADMIN in the container); what one changes dies with the node at the next
    rollout."""
    _, public = topology.key_pair(ctx)
    keys = public.with_name("cattle_authorized_keys")
    text = f"restrict {public.read_text().strip()}\n"
    if not keys.exists() or keys.read_text() != text:
        partial = keys.with_name(f"{keys.name}.{os.getpid()}")  # a node never mounts half a file
        partial.write_text(text)
        partial.replace(keys)
    return keys


def _vault_ready(ctx: Context, roles: set[str]) -> None:
    """Fail before Terraform starts anything when nodes would boot without their secrets."""
    if not any(ctx.fleet.roles[r].secrets for r in roles):
        return
    ctx.vault().require_unsealed(": new nodes could not get their secrets")


@dataclass(frozen=True)
class Health:
    """What Consul says of one role's nodes in one environment."""

    passing: dict[str, str]    # node -> version, every check passing
    failing: dict[str, str]    # node -> version, some check not passing

    def passing_of(self, version: str) -> int:
        return sum(1 for v in self.passing.values() if v == version)


def health(ctx: Context, role_services: list[str], env: str, role: str) -> Health:
    """A node passes only if every service of its role passes on it."""
    client = ctx.consul()
    tag = f"fleet:{ctx.fleet.name}"
    return health_of([i for service in role_services for i in client.instances(service, tag)],
                     env, role)


def health_of(instances: Iterable[Instance], env: str, role: str) -> Health:
    """health() of instances already read: those of the role's services in env."""
    per_node: dict[str, tuple[str, bool]] = {}
    for inst in instances:
        if inst.meta.get("env") != env or inst.meta.get("role") != role:  # other tenants
            continue
        _, ok = per_node.get(inst.node, ("", True))
        per_node[inst.node] = (inst.meta["version"], ok and inst.passing)
    return Health({n: v for n, (v, ok) in per_node.items() if ok},
                  {n: v for n, (v, ok) in per_node.items() if not ok})


def not_passing(ctx: Context, names: list[str]) -> str:
    """What Consul says now of these nodes, which a gate waited for in vain, in one line
    (model.nodes.not_passing): not in its catalog, not registered by its leader, or which check
    fails and how, with each one's member status. Asked only once a gate has failed."""
    client = ctx.consul()
    try:
        members = client.members()
        checks = {n: [(c.check_id, c.name, c.status.value, c.output)
                      for c in client.node_checks(n, members_only=False)]
                  for n in names[:nodes.SHOWN]}  # the rest are only counted
    except FleetError as exc:
        return f"Consul could not say why ({exc.line()})"
    return nodes.not_passing(names, checks, members)


MARK_AFTER = 3.0  # seconds a joined node may wait for the leader before fleet marks it


def wait_passing(ctx: Context, services: list[str], env: str, role: str,
                 want: Callable[[Health], bool], timeout: float) -> tuple[bool, Health]:
    """Until want(health) or timeout; (met, last health). A blocking query on the role's first
    service wakes this as soon as its instances or their checks change (a poll every 0.2 s
    waited 0.1 s on average past each change, and asked ~5 times a second meanwhile); a role
    of several services is asked again every 0.2 s as well, since a change of another service
    does not wake it. Every MARK_AFTER seconds meanwhile, the nodes that joined but were not
    marked members are marked (mark_joined)."""
    client = ctx.consul(timeout=MARK_AFTER + 10)  # past the longest wait, and Consul's jitter
    tag = f"fleet:{ctx.fleet.name}"
    first, rest = services[0], services[1:]
    started = time.monotonic()
    deadline, mark = started + timeout, started + MARK_AFTER
    index = 0
    while True:
        wait = min(deadline, mark) - time.monotonic()
        found, instances = client.instances_index(
            first, tag, index, f"{max(int((0.2 if rest else wait) * 1000), 200)}ms")
        seen = health_of([*instances, *(i for s in rest for i in client.instances(s, tag))],
                         env, role)
        if want(seen):
            return True, seen
        if time.monotonic() > deadline:
            return False, seen
        if time.monotonic() > mark:
            mark_joined(ctx, services, env, role)
            mark = time.monotonic() + MARK_AFTER
        index = found if found >= index else 0  # an index going back (another server): again
        if not index:
            time.sleep(0.2)  # no index to block on: a poll


def mark_joined(ctx: Context, services: list[str], env: str, role: str) -> list[str]:
    """Mark as members the role's nodes that Consul calls alive but whose serfHealth its
    leader has not registered, as the leader does when a member joins.

    Consul 1.8's leader sometimes misses the join of a node that takes back the name of one
    that left under a minute before (a rollback brings a version's node names back): memberlist
    updates the old entry's address, and the leader registers the node only at its next full
    reconcile, up to a minute later, while the rollout's step waits for it. A node Consul calls
    anything but alive is left alone: one called failed just after it took a name back (a
    rumour of the old node's leave, at a higher incarnation, taken as news of it) joins the
    servers again by itself, which refutes it (packer/base/fleet-node's stay_member). In the
    lab's server log, 1 to 3 nodes of test_crowd's 20 were called failed so, 0.1-1.7 s after
    they joined, and each refuted it within 2 s; one that never heard the rumour (the likely
    cause of a step that waited 120 s for one node, not caught in the act) now joins again."""
    client = ctx.consul()
    tag = f"fleet:{ctx.fleet.name}"
    waiting = {(node, address) for service in services
               for node, address, meta in client.unmarked(service, tag)
               if meta.get("env") == env and meta.get("role") == role}
    if not waiting:
        return []
    alive = {n for n, status in client.members().items() if status == 1}
    marked = sorted((node, address) for node, address in waiting if node in alive)
    for node, address in marked:
        client.mark_member(node, address)
    return [node for node, _ in marked]


LEAVE_WAIT = 10.0  # seconds a stopped node's leave has to reach Consul's catalog
GONE_WAIT = 20.0   # seconds, in all, until Consul has no trace of the node


def out_of_consul(consul: Consul, node: str) -> None:
    """Wait for a stopped node's own leave to take it out of Consul's catalog; force it out
    after LEAVE_WAIT. Gone means gone twice in a row a second apart: the leader can register a
    member again from a reconcile it began before the leave. A Consul that times out under
    load is asked again until GONE_WAIT."""
    start = time.monotonic()
    forced, absent, last = False, 0, ""
    while absent < 2:
        elapsed = time.monotonic() - start
        if elapsed > GONE_WAIT:
            raise FleetError(f"{node} is still in Consul's catalog {GONE_WAIT:.0f}s after its "
                             f"container went{last}",
                             f"run `consul force-leave {node}`: Consul drops it once found gone")
        try:
            if not consul.node_checks(node):
                absent += 1
            else:
                absent = 0
                if elapsed > LEAVE_WAIT and not forced:
                    forced = True  # once: a refusal is said at the end, not hammered
                    consul.forget(node)
        except FleetError as exc:
            absent, last = 0, f" ({exc.line()})"
        time.sleep(1.0 if absent else 0.5)
