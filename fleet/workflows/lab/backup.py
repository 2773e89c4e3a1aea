"""`fleet lab snapshot FILE` and `fleet lab restore FILE`: both stores of the lab, and the
keys they need, in one file.

A snapshot holds Consul's whole store (`GET /v1/snapshot`: KV — catalog, channels, rollouts,
history, Terraform's states —, sessions, the catalog and the ACL tokens), OpenBao's raft
store (`sys/storage/raft/snapshot`, encrypted by its barrier) and the lab's key files that
make them usable again: consul-acl.json (the management and operator tokens the snapshot's
ACLs know), openbao-init.json (the unseal key and root token of the cluster that took it: a
raft snapshot is sealed with them) and openbao-operator.json. The file is therefore written
0600 and is as secret as the lab itself: a real cluster keeps its snapshots and its unseal
keys apart (README, *Backing up a real cluster*); the lab keeps them together so a drill
needs one file.

A restore puts both stores back on the lab as it is now (any size; after a `lab reset` and
`lab up` too): Consul's snapshot through any live server with the current management token,
then the snapshot's tokens become the lab's (the servers restarted with them, their ACLs
being the snapshot's); OpenBao's with snapshot-force (it may come from another cluster:
another barrier key), after which every node is sealed and unsealed again with the
snapshot's own key.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from fleet.adapters import raft
from fleet.adapters.vault import Vault
from fleet.errors import FleetError
from fleet.services.context import Context
from fleet.services.topology import (
    consul_servers,
    consul_tokens,
    network,
    openbao_servers,
    paths,
    vault_root_token,
    write_private,
)
from fleet.workflows.lab import processes
from fleet.workflows.lab.consul_server import consul_up
from fleet.workflows.lab.openbao_server import EXE, active_node, start_openbao, unseal
from fleet.workflows.lab.processes import Progress

FORMAT = "fleet-lab-snapshot/1"
KEY_FILES = ("consul-acl.json", "openbao-init.json", "openbao-operator.json")


@dataclass(frozen=True)
class Backup:
    """What `lab snapshot` wrote or `lab restore` read."""

    file: str
    consul_bytes: int
    openbao_bytes: int
    actions: tuple[str, ...] = ()

    def error(self) -> FleetError | None:
        return None


def _live_consul(ctx: Context) -> str:
    token = consul_tokens(paths(ctx)).management.reveal()
    errors = []
    for server in consul_servers(ctx):
        try:
            raft.consul_raft(server.http, token)
            return server.http
        except FleetError as exc:
            errors.append(exc.what)
    raise FleetError(f"no Consul server of the lab answers ({'; '.join(errors)})",
                     "run `fleet lab up`")


def snapshot(ctx: Context, file: Path, progress: Progress) -> Backup:
    p = paths(ctx)
    token = consul_tokens(p).management.reveal()
    progress("saving consul's snapshot")
    consul = raft.consul_snapshot(_live_consul(ctx), token)
    progress("saving openbao's raft snapshot")
    openbao = raft.openbao_snapshot(active_node(openbao_servers(ctx)).http,
                                    vault_root_token(ctx).reveal())
    keys = {name: (p.lab / name).read_text() for name in KEY_FILES if (p.lab / name).exists()}
    write_private(file, json.dumps({
        "format": FORMAT, "fleet": ctx.fleet.name, "taken": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                          time.gmtime()),
        "consul": base64.b64encode(consul).decode(), "openbao": base64.b64encode(openbao).decode(),
        "keys": keys,
    }))
    file.chmod(0o600)  # an existing file keeps its mode through O_TRUNC
    return Backup(str(file), len(consul), len(openbao))


def _read(file: Path) -> dict[str, object]:
    try:
        data = json.loads(file.read_text())
        if data["format"] != FORMAT or set(data["keys"]) != set(KEY_FILES):
            raise ValueError(data["format"])
        return dict(data)
    except FileNotFoundError as exc:
        raise FleetError(f"no snapshot at {file}", "give a file `fleet lab snapshot` wrote") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FleetError(f"{file} is not a lab snapshot ({FORMAT})",
                         "give a file `fleet lab snapshot` wrote") from exc


def restore(ctx: Context, file: Path, progress: Progress) -> Backup:
    data = _read(file)
    keys = data["keys"]
    assert isinstance(keys, dict)
    consul = base64.b64decode(str(data["consul"]))
    openbao = base64.b64decode(str(data["openbao"]))
    p = paths(ctx)
    actions = []
    progress("restoring consul's snapshot")
    raft.consul_restore(_live_consul(ctx), consul_tokens(p).management.reveal(), consul)
    actions.append("restored consul")
    progress("restoring openbao's raft snapshot")
    cluster = openbao_servers(ctx)
    raft.openbao_restore(active_node(cluster).http, vault_root_token(ctx).reveal(), openbao)
    actions.append("restored openbao")
    for name in KEY_FILES:
        write_private(p.lab / name, str(keys[name]))
    # Consul: the servers take the snapshot's tokens (their configuration changes: consul_up
    # restarts them with it and checks the operator's token)
    actions += consul_up(ctx, p, network(ctx), progress)
    # OpenBao: the store is sealed with the snapshot's key now; every node starts again
    # (sealed) and is unsealed with it
    for server in cluster:
        processes.stop(p, server.process, EXE)
    for server in cluster:
        start_openbao(p, server, cluster)
    key = json.loads(str(keys["openbao-init.json"]))["unseal_key"]
    for server in cluster:
        processes.wait(server.process, partial(_answers, server.http), 60,
                       p.log(server.process))
    actions += unseal(p, cluster, key)
    actions.append("unsealed openbao with the snapshot's key")
    return Backup(str(file), len(consul), len(openbao), tuple(actions))


def _answers(address: str) -> bool:
    try:
        Vault(address, timeout=1).health()
    except FleetError:
        return False
    return True

