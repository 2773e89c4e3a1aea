"""Migrations carried by images and applied by deploys, in the real lab: a copy of the example
fleet (web and the pets; production's applied, canary borrowing them), web baked with its
migrations. v1's regular migration runs once at the canary's promotion and is recorded. Then
the canary requires a rehearsal: v2 is refused until `fleet db rehearse v2 --env canary` passes
on a copy of production's data (its locks, times, sizes and schema diff reported; production's
data byte for byte the same; the copy gone). v2's regular migration runs before the canary's
first step, its post-deployment one waits until production runs v2 and then runs; `fleet
rollback` to v1 is refused naming it, and allowed with --force --reason (recorded). A broken
migration fails its rehearsal naming file and line, and the canary refuses it; without the gate
it stops a promotion before any node changes, naming file and line. kill -9 of `fleet promote`
during a slow migration, then a rerun, applies each migration exactly once."""

from __future__ import annotations

import difflib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from fleet.adapters import docker
from fleet.model.rehearsal import Rehearsal
from fleet.services.topology import vault_root_token
from tests.conftest import ROOT, FleetCopy, Run, eventually, forget_vault, pg_dump

pytestmark = pytest.mark.lab
REGULAR, POST = "db/migrate", "db/post_migrate"


def trim(copy: FleetCopy) -> None:
    """web and the pets it depends on, one node per environment, a kv mount of its own."""
    text = copy.file.read_text()
    text = text[:text.index("[roles.api]")] + text[text.index("# ---- pets"):]
    text = text[:text.index("# ---- snowflakes")]
    text = text.replace("count = { canary = 1, staging = 1, production = 2 }",
                        "count = { canary = 1, staging = 1, production = 1 }", 1)
    copy.file.write_text(text.replace('secrets_mount = "fleet"', f'secrets_mount = "{copy.name}"'))
    (copy.root / "secrets-policy").mkdir()
    for role in ("web", "postgres"):
        shutil.copy(ROOT / "secrets-policy" / f"{role}.hcl", copy.root / "secrets-policy")
    shutil.copytree(ROOT / "db", copy.root / "db")



