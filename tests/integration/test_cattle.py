"""Cattle nodes on Terraform (terraform_data + local-exec docker run, consul backend) and their
health in the real Consul."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from fleet.model.nodes import group
from fleet.services import cattle
from fleet.services.context import load
from tests.conftest import FleetCopy, eventually

pytestmark = pytest.mark.lab


def containers(prefix: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                         text=True, check=True).stdout.split()
    return sorted(n for n in out if n.startswith(prefix))


def test_nodes_boot_register_pass_and_go(lab: Any, fleet_copy: FleetCopy) -> None:
    run = fleet_copy.run("bake", "web", "--version", "v1", "--json")
    assert run.code == 0, run.stderr
    image = json.loads(run.stdout)["results"][0]["artifact"]
    ctx = load(fleet_copy.file, fleet_copy.env)
    web = ctx.fleet.roles["web"]
    nodes = group(ctx.fleet.name, web, "canary", "v1", image, 2, 10)
    try:
        assert cattle.apply(ctx, "canary", nodes) == {n.name: "v1" for n in nodes}
        assert cattle.workspace(ctx, "canary").outputs() == {
            "nodes": {n.name: "v1" for n in nodes}}, "Terraform's state holds what apply said"
        assert containers(f"{fleet_copy.name}-web-") == [n.name for n in nodes]
        met, seen = cattle.wait_passing(ctx, ["web"], "canary", "web",
                                        lambda h: h.passing_of("v1") == 2, 90)
        assert met, seen
        (instance, *_) = lab.consul().instances("web", f"fleet:{fleet_copy.name}")
        assert instance.weight == 10
        assert instance.meta == {"fleet": fleet_copy.name, "role": "web", "env": "canary",
                                 "version": "v1"}
        state = lab.consul().get(f"fleet/{fleet_copy.name}/terraform/cattle/canary")
        assert state is not None and b"terraform_data" in state.value
    finally:
        assert cattle.apply(ctx, "canary", []) == {}
    # removed nodes drain after the apply returns, as cloud instances terminate
    assert eventually(lambda: containers(f"{fleet_copy.name}-web-"), []) == []
    gone = cattle.Health({}, {})
    assert eventually(lambda: cattle.health(ctx, ["web"], "canary", "web"), gone) == gone
