"""Configuration in real time: a web node's `consul watch` re-renders its upstreams file from
the real Consul when a gitaly node joins or leaves, without restarting anything. The web node
is canary's, which uses production's pets (pets_from), so the gitaly is production's."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from fleet.model.nodes import UPSTREAMS_FILE, group
from fleet.services import cattle, topology
from fleet.services.context import load
from tests.conftest import FleetCopy, eventually

pytestmark = pytest.mark.lab


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def upstreams(node: str) -> dict[str, list[str]]:
    proc = subprocess.run(["docker", "exec", node, "cat", UPSTREAMS_FILE], capture_output=True,
                          text=True)
    return dict(json.loads(proc.stdout)) if proc.returncode == 0 else {}


def gitaly_services(fleet: str) -> str:
    """A gitaly instance of production (whose pets canary uses), served by the stand-in
    listening on the image's port."""
    return json.dumps({"services": [{
        "name": "gitaly", "port": 8080,
        "tags": [f"fleet:{fleet}", "role:gitaly", "env:production", "class:pet"],
        "meta": {"fleet": fleet, "role": "gitaly", "env": "production", "version": "pet"},
        "checks": [{"tcp": "127.0.0.1:8080", "interval": "1s", "timeout": "1s"}],
    }]})


def test_web_follows_gitaly_joining_and_leaving(lab: Any, fleet_copy: FleetCopy) -> None:
    run = fleet_copy.run("bake", "web", "--version", "v1", "--json")
    assert run.code == 0, run.stderr
    image = json.loads(run.stdout)["results"][0]["artifact"]
    ctx = load(fleet_copy.file, fleet_copy.env)
    (web,) = group(ctx.fleet.name, ctx.fleet.roles["web"], "canary", "v1", image, 1, 10)
    net = topology.network(ctx)
    gitaly = f"{fleet_copy.name}-gitaly-production-pet-0"
    try:
        cattle.apply(ctx, "canary", [web])
        empty = {"gitaly": [], "postgres": [], "redis": []}
        assert eventually(lambda: upstreams(web.name), empty, timeout=30) == empty
        started = docker("inspect", "-f", "{{.State.StartedAt}}", web.name)
        pid = docker("exec", web.name, "pgrep", "-f", "fleet-service")

        began = time.monotonic()
        docker("run", "-d", "--pull", "never", "--name", gitaly, "--hostname", gitaly,
               "--network", net.name, "--label", "fleet.lab=1", "--tmpfs", "/run/fleet:mode=0700",
               "-e", f"FLEET_CONSUL_JOIN={net.gateway}", "-e", "FLEET_CONSUL_DATACENTER=lab",
               "-e", f"FLEET_CONSUL_SERVICES={gitaly_services(ctx.fleet.name)}", image)
        # its Consul token, as Terraform's create provisioner hands it to a new pet
        delivered = fleet_copy.run("secrets", "deliver", gitaly, "gitaly", "production")
        assert delivered.code == 0, delivered.stderr
        address = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}"
                         "{{end}}", gitaly).strip()
        joined = {**empty, "gitaly": [f"{address}:8080"]}
        assert eventually(lambda: upstreams(web.name), joined, timeout=10) == joined
        assert time.monotonic() - began < 10

        began = time.monotonic()
        docker("stop", "-t", "10", gitaly)
        assert eventually(lambda: upstreams(web.name), empty, timeout=10) == empty
        assert time.monotonic() - began < 10

        # followed in place: the node and its service were never restarted
        assert docker("inspect", "-f", "{{.State.StartedAt}}", web.name) == started
        assert docker("exec", web.name, "pgrep", "-f", "fleet-service") == pid
        mode = docker("exec", web.name, "stat", "-c", "%a", UPSTREAMS_FILE).strip()
        assert mode == "644"
    finally:
        subprocess.run(["docker", "rm", "-f", gitaly], capture_output=True)
        cattle.apply(ctx, "canary", [])
