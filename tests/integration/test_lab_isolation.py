"""Two fleets on one lab, against the real Docker, Consul, OpenBao and Terraform: one fleet's
`lab reset` takes that fleet alone, the lab's owner refuses to take the shared servers from
another fleet's nodes, and a pet's data volume goes only when asked."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from fleet.adapters import docker, process
from fleet.model import acl
from fleet.model.nodes import Node, services_json
from fleet.services import baseimage, cattle, delivery, topology
from fleet.services.context import Context, load
from fleet.workflows import lab as lab_workflow
from fleet.workflows.lab import sharing
from tests.conftest import ROOT, FleetCopy, fleet

pytestmark = pytest.mark.lab


def base_image(ctx: Context) -> str:
    base = ctx.fleet.bases["bookworm"]
    _, image = baseimage.current(base, ROOT / "packer" / "base", ctx.state_dir / "cache")
    assert image is not None, "the lab fixture builds the base image"
    return image.id


def make_pet(copy: Context, image: str) -> tuple[str, str]:
    """One pet of the copy, with its data volume, through Terraform's machines module."""
    net = topology.network(copy)
    _, public = topology.key_pair(copy)
    container = topology.container(copy, "gitaly-01")
    role = copy.fleet.roles["gitaly"]
    cattle.lab_workspace(copy, "machines", "production").apply({
        "fleet": copy.fleet.name, "network": net.name, "consul_join": net.gateway,
        "authorized_keys": str(public), "deliver": delivery.deliver_command(copy),
        "pets": {"gitaly-01": {
            "container": container, "image": image, "role": "gitaly", "env": "production",
            "version": "base", "services": services_json(copy.fleet.name, role, "production",
                                                         "base", weight=1),
            "volume": f"{container}-data", "data_path": "/var/opt/gitaly", "settings": "{}"}},
        "snowflakes": {},
    }, refresh=False)
    return container, f"{container}-data"


def make_cattle(copy: Context, image: str) -> str:
    """One cattle node of the copy, through Terraform's cattle module."""
    role = copy.fleet.roles["api"]
    name = f"{copy.fleet.name}-api-canary-base-0"
    cattle.apply(copy, "canary", [Node(name, "api", "canary", "base", image,
                                       services_json(copy.fleet.name, role, "canary", "base", 1))])
    return name


def names() -> set[str]:
    return {n.name for n in docker.lab_nodes()}


def shared_up(lab: Context) -> list[str]:
    """The lab's shared parts that are not up (dockerd, its network, Consul, OpenBao)."""
    shared = ("dockerd", f"network {topology.network(lab).name}", "consul", "openbao")
    return [p.name for p in lab_workflow.status(lab, tools=False).parts
            if p.name in shared and p.state.value != "up"]


def test_one_fleets_reset_takes_that_fleet_alone(lab: Any, fleet_copy: FleetCopy) -> None:
    timings: dict[str, float] = {}
    started = time.monotonic()
    # the copy is named gitlab-tXXXX: its nodes' names start with the example's `gitlab-`, as
    # fleet `a-b`'s start with fleet `a`'s: only their label tells them apart
    name = f"{lab.fleet.name}-{fleet_copy.name}"
    fleet_copy.edit("fleet.toml", f'name = "{fleet_copy.name}"', f'name = "{name}"')
    copy = load(fleet_copy.file, fleet_copy.env)
    image = base_image(lab)
    theirs = f"{lab.fleet.name}-isolation-{uuid.uuid4().hex[:6]}"  # the example fleet's node
    their_volume = f"{theirs}-data"
    marker = f"{lab.fleet.kv_prefix}/test/{theirs}"
    net = topology.network(lab)
    consul = lab.consul()
    assert sharing.owns_servers(topology.paths(lab)), "the example's directory made the lab"
    try:
        process.run(["docker", "volume", "create", "--label", "fleet.lab=1", "--label",
                     f"fleet.name={lab.fleet.name}", their_volume])
        process.run(["docker", "run", "-d", "--pull", "never", "--name", theirs, "--network",
                     net.name, "--label", "fleet.lab=1", "--label", f"fleet.name={lab.fleet.name}",
                     "--label", "fleet.role=bastion", "--label", "fleet.env=production",
                     "-v", f"{their_volume}:/data", image])
        assert consul.put(marker, b"kept", cas=0)
        pet, pet_volume = make_pet(copy, image)
        node = make_cattle(copy, image)
        timings["two nodes of the copy through Terraform"] = time.monotonic() - started
        assert set(docker.fleet_containers(name)) == {pet, node}, "labelled fleet.name by Terraform"
        assert docker.volumes(f"fleet.name={name}") == [pet_volume]
        assert consul.list(f"fleet/{name}/terraform/"), "the copy's Terraform states"

        # the owner of the lab refuses to reset it, or stop it, under the copy's nodes
        for command in (("lab", "reset", "--yes"), ("lab", "down")):
            refused = fleet(*command)
            assert refused.code == 1, f"{command} must be refused: {refused.stdout}"
            assert "Traceback" not in refused.stderr
            (line,) = refused.stderr.strip().splitlines()
            assert f"{name} (2 node(s)" in line and "nothing was changed" in line, line
            assert {theirs, pet, node} <= names(), f"{command} removed a node"
            assert shared_up(lab) == [], f"{command} took the lab"

        # the copy's reset takes the copy alone, and keeps its pet's data
        step = time.monotonic()
        reset = fleet_copy.run("lab", "reset", "--yes", "--json")
        assert reset.code == 0, reset.stderr
        timings["the copy's reset"] = time.monotonic() - step
        actions = reset.json()["actions"]
        assert f"removed 2 node(s) of {name}" in actions, actions
        assert any(a.startswith("kept 1 pet data volume(s)") for a in actions), actions
        assert not any("network" in a or "stopped" in a for a in actions), actions
        assert docker.fleet_containers(name) == [], "the copy's nodes are gone"
        running = {n.name for n in docker.lab_nodes() if n.running}
        assert theirs in running, "the example's node still runs"
        assert shared_up(lab) == [], "the shared lab stays up"
        assert docker.network_gateway(net.name) == net.gateway, "the network stays"
        assert docker.volumes(f"fleet.name={name}") == [pet_volume], "kept without the flag"
        assert their_volume in docker.volumes("fleet.lab=1")
        assert consul.list(f"fleet/{name}/") == [], "the copy's KV is gone"
        entry = consul.get(marker)
        assert entry is not None and entry.value == b"kept", "the example's KV stays"
        tokens = {acl.node_of(t.description) for t in consul.tokens()}
        assert not {pet, node} & tokens, "the Consul tokens minted for the copy's nodes"

        # its data volume goes when asked, and only its own
        again = fleet_copy.run("lab", "reset", "--yes", "--delete-volumes", "--json")
        assert again.code == 0, again.stderr
        assert f"removed volume {pet_volume}" in again.json()["actions"]
        assert docker.volumes(f"fleet.name={name}") == []
        assert their_volume in docker.volumes("fleet.lab=1"), "the example's volume stays"
        assert theirs in names()
    finally:
        docker.remove_containers([n for n in (theirs, *docker.fleet_containers(name))
                                  if docker.container_exists(n)])
        process.run(["docker", "volume", "rm", "-f", their_volume, f"{name}-gitaly-01-data"],
                    check=False)
        consul.delete(marker)
        consul.delete_tree(f"fleet/{name}/")
        print({k: f"{v:.1f}s" for k, v in timings.items()})
