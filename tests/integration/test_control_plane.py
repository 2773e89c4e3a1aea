"""fleet on a control plane that loses servers: the lab's three Consul servers and three
OpenBao nodes (`[targets.lab] servers = 3`, the `cluster_lab` fixture), each fault made with
`fleet lab kill` / `fleet lab start` as a user would.

One scenario, each check with its own message:
- the Consul leader is killed in the middle of a promotion of 4 nodes: the promotion finishes
  (or, run again, carries on), every step recorded once, the floor never broken (sampled),
  the channel right, nothing lost from the history;
- an OpenBao node is killed (the active one): `fleet secrets check` still answers, and nodes
  created while it is down still get their secrets;
- two of the three Consul servers are stopped: every command fails with one line naming the
  lost quorum, and writes nothing; with them started again, the next command carries on.
The last two share one rollout: the command that carries on once the quorum is back is the
promotion that makes nodes while the OpenBao node is still down.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fleet.adapters.consul import Consul
from fleet.errors import FleetError
from fleet.services import cattle, topology
from tests.conftest import ROOT
from tests.integration.cluster import ClusterLab

pytestmark = pytest.mark.lab

NODES = 4
SECRET = "s3cret-over-three-nodes"


def consul_leader(copy: ClusterLab) -> str:
    """The name (consul-N) of the Consul server that leads now."""
    ctx = copy.ctx
    servers = topology.consul_servers(ctx)
    for server in servers:
        try:
            leader = Consul(server.http, timeout=2).leader()
        except FleetError:
            continue
        for candidate in servers:
            if leader == f"{candidate.gateway}:{candidate.port(8300)}":
                return candidate.name
    raise AssertionError("no Consul server names a leader")


def active_openbao(copy: ClusterLab) -> str:
    from fleet.adapters.vault import SealState, Vault

    ctx = copy.ctx
    for server in topology.openbao_servers(ctx):
        try:
            if Vault(server.http, timeout=2).health().state is SealState.UNSEALED:
                return server.name
        except FleetError:
            continue
    raise AssertionError("no OpenBao node is active")


def history(copy: ClusterLab) -> list[dict[str, Any]]:
    run = copy.run("history", "canary", "--limit", "500", "--json")
    assert run.code == 0, f"history: {run.stderr}"
    return list(run.json())


def channel(copy: ClusterLab) -> str:
    run = copy.run("status", "canary", "--json")
    assert run.code == 0, f"status: {run.stderr}"
    return str(next(r for r in run.json() if r["role"] == "api")["channel"])


def edit(lab: ClusterLab, relative: str, old: str, new: str) -> None:
    path = lab.root / relative
    text = path.read_text()
    assert old in text, f"{old!r} not in {relative}"
    path.write_text(text.replace(old, new, 1))


def put_secret(lab: ClusterLab, role: str, key: str, env: str, value: str) -> int:
    """`fleet secrets put`, the value on stdin as a user types it."""
    return subprocess.run([sys.executable, "-m", "fleet", "-f", str(lab.file), "secrets", "put",
                           role, key, "--env", env], input=value, capture_output=True,
                          text=True, cwd=ROOT, env=lab.environ(), timeout=60).returncode


def secret_on(node: str) -> str:
    return subprocess.run(["docker", "exec", node, "cat", "/run/fleet/secrets/db_password"],
                          capture_output=True, text=True).stdout


class Floor:
    """The passing api nodes of canary, sampled in a thread; reads that fail (an election)
    are counted apart."""

    def __init__(self, copy: ClusterLab) -> None:
        self.ctx = copy.ctx
        self.samples: list[int] = []
        self.unread = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(len(cattle.health(self.ctx, ["api"], "canary", "api").passing))
            except FleetError:
                self.unread += 1
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def promote(copy: ClusterLab, version: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "fleet", "-f", str(copy.file), "promote",
                             version, "--to", "canary", "--role", "api", "--wait"], cwd=ROOT,
                            env=copy.environ(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def first_gate_passed(copy: ClusterLab, version: str) -> bool:
    seen = history(copy)
    ids = {e["rollout"] for e in seen if e["event"] == "promote" and e["version"] == version}
    return any(e["event"] == "gate" and e.get("rollout") in ids and e["passed"] for e in seen)


def test_the_fleet_rides_out_a_control_plane_losing_servers(cluster_lab: ClusterLab) -> None:
    """The scenario, then the cluster lab as it was found: every server up, no node, the
    example's fleet.toml and scripts."""
    files = {f: (cluster_lab.root / f).read_text() for f in ("fleet.toml", "packer/scripts/api.sh")}
    try:
        scenario(cluster_lab)
    finally:
        up = cluster_lab.run("lab", "up")  # starts any server a failed check left down
        cattle.apply(cluster_lab.ctx, "canary", [])
        for relative, text in files.items():
            (cluster_lab.root / relative).write_text(text)
        assert up.code == 0, f"the cluster lab did not come back up: {up.stderr[-400:]}"


