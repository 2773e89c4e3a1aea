"""The lab's OpenBao: integrated (raft) storage, initialised once and unsealed by `lab up`."""

from __future__ import annotations

import json

from fleet.adapters.vault import InitKeys, SealState, Vault
from fleet.errors import DependencyDown, FleetError, Sealed
from fleet.services.context import Context
from fleet.services.topology import Network, Paths, write_private
from fleet.workflows.lab import processes
from fleet.workflows.lab.processes import Progress


def _openbao_config(p: Paths, net: Network, port: int) -> str:
    return "\n".join([
        # Integrated storage (raft): the file backend was removed in OpenBao 2.7
        f'storage "raft" {{\n  path = "{p.openbao_data}"\n  node_id = "lab"\n'
        f'  performance_multiplier = 1\n}}',  # 1 s elections: a lab restart is quick
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = true\n}}',
        f'listener "tcp" {{\n  address = "{net.gateway}:{port}"\n  tls_disable = true\n}}',
        f'api_addr = "http://127.0.0.1:{port}"',
        f'cluster_addr = "http://127.0.0.1:{port + 1}"',
        "",
    ])


def vault_health(vault: Vault) -> SealState | None:
    try:
        return vault.health().state
    except Sealed:
        return SealState.SEALED
    except DependencyDown:
        return None


def openbao_up(ctx: Context, p: Paths, net: Network, progress: Progress) -> list[str]:
    processes.local(ctx.vault_addr, "OpenBao")
    actions: list[str] = []
    vault = Vault(ctx.vault_addr)
    state = vault_health(vault)
    if state is None:
        if processes.recorded_pid(p, "openbao", "bao") is None:
            progress("starting openbao")
            p.openbao_data.mkdir(parents=True, exist_ok=True)
            p.openbao_config.write_text(_openbao_config(p, net, processes.port(ctx.vault_addr)))
            processes.start(p, "openbao", [processes.bao_binary(), "server", f"-config={p.openbao_config}"])
            actions.append("started openbao")
        processes.wait("openbao", lambda: vault_health(vault) is not None, 60, p.log("openbao"))
        state = vault_health(vault)
    if state is SealState.UNINITIALIZED:
        progress("initialising openbao")
        keys = Vault(ctx.vault_addr, timeout=60).initialize()  # raft elects itself during init
        write_private(p.openbao_init, json.dumps(
            {"unseal_key": keys.unseal_key, "root_token": keys.root_token}))
        actions.append("initialised openbao")
        state = SealState.SEALED
    init = _read_init(p)
    if state is SealState.SEALED:
        vault.unseal(init.unseal_key)
        actions.append("unsealed openbao")
    # raft elects its (single) leader a moment after unseal; writes need the active node
    processes.wait("openbao (active after unseal)", lambda: vault_health(vault) is SealState.UNSEALED,
          60, p.log("openbao"))
    root = Vault(ctx.vault_addr, init.root_token)
    if root.ensure_kv(ctx.fleet.secrets_mount):
        actions.append(f"enabled kv-v2 at {ctx.fleet.secrets_mount}/")
    return actions


def _read_init(p: Paths) -> InitKeys:
    try:
        data = json.loads(p.openbao_init.read_text())
        return InitKeys(data["unseal_key"], data["root_token"])
    except FileNotFoundError as exc:
        raise FleetError(f"OpenBao is initialised but {p.openbao_init} is missing",
                         "run `fleet lab reset` to start the lab afresh") from exc
    except (ValueError, KeyError) as exc:
        raise FleetError(f"{p.openbao_init} is unreadable", "run `fleet lab reset`") from exc
