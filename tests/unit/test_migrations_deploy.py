"""Migrations carried by images and applied by deploys: the runner's output parsed (golden
files of fleet-migrate's real output against PostgreSQL 15), its docker argv, the image
record's migrations, the bake inputs, the rehearsal verdict a promotion reads, and the lines
a refused rollback says."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleet.adapters import postgres
from fleet.adapters.consul import Entry
from fleet.model.image import ImageRecord
from fleet.model.migrations import (
    Applied,
    Kind,
    carried_sql,
    crosses_point_of_no_return,
    crossing_line,
    from_record,
    of_kind,
    to_record,
)
from fleet.model.rehearsal import MigrationRun, Rehearsal, rehearsal_problem
from fleet.model.secret import Secret
from fleet.services import bakeinputs, database
from fleet.services.context import load
from tests.conftest import EXAMPLE, ROOT

GOLDEN = ROOT / "tests" / "golden" / "fleet-migrate"
DB = postgres.Database("gitlab-postgres-01", 5432, "gitlab", "gitlab", Secret("s3cret-pw"))


def test_applied_rows_parse_and_an_empty_database_has_none() -> None:
    rows = postgres.parse_applied((GOLDEN / "applied.json").read_text())
    assert [r.id for r in rows] == ["20261202120000", "20261202140000", "20261202150000",
                                    "20261202160000"], "every row, oldest first"
    assert rows[1].kind is Kind.POST_DEPLOYMENT, "the kind is read"
    assert rows[0].version == "v1" and rows[0].at.endswith("+00:00"), "version and UTC time"
    assert len(rows[0].sha256) == 64, "the sha256 the runner recorded"
    assert postgres.parse_applied((GOLDEN / "applied-empty.json").read_text()) == (), \
        "no schema_migrations table: nothing applied"


def test_a_run_parses_per_migration_with_psqls_file_and_line() -> None:
    ran = postgres.parse_run((GOLDEN / "apply-failed.jsonl").read_text())
    assert [r.status for r in ran] == [postgres.Status.SKIPPED, postgres.Status.APPLIED,
                                       postgres.Status.FAILED], "skipped, applied, failed"
    bad = ran[-1]
    assert bad.error.startswith("psql:") and "_broken.sql:1: ERROR:" in bad.error, \
        f"the error names the file and line: {bad.error}"
    locked = postgres.parse_run((GOLDEN / "apply-lock-timeout.jsonl").read_text())[-1]
    assert "lock timeout" in locked.error and locked.status is postgres.Status.FAILED, \
        "a lock it could not get within lock_timeout fails the migration"
    down = postgres.parse_run((GOLDEN / "apply-unreachable.jsonl").read_text())
    assert len(down) == 1 and "Connection refused" in down[0].error, \
        "a database that is down fails the first migration, saying so"


def test_output_that_is_not_the_runners_is_refused() -> None:
    with pytest.raises(postgres.MigrateError, match="cannot read"):
        postgres.parse_run('{"id": "1", "name": "x"}\n')
    with pytest.raises(postgres.MigrateError, match="cannot read"):
        postgres.parse_applied("ERROR: no such thing")


def test_the_runner_runs_on_the_lab_network_and_the_password_never_reaches_argv() -> None:
    argv = postgres.runner_argv("sha256:abc", "fleet-lab", DB, ["applied"])
    assert argv[:3] == ["docker", "run", "--rm"], "a one-shot container"
    assert argv[argv.index("--network") + 1] == "fleet-lab", "on the lab's network"
    assert argv[argv.index("--entrypoint") + 1] == postgres.RUNNER, "fleet-migrate, not fleet-init"
    assert "--env=PGPASSWORD" in argv, "the password by name, from the client's environment"
    assert not any("s3cret-pw" in a for a in argv), "never the password itself"
    assert "--env=PGHOST=gitlab-postgres-01" in argv and argv[-1] == "applied", argv


def test_an_image_record_lists_its_migrations_and_old_records_still_load() -> None:
    carried = carried_sql({"20261202120000_create_users.sql": b"CREATE TABLE users ();\n"},
                          {"20261203100000_drop_x.sql": b"SELECT 1;\n"})
    record = ImageRecord("web", "v1", "d" * 64, "sha256:1", "lab", "docker", "base:1", "sha256:b",
                         "c0ffee", False, "1.6.6", "2026-12-02T12:00:00+00:00", "me@here",
                         migrations=tuple(to_record(carried)))
    again = ImageRecord.from_json(record.to_json())
    assert again == record, "a record with migrations round-trips"
    assert from_record(again.migrations) == carried, "and gives back what the image carries"
    old = json.loads(record.to_json())
    del old["migrations"]
    assert ImageRecord.from_json(json.dumps(old)).migrations == (), \
        "a record baked before images carried migrations loads with none"


def test_the_example_web_carries_its_migrations_and_they_are_bake_inputs(tmp_path: Path) -> None:
    ctx = load(EXAMPLE)
    web = ctx.fleet.role("web")
    assert web.migrations is not None and web.migrations.database == "postgres", \
        "the example's web declares its migrations on postgres"
    carried = bakeinputs.carried(ctx, web)
    assert [m.name for m in of_kind(carried, Kind.REGULAR)] == ["create_users"], \
        "db/migrate's create_users is a regular migration"
    assert bakeinputs.carried(ctx, ctx.fleet.role("api")) == (), "api carries none"
    assert any(k.startswith("migrations/regular/") for k in bakeinputs.files(ctx, web)), \
        "the migration files are inputs of web's image digest"
    staged = bakeinputs.stage_migrations(ctx, web, tmp_path / "staged")
    assert sorted(p.name for p in (staged / "regular").iterdir()) == [
        "20261202120000_create_users.sql"], "the bake uploads regular/"
    assert list((staged / "post_deployment").iterdir()) == [], "and an empty post_deployment/"
    empty = bakeinputs.stage_migrations(ctx, ctx.fleet.role("api"), tmp_path / "api")
    assert {p.name for p in empty.iterdir()} == {"regular", "post_deployment"}, \
        "a role without migrations gets both directories, empty"
    upload, scripts = bakeinputs.stage_upload(ctx, web, tmp_path / "upload")
    assert scripts == ["/tmp/fleet/role-0-web.sh"], "the scripts' paths once uploaded"
    assert (upload / "role-0-web.sh").stat().st_mode & 0o111, "the script is executable"
    assert (upload / "common.sh").is_file() and not (upload / "__pycache__").exists(), \
        "packer/scripts/lib beside it, without Python's caches"
    assert [p.name for p in (upload / bakeinputs.MIGRATIONS / "regular").iterdir()] == [
        "20261202120000_create_users.sql"], "and the migrations in one upload"


def test_a_changed_migration_file_changes_the_inputs(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    shutil.copytree(ROOT / "db", root / "db")
    (root / "fleet.toml").write_text(EXAMPLE.read_text())
    ctx = load(root / "fleet.toml")
    web = ctx.fleet.role("web")
    before = {k: p.read_bytes() for k, p in bakeinputs.files(ctx, web).items()
              if k.startswith("migrations/")}
    (root / "db/post_migrate").mkdir()
    (root / "db/post_migrate/20261203100000_drop_x.sql").write_text("SELECT 1;\n")
    after = {k: p.read_bytes() for k, p in bakeinputs.files(ctx, web).items()
             if k.startswith("migrations/")}
    assert set(after) - set(before) == {"migrations/post_deployment/20261203100000_drop_x.sql"}, \
        "a new post-deployment migration is a new input"


class FakeKV:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, key: str) -> Entry | None:
        return Entry(key, self.values[key].encode(), 1) if key in self.values else None


NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)


def test_a_promotion_reads_the_rehearsal_verdict_of_its_version_on_its_databases_data() -> None:
    verdict = Rehearsal("web", "v2", "production", "snap-1", (
        MigrationRun("20261203100000", "add_name", Kind.REGULAR, 0.2),), True,
        (NOW - timedelta(hours=1)).isoformat())
    key = database.rehearsal_key("fleet/gitlab", "web", "v2", "production")
    assert key == "fleet/gitlab/rehearsals/web/v2/production", "the key the verdict is read at"
    kv = FakeKV({key: verdict.to_json()})
    read = database.read_rehearsal(kv, "fleet/gitlab", "web", "v2", "production")
    assert read == verdict, "the verdict as recorded"
    assert rehearsal_problem(read, 86400, NOW, version="v2", env="production") == "", \
        "a passing verdict an hour old admits v2"
    assert "12h" not in rehearsal_problem(read, 1800, NOW, version="v2", env="production") and \
        "old" in rehearsal_problem(read, 1800, NOW, version="v2", env="production"), \
        "a verdict older than the limit does not"
    assert database.read_rehearsal(kv, "fleet/gitlab", "web", "v3", "production") is None
    failed = replace(verdict, passed=False, migrations=(replace(
        verdict.migrations[0], error="psql:/opt/fleet/migrations/regular/x.sql:2: ERROR: x"),))
    assert "x.sql:2" in rehearsal_problem(failed, 86400, NOW, version="v2", env="production"), \
        "a failed rehearsal says where it failed"


def test_a_refused_rollback_names_the_post_deployment_migration() -> None:
    applied = (Applied("20261202120000", Kind.REGULAR, "a" * 64, "v1", "2026-12-02T12:00:00+00:00"),
               Applied("20261203100000", Kind.POST_DEPLOYMENT, "b" * 64, "v2",
                       "2026-12-03T10:00:00+00:00"))
    v1 = carried_sql({"20261202120000_create_users.sql": b"x"}, {})
    crossed = crosses_point_of_no_return(applied, v1)
    line = crossing_line("web", "v1", crossed, {"20261203100000": "drop_legacy_name"})
    assert "20261203100000_drop_legacy_name" in line and "applied by v2" in line \
        and "v1 predates it" in line, line
    assert "point of no return" in crossing_line("web", "v1", crossed), "without names too"


# ---- what a promotion decides (promote.migrate), on a fake promoter and database ----------

def image(version: str, regular: dict[str, bytes], post: dict[str, bytes]) -> ImageRecord:
    return ImageRecord("web", version, version * 8, f"sha256:{version}", "lab", "docker", "b", "b",
                       "c", False, "1.6.6", "2026-12-02T12:00:00+00:00", "me",
                       migrations=tuple(to_record(carried_sql(regular, post))))


V1 = image("v1", {"1_create_users.sql": b"a"}, {})
V2 = image("v2", {"1_create_users.sql": b"a", "2_add_name.sql": b"b"}, {"3_drop_x.sql": b"c"})
RAN_V2 = (Applied("1", Kind.REGULAR, carried_sql({"1_create_users.sql": b"a"}, {})[0].sha256, "v1"),
          Applied("3", Kind.POST_DEPLOYMENT, "c" * 64, "v2", "2026-12-03T10:00:00+00:00"))


class FakeCatalog:
    def records(self, role: str) -> list[ImageRecord]:
        return [V1, V2]


class FakePromoter:
    def __init__(self, text: str, kv: FakeKV) -> None:
        from types import SimpleNamespace

        from fleet.model.definition import parse

        self.ctx = SimpleNamespace(fleet=parse(text))
        self.catalog = FakeCatalog()
        self.consul = kv

    def record(self, role: str, version: str) -> ImageRecord | None:
        return {"v1": V1, "v2": V2}.get(version)


@pytest.fixture
def fake_database(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Applied, ...]]:
    """database.target and database.applied answer from a list the test sets."""
    answers: list[tuple[Applied, ...]] = [()]
    monkeypatch.setattr(database, "target", lambda ctx, role, env: database.Target(
        role.name, ctx.fleet.environment(env).pets_env, "postgres-01", DB))
    monkeypatch.setattr(database, "applied", lambda ctx, t, image, wait=0.0: answers[0])
    return answers


def test_the_automatic_rollback_stops_rather_than_cross(fake_database: list[Any]) -> None:
    from types import SimpleNamespace

    from fleet.workflows.promote import migrate

    p: Any = FakePromoter(EXAMPLE.read_text(), FakeKV({}))
    rollout = SimpleNamespace(env="production", roles=("web",), previous={"web": "v1"})
    fake_database[0] = RAN_V2
    said = migrate.guard(p, rollout)
    assert "3_drop_x" in said and "v1 predates it" in said, f"stops, naming it: {said}"
    fake_database[0] = RAN_V2[:1]
    assert migrate.guard(p, rollout) == "", "no post-deployment migration ran: it may go back"


def test_require_rehearsal_admits_pending_migrations_only_with_a_fresh_pass(
        fake_database: list[Any]) -> None:
    from fleet.workflows.promote import migrate

    text = EXAMPLE.read_text().replace('pets_from = "production"',
                                       'pets_from = "production"\nrequire_rehearsal = true')
    fake_database[0] = RAN_V2[:1]
    p: Any = FakePromoter(text, FakeKV({}))
    found = migrate.problems(p, "canary", "v2", ["web"], rollback=False)
    assert len(found) == 1 and "never rehearsed" in found[0] and "production's database" in found[0], \
        found
    passed = Rehearsal("web", "v2", "production", "s", (), True,
                       datetime.now(UTC).isoformat(timespec="seconds"))
    p.consul = FakeKV({"fleet/gitlab/rehearsals/web/v2/production": passed.to_json()})
    assert migrate.problems(p, "canary", "v2", ["web"], rollback=False) == [], \
        "a passing verdict on production's data admits v2 to the canary"
    assert migrate.problems(p, "staging", "v2", ["web"], rollback=False) == [], \
        "staging requires none"
    fake_database[0] = RAN_V2
    crossing = migrate.problems(p, "production", "v1", ["web"], rollback=True)
    assert len(crossing) == 1 and "point of no return" in crossing[0], crossing


def test_a_plan_before_the_database_pet_runs_says_so_without_asking_it() -> None:
    ctx = load(EXAMPLE)
    web = ctx.fleet.role("web")
    said = database.schema(ctx, web, "staging", V1, running=set())
    owner = database.database_env(ctx, "staging")
    instance = ctx.fleet.role("postgres").instances[owner][0]
    assert said.error == (f"postgres {instance} in {owner} is not running (fleet apply creates "
                          "or starts it)"), said
    assert said.pending == () and said.point_of_no_return == ""
