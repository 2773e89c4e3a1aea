"""A crowded lab holds: beside the nodes already on the lab (the example fleet's, when it is
deployed) and 21 more of a copy (the example fleet's size), 20 nodes are rolled in batches of 5
on this 2-core machine -- in, on to a new version (with a surge of two batches), and back (a
rollback brings the first version's node names back) -- and every rollout passes, every node
counts, and gossip marks no running node failed (a flap).

What made it fail: the host's neighbour table (one for every container's network namespace)
was full past ~30 gossiping nodes, and the kernel dropped packets to peers it could not make
an entry for (fleet/workflows/lab/engine.py); and a node joining under the name of one that
had left was not marked alive by Consul's leader until its next full reconcile, a minute later
(terraform/lab/cattle: the old member is pruned first).

bench/rollout.py 20 5 --repeats 10 measures the same at length beside the example fleet
(README: The lab).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fleet.adapters import docker
from fleet.adapters.consul import Consul
from fleet.errors import FleetError
from fleet.model.nodes import group, node_name
from fleet.services import cattle, topology
from fleet.services.context import load
from tests.conftest import FleetCopy

pytestmark = pytest.mark.lab

CROWD, ROLLED, BATCH = 21, 20, 5


class Polled:
    """look() in a thread, every EVERY seconds, while the `with` block runs."""

    EVERY = 0.5

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.look()
            if self._stop.wait(self.EVERY):
                return

    def look(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Members(Polled):
    """Consul's members, polled in a thread: the most lab nodes alive at once (every fleet's:
    the example fleet's too; not the server), and the running nodes gossip marked failed."""

    def __init__(self, consul: Consul) -> None:
        super().__init__()
        self.consul = consul
        self.most_alive = 0
        self.flapped: set[str] = set()

    def look(self) -> None:
        try:
            nodes = {n: s for n, s in self.consul.members().items()
                     if n != topology.SERVER_NODE}
        except FleetError:
            nodes = {}
        self.most_alive = max(self.most_alive, sum(1 for s in nodes.values() if s == 1))
        failed = {n for n, s in nodes.items() if s == 4}
        if failed:
            self.flapped |= failed & set(docker.lab_containers())


STUCK_AFTER = 45.0  # seconds a running rolled node may fail its checks before it is captured


class Stuck(Polled):
    """While the rollback to v1 runs (the nodes taking back v1's names), capture, once, each
    v1 node whose container runs but that has not passed for STUCK_AFTER seconds: what Consul
    says of it (member list, its checks), its agent's and fleet-node's logs and the server's
    lines that name it. Printed when the test fails: the name-reuse flake's evidence."""

    EVERY = 2.0

    def __init__(self, ctx: Any, consul: Consul, server_log: Path) -> None:
        super().__init__()
        self.ctx, self.consul, self.server_log = ctx, consul, server_log
        self.names = names_of(ctx, "v1")
        self.since: dict[str, float] = {}
        self.captured: dict[str, str] = {}
        self.rejoined: list[str] = []

    def look(self) -> None:
        try:
            passing = set(cattle.health(self.ctx, ["web"], "canary", "web").passing)
            running = set(docker.lab_containers())
        except FleetError:
            return
        now = time.monotonic()
        for name in self.names - passing - set(self.captured):
            if name not in running:
                self.since.pop(name, None)
            elif now - self.since.setdefault(name, now) > STUCK_AFTER:
                self.captured[name] = self.capture(name)
        for name in passing:
            self.since.pop(name, None)

    def capture(self, name: str) -> str:
        def sh(*argv: str) -> str:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            return (done.stdout + done.stderr)[-6000:]
        members = {n: s for n, s in self.consul.members().items()
                   if n.startswith(f"{self.ctx.fleet.name}-web-canary-")}
        server = [line for line in self.server_log.read_text(errors="replace").splitlines()
                  if name in line][-40:]
        return "\n".join([
            f"==== {name}: not passing for {STUCK_AFTER:.0f}s; members (1 alive, 2 leaving, "
            f"3 left, 4 failed) {members}",
            "checks: " + cattle.not_passing(self.ctx, [name]),
            "-- node's consul.log:", sh("docker", "exec", name, "tail", "-n", "80",
                                        "/var/log/consul.log"),
            "-- node's fleet-node.log:", sh("docker", "exec", name, "tail", "-n", "40",
                                            "/var/log/fleet-node.log"),
            "-- server log lines naming it:", *server])

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        for text in self.captured.values():
            print(text)
        for name in sorted(self.names):  # the nodes that joined the servers again (fleet-node)
            log = subprocess.run(["docker", "exec", name, "cat", "/var/log/fleet-node.log"],
                                 capture_output=True, text=True, timeout=30, check=False).stdout
            self.rejoined += [f"{name}: {line}" for line in log.splitlines() if "again" in line]
        print("joined the servers again:", self.rejoined)


