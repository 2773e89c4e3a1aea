"""A node that reboots comes back into service by itself, and a service that dies is restarted.

A web node of a fleet copy, created by Terraform as a rollout step would, is restarted with
`docker restart` (a VM reboot, in the lab): its tmpfs comes back empty, the fleet's reboot
watcher (`fleet lab boots`, which `fleet lab up` runs for the example fleet and this test runs
for the copy) hands it a new Consul token, and it passes in Consul again; the old token is
gone. Then its service process is killed inside the node: fleet-init's supervisor starts it
again and the node passes again, with no one's help.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from fleet.adapters.consul import Consul
from fleet.model.nodes import group
from fleet.services import cattle
from fleet.services.context import load
from tests.conftest import FleetCopy, eventually

pytestmark = pytest.mark.lab

TOKEN_FILE = "/run/fleet/consul/acl.json"


def token(node: str) -> str:
    """The Consul token on the node's tmpfs, '' when there is none."""
    found = subprocess.run(["docker", "exec", node, "cat", TOKEN_FILE], capture_output=True,
                           text=True)
    return str(json.loads(found.stdout)["acl"]["tokens"]["default"]) if found.returncode == 0 else ""


def service_pid(node: str) -> str:
    found = subprocess.run(["docker", "exec", node, "pgrep", "-f", "fleet-service"],
                           capture_output=True, text=True)
    return found.stdout.strip()


def test_a_rebooted_node_and_a_dead_service_come_back(lab: Any, fleet_copy: FleetCopy) -> None:
    baked = fleet_copy.run("bake", "web", "--version", "v1", "--json")
    assert baked.code == 0, baked.stderr
    image = json.loads(baked.stdout)["results"][0]["artifact"]
    ctx = load(fleet_copy.file, fleet_copy.env)
    (web,) = group(ctx.fleet.name, ctx.fleet.roles["web"], "canary", "v1", image, 1, 10)

    def passing() -> bool:
        return web.name in cattle.health(ctx, ["web"], "canary", "web").passing

    watcher = subprocess.Popen(
        [sys.executable, "-m", "fleet", "-f", str(fleet_copy.file), "lab", "boots"],
        env={**os.environ, **fleet_copy.env}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        cattle.apply(ctx, "canary", [web])
        assert eventually(passing, True, timeout=60), f"{web.name} never passed after creation"
        first = token(web.name)
        assert first, "Terraform's create provisioner handed the node no token"

        subprocess.run(["docker", "restart", "-t", "10", web.name], check=True, timeout=60)
        again = eventually(lambda: token(web.name) not in ("", first), True, timeout=60)
        assert again, "the rebooted node got no new Consul token from the reboot watcher"
        # 150 s, not 60: in the full suite a dead node of an earlier test with this node's
        # address (the lab hands the same IPs out again) was still in the member list when this
        # one came back, and it did not pass within 60 s (seen once; alone it passes in ~5 s)
        assert eventually(passing, True, timeout=150), f"{web.name} did not pass after its reboot"
        assert not Consul(ctx.consul_addr, first).token_known(), "the old token still works"

        before = service_pid(web.name)
        assert before, "no fleet-service process on the node"
        subprocess.run(["docker", "exec", web.name, "kill", before.split()[0]], check=True)
        restarted = eventually(lambda: service_pid(web.name) not in ("", before), True,
                               timeout=20)
        assert restarted, "fleet-init's supervisor did not start the killed service again"
        assert eventually(passing, True, timeout=30), "the node did not pass after the restart"
        log = subprocess.run(["docker", "exec", web.name, "cat", "/var/log/web.log"],
                             capture_output=True, text=True).stdout
        assert "starting it again" in log, f"the supervisor logged nothing: {log[-300:]}"
    finally:
        watcher.terminate()  # the watcher this test started, by its own handle
        said, _ = watcher.communicate(timeout=30)
        print(f"the watcher said:\n{said}")
        cattle.apply(ctx, "canary", [])
    assert f"{web.name} rebooted" in said, f"the watcher said: {said[-500:]}"
