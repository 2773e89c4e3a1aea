"""The example's postgres pet runs PostgreSQL 15 and the cattle reach it, in the real lab: a copy
of the example fleet (web, api, sidekiq and the pets they depend on; a kv mount of its own) is
baked, staging's pets applied and its cattle promoted. PostgreSQL 15 answers in the pet; the
application role's password is the one Vault holds, rendered on the node's tmpfs and in no
image; web, api and sidekiq each report the schema version they read through Consul's address
and Vault's password; a `docker restart` of the pet keeps what was written."""

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
from fleet.model.nodes import node_name
from fleet.services.topology import vault_root_token
from tests.conftest import ROOT, FleetCopy, eventually, forget_vault

pytestmark = pytest.mark.lab
CATTLE = {"web": 8080, "api": 8081, "sidekiq": 8082}
SECRET = "/run/fleet/secrets/db_password"


def trim(copy: FleetCopy) -> None:
    """web, api, sidekiq and the pets (git and the snowflakes go), secrets in a mount of the
    copy's own, and the policies of the roles with secrets."""
    text = copy.file.read_text()
    text = text[:text.index("[roles.git]")] + text[text.index("[roles.sidekiq]"):]
    text = text[:text.index("# ---- snowflakes")]
    copy.file.write_text(text.replace('secrets_mount = "fleet"', f'secrets_mount = "{copy.name}"'))
    (copy.root / "secrets-policy").mkdir()
    for role in ("web", "api", "sidekiq", "postgres"):
        shutil.copy(ROOT / "secrets-policy" / f"{role}.hcl", copy.root / "secrets-policy")



def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60,
                          env=env)


def as_postgres(pet: str, sql: str, database: str = "gitlab") -> str:
    """SQL in the pet as the postgres OS user on the Unix socket (peer); its output."""
    done = run("docker", "exec", pet, "runuser", "-u", "postgres", "--",
               "/usr/lib/postgresql/15/bin/psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
               "-h", "/run/postgresql", "-d", database, "-c", sql)
    return done.stdout.strip() if done.returncode == 0 else f"error: {done.stderr.strip()}"


def login(node: str, host: str, password: str) -> str:
    """A password login as the application role, over TCP, from a node; its output."""
    done = run("docker", "exec", "-e", f"PGPASSWORD={password}", node,
               "/usr/lib/postgresql/15/bin/psql", "-X", "-A", "-t", "-q", "-h", host,
               "-U", "gitlab", "-d", "gitlab", "-c", "SELECT current_user")
    return done.stdout.strip() if done.returncode == 0 else f"error: {done.stderr.strip()}"


def answer(node: str, port: int) -> dict[str, Any]:
    done = run("docker", "exec", node, "curl", "-s", "-m", "15", f"http://127.0.0.1:{port}/")
    try:
        return dict(json.loads(done.stdout))
    except ValueError:
        return {"error": done.stdout + done.stderr}


def address(container: str) -> str:
    return run("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}"
               "{{end}}", container).stdout.strip()


def layers_hold(image: str, needle: bytes) -> bool:
    """Whether the bytes of the image (`docker save`: every layer's files, its config and
    history) contain needle anywhere."""
    proc = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    tail, found = b"", False
    for block in iter(lambda: proc.stdout.read(1 << 20), b""):  # type: ignore[union-attr]
        if needle in tail + block:
            found = True
        tail = block[-len(needle):]
    proc.wait()
    return found


