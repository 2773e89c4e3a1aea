"""The lab's OpenBao: integrated (raft) storage, initialised once and unsealed by `lab up`;
a file audit device; fleet's operator token under least privilege.

`lab up` is the lab's administrator: with the root token (and only there) it mounts the
fleet's kv-v2 engine, enables AppRole, writes the fleet-operator policy
(fleet/model/vault_policy.py) and renews fleet's operator token, or mints one (an orphan,
periodic token) when there is none or it lapsed; every command then runs with that token.

The audit device is declared in the server's configuration (`audit "file" "file"`), writing
.fleet/lab/openbao-audit.log (0600): OpenBao 2.x refuses to enable audit devices through the
API (an API-made file device could write anywhere), so the configuration is the only way.
Every request and response is logged with values, tokens and accessors HMAC'd; with its only
device failing to write, OpenBao refuses requests (audit fails closed). An OpenBao that the lab
started with another configuration (an older lab's, without the device) is restarted with this
one and unsealed again; one the lab did not start and that audits nothing is refused.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from fleet.adapters import raft
from fleet.adapters.vault import InitKeys, SealState, Vault
from fleet.errors import DependencyDown, FleetError, Sealed
from fleet.model import vault_policy
from fleet.model.secrets import APPROLE_MOUNT
from fleet.model.servers import LabServer
from fleet.services.context import Context
from fleet.services.topology import (
    Network,
    Paths,
    openbao_servers,
    vault_operator,
    write_private,
)
from fleet.workflows.lab import processes
from fleet.workflows.lab.processes import Progress

AUDIT_DEVICE = "file/"  # the audit device's path in OpenBao
EXE = "bao"


def config_file(p: Paths, server: LabServer) -> Path:
    """A node's configuration: .fleet/lab/openbao.hcl, openbao-2.hcl, ..."""
    return p.openbao_config if server.index == 0 else p.lab / f"{server.process}.hcl"


def openbao_config(p: Paths, server: LabServer, cluster: Sequence[LabServer]) -> str:
    """A node's configuration; one node's exactly as the lab always had it. In a cluster each
    node listens on its own loopback address and on the gateway at a port of its own,
    retry-joins the others (its raft join, done once it is unsealed with the cluster's key),
    and every node declares the same audit device (the audit table is the cluster's)."""
    port = server.http_port
    single = len(cluster) == 1
    joins = "".join(f'\n  retry_join {{\n    leader_api_addr = "{s.http}"\n  }}'
                    for s in cluster if s != server)
    # autopilot looks at the peers every 500 ms and promotes a stable one within a second
    reconcile = "" if single else ('\n  autopilot_update_interval = "500ms"'
                                   '\n  autopilot_reconcile_interval = "1s"')
    host = "127.0.0.1" if server.host == "localhost" else server.host
    return "\n".join([
        # Integrated storage (raft): the file backend was removed in OpenBao 2.7
        f'storage "raft" {{\n  path = "{p.data(server)}"\n  node_id = "{server.node}"\n'
        f'  performance_multiplier = 1{reconcile}{joins}\n}}',  # 1 s elections: quick restarts
        f'listener "tcp" {{\n  address = "{host}:{port}"\n  tls_disable = true\n}}',
        f'listener "tcp" {{\n  address = "{server.gateway}:{server.port(port)}"\n'
        f'  tls_disable = true\n}}',
        f'api_addr = "http://{host}:{port}"',
        f'cluster_addr = "http://{host}:{port + 1}"',
        f'audit "file" "{AUDIT_DEVICE.rstrip("/")}" {{\n  description = "fleet lab: every request, '
        f'values HMAC\'d"\n  options {{\n    file_path = "{p.openbao_audit}"\n  }}\n}}',
        "",
    ])


def vault_health(vault: Vault) -> SealState | None:
    try:
        return vault.health().state
    except Sealed:
        return SealState.SEALED
    except DependencyDown:
        return None


def label(server: LabServer, cluster: Sequence[LabServer]) -> str:
    """What progress and actions call a node: "openbao" alone, openbao-1.. in a cluster."""
    return server.process if len(cluster) == 1 else server.name


