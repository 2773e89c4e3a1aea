"""The lab against the real Consul, OpenBao and Docker the setup installs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from fleet.adapters import docker, process
from fleet.adapters.consul import Consul
from fleet.adapters.vault import Vault
from fleet.errors import FleetError
from fleet.model import vault_policy
from fleet.services import topology
from tests.conftest import eventually, fleet

pytestmark = pytest.mark.lab


def parts(run_json: Any) -> dict[str, dict[str, str]]:
    return {p["name"]: p for p in run_json["parts"]}


def test_up_is_idempotent_and_renews_the_operators_vault_token(lab: Any) -> None:
    held = topology.vault_operator(topology.paths(lab))
    assert held is not None
    again = fleet("lab", "up", "--json")
    assert again.code == 0, again.stderr
    report = again.json()
    assert report["actions"] == []
    assert report["healthy"] is True
    states = {name: p["state"] for name, p in parts(report).items()}
    assert states == {"dockerd": "up", "network fleet-lab": "up", "neighbour table": "up",
                      "consul": "up", "openbao": "up", "reboot watcher": "up",
                      "base image bookworm": "up", "base image bookworm-postgres": "up"}
    after = topology.vault_operator(topology.paths(lab))
    assert after is not None and after[0].reveal() == held[0].reveal(), "renewed, not re-minted"
    renewed = Vault(lab.vault_addr, held[0].reveal()).lookup_self()
    assert renewed.ttl > vault_policy.TOKEN_RENEWAL - 60, f"a whole period again: {renewed}"


def test_status_shows_versions_and_addresses(lab: Any) -> None:
    status = fleet("lab", "status", "--json")
    assert status.code == 0, status.stderr
    by_name = parts(status.json())
    assert by_name["consul"]["version"] == "1.8.7"
    assert by_name["consul"]["address"] == "http://127.0.0.1:8500"
    assert by_name["openbao"]["address"] == "http://127.0.0.1:8200"
    assert by_name["base image bookworm"]["address"].startswith("fleet-base-bookworm:")
    for tool in ("terraform", "packer", "vagrant", "ruby"):
        assert by_name[tool]["state"] == "up", by_name[tool]
    assert by_name["packer"]["version"] == "1.6.6"


def test_data_survives_down_and_up(lab: Any) -> None:
    key = f"{lab.fleet.kv_prefix}/test/survives-{uuid.uuid4().hex[:8]}"
    consul = lab.consul()
    assert consul.put(key, b"kept", cas=0)
    assert not consul.put(key, b"lost", cas=0), "check-and-set must refuse a second create"
    vault = Vault(lab.vault_addr, lab.vault_token.reveal())
    vault.kv_put(lab.fleet.secrets_mount, "test/survives", {"value": key})

    down = fleet("lab", "down", "--json")
    assert down.code == 0, down.stderr
    assert {"stopped consul", "stopped openbao"} <= set(down.json()["actions"])
    stopped = parts(down.json())
    assert stopped["consul"]["state"] == "down"
    assert stopped["openbao"]["state"] == "down"

    up = fleet("lab", "up", "--json")
    assert up.code == 0, up.stderr
    assert "unsealed openbao" in up.json()["actions"]
    entry = lab.consul().get(key)
    assert entry is not None and entry.value == b"kept"
    secret = Vault(lab.vault_addr, lab.vault_token.reveal()).kv_get(
        lab.fleet.secrets_mount, "test/survives")
    assert secret == {"value": key}
    consul.delete(key)


def test_status_reports_a_stopped_part(lab: Any) -> None:
    p = topology.paths(lab)
    pid = int(p.pid("openbao").read_text())
    assert process.stop(pid, "bao")
    status = fleet("lab", "status", "--json")
    assert status.code == 1
    openbao = parts(status.json())["openbao"]
    assert openbao["state"] == "down"
    assert "exited" in openbao["detail"]
    assert "fleet: error: lab part(s) not up: openbao" in status.stderr
    assert "Traceback" not in status.stderr

    back = fleet("lab", "up", "--json")
    assert back.code == 0, back.stderr
    assert {"started openbao", "unsealed openbao"} <= set(back.json()["actions"])


def test_consul_down_is_one_clear_line(lab: Any) -> None:
    status = fleet("lab", "status", env={"CONSUL_HTTP_ADDR": "127.0.0.1:1"})
    assert status.code == 1
    assert "consul" in status.stderr
    assert "Traceback" not in status.stderr


def test_consul_enforces_acls_and_a_denied_token_is_one_clear_line(lab: Any) -> None:
    anonymous = Consul(lab.consul_addr)
    with pytest.raises(FleetError, match="Consul denied write"):
        anonymous.put("fleet/gitlab/channels/canary/web", "forged", cas=0)
    assert anonymous.acl_enabled()
    run = fleet("images", env={"CONSUL_HTTP_TOKEN": "00000000-0000-0000-0000-00000000dead"})
    assert run.code == 1 and "Traceback" not in run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert "Consul denied" in line and "CONSUL_HTTP_TOKEN" in line


def test_nodes_restarted_with_dockerd_get_their_credentials_again(lab: Any) -> None:
    if not topology.paths(lab).pid("dockerd").exists():
        pytest.skip("dockerd was not started by the lab, so `lab down` does not restart it")
    net = topology.network(lab)
    base = parts(fleet("lab", "status", "--json").json())["base image bookworm"]["address"]
    node = f"{lab.fleet.name}-bastion-restart-{uuid.uuid4().hex[:6]}"
    token_file = "/run/fleet/consul/acl.json"
    try:
        process.run(["docker", "run", "-d", "--pull", "never", "--name", node, "--hostname", node,
                     "--network", net.name, "--restart", "unless-stopped",
                     "--tmpfs", "/run/fleet:mode=0700", "--label", "fleet.lab=1",
                     "--label", f"fleet.name={lab.fleet.name}", "--label", "fleet.role=bastion",
                     "--label", "fleet.env=production",
                     "-e", f"FLEET_CONSUL_JOIN={net.gateway}", "-e", "FLEET_CONSUL_DATACENTER=lab",
                     base])
        delivered = fleet("secrets", "deliver", node, "bastion", "production")
        assert delivered.code == 0, delivered.stderr
        first = docker.read_file(node, token_file)

        assert fleet("lab", "down").code == 0  # dockerd stops, and every lab node with it
        up = fleet("lab", "up", "--json")
        assert up.code == 0, up.stderr
        assert any(a.startswith(f"{node}: ") for a in up.json()["actions"]), up.json()["actions"]
        before = json.loads(first)["acl"]["tokens"]["default"]
        again = json.loads(docker.read_file(node, token_file))["acl"]["tokens"]["default"]
        assert again != before  # a new token, minted now; the old one is gone
        assert Consul(lab.consul_addr, again).token_known()
        assert not Consul(lab.consul_addr, before).token_known()
        assert eventually(lambda: bool(lab.consul().node_checks(node)), True, timeout=30)
    finally:
        process.run(["docker", "rm", "-f", node], check=False)
