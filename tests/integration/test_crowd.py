"""A crowded lab holds: 40 nodes running (as the example fleet and a review environment stand)
while 20 more are rolled in batches of 5, twice, on this 2-core machine — every rollout passes,
at least 60 nodes are alive at once, and gossip marks no running node failed (a flap).

bench/rollout.py --crowd 40 --repeats 10 measures the same at length (README: The lab).

Not yet true, so it runs only when asked (FLEET_CROWD=1): with the gossip tuned, 40 busy nodes
no longer flap, but in a rollout beside them one new node in a batch of five can still be
marked failed right after it joins and never refute it, and the step times out (issue 13,
item 1, is open; see the README's section on the lab).
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import pytest

from fleet.adapters import docker
from fleet.adapters.consul import Consul
from fleet.errors import FleetError
from fleet.model.nodes import group
from fleet.services import cattle, topology
from fleet.services.context import load
from tests.conftest import FleetCopy

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.environ.get("FLEET_CROWD") != "1",
                       reason="a crowded lab still loses a new node now and then (issue 13, "
                              "item 1): run with FLEET_CROWD=1"),
]

CROWD, ROLLED, BATCH = 40, 20, 5


class Members:
    """Consul's members, polled in a thread: most of the fleet's nodes alive at once, and the
    running nodes gossip marked failed."""

    def __init__(self, consul: Consul, fleet: str) -> None:
        self.consul, self.fleet = consul, fleet
        self.most_alive = 0
        self.flapped: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                mine = {n: s for n, s in self.consul.members().items()
                        if n.startswith(f"{self.fleet}-")}
            except FleetError:
                mine = {}
            self.most_alive = max(self.most_alive, sum(1 for s in mine.values() if s == 1))
            failed = {n for n, s in mine.items() if s == 4}
            if failed:
                self.flapped |= failed & set(docker.lab_containers())
            time.sleep(0.5)

    def __enter__(self) -> Members:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_20_node_rollout_beside_40_running_nodes(lab: Any, fleet_copy: FleetCopy) -> None:
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
    timings: dict[str, float] = {}
    try:
        with Members(management, ctx.fleet.name) as members:
            started = time.monotonic()
            cattle.apply(ctx, "production", group(ctx.fleet.name, ctx.fleet.roles["web"],
                                                  "production", "crowd", images["v1"], CROWD, 100))
            timings["crowd of 40 up"] = time.monotonic() - started
            for version in ("v1", "v2"):
                started = time.monotonic()
                run = fleet_copy.run("promote", version, "--to", "canary", "--json")
                timings[f"rollout to {version}"] = time.monotonic() - started
                assert run.code == 0, f"the rollout to {version} failed: {run.stderr[-600:]}"
                [report] = json.loads(run.stdout)
                assert report["state"] == "done", report
            passing = cattle.health(ctx, ["web"], "canary", "web").passing_of("v2")
            assert passing == ROLLED, f"{passing} of {ROLLED} canary nodes pass at v2"
        assert members.most_alive >= CROWD + ROLLED, (
            f"at most {members.most_alive} nodes were alive at once")
        assert not members.flapped, f"gossip marked running nodes failed: {sorted(members.flapped)}"
        print(timings, {"most alive": members.most_alive})
    finally:
        for env in ctx.fleet.env_names():
            cattle.apply(ctx, env, [])