def start_openbao(p: Paths, server: LabServer, cluster: Sequence[LabServer]) -> None:
    """Start one node with its configuration written anew; its PID recorded."""
    p.data(server).mkdir(parents=True, exist_ok=True)
    config_file(p, server).write_text(openbao_config(p, server, cluster))
    processes.start(p, server.process, [processes.bao_binary(), "server",
                                        f"-config={config_file(p, server)}"])


def openbao_up(ctx: Context, p: Paths, net: Network, progress: Progress) -> list[str]:
    cluster = openbao_servers(ctx)
    for server in cluster:
        processes.local(server.http, "OpenBao")
    actions: list[str] = []
    for server in cluster:
        if (processes.recorded_pid(p, server.process, EXE) is not None
                and _read(config_file(p, server)) != openbao_config(p, server, cluster)):
            progress(f"restarting {label(server, cluster)} with the lab's configuration (its audit device)")
            processes.stop(p, server.process, EXE)
            actions.append(f"restarted {label(server, cluster)} with a new configuration")
    for server in cluster:
        if (vault_health(Vault(server.http)) is None
                and processes.recorded_pid(p, server.process, EXE) is None):
            progress(f"starting {label(server, cluster)}")
            start_openbao(p, server, cluster)
            actions.append(f"started {label(server, cluster)}")
    for server in cluster:
        processes.wait(server.process, partial(_in, server, ANSWERING), 60,
                       p.log(server.process), running=partial(
                           processes.running, p, server.process))
    first = Vault(cluster[0].http)
    if vault_health(first) is SealState.UNINITIALIZED and (
            len(cluster) == 1 or not p.openbao_init.exists()):  # else it joins the others
        progress("initialising openbao")
        keys = Vault(cluster[0].http, timeout=60).initialize()  # raft elects itself during init
        write_private(p.openbao_init, json.dumps(
            {"unseal_key": keys.unseal_key, "root_token": keys.root_token}))
        actions.append("initialised openbao")
    init = _read_init(p)
    actions += unseal(p, cluster, init.unseal_key)
    active = active_node(cluster)
    root = Vault(active.http, init.root_token)
    if len(cluster) > 1:
        raft.openbao_autopilot(active.http, init.root_token, AUTOPILOT)
        processes.wait("openbao (every node a raft voter)",
                       lambda: _voters(active, init.root_token) == len(cluster), 60,
                       p.log(active.process))
    if root.ensure_kv(ctx.fleet.secrets_mount):
        actions.append(f"enabled kv-v2 at {ctx.fleet.secrets_mount}/")
    if root.ensure_auth("approle", APPROLE_MOUNT):
        actions.append(f"enabled approle at auth/{APPROLE_MOUNT}/")
    _audited(root, p)
    return actions + operator_up(root, p)


# autopilot makes a joined node a voter once it has been stable this long (default 10 s)
AUTOPILOT = {"server_stabilization_time": "1s", "cleanup_dead_servers": False}


def unseal(p: Paths, cluster: Sequence[LabServer], key: str, *,
           nodes: Sequence[LabServer] = ()) -> list[str]:
    """Unseal every sealed node with the lab's key, and wait until one is active and every
    other a standby. A node of a cluster that has not joined yet (uninitialised) joins by
    retry_join once it is given the key; its unseal answers "sealed" until the join is done."""
    actions = []
    for server in nodes or cluster:
        state = vault_health(Vault(server.http))
        if len(cluster) == 1 and state is SealState.SEALED:
            Vault(server.http).unseal(key)  # a wrong key is said at once
        elif state is SealState.SEALED or (state is SealState.UNINITIALIZED and len(cluster) > 1):
            with contextlib.suppress(FleetError):  # "stayed sealed" while it joins
                if state is SealState.UNINITIALIZED:  # its retry_join has not reached a leader
                    processes.wait(f"{server.process} (raft join)", partial(_in, server, JOINED),
                                   30, p.log(server.process))
                Vault(server.http).unseal(key)
        else:
            continue
        actions.append(f"unsealed {label(server, cluster)}")
    for server in nodes or cluster:
        processes.wait(f"{server.process} (unsealed)", partial(_in, server, SERVING), 60,
                       p.log(server.process))
    # raft elects its leader a moment after unseal; writes need the active node
    processes.wait("openbao (an active node after unseal)",
                   lambda: _active(cluster) is not None, 60, p.log("openbao"))
    return actions


