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
from pathlib import Path

from fleet.adapters.vault import InitKeys, SealState, Vault
from fleet.errors import DependencyDown, FleetError, Sealed
from fleet.model import vault_policy
from fleet.model.secrets import APPROLE_MOUNT
from fleet.services.context import Context
from fleet.services.topology import Network, Paths, vault_operator, write_private
from fleet.workflows.lab import processes
from fleet.workflows.lab.processes import Progress

AUDIT_DEVICE = "file/"  # the audit device's path in OpenBao


def _openbao_config(p: Paths, net: Network, port: int) -> str:
    return "\n".join([
        # Integrated storage (raft): the file backend was removed in OpenBao 2.7
        f'storage "raft" {{\n  path = "{p.openbao_data}"\n  node_id = "lab"\n'
        f'  performance_multiplier = 1\n}}',  # 1 s elections: a lab restart is quick
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = true\n}}',
        f'listener "tcp" {{\n  address = "{net.gateway}:{port}"\n  tls_disable = true\n}}',
        f'api_addr = "http://127.0.0.1:{port}"',
        f'cluster_addr = "http://127.0.0.1:{port + 1}"',
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


def openbao_up(ctx: Context, p: Paths, net: Network, progress: Progress) -> list[str]:
    processes.local(ctx.vault_addr, "OpenBao")
    actions: list[str] = []
    vault = Vault(ctx.vault_addr)
    config = _openbao_config(p, net, processes.port(ctx.vault_addr))
    if (processes.recorded_pid(p, "openbao", "bao") is not None
            and _read(p.openbao_config) != config):
        progress("restarting openbao with the lab's configuration (its audit device)")
        processes.stop(p, "openbao", "bao")
        actions.append("restarted openbao with a new configuration")
    state = vault_health(vault)
    if state is None:
        if processes.recorded_pid(p, "openbao", "bao") is None:
            progress("starting openbao")
            p.openbao_data.mkdir(parents=True, exist_ok=True)
            p.openbao_config.write_text(config)
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
    if root.ensure_auth("approle", APPROLE_MOUNT):
        actions.append(f"enabled approle at auth/{APPROLE_MOUNT}/")
    _audited(root, p)
    return actions + operator_up(root, p)


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