def scenario(copy: ClusterLab) -> None:
    timings: dict[str, float] = {}
    step = time.monotonic()
    edit(copy, "fleet.toml", 'soak = "30s"', 'soak = "1s"')
    edit(copy, "fleet.toml", "min_healthy_percent = 0", "min_healthy_percent = 50")
    edit(copy, "fleet.toml", "batch_size = 1", "batch_size = 2")  # canary's: two steps of two
    edit(copy, "fleet.toml", 'pets_from = "production"', "")  # canary's secrets its own
    edit(copy, "fleet.toml", "count = { canary = 1, staging = 1, production = 2 }\n\n[roles.api.",
              f"count = {{ canary = {NODES}, staging = 0, production = 0 }}\n\n[roles.api.")
    assert copy.run("secrets", "sync").code == 0, "secrets sync"
    assert put_secret(copy, "api", "db_password", "canary", SECRET) == 0, "secrets put"
    for version in ("v1", "v2"):
        if version == "v2":
            edit(copy, "packer/scripts/api.sh", "install_services", "echo v2\ninstall_services")
        baked = copy.run("bake", "api", "--version", version)
        assert baked.code == 0, f"bake {version}: {baked.stderr[-400:]}"
    first = copy.run("promote", "v1", "--to", "canary", "--role", "api")
    assert first.code == 0, f"promote v1: {first.stderr[-400:]}"
    before = history(copy)
    timings["2 bakes, v1 to 4 nodes"] = round(time.monotonic() - step, 1)
    step = time.monotonic()

    # ---- the Consul leader killed mid-promotion ------------------------------------------
    floor = Floor(copy)
    rolling = promote(copy, "v2")
    deadline = time.monotonic() + 180
    while not first_gate_passed(copy, "v2"):
        assert rolling.poll() is None, f"the promotion ended early: {rolling.communicate()}"
        assert time.monotonic() < deadline, "the promotion never passed its first step"
        time.sleep(0.3)
    killed = consul_leader(copy)
    kill = copy.run("lab", "kill", killed)
    assert kill.code == 0, f"lab kill {killed}: {kill.stderr}"
    _, err = rolling.communicate(timeout=300)
    if rolling.returncode != 0:  # a step that lost its server: running it again carries on
        said = err.strip().splitlines()[-1] if err.strip() else ""
        output = Path(said.rsplit("output in ", 1)[-1]) if "output in " in said else None
        logs = sorted(output.glob("*.log")) if output and output.is_dir() else []
        errors = [line.strip(" │") for log in logs  # read before the rerun writes them again
                  for line in log.read_text().splitlines() if "Error" in line]
        again = copy.run("promote", "v2", "--to", "canary", "--role", "api", "--wait")
        assert again.code == 0, (f"the promotion failed when {killed} died ({said}; "
                                 f"Terraform: {errors}) and its rerun too: {again.stderr}")
        print(f"the promotion needed a rerun after {killed} died: {said}; Terraform: {errors}")
    floor.stop()
    assert channel(copy) == "v2", "the channel is not at v2 after the promotion"
    assert floor.samples and min(floor.samples) >= NODES // 2, \
        f"the floor ({NODES // 2} of {NODES}) broke: lowest {min(floor.samples)}"
    after = history(copy)
    lost = [e for e in before if e not in after]
    assert not lost, f"history lost events across the leader's death: {lost}"
    passed = Counter((e.get("rollout"), e["step"]) for e in after
                     if e["event"] == "gate" and e["passed"])
    assert passed and max(passed.values()) == 1, f"a step's passing recorded twice: {passed}"
    resumed = {e.get("rollout") for e in after if e["event"] == "resume"}
    began = Counter((e.get("rollout"), e["step"]) for e in after if e["event"] == "step")
    twice = {k: n for k, n in began.items() if n > 1 and k[0] not in resumed}
    assert not twice, f"steps begun twice without a resume between: {twice}"
    nodes = sorted(cattle.health(copy.ctx, ["api"], "canary", "api").passing)
    assert len(nodes) == NODES, f"not {NODES} api nodes passing after the promotion: {nodes}"
    started = copy.run("lab", "start", killed)
    assert started.code == 0, f"lab start {killed}: {started.stderr}"
    timings["v2 with the leader killed"] = round(time.monotonic() - step, 1)

    # ---- an OpenBao node killed: secrets check answers (its new nodes come below) ---------
    step = time.monotonic()
    vault_down = active_openbao(copy)
    assert copy.run("lab", "kill", vault_down).code == 0, f"lab kill {vault_down}"
    check = copy.run("secrets", "check")
    # it answers: api's secret is there (the copy's other roles have none: exit 1 says so)
    assert "declared secret(s) present" in check.stderr and "Traceback" not in check.stderr, \
        f"secrets check with {vault_down} down: {check.stderr}"
    assert "missing: api/canary" not in check.stdout, f"api's secret not seen: {check.stdout}"

    # ---- two of three Consul servers stopped: the quorum is lost ----------------------------
    count = len(history(copy))
    stopped = [s.name for s in topology.consul_servers(copy.ctx)][1:]
    for name in stopped:
        assert copy.run("lab", "kill", name).code == 0, f"lab kill {name}"
    # a leader keeps answering reads (Consul's default consistency) until its lease runs out
    # without a quorum (about a second): what a user meets after that is asked of the commands
    left = Consul(topology.consul_servers(copy.ctx)[0].http, timeout=2)
    deadline = time.monotonic() + 30
    while left.leader():
        assert time.monotonic() < deadline, "the last Consul server still names a leader"
        time.sleep(0.2)
    commands = (("status",), ("plan",), ("history", "canary"),
                ("promote", "v1", "--to", "canary", "--role", "api"))
    with ThreadPoolExecutor(len(commands)) as pool:  # each waits out the failover on its own
        runs = list(pool.map(lambda args: copy.run(*args), commands))
    for args, run in zip(commands, runs, strict=True):
        lines = run.stderr.strip().splitlines()
        assert run.code == 1, f"`fleet {' '.join(args)}` without a quorum exited {run.code}"
        assert len(lines) == 1 and "quorum is lost" in lines[0], \
            f"`fleet {' '.join(args)}` without a quorum said: {run.stderr}"
    for name in stopped:
        assert copy.run("lab", "start", name).code == 0, f"lab start {name}"
    assert len(history(copy)) == count, "a command without a quorum wrote history"
    timings["secrets check, quorum lost"] = round(time.monotonic() - step, 1)

    # ---- the quorum back, the OpenBao node still down: the next command carries on, and the
    # nodes it makes get their secrets --------------------------------------------------------
    step = time.monotonic()
    carried = copy.run("promote", "v1", "--to", "canary", "--role", "api", "--wait")
    assert carried.code == 0, (f"the first command with the quorum back ({vault_down} down): "
                               f"{carried.stderr[-400:]}")
    for i in range(NODES):
        node = f"{copy.name}-api-canary-v1-{i}"
        assert secret_on(node) == SECRET, f"{node}, made with {vault_down} down, has no secret"
    assert channel(copy) == "v1", "the channel after the quorum came back"
    assert copy.run("lab", "start", vault_down).code == 0, f"lab start {vault_down}"
    timings["v1 with the quorum back and an OpenBao node down"] = round(time.monotonic() - step,
                                                                        1)
    print(timings)
