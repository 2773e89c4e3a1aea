"""A lab of three Consul servers and three OpenBao nodes (issue 18), against the real
servers: every server and both raft clusters in `lab status`, a server crashed and started
again by name (the stores keep serving through the others), and both stores snapshotted,
wiped and restored. The cluster lab (tests/integration/cluster.py) runs beside the shared
lab, which must stay as it was."""

from __future__ import annotations

import os
import stat
import time
import uuid
from typing import Any

import pytest

from fleet.adapters import docker
from fleet.adapters.consul import Consul
from fleet.adapters.vault import Vault
from fleet.errors import FleetError
from fleet.services import topology
from fleet.services.context import load
from tests.conftest import EXAMPLE, eventually
from tests.integration.cluster import NETWORK, ClusterLab

pytestmark = pytest.mark.lab


def parts(lab: ClusterLab) -> dict[str, dict[str, str]]:
    status = lab.run("lab", "status", "--json")
    assert "Traceback" not in status.stderr, status.stderr
    return {p["name"]: p for p in status.json()["parts"]}


def states(lab: ClusterLab) -> dict[str, str]:
    return {name: p["state"] for name, p in parts(lab).items()
            if name.startswith(("consul", "openbao"))}


def tolerance(lab: ClusterLab, store: str) -> str:
    """'1 of 3 up' as status says it: the raft part's failure tolerance and its peers."""
    detail = parts(lab)[f"{store} raft"]["detail"]
    return detail.rsplit("failure tolerance ", 1)[-1] if "tolerance" in detail else detail


def write(address: str, token: str, key: str, value: bytes) -> bool:
    """A check-and-set create through one server; False while it cannot answer."""
    try:
        return Consul(address, token).put(key, value, cas=0)
    except FleetError:
        return False


def check_line(lab: ClusterLab) -> str:
    """What `fleet secrets check` says of the secrets present (it answers, or says why not)."""
    run = lab.run("secrets", "check")
    assert "Traceback" not in run.stderr, run.stderr
    found = [line for line in run.stderr.splitlines() if "declared secret(s) present" in line]
    return found[0] if found else run.stderr.strip().splitlines()[-1]