def test_postgres_pet_serves_the_cattle(lab: Any, fleet_copy: FleetCopy) -> None:
    fc, name = fleet_copy, fleet_copy.name
    trim(fc)
    password = f"pw-stg-{uuid.uuid4().hex[:16]}"
    pet = f"{name}-postgres-stg-01"
    nodes = {role: node_name(name, role, "staging", "v1", 0) for role in CATTLE}
    admin = Vault(lab.vault_addr, vault_root_token(lab).reveal())
    timings: dict[str, float] = {}
    try:
        started = time.monotonic()
        assert fc.run("secrets", "sync").code == 0, "policies and AppRoles written"
        assert fc.put_secret("web", "secret_key_base", "staging", "skb-stg").code == 0
        # one database, one password: the pet's value is written for the cattle that use it
        stored = fc.put_secret("postgres", "db_password", "staging", password)
        assert stored.code == 0, f"put postgres db_password: {stored.stderr}"
        for role in CATTLE:
            assert (admin.kv_get(name, f"{role}/staging") or {}).get("db_password") == \
                password, f"{role}'s db_password is postgres's"
        assert fc.put_secret("web", "db_password", "staging", "something-else").code == 0
        drift = fc.run("secrets", "check", "staging")
        assert drift.code == 1 and "web/staging: db_password (not postgres/staging's value)" \
            in drift.stdout, f"a cattle password unlike the pet's is named: {drift.stdout}"
        assert fc.put_secret("postgres", "db_password", "staging", password).code == 0
        assert fc.run("secrets", "check", "staging").code == 0, "the pet's value again, all equal"
        baked = fc.run("bake", "gitaly", "postgres", "redis", "web", "api", "sidekiq",
                       "--version", "v1")
        assert baked.code == 0, f"the bake: {baked.stderr[-800:]}"
        timings["sync, put, bake 6 roles"] = time.monotonic() - started

        step = time.monotonic()
        applied = fc.run("apply", "staging", "--yes")
        assert applied.code == 0, f"apply staging's pets: {applied.stderr[-800:]}"
        promoted = fc.run("promote", "v1", "--to", "staging", "--force", "--reason",
                          "the database test's cattle")
        assert promoted.code == 0, f"promote to staging: {promoted.stderr[-800:]}"
        timings["apply 3 pets, promote 3 nodes"] = time.monotonic() - step

        # PostgreSQL 15 in the pet, its cluster on the pet's volume
        step = time.monotonic()
        version = eventually(lambda: as_postgres(pet, "SHOW server_version_num")[:2], "15",
                             timeout=60)
        assert version == "15", f"PostgreSQL 15 answers: {as_postgres(pet, 'SELECT version()')}"
        assert as_postgres(pet, "SHOW data_directory") == "/var/lib/postgresql/15/main", \
            "the cluster is under the volume's mount"
        mounts = run("docker", "inspect", "-f", "{{range .Mounts}}{{.Name}}:{{.Destination}} "
                     "{{end}}", pet).stdout.split()
        assert f"{pet}-data:/var/lib/postgresql" in mounts, f"on the pet's volume: {mounts}"
        assert as_postgres(pet, "SHOW listen_addresses") == "*", "it listens on every address"

        # the password: Vault's, rendered on the tmpfs, set in the cluster, in no image
        held = admin.kv_get(name, "postgres/staging") or {}
        assert held.get("db_password") == password, "Vault holds the password put"
        assert run("docker", "exec", pet, "cat", SECRET).stdout == password, \
            "the pet renders Vault's value on its tmpfs"
        host = address(pet)
        assert eventually(lambda: login(nodes["web"], host, password), "gitlab",
                          timeout=30) == "gitlab", \
            f"web logs in with Vault's password: {login(nodes['web'], host, password)}"
        assert "password authentication failed" in login(nodes["web"], host, "not-it"), \
            "a wrong password is refused"
        assert "error" in login(nodes["web"], host, ""), "no login without a password"
        for role in ("postgres", "web"):
            image = f"fleet-{name}-{role}:v1"
            assert not layers_hold(image, password.encode()), f"the password is in {image}"
        timings["server, password, images checked"] = time.monotonic() - step

        # the cattle report the schema version they read: none yet, then the table's highest id
        step = time.monotonic()
        for role, port in CATTLE.items():
            seen = eventually(lambda r=role, p=port: answer(nodes[r], p).get("schema_version"),
                              "", timeout=30)
            assert seen == "", f"{role} reaches the database, no table yet: " \
                               f"{answer(nodes[role], port)}"
        created = as_postgres(pet, "SET ROLE gitlab; CREATE TABLE schema_migrations "
                                   "(id text PRIMARY KEY, applied_at timestamptz DEFAULT now()); "
                                   "INSERT INTO schema_migrations (id) VALUES ('20261202120000'), "
                                   "('9')")
        assert not created.startswith("error"), created
        for role, port in CATTLE.items():
            said = answer(nodes[role], port)
            assert said.get("schema_version") == "20261202120000", \
                f"{role} reports the highest migration: {said}"
            assert said.get("database") == f"{host}:5432", f"{role} found it in Consul: {said}"
        health = run("docker", "exec", nodes["web"], "curl", "-s", "-m", "5",
                     "http://127.0.0.1:8080/-/health").stdout
        assert "schema_version" not in health, f"the health check does not ask: {health}"
        timings["schema_version in web, api, sidekiq"] = time.monotonic() - step

        # a restart keeps the data (crash recovery from the WAL), and the password
        step = time.monotonic()
        assert not as_postgres(pet, "INSERT INTO schema_migrations (id) VALUES "
                                    "('20261202130000')").startswith("error")
        assert run("docker", "restart", pet).returncode == 0, "the pet restarts"
        rows = eventually(lambda: as_postgres(pet, "SELECT max(id) FROM schema_migrations "
                                                   "WHERE length(id) > 1"),
                          "20261202130000", timeout=60)
        assert rows == "20261202130000", f"the row written before the restart is kept: {rows}"
        host = address(pet)
        assert eventually(lambda: login(nodes["api"], host, password), "gitlab",
                          timeout=30) == "gitlab", "the password survives the restart"
        timings["restart"] = time.monotonic() - step
        print(json.dumps({k: round(v, 1) for k, v in timings.items()}))
    finally:
        docker.remove_containers([n for n in docker.lab_containers() if n.startswith(f"{name}-")])
        forget_vault(lab.vault_addr, vault_root_token(lab).reveal(), name)