def test_a_20_node_rollout_in_a_crowded_lab(lab: Any, fleet_copy: FleetCopy) -> None:
    fleet_copy.edit("fleet.toml", "count = { canary = 1, staging = 1, production = 2 }\n\n"
                    "[roles.web.", f"count = {{ canary = {ROLLED}, staging = 1, production = 2 }}"
                    "\n\n[roles.web.")
    fleet_copy.edit("fleet.toml", "batch_size = 1", f"batch_size = {BATCH}")
    images = {}
    for version in ("v1", "v2"):
        baked = fleet_copy.run("bake", "web", "--version", version, "--json")
        assert baked.code == 0, baked.stderr
        images[version] = json.loads(baked.stdout)["results"][0]["artifact"]
    ctx = load(fleet_copy.file, fleet_copy.env)
    management = Consul(lab.consul_addr, topology.management_token(lab).reveal())
    before = sum(1 for n, s in management.members().items()
                 if s == 1 and n != topology.SERVER_NODE)
    timings: dict[str, float] = {}
    try:
        with Members(management) as members:
            started = time.monotonic()
            cattle.apply(ctx, "production", group(ctx.fleet.name, ctx.fleet.roles["web"],
                                                  "production", "crowd", images["v1"], CROWD, 100))
            timings["crowd up"] = round(time.monotonic() - started, 1)
            roll(fleet_copy, ctx, "v1", timings)  # in
            # on to a new version (new node names), with a surge of two batches: the next
            # batch boots while the one before is gated
            roll(fleet_copy, ctx, "v2", timings, "--max-surge", str(2 * BATCH))
            surged = members.most_alive
            fresh_flaps = set(members.flapped)
            with Stuck(ctx, management, lab.state_dir / "lab" / "consul.log") as stuck:
                roll(fleet_copy, ctx, "v1", timings)  # back: v1's node names are taken back
            print("stuck on the way back:", sorted(stuck.captured))
        print(timings, {"most alive": members.most_alive, "before": before,
                        "flaps": sorted(members.flapped)})
        assert members.most_alive >= before + CROWD + ROLLED, (
            f"at most {members.most_alive} nodes were alive at once, with {before} on the lab "
            f"before, {CROWD} in the crowd and {ROLLED} rolled")
        assert surged >= before + CROWD + ROLLED + 2 * BATCH, (
            f"with --max-surge {2 * BATCH}, at most {surged} nodes were alive at once: not "
            f"two batches of {BATCH} booting beside the {ROLLED} rolled and the {CROWD} crowd")
        assert not fresh_flaps, f"gossip marked running nodes failed: {sorted(fresh_flaps)}"
        # Back on v1, a new node may be marked failed for a while when the node that had its
        # name is not yet found gone (memberlist's name conflict): the rollout still passes
        # (above), and the flaps are counted by bench/rollout.py; node names that are never
        # taken back would end them (README: The lab).
        assert not members.flapped - fresh_flaps - names_of(ctx, "v1"), (
            f"nodes flapped that took no name back: {sorted(members.flapped - fresh_flaps)}")
    finally:
        for env in ctx.fleet.env_names():
            cattle.apply(ctx, env, [])


def roll(copy: FleetCopy, ctx: Any, version: str, timings: dict[str, float],
         *options: str) -> None:
    """Promote VERSION to canary (with these options); it must finish with every node
    passing."""
    started = time.monotonic()
    run = copy.run("promote", version, "--to", "canary", "--json", *options)
    key = f"rollout to {version}"
    timings[key + (" again" if key in timings else "")] = round(time.monotonic() - started, 1)
    assert run.code == 0, f"the rollout to {version} failed: {run.stderr[-600:]}"
    [report] = json.loads(run.stdout)
    assert report["state"] == "done", report
    passing = cattle.health(ctx, ["web"], "canary", "web").passing_of(version)
    assert passing == ROLLED, f"{passing} of {ROLLED} canary nodes pass at {version}"


def names_of(ctx: Any, version: str) -> set[str]:
    return {node_name(ctx.fleet.name, "web", "canary", version, i) for i in range(ROLLED)}
