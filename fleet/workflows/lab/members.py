"""The lab's servers one by one: each as `lab status` shows it, the raft cluster each store
forms (peers, leader, failure tolerance), and the fault commands of a drill — `fleet lab
kill NAME` (SIGKILL by the PID the lab recorded: a crash) and `fleet lab start NAME` (the
same argv and configuration again; an OpenBao node is unsealed again with the lab's key).

NAME is consul-1..N or openbao-1..N (fleet/model/servers.py). Nothing here touches a process
the lab did not start: a server without a recorded PID of the right program is left alone.
`lab status` reads each store's raft state with the lab's own tokens (Consul's management
token, OpenBao's root token in openbao-init.json): it is a lab command, run where the lab was
made; no fleet command uses them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fleet.adapters import raft
from fleet.adapters.consul import Consul
from fleet.adapters.vault import SealState, Vault
from fleet.errors import FleetError
from fleet.model.servers import LabServer
from fleet.services.context import Context
from fleet.services.topology import (
    Paths,
    consul_servers,
    consul_tokens,
    openbao_servers,
    paths,
    vault_root_token,
)
from fleet.workflows.lab import processes
from fleet.workflows.lab.consul_server import start_consul
from fleet.workflows.lab.openbao_server import start_openbao, unseal, vault_health
from fleet.workflows.lab.parts import Part, PartState
from fleet.workflows.lab.processes import Progress

EXE = {"consul": "consul", "openbao": "bao"}


@dataclass(frozen=True)
class Fault:
    """What `lab kill` or `lab start` did to one server."""

    server: str
    action: str     # "killed", "started", "already running", "not running"
    pid: int | None

    def error(self) -> FleetError | None:
        return None


def servers(ctx: Context) -> tuple[LabServer, ...]:
    return (*consul_servers(ctx), *openbao_servers(ctx))


def find(ctx: Context, name: str) -> LabServer:
    """The server a user names, or one line listing the names there are."""
    known = servers(ctx)
    for server in known:
        if server.name == name:
            return server
    raise FleetError(f"no lab server {name!r}",
                     f"name one of {', '.join(s.name for s in known)}")


def kill(ctx: Context, name: str) -> Fault:
    server = find(ctx, name)
    p = paths(ctx)
    pid = processes.recorded_pid(p, server.process, EXE[server.kind])
    if pid is None:
        return Fault(server.name, "not running", None)
    processes.kill(p, server.process, EXE[server.kind])
    return Fault(server.name, "killed", pid)


def start(ctx: Context, name: str, progress: Progress) -> Fault:
    """Start one server the lab knows with its own argv and configuration, and wait until it
    serves (a Consul server sees a leader; an OpenBao node is unsealed)."""
    server = find(ctx, name)
    p = paths(ctx)
    exe = EXE[server.kind]
    if processes.recorded_pid(p, server.process, exe) is not None:
        return Fault(server.name, "already running", processes.recorded_pid(p, server.process, exe))
    progress(f"starting {server.name}")
    if server.kind == "consul":
        start_consul(p, server, consul_servers(ctx))
        client = Consul(server.http, consul_tokens(p).management.reveal(), timeout=2)
        processes.wait(server.name, lambda: _answers(client), 60, p.log(server.process))
    else:
        cluster = openbao_servers(ctx)
        start_openbao(p, server, cluster)
        processes.wait(server.name, lambda: vault_health(Vault(server.http)) is not None, 60,
                       p.log(server.process))
        unseal(p, cluster, _unseal_key(p), nodes=(server,))
    return Fault(server.name, "started", processes.recorded_pid(p, server.process, exe))


def _answers(consul: Consul) -> bool:
    try:
        return bool(consul.leader())
    except FleetError:
        return False


def _unseal_key(p: Paths) -> str:
    import json

    try:
        return str(json.loads(p.openbao_init.read_text())["unseal_key"])
    except (OSError, ValueError, KeyError) as exc:
        raise FleetError(f"the lab's unseal key is unreadable ({p.openbao_init})",
                         "run `fleet lab up` where the lab was made") from exc


# ---- status -------------------------------------------------------------------------------

def _why_down(p: Paths, server: LabServer) -> str:
    if p.pid(server.process).exists():
        return f"exited; see {p.log(server.process)}"
    return "not running; run `fleet lab up`"


def consul_member(p: Paths, server: LabServer, token: str) -> Part:
    """One Consul server of a cluster: up and what it sees."""
    consul = Consul(server.http, token, timeout=2)
    try:
        leader = consul.leader()
        version = consul.version()
    except FleetError:
        return Part(server.name, PartState.DOWN, address=server.http, detail=_why_down(p, server))
    if not leader:
        return Part(server.name, PartState.DOWN, version, server.http, "no leader elected")
    own = f"{server.gateway}:{server.port(8300)}"
    role = "leader" if leader == own else "follower"
    return Part(server.name, PartState.UP, version, server.http, f"server {server.node}, {role}")


def openbao_member(p: Paths, server: LabServer) -> Part:
    try:
        health = Vault(server.http, timeout=2).health()
    except FleetError:
        return Part(server.name, PartState.DOWN, address=server.http, detail=_why_down(p, server))
    if health.state is SealState.UNSEALED:
        return Part(server.name, PartState.UP, health.version, server.http, f"{server.node}, active")
    if health.state is SealState.STANDBY:
        return Part(server.name, PartState.UP, health.version, server.http,
                    f"{server.node}, standby")
    return Part(server.name, PartState.DOWN, health.version, server.http,
                f"{health.state}; run `fleet lab start {server.name}`")


def raft_part(name: str, cluster: tuple[LabServer, ...],
              read: Callable[[LabServer], raft.Raft]) -> Part:
    """A store's raft cluster as any live server sees it: peers, leader, failure tolerance."""
    errors = []
    for server in cluster:
        try:
            state = read(server)
        except FleetError as exc:
            errors.append(exc.what)
            continue
        peers = ", ".join(f"{peer.name}{' (leader)' if peer.leader else ''}"
                          f"{'' if peer.healthy else ' (unhealthy)'}" for peer in state.peers)
        detail = (f"{len(state.peers)} peers: {peers}; failure tolerance "
                  f"{state.failure_tolerance}")
        if not state.leader:
            return Part(name, PartState.DOWN, detail=f"no leader; {detail}")
        return Part(name, PartState.UP, address=state.leader, detail=detail)
    return Part(name, PartState.DOWN, detail=errors[-1] if errors else "no server")


def checks(ctx: Context, p: Paths) -> list[Callable[[], Part]]:
    """`lab status`'s probes of a cluster's servers, one each, and of both raft clusters."""
    consul, openbao = consul_servers(ctx), openbao_servers(ctx)

    def token() -> str:
        return consul_tokens(p).management.reveal()

    def root() -> str:
        return vault_root_token(ctx).reveal()

    return [
        *((lambda s=s: _guarded(s.name, lambda: consul_member(p, s, token()))) for s in consul),
        lambda: _guarded("consul raft", lambda: raft_part(
            "consul raft", consul, lambda s: raft.consul_raft(s.http, token()))),
        *((lambda s=s: openbao_member(p, s)) for s in openbao),
        lambda: _guarded("openbao raft", lambda: raft_part(
            "openbao raft", openbao, lambda s: raft.openbao_raft(s.http, root()))),
    ]


def _guarded(name: str, probe: Callable[[], Part]) -> Part:
    """A probe that needs the lab's tokens: DOWN with the reason when they are not there."""
    try:
        return probe()
    except FleetError as exc:
        return Part(name, PartState.DOWN, detail=exc.line())
