"""fleet in the real OpenBao with least privilege, audited: commands run with fleet's operator
token (policy fleet-operator), never the root token; a command that needs more fails in one
line; the file audit device names every secret a node reads at delivery, with its value
HMAC'd, and the scan finds no value in the audit log."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from fleet.adapters import docker, process
from fleet.adapters.consul import Consul
from fleet.adapters.vault import SealState, Vault
from fleet.errors import FleetError
from fleet.model import secrets as model
from fleet.model import secretscan, vault_policy
from fleet.services import baseimage, topology
from fleet.services.context import load
from fleet.workflows import secrets as workflow
from fleet.workflows.lab.openbao_server import operator_up
from tests.conftest import EXAMPLE, ROOT, FleetCopy, eventually, throwaway_vault

pytestmark = pytest.mark.lab



def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_commands_run_as_the_operator_and_every_secret_read_is_audited(
        lab: Any, fleet_copy: FleetCopy) -> None:
    p = topology.paths(lab)
    held = topology.vault_operator(p)
    assert held is not None, "lab up minted fleet's operator token"
    token, _ = held
    root = topology.vault_root_token(lab)
    for kept in (p.openbao_operator, p.openbao_init, p.openbao_audit):
        assert mode(kept) == 0o600, f"{kept} is {oct(mode(kept))}"
    assert lab.vault_token is not None and lab.vault_token.reveal() == token.reveal(), \
        "commands use the operator token by default"
    assert token.reveal() != root.reveal()
    info = Vault(lab.vault_addr, token.reveal()).lookup_self()
    assert sorted(info.policies) == ["default", vault_policy.OPERATOR_POLICY], info.policies
    assert info.renewable and info.ttl > 0, info
    admin = Vault(lab.vault_addr, root.reveal())
    devices = admin.audit_devices()
    assert devices["file/"] == {"type": "file", "file_path": str(p.openbao_audit)}, devices

    # a copy with its own kv mount, synced and filled by the operator
    fc = fleet_copy
    fc.edit("fleet.toml", 'secrets_mount = "fleet"', f'secrets_mount = "{fc.name}"')
    fc.edit("fleet.toml", 'pets_from = "production"', "")  # canary's secrets its own here
    shutil.copytree(ROOT / "secrets-policy", fc.root / "secrets-policy")
    values = {"db_password": f"pw-{uuid.uuid4().hex}", "secret_key_base": f"skb-{uuid.uuid4().hex}"}
    node = f"{fc.name}-web-audit-0"
    since = p.openbao_audit.stat().st_size
    try:
        synced = fc.run("secrets", "sync")
        assert synced.code == 0, synced.stderr
        for key, value in values.items():
            stored = fc.put_secret("web", key, "canary", value)
            assert stored.code == 0, stored.stderr
        base = lab.fleet.bases["bookworm"]
        _, image = baseimage.current(base, ROOT / "packer" / "base", lab.state_dir / "cache")
        assert image is not None
        net = topology.network(lab)
        process.run(["docker", "run", "-d", "--pull", "never", "--name", node, "--hostname", node,
                     "--network", net.name, "--tmpfs", "/run/fleet:mode=0700",
                     "--label", "fleet.lab=1", "--label", f"fleet.name={fc.name}",
                     "--label", "fleet.role=web", "--label", "fleet.env=canary",
                     "-e", f"FLEET_CONSUL_JOIN={net.gateway}", "-e", "FLEET_CONSUL_DATACENTER=lab",
                     image.id])
        delivered = fc.run("secrets", "deliver", node, "web", "canary")
        assert delivered.code == 0, delivered.stderr
        for key in values:
            assert docker.has_file(node, f"/run/fleet/secrets/{key}"), f"{key} rendered"

        # the audit log: the node's read of its secrets, each key named, each value HMAC'd
        text = p.openbao_audit.read_bytes()[since:]
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        path = f"{fc.name}/data/web/canary"
        reads = [e for e in entries if e["type"] == "response" and e["request"]["path"] == path
                 and e["request"]["operation"] == "read"
                 and model.name(fc.name, "web", "canary") in e["auth"]["policies"]]
        assert reads, f"no read of {path} by the node's AppRole token in the audit log"
        data = reads[-1]["response"]["data"]["data"]
        assert set(data) == set(values), f"the audit names each secret read: {sorted(data)}"
        assert all(v.startswith("hmac-sha256:") for v in data.values()), data
        for secret in (*values.values(), token.reveal(), root.reveal()):
            assert secret.encode() not in p.openbao_audit.read_bytes(), "a value in the audit log"
        issued = [e for e in entries if e["type"] == "request" and e["request"]["path"] ==
                  f"auth/approle/role/{model.name(fc.name, 'web', 'canary')}/secret-id"]
        assert issued and all(vault_policy.OPERATOR_POLICY in e["auth"]["policies"]
                              for e in issued), "the operator issued the SecretID"
        by_root = [e["request"]["path"] for e in entries
                   if "root" in (e.get("auth") or {}).get("policies", [])]
        assert by_root == [], f"a command used the root token: {by_root}"

        # the scan looks for the operator's and the root token, and finds no value in the
        # audit log (nor anywhere under the lab's .fleet)
        every = Consul(lab.consul_addr, topology.management_token(lab).reveal())
        needles = workflow.scan_needles(load(EXAMPLE), every)
        assert set(secretscan.needles([("o", token.reveal()), ("r", root.reveal())])) <= set(
            needles), "the scan looks for the operator and root tokens"
        report = workflow.scan(load(fc.file, fc.env), every, also=[ROOT / ".fleet"])
        assert report.findings == (), report.findings
        assert report.nodes == (node,)
    finally:
        docker.remove_container(node)
        for name in admin.policies(f"{fc.name}-"):
            admin.delete_policy(name)
        for name in admin.approles(f"{fc.name}-", model.APPROLE_MOUNT):
            admin.delete_approle(name, model.APPROLE_MOUNT)
        admin.disable_secrets_engine(fc.name)


def test_a_command_that_needs_more_than_the_operator_policy_fails_in_one_line(
        fleet_copy: FleetCopy, tmp_path: Path) -> None:
    """An OpenBao of our own, set up as `lab up` sets the lab's (the policy, the operator
    token) but without AppRole enabled: `secrets sync` would have to enable it, which is the
    administrator's, not the operator's."""
    with throwaway_vault(tmp_path) as (address, keys):
        Vault(address).unseal(keys.unseal_key)
        assert eventually(lambda: Vault(address).health().state, SealState.UNSEALED) \
            is SealState.UNSEALED
        admin = Vault(address, keys.root_token)
        lab = topology.Paths(tmp_path / "lab")
        assert operator_up(admin, lab) == [f"wrote Vault policy {vault_policy.OPERATOR_POLICY}",
                                           "minted fleet's Vault operator token"]
        assert operator_up(admin, lab) == [], "renewed, not minted again"
        held = topology.vault_operator(lab)
        assert held is not None
        env = {"VAULT_ADDR": address, "VAULT_TOKEN": held[0].reveal()}
        shutil.copytree(ROOT / "secrets-policy", fleet_copy.root / "secrets-policy")

        sync = subprocess.run([sys.executable, "-m", "fleet", "-f", str(fleet_copy.file),
                               "secrets", "sync"], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, **fleet_copy.env, **env},
                              stdin=subprocess.DEVNULL, timeout=60)
        assert sync.returncode == 1 and "Traceback" not in sync.stderr, sync.stderr
        assert sync.stderr == ("fleet: error: Vault denied enable auth approle at approle/: "
                               "check VAULT_TOKEN and the token's policies\n"), sync.stderr
        operator = Vault(address, held[0].reveal())
        assert not operator.ensure_kv("fleet"), "the kv mount, which it may make, was made"
        for what, call in (
                ("unmount", lambda: operator.disable_secrets_engine("fleet")),
                ("widen its own policy", lambda: operator.put_policy(
                    vault_policy.OPERATOR_POLICY, 'path "*" { capabilities = ["sudo"] }')),
                ("mint a token", lambda: operator.create_token(["default"], "1h", "x")),
                ("read the audit devices", operator.audit_devices)):
            with pytest.raises(FleetError, match="Vault denied"):
                call()
                pytest.fail(f"the operator may {what}")

        # what the administrator does, once: then the same command works as the operator
        admin.ensure_auth("approle", model.APPROLE_MOUNT)
        again = subprocess.run(
            [sys.executable, "-m", "fleet", "-f", str(fleet_copy.file), "secrets", "sync"],
            capture_output=True, text=True, cwd=ROOT, env={**os.environ, **fleet_copy.env, **env},
            stdin=subprocess.DEVNULL, timeout=60)
        assert again.returncode == 0, again.stderr
        stored = fleet_copy.put_secret("web", "secret_key_base", "canary", "x-value", env)
        assert stored.code == 0, stored.stderr


