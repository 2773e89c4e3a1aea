"""The lab's servers without running them: how 1 and 3 Consul servers and OpenBao nodes are
started and configured (one server exactly as the lab always had it), the names the fault
commands take, what `lab down` stops, and how both stores' raft state is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleet.adapters import raft
from fleet.errors import FleetError
from fleet.model.secret import Secret
from fleet.services import topology
from fleet.services.context import Context, load
from fleet.services.topology import ConsulTokens, Paths
from fleet.workflows.lab import consul_server, members, openbao_server, sharing

ROOT = Path(__file__).resolve().parents[2]
TOKENS = ConsulTokens(Secret("m-token"), Secret("o-token"))


def context(tmp_path: Path, servers: int, consul: str = "http://127.0.0.1:8500",
            vault: str = "http://127.0.0.1:8200") -> Context:
    text = (ROOT / "fleet.toml").read_text()
    text = text.replace('consul = "http://127.0.0.1:8500"', f'consul = "{consul}"', 1)
    text = text.replace('vault = "http://127.0.0.1:8200"', f'vault = "{vault}"', 1)
    if servers != 1:
        text = text.replace('network = "fleet-lab"', f'network = "fleet-lab"\nservers = {servers}', 1)
    (tmp_path / "fleet.toml").write_text(text)
    return load(tmp_path / "fleet.toml", {})


def test_one_consul_server_is_started_as_the_lab_always_started_it(tmp_path: Path) -> None:
    ctx = context(tmp_path, 1)
    p = Paths(tmp_path / "lab")
    (server,) = topology.consul_servers(ctx)
    assert consul_server.consul_argv(p, server, (server,)) == [
        "consul", "agent", "-server", "-bootstrap-expect=1", "-node=lab-server",
        "-datacenter=lab", f"-data-dir={p.consul_data}", "-bind=172.30.7.1",
        "-advertise=172.30.7.1", "-client=127.0.0.1 172.30.7.1", "-http-port=8500",
        "-dns-port=-1", "-log-level=info", f"-config-file={p.consul_config}"]
    (other,) = topology.consul_servers(context(tmp_path, 1, consul="http://127.0.3.1:8500"))
    assert "-client=127.0.3.1 172.30.7.1" in consul_server.consul_argv(p, other, (other,)), \
        "a second lab's one server on its own loopback address"
    config = json.loads(consul_server.consul_config(TOKENS, 1))
    assert set(config) == {"acl", "gossip_lan"}, "no cluster settings for one server"
    assert config["acl"]["tokens"] == {"master": "m-token", "agent": "m-token"}


def test_three_consul_servers_make_a_quorum_on_ports_of_their_own(tmp_path: Path) -> None:
    ctx = context(tmp_path, 3, consul="http://127.0.3.1:8500")
    p = Paths(tmp_path / "lab")
    cluster = topology.consul_servers(ctx)
    assert [s.name for s in cluster] == ["consul-1", "consul-2", "consul-3"]
    argv = consul_server.consul_argv(p, cluster[1], cluster)
    assert "-bootstrap-expect=3" in argv
    assert "-node=lab-server-2" in argv and f"-data-dir={tmp_path / 'lab' / 'consul-2'}" in argv
    assert "-client=127.0.3.2" in argv and "-http-port=8500" in argv, "HTTP on its own loopback"
    assert {"-server-port=8310", "-serf-lan-port=8311", "-serf-wan-port=8312"} <= set(argv)
    joins = [a for a in argv if a.startswith("-retry-join=")]
    assert joins == ["-retry-join=172.30.7.1:8301", "-retry-join=172.30.7.1:8321"], joins
    config = json.loads(consul_server.consul_config(TOKENS, 3))
    assert config["performance"] == {"raft_multiplier": 1, "rpc_hold_timeout": "3s"}
    assert config["autopilot"]["cleanup_dead_servers"] is False


def test_openbao_configuration_one_node_as_always_three_joined(tmp_path: Path) -> None:
    p = Paths(tmp_path / "lab")
    (single,) = topology.openbao_servers(context(tmp_path, 1))
    text = openbao_server.openbao_config(p, single, (single,))
    assert text.startswith(f'storage "raft" {{\n  path = "{p.openbao_data}"\n  node_id = "lab"\n'
                           '  performance_multiplier = 1\n}\n')
    assert 'address = "127.0.0.1:8200"' in text and 'address = "172.30.7.1:8200"' in text
    assert "retry_join" not in text and 'cluster_addr = "http://127.0.0.1:8201"' in text
    assert openbao_server.config_file(p, single) == p.openbao_config

    cluster = topology.openbao_servers(
        context(tmp_path, 3, vault="http://127.0.3.1:8200"))
    third = openbao_server.openbao_config(p, cluster[2], cluster)
    assert 'node_id = "lab-3"' in third and f'path = "{p.lab / "openbao-3"}"' in third
    assert third.count("retry_join") == 2
    assert 'leader_api_addr = "http://127.0.3.1:8200"' in third
    assert 'leader_api_addr = "http://127.0.3.2:8200"' in third
    assert 'address = "127.0.3.3:8200"' in third and 'address = "172.30.7.1:8220"' in third
    assert 'api_addr = "http://127.0.3.3:8200"' in third
    assert 'cluster_addr = "http://127.0.3.3:8201"' in third
    assert f'file_path = "{p.openbao_audit}"' in third, "one audit device, the cluster's"
    assert openbao_server.config_file(p, cluster[2]) == p.lab / "openbao-3.hcl"


def test_fault_commands_name_servers_and_refuse_others_in_one_line(tmp_path: Path) -> None:
    ctx = context(tmp_path, 3, consul="http://127.0.3.1:8500", vault="http://127.0.3.1:8200")
    assert members.find(ctx, "openbao-2").http == "http://127.0.3.2:8200"
    with pytest.raises(FleetError) as raised:
        members.find(ctx, "consul-4")
    assert raised.value.line() == ("no lab server 'consul-4': name one of consul-1, consul-2, "
                                   "consul-3, openbao-1, openbao-2, openbao-3")


def test_down_stops_every_server_this_directory_recorded(tmp_path: Path) -> None:
    p = Paths(tmp_path)
    for name in ("consul", "consul-2", "consul-3", "openbao", "openbao-2", "boots"):
        p.pid(name).write_text("1\n")
    (tmp_path / "consul-acl.json").write_text("{}")
    assert sharing.servers(p) == [
        ("openbao-2", "bao"), ("consul-2", "consul"), ("consul-3", "consul"),
        ("openbao", "bao"), ("consul", "consul"), ("dockerd", "dockerd")]


def test_raft_state_is_read_strictly() -> None:
    config = {"Servers": [
        {"ID": "b", "Node": "lab-server-2", "Address": "172.30.9.1:8310", "Leader": True,
         "Voter": True, "ProtocolVersion": "3"},
        {"ID": "a", "Node": "lab-server", "Address": "172.30.9.1:8300", "Leader": False,
         "Voter": True, "ProtocolVersion": "3"}], "Index": 12}
    health = {"Healthy": True, "FailureTolerance": 1, "Servers": [
        {"ID": "a", "Name": "lab-server", "Healthy": True},
        {"ID": "b", "Name": "lab-server-2", "Healthy": True}]}
    state = raft.parse_consul(config, health)
    assert [p.name for p in state.peers] == ["lab-server", "lab-server-2"]
    assert state.leader == "lab-server-2" and state.failure_tolerance == 1
    # 429 while unhealthy: Consul 1.8 may say no servers at all
    down = raft.parse_consul(config, {"Healthy": False, "FailureTolerance": 0, "Servers": None})
    assert not any(p.healthy for p in down.peers) and down.failure_tolerance == 0
    with pytest.raises(KeyError):
        raft.parse_consul(config, {"Healthy": True})

    openbao = {"data": {"failure_tolerance": 1, "healthy": True, "leader": "lab", "servers": {
        "lab": {"id": "lab", "address": "127.0.3.1:8201", "status": "leader", "healthy": True},
        "lab-2": {"id": "lab-2", "address": "127.0.3.2:8201", "status": "voter",
                  "healthy": True},
        "lab-3": {"id": "lab-3", "address": "127.0.3.3:8201", "status": "non-voter",
                  "healthy": False}}}}
    state = raft.parse_openbao(openbao)
    assert state.leader == "lab" and [p.voter for p in state.peers] == [True, True, False]
    assert state.failure_tolerance == 1
