"""Secrets from the real OpenBao: sync, check, put, least privilege, single-use SecretIDs,
boot-time delivery to a real lab node, rotation, and a scan for leaked values afterwards."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.adapters.consul import Consul
from fleet.adapters.vault import Vault
from fleet.errors import FleetError
from fleet.model import acl, secretscan
from fleet.model import secrets as model
from fleet.model.secret import Secret
from fleet.services.context import load
from fleet.services.topology import management_token, vault_root_token
from fleet.workflows import secrets as workflow
from tests.conftest import ROOT, FleetCopy, eventually, throwaway_vault

pytestmark = pytest.mark.lab
VALUES = {("web", "canary", "db_password"): "pw-web-canary-7Hq2",
          ("web", "canary", "secret_key_base"): "skb-web-canary-Xk81",
          ("api", "canary", "db_password"): "pw-api-canary-Mm30"}



@pytest.fixture
def copy(lab: Any, fleet_copy: FleetCopy) -> Iterator[FleetCopy]:
    """The example fleet with its own kv mount, policies and AppRoles, removed afterwards.
    Its canary has secrets of its own here (no pets_from): what a borrower takes from its
    lender is tests/integration/test_shared_backends.py's."""
    fleet_copy.edit("fleet.toml", 'secrets_mount = "fleet"', f'secrets_mount = "{fleet_copy.name}"')
    fleet_copy.edit("fleet.toml", 'pets_from = "production"', "")
    shutil.copytree(ROOT / "secrets-policy", fleet_copy.root / "secrets-policy")
    yield fleet_copy
    # as the lab's administrator: fleet's operator token may not delete policies or unmount
    vault = Vault(lab.vault_addr, vault_root_token(lab).reveal())
    for name in vault.policies(f"{fleet_copy.name}-"):
        vault.delete_policy(name)
    for name in vault.approles(f"{fleet_copy.name}-", model.APPROLE_MOUNT):
        vault.delete_approle(name, model.APPROLE_MOUNT)
    vault.disable_secrets_engine(fleet_copy.name)


def login(vault: Vault, copy: FleetCopy, role: str, env: str) -> Vault:
    """Log in as a node of role in env would: unwrap a wrapped SecretID, AppRole login."""
    name = model.name(copy.name, role, env)
    wrapped = vault.wrapped_secret_id(name, model.APPROLE_MOUNT, model.WRAP_TTL)
    secret_id = Secret(vault.unwrap(wrapped)["secret_id"])
    token = vault.login_approle(vault.role_id(name, model.APPROLE_MOUNT), secret_id,
                                model.APPROLE_MOUNT)
    return Vault(vault.address, token.reveal())


def test_sync_check_put_and_least_privilege(lab: Any, copy: FleetCopy) -> None:
    first = copy.run("secrets", "sync", "--json")
    assert first.code == 0, first.stderr
    changes = first.json()["changes"]
    assert {c["action"] for c in changes} == {"create"}
    assert len(changes) == 2 * 4 * 3  # policy + AppRole, 4 roles with secrets, 3 environments
    again = copy.run("secrets", "sync", "--json")
    assert {c["action"] for c in again.json()["changes"]} == {"unchanged"}

    check = copy.run("secrets", "check", "canary")
    assert check.code == 1 and "missing: web/canary: db_password" in check.stdout
    assert check.stderr.count("\n") == 2  # the count, then one error line
    for (role, env, key), value in VALUES.items():
        stored = copy.put_secret(role, key, env, value)
        assert stored.code == 0, stored.stderr
        assert value not in stored.stdout + stored.stderr
    check = copy.run("secrets", "check", "canary")
    assert check.code == 0, check.stdout + check.stderr
    assert not any(v in check.stdout + check.stderr for v in VALUES.values())
    refused = copy.put_secret("web", "not_declared", "canary", "x")
    assert refused.code == 1 and "does not declare" in refused.stderr

    vault = Vault(lab.vault_addr, lab.vault_token.reveal())
    web = login(vault, copy, "web", "canary")
    assert web.kv_get(copy.name, "web/canary") == {
        "db_password": VALUES[("web", "canary", "db_password")],
        "secret_key_base": VALUES[("web", "canary", "secret_key_base")]}
    for other in ("api/canary", "web/staging"):  # role A reading role B's, or another env's
        with pytest.raises(FleetError, match="Vault denied"):
            web.kv_get(copy.name, other)
    with pytest.raises(FleetError, match="Vault denied"):
        web.kv_set(copy.name, "web/canary", "db_password", Secret("overwritten"))

    name = model.name(copy.name, "web", "canary")
    wrapped = vault.wrapped_secret_id(name, model.APPROLE_MOUNT, model.WRAP_TTL)
    secret_id = Secret(vault.unwrap(wrapped)["secret_id"])
    with pytest.raises(FleetError):  # a wrapping token unwraps once
        vault.unwrap(wrapped)
    role_id = vault.role_id(name, model.APPROLE_MOUNT)
    vault.login_approle(role_id, secret_id, model.APPROLE_MOUNT)
    with pytest.raises(FleetError, match="AppRole login"):  # a SecretID logs in once
        vault.login_approle(role_id, secret_id, model.APPROLE_MOUNT)


