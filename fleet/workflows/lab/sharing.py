"""One lab, several fleets: what `lab down` and `lab reset` of one fleet may take.

Fleets in different directories on one machine share the lab's servers (dockerd, Consul,
OpenBao) and its network; a lab is its network (a node on another network is another
lab's, made from another directory with servers of its own, and is never counted, stopped or
removed here); each node carries the label fleet.name=<fleet> (Terraform's lab
modules, the Vagrantfile), by which fleets are told apart: a name prefix would not do (fleet
`a`'s nodes `a-…` take in fleet `a-b`'s). The directory whose .fleet/lab keeps the servers'
data, or recorded their PIDs, owns them: it ran the first `lab up`. Choices:
- `lab down` and `lab reset` in the owning directory, while another fleet still has nodes on
  the lab, are refused before anything changes, naming those fleets: stopping or wiping the
  servers would take the lab from under them. A node without the label (made before nodes
  carried it) counts as the owner's, as every node did then.
- `lab reset` in another directory takes only its own fleet: its nodes, the Consul tokens
  and policies minted for them, its state in Consul KV (fleet/<name>/: catalog, channels,
  rollouts, history, Terraform's states) and its own .fleet/lab. The servers, the network and
  Vault stay: its policies and AppRoles are written again by `secrets sync`, and secret values
  are never removed (on a mount fleets share, a path may be another fleet's too).
- `lab down` in another directory stops only what that directory started (its reboot
  watcher), never a server.
- A pet's data volume (`<fleet>-<instance>-data`) is removed only with `--delete-volumes`,
  and only this fleet's: labelled with its name, or named after one of its pets' instances.
  Docker refuses to remove a volume a container still uses.
- With dockerd down, no node can be seen: nothing is refused on their account.
- A node of another fleet that is draining away (renamed NAME.draining by its destroy: it
  stops, leaves Consul and is removed by itself, ~20 s at most) is waited for, up to
  DRAIN_WAIT, before a refusal on its account: right after that fleet's apply or reset the
  lab is about to be free, and a refusal would only make the user run the command again.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable

from fleet.adapters import docker
from fleet.errors import FleetError
from fleet.model import acl
from fleet.services import topology
from fleet.services.context import Context
from fleet.services.topology import Paths
from fleet.workflows.lab import boots, processes
from fleet.workflows.lab.processes import Progress

SERVERS = (("openbao", "bao"), ("consul", "consul"), ("dockerd", "dockerd"))
DRAIN_WAIT = 40  # seconds another fleet's draining nodes are waited for (docker stop's 10 s
#                  grace, the leave's 5 s, the catalog's deregistration: ~20 s, twice over)


def servers(p: Paths) -> list[tuple[str, str]]:
    """The servers this directory may have started, by (PID file name, program): the first
    of each kind, a cluster's others (consul-2, openbao-3, ...: whatever size the lab had
    when they were started) and dockerd."""
    extra = [(f.stem, exe) for kind, exe in (("openbao", "bao"), ("consul", "consul"))
             for f in sorted(p.lab.glob(f"{kind}-*.pid"))]
    return [*extra, *SERVERS]


def owns_servers(p: Paths) -> bool:
    """Whether this directory owns the lab's servers: it keeps their data or their PIDs."""
    return (any(d.exists() for d in p.servers)
            or any(processes.recorded_pid(p, name, exe) is not None for name, exe in servers(p)))


def others(fleet: str, nodes: Iterable[docker.LabNode]) -> dict[str, list[str]]:
    """The other fleets with nodes on the lab: fleet -> its nodes (unlabelled nodes are
    nobody else's)."""
    found: dict[str, list[str]] = {}
    for node in nodes:
        if node.fleet and node.fleet != fleet:
            found.setdefault(node.fleet, []).append(node.name)
    return found