def test_a_three_server_lab_survives_a_crash_and_comes_back_from_a_snapshot(
        cluster_lab: ClusterLab, tmp_path: Any) -> None:
    lab = cluster_lab
    timings = {"lab up (3 + 3 servers)": lab.started}
    shared = load(EXAMPLE)  # the shared lab, which must not notice
    shared_leader = shared.consul().leader()
    every = {f"{kind}-{k}" for kind in ("consul", "openbao") for k in (1, 2, 3)}

    # ---- all up: 3 + 3 servers, a leader each, failure tolerance 1 --------------------------
    seen = parts(lab)
    assert {n for n in seen if n[-1:].isdigit()} >= every, f"every server is a part: {sorted(seen)}"
    assert all(seen[n]["state"] == "up" for n in every), {n: seen[n] for n in every}
    for store in ("consul", "openbao"):
        raft = seen[f"{store} raft"]
        assert raft["state"] == "up" and raft["address"], f"{store} has a leader: {raft}"
        assert raft["detail"].startswith("3 peers"), f"{store}: three raft peers: {raft}"
        assert eventually(lambda s=store: tolerance(lab, s), "1") == "1", f"{store} tolerates one"
    assert "servers = 3" in lab.file.read_text()

    ctx = lab.ctx
    consul_servers, openbao_servers = topology.consul_servers(ctx), topology.openbao_servers(ctx)
    assert [s.http for s in consul_servers] == [f"http://127.0.3.{k}:8500" for k in (1, 2, 3)]
    assert [s.http for s in openbao_servers] == [f"http://127.0.3.{k}:8200" for k in (1, 2, 3)]
    token = ctx.consul_token.reveal()
    prefix = ctx.fleet.kv_prefix
    mark = uuid.uuid4().hex[:8]
    kept = {f"{prefix}/{part}/test-{mark}": part.encode() for part in
            ("catalog", "channels", "history")}
    for key, value in kept.items():
        assert write(consul_servers[0].http, token, key, value), f"KV written: {key}"
    vault = Vault(ctx.vault_addr, ctx.vault_token.reveal())
    vault.kv_put(ctx.fleet.secrets_mount, f"test/cluster-{mark}", {"value": mark})

    # ---- a Consul server crashes: the others keep the quorum ---------------------------------
    step = time.monotonic()
    killed = lab.run("lab", "kill", "consul-2")
    assert killed.code == 0 and "consul-2: killed" in killed.stdout, killed.stderr
    assert states(lab)["consul-2"] == "down", "status shows the killed server down"
    assert eventually(lambda: tolerance(lab, "consul"), "0", timeout=30) == "0", \
        "one server down: no failure tolerance left"
    live = consul_servers[0].http
    assert eventually(lambda: write(live, token, f"{prefix}/test/during-{mark}", b"ok"), True,
                      timeout=15), "KV writes go on through the two live servers"
    entry = Consul(consul_servers[2].http, token).get(f"{prefix}/test/during-{mark}")
    assert entry is not None and entry.value == b"ok", "and every live server reads them"
    timings["consul-2 killed, writes through the others"] = time.monotonic() - step

    step = time.monotonic()
    started = lab.run("lab", "start", "consul-2")
    assert started.code == 0 and "consul-2: started" in started.stdout, started.stderr
    assert eventually(lambda: states(lab)["consul-2"], "up", timeout=30) == "up", "back"
    assert eventually(lambda: tolerance(lab, "consul"), "1", timeout=30) == "1", \
        "three servers again: tolerance 1"
    timings["consul-2 back, tolerance 1"] = time.monotonic() - step

    # ---- an OpenBao node crashes: secrets still answer ----------------------------------------
    before = check_line(lab)
    assert "declared secret(s) present" in before, before
    step = time.monotonic()
    killed = lab.run("lab", "kill", "openbao-2")
    assert killed.code == 0 and "openbao-2: killed" in killed.stdout, killed.stderr
    assert states(lab)["openbao-2"] == "down", "status shows the killed node down"
    assert eventually(lambda: tolerance(lab, "openbao"), "0", timeout=30) == "0", \
        "one node down: no failure tolerance left"
    assert check_line(lab) == before, "fleet secrets check answers as before, a node down"
    for node in (openbao_servers[0], openbao_servers[2]):  # the active node and a standby
        assert Vault(node.http, ctx.vault_token.reveal()).kv_get(
            ctx.fleet.secrets_mount, f"test/cluster-{mark}") == {"value": mark}, \
            f"secrets readable through {node.name}"
    started = lab.run("lab", "start", "openbao-2")
    assert started.code == 0 and "openbao-2: started" in started.stdout, started.stderr
    assert states(lab)["openbao-2"] == "up", "started again and unsealed by the lab"
    assert eventually(lambda: tolerance(lab, "openbao"), "1", timeout=30) == "1", "tolerance 1"
    timings["openbao-2 killed and back"] = time.monotonic() - step

    # ---- fault commands: a name it does not know is one line --------------------------------
    unknown = lab.run("lab", "kill", "consul-9")
    assert unknown.code == 1 and "Traceback" not in unknown.stderr
    (line,) = unknown.stderr.strip().splitlines()
    assert "consul-1, consul-2, consul-3, openbao-1, openbao-2, openbao-3" in line, line

    # ---- snapshot, reset, up, restore: KV and secrets back -----------------------------------
    step = time.monotonic()
    file = tmp_path / "lab.snap"
    saved = lab.run("lab", "snapshot", str(file))
    assert saved.code == 0, saved.stderr
    assert stat.S_IMODE(os.stat(file).st_mode) == 0o600, "the snapshot holds keys: 0600"
    reset = lab.run("lab", "reset", "--yes")
    assert reset.code == 0, reset.stderr
    up = lab.run("lab", "up")
    assert up.code == 0, up.stderr
    fresh = lab.ctx
    assert Consul(fresh.consul_addr, fresh.consul_token.reveal()).get(
        next(iter(kept))) is None, "a wiped lab has none of the KV"
    restored = lab.run("lab", "restore", str(file))
    assert restored.code == 0, restored.stderr
    timings["snapshot, reset, up, restore"] = time.monotonic() - step
    back = lab.ctx
    for server in topology.consul_servers(back):
        consul = Consul(server.http, back.consul_token.reveal())
        for key, value in kept.items():
            entry = consul.get(key)
            assert entry is not None and entry.value == value, f"{key} back on {server.name}"
    secret = Vault(back.vault_addr, back.vault_token.reveal()).kv_get(
        back.fleet.secrets_mount, f"test/cluster-{mark}")
    assert secret == {"value": mark}, "the secret is back, unsealed with the snapshot's key"
    assert eventually(lambda: {n: s for n, s in states(lab).items() if s != "up"}, {},
                      timeout=30) == {}, "every server up after the restore"
    assert check_line(lab) == before, "fleet secrets check answers as before the reset"

    # ---- the shared lab never noticed ---------------------------------------------------------
    assert shared.consul().leader() == shared_leader, "the shared lab's Consul kept its leader"
    Vault(shared.vault_addr).require_unsealed()
    assert docker.network_gateway(topology.network(shared).name) == topology.network(shared).gateway
    assert docker.lab_containers(NETWORK) == [], "the cluster lab has no nodes of its own"
    print({k: f"{v:.1f}s" for k, v in timings.items()})