def test_bad_input_is_one_line_and_writes_nothing(lab: Any, copy: FleetCopy) -> None:
    copy.edit("secrets-policy/web.hcl", 'capabilities = ["read"]',
              'capabilities = ["read"]\n}\npath "{{mount}}/data/api/{{env}}" {\n'
              '  capabilities = ["read", "update"]')
    greedy = copy.run("secrets", "sync")
    assert greedy.code == 1 and greedy.stderr.count("\n") == 1, greedy.stderr
    assert "api" in greedy.stderr
    assert Vault(lab.vault_addr, lab.vault_token.reveal()).policies(f"{copy.name}-") == {}
    unsynced = copy.run("secrets", "check")
    assert unsynced.code == 1 and "AppRole(s) missing in Vault" in unsynced.stderr
    for env in ({"VAULT_ADDR": "http://127.0.0.1:1"}, {"VAULT_TOKEN": "not-a-token"}):
        failed = subprocess.run(
            [".venv/bin/fleet", "-f", str(copy.file), "secrets", "check"], cwd=ROOT,
            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **copy.env, **env},
            stdin=subprocess.DEVNULL)
        assert failed.returncode == 1 and failed.stderr.count("\n") == 1, failed.stderr
        assert "internal error" not in failed.stderr


def test_a_sealed_vault_is_one_line(lab: Any, copy: FleetCopy, tmp_path: Path) -> None:
    """A Vault of our own, initialised and so sealed: every secrets command says so."""
    with throwaway_vault(tmp_path) as (address, _):
        for args in (["secrets", "check"], ["secrets", "sync"],
                     ["secrets", "rotate", "web", "--env", "canary"]):
            sealed = subprocess.run(
                [".venv/bin/fleet", "-f", str(copy.file), *args], cwd=ROOT, capture_output=True,
                text=True, env={"PATH": "/usr/bin:/bin", **copy.env, "VAULT_ADDR": address},
                stdin=subprocess.DEVNULL)
            assert sealed.returncode == 1, sealed.stderr
            assert sealed.stderr == f"fleet: error: Vault at {address} is sealed: unseal it " \
                "(`fleet lab up` does so for the lab)\n"


def node_file(node: str, path: str) -> tuple[str, str]:
    """(mode owner, content) of a file on a node."""
    stat = subprocess.run(["docker", "exec", node, "stat", "-c", "%a %U", path],
                          capture_output=True, text=True)
    content = subprocess.run(["docker", "exec", node, "cat", path], capture_output=True,
                             text=True)
    return stat.stdout.strip(), content.stdout