def sql(pet: str, query: str) -> str:
    """A query in the pet as the postgres OS user (peer), in the application's database."""
    done = subprocess.run(["docker", "exec", pet, "runuser", "-u", "postgres", "--",
                           "/usr/lib/postgresql/15/bin/psql", "-X", "-A", "-t", "-q", "-v",
                           "ON_ERROR_STOP=1", "-h", "/run/postgresql", "-d", "gitlab", "-c", query],
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else f"error: {done.stderr.strip()}"


def serving(name: str) -> list[str]:
    """The copy's web nodes, not those draining away from an earlier rollout by themselves."""
    return [n for n in docker.lab_containers()
            if n.startswith(f"{name}-web-") and not n.endswith(".draining")]


def migration(copy: FleetCopy, where: str, name: str, text: str) -> None:
    (copy.root / where).mkdir(exist_ok=True)
    (copy.root / where / name).write_text(text)


def events(copy: FleetCopy) -> list[dict[str, Any]]:
    found = copy.run("history", "--json")
    assert found.code == 0, found.stderr
    return list(found.json())


def kinds(evs: list[dict[str, Any]], env: str) -> list[str]:
    return [e["event"] for e in evs if e["env"] == env]


def test_migrations_ride_the_deploys(lab: Any, fleet_copy: FleetCopy) -> None:
    fc, name = fleet_copy, fleet_copy.name
    trim(fc)
    pet = f"{name}-postgres-01"
    password = f"pw-{uuid.uuid4().hex[:16]}"
    timings: dict[str, float] = {}

    def rows() -> str:
        return sql(pet, "SELECT string_agg(id || ':' || kind || ':' || version, ' ' ORDER BY id) "
                        "FROM schema_migrations")

    def force(version: str, env: str) -> Run:
        return fc.run("promote", version, "--to", env, "--yes", "--force", "--reason",
                      "the migrations test skips the soak")

    try:
        started = time.monotonic()
        assert fc.run("secrets", "sync").code == 0, "policies and AppRoles written"
        for role, key, env, value in (("web", "db_password", "production", password),
                                      ("postgres", "db_password", "production", password),
                                      ("web", "secret_key_base", "canary", "skb-can"),
                                      ("web", "secret_key_base", "production", "skb-prod")):
            assert fc.put_secret(role, key, env, value).code == 0, f"put {role} {key} {env}"
        baked = fc.run("bake", "gitaly", "postgres", "redis", "web", "--version", "v1")
        assert baked.code == 0, f"the bake: {baked.stderr[-800:]}"
        shown = fc.run("images", "show", "web:v1")
        assert "20261202120000" in shown.stdout and "create_users" in shown.stdout, \
            f"images show lists the migrations web:v1 carries: {shown.stdout}"
        applied = fc.run("apply", "production", "--yes")
        assert applied.code == 0, f"apply production's pets: {applied.stderr[-800:]}"
        assert eventually(lambda: sql(pet, "SELECT 1"), "1", timeout=90) == "1", \
            f"production's PostgreSQL answers: {sql(pet, 'SELECT 1')}"
        timings["sync, bake 4 roles, apply production's pets"] = time.monotonic() - started

        # v1: its regular migration runs once, at the first promotion onto production's database
        step = time.monotonic()
        canary = fc.run("promote", "v1", "--to", "canary")
        assert canary.code == 0, f"v1 to canary: {canary.stderr[-800:]}"
        assert rows() == "20261202120000:regular:v1", f"applied and recorded once: {rows()}"
        assert sql(pet, "SELECT count(*) FROM pg_indexes WHERE tablename = 'users'") == "2", \
            "the users table with its email index"
        prod = force("v1", "production")
        assert prod.code == 0, f"v1 to production: {prod.stderr[-800:]}"
        assert rows() == "20261202120000:regular:v1", "production's promotion runs it no more"
        evs = events(fc)
        migrated = [e for e in evs if e["event"] == "migrated"]
        assert [(e["env"], [m.rsplit(" ", 1)[0] for m in e["migrations"]]) for e in migrated] \
            == [("canary", ["20261202120000_create_users applied"])], \
            f"one run, in the history: {migrated}"
        assert migrated[0]["database"] == "production", "on production's database"
        timings["v1 canary -> production"] = time.monotonic() - step

        # v2: a regular migration before the rollout, a post-deployment one after production
        step = time.monotonic()
        migration(fc, REGULAR, "20261202130000_add_name.sql", "ALTER TABLE users ADD COLUMN name text;\n")
        migration(fc, POST, "20261202140000_drop_created_at.sql",
                  "ALTER TABLE users DROP COLUMN created_at;\n")
        assert fc.run("bake", "web", "--version", "v2").code == 0, "web:v2 baked"
        timings["v2 baked"] = time.monotonic() - step

        # canary requires a rehearsal: v2's rehearsed on a copy of production's data first
        step = time.monotonic()
        fc.edit("fleet.toml", 'pets_from = "production"', 'pets_from = "production"\n'
                'require_rehearsal = true')
        unrehearsed = fc.run("promote", "v2", "--to", "canary")
        assert unrehearsed.code == 1 and "it was never rehearsed" in unrehearsed.stderr, \
            f"canary admits v2 only after a rehearsal: {unrehearsed.stderr}"
        sql(pet, "INSERT INTO users (email) SELECT 'user' || g || '@example.com' "
                 "FROM generate_series(1, 2000) g")
        production_data = pg_dump(pet)
        rehearsed = fc.run("db", "rehearse", "v2", "--env", "canary", "--json")
        assert rehearsed.code == 0, f"the rehearsal passes: {rehearsed.stderr[-800:]}"
        verdict = rehearsed.json()[0]
        assert verdict["passed"] and verdict["env"] == "production" \
            and verdict["snapshot"].startswith("pg_basebackup:"), \
            f"on production's data, from a base backup: {verdict}"
        ran = {m["id"]: m for m in verdict["migrations"]}
        assert list(ran) == ["20261202130000", "20261202140000"], \
            f"v2's pending migrations, regular then post-deployment: {list(ran)}"
        assert ran["20261202130000"]["locks"] == ["AccessExclusiveLock users"] and \
            ran["20261202130000"]["seconds"] > 0 and ran["20261202130000"]["bytes_before"] > 0, \
            f"each migration's locks, time and the size of what it touched: {ran}"
        assert "+    name text" in verdict["schema_diff"] and "-    created_at" in \
            verdict["schema_diff"], f"the schema's difference: {verdict['schema_diff']}"
        copied = pg_dump(pet)
        assert copied == production_data, "production's data is unchanged by the rehearsal: " + \
            "\n".join(difflib.unified_diff(production_data.splitlines(), copied.splitlines(),
                                           lineterm="", n=1))[:1500]
        assert rows() == "20261202120000:regular:v1", "nothing ran on production's database"
        left = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], text=True,
                              capture_output=True).stdout.split() + subprocess.run(
            ["docker", "network", "ls", "--format", "{{.Name}}"], text=True,
            capture_output=True).stdout.split() + subprocess.run(
            ["docker", "volume", "ls", "--format", "{{.Name}}"], text=True,
            capture_output=True).stdout.split()
        assert not [x for x in left if x.startswith(f"{name}-rehearse")], \
            f"the copy is gone: {[x for x in left if 'rehearse' in x]}"
        timings["rehearsal of v2"] = time.monotonic() - step

        step = time.monotonic()
        canary = fc.run("promote", "v2", "--to", "canary")
        assert canary.code == 0, f"v2 to canary: {canary.stderr[-800:]}"
        assert rows() == ("20261202120000:regular:v1 20261202130000:regular:v2"), \
            f"the regular one ran, the post-deployment one waits: {rows()}"
        assert "wait until production" in canary.stderr, f"says it waits: {canary.stderr}"
        order = kinds(events(fc), "canary")
        last = len(order) - 1 - order[::-1].index("promote")
        assert order[last - 1] == "migrated" and "step" in order[last + 1:], \
            f"the regular migration ran before the rollout's first step: {order[last - 1:]}"
        prod = force("v2", "production")
        assert prod.code == 0, f"v2 to production: {prod.stderr[-800:]}"
        assert rows().endswith("20261202140000:post_deployment:v2"), \
            f"the post-deployment migration ran once production runs v2: {rows()}"
        order = kinds(events(fc), "production")
        assert order[-2:] == ["promoted", "migrated"], f"after the last step: {order[-4:]}"
        status = fc.run("status", "production")
        assert "point of no return 20261202140000" in status.stdout, \
            f"status shows the point of no return: {status.stdout}"
        planned = fc.run("plan", "production", "--json")
        assert planned.code in (0, 2), planned.stderr[-800:]
        said = planned.json()["migrations"]["production/web"]
        assert "v2 would run no migration" in said and "point of no return 20261202140000" \
            in said, f"plan shows pending migrations and the point of no return: {said}"
        timings["v2 canary -> production"] = time.monotonic() - step

        # a rollback to v1 would cross it: refused, then forced with a reason (recorded)
        step = time.monotonic()
        refused = fc.run("rollback", "production")
        assert refused.code == 1, f"refused: {refused.stdout} {refused.stderr}"
        said = [x for x in refused.stderr.splitlines() if x.startswith("fleet: error:")]
        assert len(said) == 1 and "20261202140000_drop_created_at" in said[0] \
            and "point of no return" in said[0], f"one line naming the migration: {said}"
        back = fc.run("rollback", "production", "--force", "--reason", "the test crosses it")
        assert back.code == 0, f"forced rollback: {back.stderr[-800:]}"
        forced = [e for e in events(fc) if e["event"] == "rollback-to"][-1]
        assert forced["reason"] == "the test crosses it" and forced["forced"] is True \
            and "20261202140000" in json.dumps(forced["skipped_gates"]), \
            f"the crossing and its reason are in the history: {forced}"
        timings["rollback refused, forced"] = time.monotonic() - step

        # a broken migration stops the promotion before any node changes
        step = time.monotonic()
        migration(fc, REGULAR, "20261202150000_broken.sql", "ALTER TABLE users ADD COLUMN x int;\nSELEC 1;\n")
        assert fc.run("bake", "web", "--version", "v3").code == 0, "web:v3 baked"
        failed = fc.run("db", "rehearse", "v3", "--env", "canary")
        said = [x for x in failed.stderr.splitlines() if x.startswith("fleet: error:")]
        assert failed.code == 1 and len(said) == 1 and "20261202150000_broken.sql:2:" in said[0], \
            f"the rehearsal fails naming the file and line: {failed.stderr[-800:]}"
        refused = fc.run("promote", "v3", "--to", "canary")
        assert refused.code == 1 and "its rehearsal failed at 20261202150000_broken" \
            in refused.stderr, f"canary refuses v3 after its failed rehearsal: {refused.stderr}"
        fc.edit("fleet.toml", 'pets_from = "production"\nrequire_rehearsal = true',
                'pets_from = "production"')
        before = serving(name)
        broken = fc.run("promote", "v3", "--to", "canary")
        assert broken.code == 1, f"refused: {broken.stderr}"
        line = [x for x in broken.stderr.splitlines() if x.startswith("fleet: error:")]
        assert len(line) == 1 and "20261202150000_broken" in line[0] \
            and "20261202150000_broken.sql:2:" in line[0] and "before any node changed" in line[0], \
            f"one line with the file and line: {line}"
        after = serving(name)
        assert after == before, f"no node changed: {before} -> {after}"
        assert "20261202150000" not in rows() and \
            sql(pet, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'x'") \
            == "0", "nothing of it was committed"
        timings["broken migration"] = time.monotonic() - step

        # kill -9 during a slow migration; the rerun applies each exactly once
        step = time.monotonic()
        (fc.root / REGULAR / "20261202150000_broken.sql").unlink()
        migration(fc, REGULAR, "20261202160000_slow.sql",
                  "CREATE TABLE slow_marker (id int);\nSELECT pg_sleep(3);\n")
        assert fc.run("bake", "web", "--version", "v4").code == 0, "web:v4 baked"
        fc.edit("fleet.toml", 'pets_from = "production"', 'pets_from = "production"\n'
                'require_rehearsal = true')
        unrehearsed = fc.run("promote", "v4", "--to", "canary")
        assert unrehearsed.code == 1 and "requires a rehearsal: it was never rehearsed" \
            in unrehearsed.stderr, f"canary now requires a rehearsal: {unrehearsed.stderr}"
        verdict = Rehearsal("web", "v4", "production", "snap-test", (), True,
                            datetime.now(UTC).isoformat(timespec="seconds"))
        assert lab.consul().put(f"fleet/{name}/rehearsals/web/v4/production", verdict.to_json(),
                                cas=0), "a hand-made passing verdict"
        proc = subprocess.Popen([sys.executable, "-m", "fleet", "-f", str(fc.file), "promote", "v4",
                                 "--to", "canary"], cwd=ROOT, env={**os.environ, **fc.env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sleeping = eventually(lambda: sql(pet, "SELECT count(*) FROM pg_stat_activity WHERE "
                                               "query LIKE 'SELECT pg_sleep(3)%'"), "1", timeout=60)
        assert sleeping == "1", "the slow migration is running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        rerun = fc.run("promote", "v4", "--to", "canary")
        assert rerun.code == 0, f"the rerun finishes: {rerun.stderr[-800:]}"
        assert sql(pet, "SELECT count(*) FROM schema_migrations WHERE id = '20261202160000'") \
            == "1", f"applied exactly once: {rows()}"
        assert sql(pet, "SELECT count(*) FROM slow_marker") == "0", "its table is there, once"
        assert fc.run("status", "canary", "--json").json()[0]["channel"] == "v4", "canary runs v4"
        timings["kill -9, rerun"] = time.monotonic() - step

        # the database down: a rehearsal says so in one line and records nothing
        step = time.monotonic()
        subprocess.run(["docker", "stop", "--time", "5", pet], capture_output=True, timeout=60)
        down = fc.run("db", "rehearse", "v4", "--env", "canary")
        said = [x for x in down.stderr.splitlines() if x.startswith("fleet: error:")]
        assert down.code == 1 and len(said) == 1 and "could not run on a copy of production's " \
            "database" in said[0] and "Traceback" not in down.stderr, f"one line: {down.stderr}"
        kept = lab.consul().get(f"fleet/{name}/rehearsals/web/v4/production")
        assert kept is not None and Rehearsal.from_json(kept.value) == verdict, \
            "the verdict before it stays: a dependency down is no verdict"
        timings["rehearsal, database down"] = time.monotonic() - step
        print(json.dumps({k: round(v, 1) for k, v in timings.items()}))
    finally:
        docker.remove_containers([n for n in docker.lab_containers() if n.startswith(f"{name}-")])
        forget_vault(lab.vault_addr, vault_root_token(lab).reveal(), name)