ANSWERING = (SealState.UNINITIALIZED, SealState.SEALED, SealState.STANDBY, SealState.UNSEALED)
JOINED = (SealState.SEALED, SealState.STANDBY, SealState.UNSEALED)
SERVING = (SealState.STANDBY, SealState.UNSEALED)


def _in(server: LabServer, states: tuple[SealState, ...]) -> bool:
    return vault_health(Vault(server.http)) in states


def _active(cluster: Sequence[LabServer]) -> LabServer | None:
    return next((s for s in cluster if vault_health(Vault(s.http)) is SealState.UNSEALED), None)


def active_node(cluster: Sequence[LabServer]) -> LabServer:
    found = _active(cluster)
    if found is None:
        raise DependencyDown("no OpenBao node is active", "run `fleet lab up`")
    return found


def _voters(server: LabServer, token: str) -> int:
    try:
        return sum(p.voter for p in raft.openbao_raft(server.http, token).peers)
    except FleetError:
        return 0


def _read(file: Path) -> str | None:
    try:
        return file.read_text()
    except FileNotFoundError:
        return None


def _audited(root: Vault, p: Paths) -> None:
    """The lab's audit device is on (OpenBao sets a declared device up just after unseal)."""
    def on() -> bool:
        device = root.audit_devices().get(AUDIT_DEVICE)
        return device is not None and device.get("file_path") == str(p.openbao_audit)

    try:
        processes.wait("openbao's audit device", on, 10, p.log("openbao"))
    except DependencyDown as exc:
        raise FleetError(f"OpenBao at {root.address} does not audit to {p.openbao_audit}",
                         "stop that OpenBao (the lab did not start it), then run `fleet lab "
                         "up`") from exc


def operator_up(root: Vault, p: Paths) -> list[str]:
    """The fleet-operator policy as the model has it, and fleet's operator token under it:
    renewed (a periodic token: a whole period again) when it still holds, else minted anew,
    the lapsed one revoked if Vault still knows it."""
    actions = []
    text = vault_policy.operator_policy(APPROLE_MOUNT)
    if root.policy(vault_policy.OPERATOR_POLICY) != text:
        root.put_policy(vault_policy.OPERATOR_POLICY, text)
        actions.append(f"wrote Vault policy {vault_policy.OPERATOR_POLICY}")
    held = vault_operator(p)
    if held is not None:
        token, accessor = held
        try:
            info = Vault(root.address, token.reveal()).renew_self()
            if vault_policy.OPERATOR_POLICY in info.policies:
                return actions
        except DependencyDown:
            raise
        except FleetError:
            pass  # lapsed (unused for a whole period) or revoked: a new one below
        with contextlib.suppress(FleetError):  # already gone
            root.revoke_accessor(accessor)
    token, accessor = root.create_token([vault_policy.OPERATOR_POLICY],
                                        vault_policy.TOKEN_PERIOD, vault_policy.OPERATOR_POLICY)
    write_private(p.openbao_operator, json.dumps({"token": token.reveal(), "accessor": accessor}))
    return [*actions, "minted fleet's Vault operator token"]


def _read_init(p: Paths) -> InitKeys:
    try:
        data = json.loads(p.openbao_init.read_text())
        return InitKeys(data["unseal_key"], data["root_token"])
    except FileNotFoundError as exc:
        raise FleetError(f"OpenBao is initialised but {p.openbao_init} is missing",
                         "run `fleet lab reset` to start the lab afresh") from exc
    except (ValueError, KeyError) as exc:
        raise FleetError(f"{p.openbao_init} is unreadable", "run `fleet lab reset`") from exc
