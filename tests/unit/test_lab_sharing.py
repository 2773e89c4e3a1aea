"""Fleets sharing one lab (fleet/workflows/lab/sharing.py): nodes are told apart by their
fleet.name label, never by a name prefix."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.adapters import docker
from fleet.errors import FleetError
from fleet.model.nodes import Node
from fleet.model.verification import container_labels
from fleet.services import topology
from fleet.services.context import load
from fleet.workflows.lab import sharing

ROOT = Path(__file__).resolve().parents[2]

PS = ("gitlab-web-canary-v1-0\tgitlab\tweb\tcanary\trunning\n"
      "gitlab-b-bastion-01\tgitlab-b\tbastion\tproduction\texited\n"
      "gitlab-old-0\t\tweb\tcanary\trunning\n")


def test_docker_ps_lines_are_read_with_their_fleet() -> None:
    nodes = docker.parse_lab_nodes(PS)
    assert nodes[0] == docker.LabNode("gitlab-web-canary-v1-0", "gitlab", "web", "canary", True)
    assert nodes[1].fleet == "gitlab-b" and not nodes[1].running
    assert nodes[2].fleet == ""


def test_other_fleets_are_named_by_label_and_an_unlabelled_node_is_nobodys_else() -> None:
    nodes = docker.parse_lab_nodes(PS)
    assert sharing.others("gitlab", nodes) == {"gitlab-b": ["gitlab-b-bastion-01"]}
    assert sharing.others("gitlab-b", nodes) == {"gitlab": ["gitlab-web-canary-v1-0"]}


def test_a_node_is_a_fleets_by_its_label_and_only_an_unlabelled_one_by_its_name() -> None:
    ctx = load(ROOT / "fleet.toml", {})
    assert topology.owns(ctx, "gitlab-web-canary-v1-0", "gitlab")
    assert not topology.owns(ctx, "gitlab-b-bastion-01", "gitlab-b")  # the prefix would say yes
    assert topology.owns(ctx, "gitlab-old-0", "")
    assert not topology.owns(ctx, "other-old-0", "")


def test_the_refusal_is_one_line_naming_each_fleet_and_what_to_do() -> None:
    error = sharing.refusal("reset", {"b": ["b-2", "b-1"], "a": ["a-1"]})
    assert "\n" not in error.line()
    assert "a (1 node(s), e.g. a-1), b (2 node(s), e.g. b-1)" in error.what
    assert "nothing was changed" in error.what
    assert "fleet lab reset" in error.fix


def test_the_pets_data_volumes_are_named_after_the_fleets_instances() -> None:
    ctx = load(ROOT / "fleet.toml", {})
    assert {"gitlab-gitaly-01-data", "gitlab-postgres-stg-01-data"} <= topology.pet_volumes(ctx)
    assert not any("bastion" in v for v in topology.pet_volumes(ctx))  # a snowflake has none


def test_a_directory_without_the_servers_data_does_not_own_them(tmp_path: Path) -> None:
    p = topology.Paths(tmp_path / "lab")
    assert not sharing.owns_servers(p)
    p.openbao_data.mkdir(parents=True)
    assert sharing.owns_servers(p)


def test_a_vagrant_machine_carries_its_fleets_name() -> None:
    node = Node("gitlab-web-local-v1-0", "web", "local", "v1", "sha256:x", "[]")
    assert container_labels("gitlab", node)["fleet.name"] == "gitlab"


def test_every_lab_module_labels_its_nodes_with_the_fleet() -> None:
    for module in ("cattle", "machines"):
        text = (ROOT / "terraform" / "lab" / module / "main.tf").read_text()
        assert 'variable "fleet"' in text, module
        assert "--label fleet.name=" in text, module
    machines = (ROOT / "terraform" / "lab" / "machines" / "main.tf").read_text()
    assert "docker volume create --label fleet.lab=1 --label fleet.name=" in machines


def _lab_with(monkeypatch: pytest.MonkeyPatch, looks: list[list[docker.LabNode]]) -> list[int]:
    """A lab this directory owns whose docker ps answers looks, one after another (the last
    one again and again); returns the count of looks taken."""
    taken = [0]

    def lab_nodes(network: str = "") -> list[docker.LabNode]:
        taken[0] += 1
        return looks[min(taken[0], len(looks)) - 1]

    monkeypatch.setattr(sharing, "owns_servers", lambda p: True)
    monkeypatch.setattr(docker, "server_version", lambda: "24.0")
    monkeypatch.setattr(docker, "lab_nodes", lab_nodes)
    monkeypatch.setattr(sharing.time, "sleep", lambda s: None)
    return taken


def _node(name: str, fleet: str = "other") -> docker.LabNode:
    return docker.LabNode(name, fleet, "web", "canary", True)


def test_another_fleets_draining_nodes_are_waited_for_before_a_refusal(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ctx = load(ROOT / "fleet.toml", {})
    mine = _node("gitlab-web-canary-v1-0", "gitlab")
    draining = [mine, _node("other-web-01.draining"), _node("other-web-02.draining")]
    said: list[str] = []
    taken = _lab_with(monkeypatch, [draining, draining, [mine]])
    sharing.require_alone(ctx, topology.Paths(tmp_path), "reset", said.append)
    assert taken[0] == 3, "looked again until they were gone"
    assert said == ["waiting up to 40 s for 2 draining node(s) of other fleets to go"]

    # still there when the wait is over: refused, naming them
    _lab_with(monkeypatch, [draining])
    with pytest.raises(FleetError, match=r"other \(2 node\(s\), e\.g\. other-web-01\.draining"):
        sharing.require_alone(ctx, topology.Paths(tmp_path), "reset", said.append, wait=0)

    # a node that runs is refused at once: nothing waits for it
    taken = _lab_with(monkeypatch, [[_node("other-web-01.draining"), _node("other-web-02")]])
    with pytest.raises(FleetError, match="lab down refused"):
        sharing.require_alone(ctx, topology.Paths(tmp_path), "down", said.append)
    assert taken[0] == 1