def test_node_boots_with_its_secrets_rotates_and_nothing_leaks(lab: Any, copy: FleetCopy) -> None:
    assert copy.run("secrets", "sync").code == 0
    for (role, env, key), value in VALUES.items():
        assert copy.put_secret(role, key, env, value).code == 0
    baked = copy.run("bake", "web", "--version", "v1")
    assert baked.code == 0, baked.stderr
    promoted = copy.run("promote", "v1", "--to", "canary", "--role", "web")
    assert promoted.code == 0, promoted.stderr
    node = f"{copy.name}-web-canary-v1-0"
    secrets_dir = "/run/fleet/secrets"
    try:
        for key in ("db_password", "secret_key_base"):
            assert node_file(node, f"{secrets_dir}/{key}") == (
                "600 root", VALUES[("web", "canary", key)])
        listing = subprocess.run(["docker", "exec", node, "ls", "-A", secrets_dir],
                                 capture_output=True, text=True).stdout.split()
        assert listing == ["db_password", "secret_key_base"]  # its own, nothing of api's
        inspect = subprocess.run(["docker", "inspect", node], capture_output=True, text=True)
        assert not any(v in inspect.stdout for v in VALUES.values())

        # its Consul token: 0600 on the tmpfs, registers the node, and writes no KV at all
        mode, config = node_file(node, "/run/fleet/consul/acl.json")
        token = json.loads(config)["acl"]["tokens"]["default"]
        assert mode == "600 root" and token not in inspect.stdout
        as_node = Consul(lab.consul_addr, token)
        assert as_node.node_checks(node) != []  # it may read what it registered
        prefix = f"fleet/{copy.name}"
        for key in (f"{prefix}/catalog/web/v9", f"{prefix}/channels/canary/web",
                    f"{prefix}/history/forged", f"{prefix}/rollout/canary"):
            with pytest.raises(FleetError, match="Consul denied write"):
                as_node.put(key, "forged", cas=0)
        with pytest.raises(FleetError, match="Consul denied"):
            as_node.create_token("escalate", [acl.OPERATOR_POLICY])
        assert lab.consul().get(f"{prefix}/catalog/web/v9") is None

        # rotation: a new value, new credentials; the node logs in again and re-renders
        assert copy.put_secret("web", "db_password", "canary", "pw-web-canary-rotated-9Zt").code == 0
        rotated = copy.run("secrets", "rotate", "web", "--env", "canary", "--json")
        assert rotated.code == 0, rotated.stderr
        assert [n for n, _ in rotated.json()["nodes"]] == [node]
        assert node_file(node, f"{secrets_dir}/db_password") == (
            "600 root", "pw-web-canary-rotated-9Zt")

        # Vault sealed-or-down on the node's side: the last rendered config stays
        broken = json.dumps({"vault": {
            "vault": "http://127.0.0.1:1", "approle_mount": "approle", "role_id": "x",
            "wrapped_secret_id": "x", "mount": "m", "path": "p", "keys": ["db_password"]}})
        refused = subprocess.run(["docker", "exec", "-i", node, "/usr/local/sbin/fleet-node",
                                  "login"], input=broken, capture_output=True, text=True)
        assert refused.returncode == 1 and "not reachable" in refused.stderr
        assert node_file(node, f"{secrets_dir}/db_password")[1] == "pw-web-canary-rotated-9Zt"

        # the scan (`fleet secrets scan`): every catalog image, the node's disk (not its
        # tmpfs), every file under the copy's .fleet and the lab's, every Consul KV entry
        # (Terraform states too), for every secret value and every token
        ctx = load(copy.file, copy.env)
        every = Consul(lab.consul_addr, management_token(lab).reveal())  # sees every key
        report = workflow.scan(ctx, every, also=[ROOT / ".fleet"])
        assert report.findings == ()
        assert report.images == ("web:v1",) and report.nodes == (node,)
        assert report.values >= 6 and report.files > 10 and report.keys > 0
        found = secretscan.needles([("t", token), ("v", "pw-web-canary-rotated-9Zt")])
        assert set(found) <= set(workflow.scan_needles(ctx, every))  # the node's token is looked for
        state = lab.consul().get(f"fleet/{copy.name}/terraform/cattle/canary")
        assert state is not None and b"wrapped" not in state.value and b"role_id" not in state.value

        # the command says the same, and names a planted value without showing it
        scanned = copy.run("secrets", "scan", "--json")
        assert scanned.code == 0, scanned.stderr
        assert scanned.json()["nodes"] == [node] and scanned.json()["findings"] == []
        planted = copy.root / ".fleet" / "logs" / "planted.log"
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.write_text(f"debug: password={VALUES[('api', 'canary', 'db_password')]}\n")
        leaked = copy.run("secrets", "scan")
        assert leaked.code == 1
        assert leaked.stderr.strip().splitlines()[-1] == (
            f"fleet: error: 1 secret(s) found, first the value of {copy.name}/api/canary:"
            f"db_password in {planted}: remove it there and rotate the secret (fleet secrets "
            "put, then fleet secrets rotate)")
        assert VALUES[("api", "canary", "db_password")] not in leaked.stdout + leaked.stderr
    finally:
        _remove(copy)


def _remove(copy: FleetCopy) -> None:
    from fleet.services import cattle
    from fleet.services.context import load

    ctx = load(copy.file, copy.env)
    cattle.apply(ctx, "canary", [])
    assert eventually(lambda: subprocess.run(
        ["docker", "ps", "-q", "--filter", f"name={copy.name}-"], capture_output=True,
        text=True).stdout.strip(), "") == ""

