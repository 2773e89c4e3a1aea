"""Shared backends in the lab: canary uses production's pets (pets_from). On a copy of the
example fleet with production's pets applied and canary's web deployed, the canary web node
discovers production's gitaly, postgres and redis through its own Consul watches, renders
production's db_password (never production's other secrets), registers as canary's, and
plan, status and check show the borrowing; nothing of canary's reaches production's pets."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from typing import Any

import pytest

from fleet.adapters import docker
from fleet.adapters.vault import Vault
from fleet.errors import FleetError
from fleet.model import secrets as model
from fleet.model.nodes import UPSTREAMS_FILE
from fleet.model.secret import Secret
from fleet.services import cattle
from fleet.services.context import load
from fleet.services.topology import vault_root_token
from tests.conftest import ROOT, FleetCopy, eventually, forget_vault

pytestmark = pytest.mark.lab
PETS = {"gitaly": ("gitaly-01", 8075), "postgres": ("postgres-01", 5432),
        "redis": ("redis-01", 6379)}


def trim(copy: FleetCopy) -> None:
    """Only what the scenario needs, so the lab bakes four roles, not nine: web and the pets
    it depends on (api, git, sidekiq and the snowflakes go), with a kv mount of its own."""
    path = copy.file
    text = path.read_text()
    text = text[:text.index("[roles.api]")] + text[text.index("# ---- pets"):]
    text = text[:text.index("# ---- snowflakes")]
    path.write_text(text.replace('secrets_mount = "fleet"', f'secrets_mount = "{copy.name}"'))
    (copy.root / "secrets-policy").mkdir()
    for role in ("web", "postgres"):
        shutil.copy(ROOT / "secrets-policy" / f"{role}.hcl", copy.root / "secrets-policy")



def on_node(node: str, *argv: str) -> str:
    proc = subprocess.run(["docker", "exec", node, *argv], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else ""


def upstreams(node: str) -> dict[str, list[str]]:
    text = on_node(node, "cat", UPSTREAMS_FILE)
    return dict(json.loads(text)) if text else {}


def address(container: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}"
                           "{{.IPAddress}}{{end}}", container], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_canary_runs_against_production_pets(lab: Any, fleet_copy: FleetCopy) -> None:
    fc, name = fleet_copy, fleet_copy.name
    trim(fc)
    prod_pw, canary_skb = f"pw-prod-{uuid.uuid4().hex[:12]}", f"skb-can-{uuid.uuid4().hex[:12]}"
    timings: dict[str, float] = {}
    admin = Vault(lab.vault_addr, vault_root_token(lab).reveal())
    try:
        started = time.monotonic()
        assert fc.run("secrets", "sync").code == 0, "policies and AppRoles written"
        for role, key, env, value in (("web", "db_password", "production", prod_pw),
                                      ("postgres", "db_password", "production", prod_pw),
                                      ("web", "secret_key_base", "canary", canary_skb),
                                      ("web", "secret_key_base", "production", "skb-prod")):
            stored = fc.put_secret(role, key, env, value)
            assert stored.code == 0, f"put {role} {key} --env {env}: {stored.stderr}"

        # canary's db_password is production's: never asked of canary, never put there
        refused = fc.put_secret("web", "db_password", "canary", "pw-canary-own")
        assert refused.code == 1, "a borrowed secret cannot be put in the borrower"
        assert refused.stderr.strip().splitlines() == [
            "fleet: error: canary takes web's db_password from production, whose pets it uses "
            '(pets_from = "production"): store production\'s value: fleet secrets put web '
            "db_password --env production"], refused.stderr
        check = fc.run("secrets", "check", "canary", "--json")
        assert check.code == 0, f"canary needs no db_password of its own: {check.stdout}"
        assert check.json()["missing"] == [] and check.json()["stale"] == [], check.stdout

        baked = fc.run("bake", "gitaly", "postgres", "redis", "web", "--version", "v1")
        assert baked.code == 0, f"the bake: {baked.stderr}"
        timings["sync, put, bake 4 roles"] = time.monotonic() - started

        # production's pets, created by apply; canary's plan holds none of them
        step = time.monotonic()
        planned = fc.run("plan", "--json")
        assert planned.code == 0, planned.stderr
        plan = planned.json()
        assert plan["pets_from"] == {"canary": "production"}, "plan names the lender"
        assert plan["borrowed"] == {"canary": ["gitaly-01", "postgres-01", "redis-01"]}, plan
        pet_names = {p for p, _ in PETS.values()}
        canary_pets = [i for i in plan["items"] if i["env"] == "canary"
                       and (i["cls"] == "pet" or i["target"] in pet_names)]
        assert canary_pets == [], f"canary's plan touches no pet: {canary_pets}"
        creates = sorted(i["target"] for i in plan["items"] if i["action"] == "create")
        assert creates == ["gitaly-01", "gitaly-stg-01", "postgres-01", "postgres-stg-01",
                           "redis-01", "redis-stg-01"], f"only owners create pets: {creates}"
        human = fc.run("plan", "canary")
        assert "canary uses production's pets (pets_from): gitaly-01, postgres-01, redis-01" \
            in human.stdout, human.stdout
        applied = fc.run("apply", "production", "--yes")
        assert applied.code == 0, f"apply production: {applied.stderr}"
        for pet, _ in PETS.values():
            assert f"{name}-{pet}" in docker.lab_containers(), f"production's {pet} runs"
        timings["apply production's pets"] = time.monotonic() - step

        # canary's web: discovers production's pets through its own watches
        step = time.monotonic()
        promoted = fc.run("promote", "v1", "--to", "canary", "--role", "web")
        assert promoted.code == 0, f"promote to canary: {promoted.stderr}"
        node = f"{name}-web-canary-v1-0"
        want = {svc: [f"{address(f'{name}-{pet}')}:{port}"] for svc, (pet, port) in PETS.items()}
        seen = eventually(lambda: upstreams(node), want, timeout=30)
        assert seen == want, f"canary's web renders production's pets: {seen}"
        timings["promote canary web, upstreams rendered"] = time.monotonic() - step
        def reads_database() -> bool:  # "" or a migration's id: whatever promote applied
            said = json.loads(on_node(node, "curl", "-s", "-m", "15", "http://127.0.0.1:8080/")
                              or "{}")
            return isinstance(said.get("schema_version"), str)
        assert eventually(reads_database, True, timeout=30), \
            "canary's web reads production's postgres with production's password: " \
            + on_node(node, "curl", "-s", "-m", "15", "http://127.0.0.1:8080/")

        # ... with production's db_password, its own secret_key_base, and nothing more
        assert on_node(node, "cat", "/run/fleet/secrets/db_password") == prod_pw, \
            "the canary node renders production's database password"
        assert on_node(node, "cat", "/run/fleet/secrets/secret_key_base") == canary_skb, \
            "its secret_key_base stays canary's own"
        vault = Vault(lab.vault_addr, lab.vault_token.reveal())
        approle = model.name(name, "web", "canary")
        secret_id = Secret(vault.unwrap(vault.wrapped_secret_id(
            approle, model.APPROLE_MOUNT, model.WRAP_TTL))["secret_id"])
        as_canary = Vault(lab.vault_addr, vault.login_approle(
            vault.role_id(approle, model.APPROLE_MOUNT), secret_id,
            model.APPROLE_MOUNT).reveal())
        with pytest.raises(FleetError, match="Vault denied"):
            as_canary.kv_get(name, "web/production")
            pytest.fail("canary's AppRole reads production's path (its secret_key_base)")

        # registered as canary's: never in production's health, traffic or weights
        ctx = load(fc.file, fc.env)
        assert node in cattle.health(ctx, ["web"], "canary", "web").passing, \
            "the canary node passes as canary's"
        assert node not in {**cattle.health(ctx, ["web"], "production", "web").passing,
                            **cattle.health(ctx, ["web"], "production", "web").failing}, \
            "the canary node is not production's"
        envs = {i.meta["env"] for i in ctx.consul().instances("web", f"fleet:{name}")
                if i.node == node}
        assert envs == {"canary"}, f"its web registers as canary's only: {envs}"
        tagged = ctx.consul().instances("web", "env:production")
        assert node not in {i.node for i in tagged}, "never tagged as production's"

        status = fc.run("status", "--json")
        assert status.code == 0, status.stderr
        borrowing = {(r["env"], r["pets_from"]) for r in status.json() if r["role"] == "web"}
        assert borrowing == {("canary", "production"), ("staging", ""), ("production", "")}, \
            f"status says whose pets each environment uses: {borrowing}"
        shown = fc.run("status", "canary")
        assert "production's" in shown.stdout, f"the status table shows it: {shown.stdout}"

        # a new production password reaches canary's copy at once, and its node at rotate
        step = time.monotonic()
        new_pw = f"pw-prod-{uuid.uuid4().hex[:12]}"
        assert fc.put_secret("postgres", "db_password", "production", new_pw).code == 0
        assert (admin.kv_get(name, "web/production") or {}).get("db_password") == new_pw, \
            "the database's password is written for the cattle that log in with it"
        assert admin.kv_get(name, "web/canary") == {"db_password": new_pw,
                                                     "secret_key_base": canary_skb}, \
            "canary's copy follows production's value"
        rotated = fc.run("secrets", "rotate", "web", "--env", "canary")
        assert rotated.code == 0, f"rotate canary's web: {rotated.stderr}"
        assert on_node(node, "cat", "/run/fleet/secrets/db_password") == new_pw, \
            "the canary node renders the new production password"
        admin.kv_put(name, "web/canary", {"db_password": "drifted",
                                          "secret_key_base": canary_skb})
        drift = fc.run("secrets", "check", "canary")
        assert drift.code == 1 and "stale copy: web/canary: db_password" in drift.stdout, \
            f"a copy unlike production's is named: {drift.stdout}{drift.stderr}"
        assert fc.run("secrets", "sync").code == 0
        assert fc.run("secrets", "check", "canary").code == 0, "sync copies it again"
        timings["rotation and drift"] = time.monotonic() - step

        # canary's in-place commands never reach production's pets
        converge = fc.run("converge", "postgres", "--env", "canary")
        assert converge.code == 1 and "production's pets serve it (pets_from)" in \
            converge.stderr, f"converge refuses the borrower: {converge.stderr}"
        print(timings)
    finally:
        docker.remove_containers([n for n in docker.lab_containers() if n.startswith(f"{name}-")])
        forget_vault(lab.vault_addr, vault_root_token(lab).reveal(), name)