def refusal(command: str, fleets: dict[str, list[str]]) -> FleetError:
    """The one line of a `lab down` or `lab reset` refused for the other fleets' sake."""
    named = ", ".join(f"{f} ({len(n)} node(s), e.g. {sorted(n)[0]})"
                      for f, n in sorted(fleets.items()))
    return FleetError(
        f"lab {command} refused: the lab's servers and network are shared, and other fleets "
        f"still have nodes on them: {named}; nothing was changed",
        "run `fleet lab reset` in those fleets' directories first (or, for a fleet that is "
        "gone, `docker rm -f` its containers: label fleet.name=NAME)")


def draining_only(fleets: dict[str, list[str]]) -> bool:
    """Whether every node of the other fleets is draining away (it goes by itself)."""
    return all(n.endswith(".draining") for nodes in fleets.values() for n in nodes)


def require_alone(ctx: Context, p: Paths, command: str, progress: Progress,
                  wait: float = DRAIN_WAIT) -> None:
    """Refuse to take the shared servers while another fleet has nodes on them; nodes that
    are only draining away are waited for first, up to wait seconds."""
    if not owns_servers(p) or docker.server_version() is None:
        return
    network = topology.network(ctx).name
    deadline, said = time.monotonic() + wait, False
    while ((found := others(ctx.fleet.name, docker.lab_nodes(network)))
           and draining_only(found) and time.monotonic() < deadline):
        if not said:
            count = sum(len(n) for n in found.values())
            progress(f"waiting up to {wait:.0f} s for {count} draining node(s) of other "
                     "fleets to go")
            said = True
        time.sleep(1)
    if found:
        raise refusal(command, found)


def volumes(ctx: Context) -> list[str]:
    """This fleet's pet data volumes that exist: labelled with its name, or (made before
    volumes carried it) named after one of its pets' instances."""
    labelled = docker.volumes(f"fleet.name={ctx.fleet.name}")
    named = topology.pet_volumes(ctx) & set(docker.volumes("fleet.lab=1"))
    return sorted(set(labelled) | named)


def delete_volumes(ctx: Context, progress: Progress) -> list[str]:
    names = volumes(ctx)
    if not names:
        return []
    progress(f"removing {len(names)} pet data volume(s) of {ctx.fleet.name}")
    docker.remove_volumes(names)
    return [f"removed volume {n}" for n in names]


def kept_volumes(ctx: Context) -> list[str]:
    """What a reset without --delete-volumes says it left."""
    names = volumes(ctx)
    return [f"kept {len(names)} pet data volume(s) ({', '.join(names)}): "
            "--delete-volumes removes them"] if names else []


def reset_own(ctx: Context, p: Paths, progress: Progress) -> list[str]:
    """Take this fleet, and only it, off a lab another directory owns (see the module's
    docstring); its volumes are the caller's to decide."""
    actions = []
    nodes = docker.fleet_containers(ctx.fleet.name) if docker.server_version() else []
    if nodes:
        progress(f"removing {len(nodes)} node(s) of {ctx.fleet.name}")
        docker.stop_and_remove_all(nodes)  # each agent leaves Consul with its own token
        actions.append(f"removed {len(nodes)} node(s) of {ctx.fleet.name}")
    consul = ctx.consul()
    gone = {n.removesuffix(".draining") for n in nodes}
    for token in consul.tokens():
        if acl.node_of(token.description) in gone:
            consul.delete_token(token.accessor)
    for name, policy_id in consul.policies().items():
        if acl.policy_node(name) in gone:
            consul.delete_policy(policy_id)
    prefix = f"{ctx.fleet.kv_prefix}/"  # the slash: fleet/a/ is not fleet/a-b/
    if consul.list(prefix):
        consul.delete_tree(prefix)
        actions.append(f"removed Consul KV {prefix}")
    for name, exe in (("boots", boots.EXE),):  # what this directory started for its fleet
        if processes.recorded_pid(p, name, exe) is not None and processes.stop(p, name, exe):
            actions.append(f"stopped {name}")
    if p.lab.exists():
        shutil.rmtree(p.lab)
        actions.append(f"removed {p.lab}")
    return actions
