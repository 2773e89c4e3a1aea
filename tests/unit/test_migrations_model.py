"""Schema migrations, the pure model: [roles.ROLE.migrations] and the environments' rehearsal
settings in fleet.toml, the migrations an image carries, what is pending, changed migrations,
the point of no return, shared databases, and the rehearsal verdict."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from fleet.errors import ConfigError
from fleet.model.definition import parse
from fleet.model.grammar import json_schema
from fleet.model.migrations import (
    Applied,
    Kind,
    MigrationError,
    Migrations,
    carried_sql,
    changed,
    crosses_point_of_no_return,
    from_record,
    migration,
    pending,
    point_of_no_return,
    post_deployment_ready,
    runnable,
    sharing,
    to_record,
)
from fleet.model.rehearsal import (
    MigrationRun,
    Rehearsal,
    RehearsalError,
    rehearsal_ok,
    rehearsal_problem,
)
from tests.conftest import EXAMPLE

# the example without web's [migrations] table, which the cases below add in their own ways
TEXT = re.sub(r"\n(# [^\n]*\n)*migrations = \{ database = \"postgres\" \}\n", "\n",
              EXAMPLE.read_text())
FLEET = parse(TEXT)
WEB_HEAD = 'provisioner = { type = "shell", scripts = ["packer/scripts/web.sh"] }\n'
WITH_MIGRATIONS = TEXT.replace(
    WEB_HEAD, WEB_HEAD + 'migrations = { database = "postgres" }\n').replace(
    'batch_size = 2\nmanual_approval = true\n',
    'batch_size = 2\nmanual_approval = true\nrequire_rehearsal = true\nrehearsal_max_age = "12h"\n')


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---- grammar ------------------------------------------------------------------------------

def test_the_example_parses_as_before_with_no_migrations() -> None:
    assert all(r.migrations is None for r in FLEET.roles.values()), "no role declares migrations"
    for env in FLEET.environments:
        assert not env.require_rehearsal, f"{env.name} requires no rehearsal"
        assert env.rehearsal_max_age_seconds == 86400, f"{env.name}: the default age is 24h"
    schema = json_schema()
    role = schema["properties"]["roles"]["additionalProperties"]["properties"]
    assert role["migrations"]["required"] == ["database"], "the schema shows [migrations]"
    env = schema["properties"]["environments"]["items"]["properties"]
    assert {"require_rehearsal", "rehearsal_max_age"} <= set(env), "the schema shows both settings"


def test_migrations_and_rehearsal_settings_parse_with_their_defaults() -> None:
    fleet = parse(WITH_MIGRATIONS)
    assert fleet.role("web").migrations == Migrations("postgres", "db/migrate", "db/post_migrate", ""), \
        "the directories default to db/migrate and db/post_migrate, the command to fleet's runner"
    production = fleet.environment("production")
    assert production.require_rehearsal and production.rehearsal_max_age_seconds == 12 * 3600, \
        "require_rehearsal and rehearsal_max_age are read"
    assert not fleet.environment("staging").require_rehearsal, "staging does not require one"
    full = TEXT.replace(WEB_HEAD, WEB_HEAD + 'migrations = { database = "postgres", regular = '
                        '"app/db/expand", post_deployment = "app/db/contract", command = '
                        '"/opt/app/bin/migrate" }\n')
    assert parse(full).role("web").migrations == Migrations(
        "postgres", "app/db/expand", "app/db/contract", "/opt/app/bin/migrate"), "every key is read"


BAD = [
    ("pet-role", 'scripts = ["packer/scripts/redis.sh"] }\n',
     'scripts = ["packer/scripts/redis.sh"] }\nmigrations = { database = "postgres" }\n',
     "roles.redis.migrations", "migrations belong to a cattle role's image, not to a pet role"),
    ("unknown-database", WEB_HEAD, WEB_HEAD + 'migrations = { database = "postgress" }\n',
     "roles.web.migrations.database", 'unknown role "postgress" (did you mean "postgres"?)'),
    ("database-not-pet", WEB_HEAD, WEB_HEAD + 'migrations = { database = "api" }\n',
     "roles.web.migrations.database", '"api" is a cattle role: the database must be a pet role'),
    ("not-a-dependency", 'scripts = ["packer/scripts/git.sh"] }\n',
     'scripts = ["packer/scripts/git.sh"] }\nmigrations = { database = "postgres" }\n',
     "roles.git.migrations.database", 'git does not depend on "postgres": add it to '
                                      "roles.git.depends_on"),
    ("missing-database", WEB_HEAD, WEB_HEAD + 'migrations = { regular = "db/migrate" }\n',
     "roles.web.migrations.database", "missing required key"),
    ("unknown-key", WEB_HEAD, WEB_HEAD + 'migrations = { database = "postgres", post_deploymnt = "x" }\n',
     "roles.web.migrations.post_deploymnt", 'unknown key (did you mean "post_deployment"?)'),
    ("absolute-dir", WEB_HEAD, WEB_HEAD + 'migrations = { database = "postgres", regular = "/db" }\n',
     "roles.web.migrations.regular", "expected a directory relative to fleet.toml"),
    ("dot-dot", WEB_HEAD, WEB_HEAD + 'migrations = { database = "postgres", regular = "../db" }\n',
     "roles.web.migrations.regular", "must stay inside the fleet's directory (no '..')"),
    ("same-dirs", WEB_HEAD, WEB_HEAD + 'migrations = { database = "postgres", '
                                      'post_deployment = "db/migrate" }\n',
     "roles.web.migrations.post_deployment", 'and regular "db/migrate" must be separate directories'),
    ("nested-dirs", WEB_HEAD, WEB_HEAD + 'migrations = { database = "postgres", '
                                        'post_deployment = "db/migrate/post" }\n',
     "roles.web.migrations.post_deployment", "must be separate directories"),
    ("empty-command", WEB_HEAD, WEB_HEAD + 'migrations = { database = "postgres", command = "" }\n',
     "roles.web.migrations.command", "expected a command line"),
    ("rehearsal-string", "manual_approval = true\n", 'manual_approval = true\nrequire_rehearsal = "yes"\n',
     "environments[2].require_rehearsal", 'expected true or false, got "yes"'),
    ("max-age-bad", "manual_approval = true\n",
     'manual_approval = true\nrequire_rehearsal = true\nrehearsal_max_age = "1 day"\n',
     "environments[2].rehearsal_max_age", 'expected a duration such as "30s"'),
    ("max-age-alone", "manual_approval = true\n", 'manual_approval = true\nrehearsal_max_age = "1h"\n',
     "environments[2].rehearsal_max_age", "has no effect without require_rehearsal = true"),
    ("max-age-zero", "manual_approval = true\n",
     'manual_approval = true\nrequire_rehearsal = true\nrehearsal_max_age = "0s"\n',
     "environments[2].rehearsal_max_age", "must be longer than 0s"),
]


@pytest.mark.parametrize(("case", "old", "new", "path", "message"), BAD, ids=[c[0] for c in BAD])
def test_bad_migration_settings_are_named_with_their_line(case: str, old: str, new: str, path: str,
                                                          message: str) -> None:
    assert TEXT.count(old) == 1, f"{case}: the snippet to replace is unique"
    text = TEXT.replace(old, new)
    with pytest.raises(ConfigError) as caught:
        parse(text)
    lines = caught.value.problems
    hits = [line for line in lines if f": {path}: " in line and message in line]
    assert hits, f"{case}: expected {path}: {message!r} among {lines}"
    assert new.startswith(old), f"{case}: each case adds lines after its snippet"
    number = int(hits[0].split(":")[1])
    assert text.splitlines()[number - 1] == new[len(old):].splitlines()[-1], \
        f"{case}: the line named ({number}) is the added one: {hits[0]}"


# ---- what an image carries ----------------------------------------------------------------

REGULAR = {"20261202120000_add_users.sql": b"CREATE TABLE users (id int);\n",
           "20261130090000_add_projects.sql": b"CREATE TABLE projects (id int);\n",
           "README.md": b"not a migration"}
POST = {"20261203100000_drop_legacy_name.sql": b"ALTER TABLE users DROP COLUMN name;\n"}


def test_an_image_carries_its_migrations_in_run_order() -> None:
    carried = carried_sql(REGULAR, POST)
    assert [(m.id, m.kind) for m in carried] == [
        ("20261130090000", Kind.REGULAR), ("20261202120000", Kind.REGULAR),
        ("20261203100000", Kind.POST_DEPLOYMENT)], "regular first by id, then post-deployment; no README"
    assert carried[1].name == "add_users" and carried[1].sha256 == sha("CREATE TABLE users (id int);\n"), \
        "name and sha256 of the text"
    assert from_record(to_record(carried)) == carried, "the image record round-trips"
    numeric = carried_sql({"9_a.sql": b"", "10_b.sql": b""}, {})
    assert [m.id for m in numeric] == ["9", "10"], "ids sort by number, not as text"
    with pytest.raises(MigrationError, match=r'"add_users\.sql" is not named <digits>_<name>\.sql'):
        carried_sql({"add_users.sql": b""}, {})
    with pytest.raises(MigrationError, match="migration id 20261202120000 is used twice"):
        carried_sql(REGULAR, {"20261202120000_other.sql": b""})
    with pytest.raises(MigrationError, match="unreadable"):
        from_record([{"id": "1", "name": "x", "kind": "sideways", "sha256": ""}])


def applied(m_id: str, kind: Kind, text: str, version: str, at: str = "") -> Applied:
    return Applied(m_id, kind, sha(text), version, at)


def test_pending_is_carried_minus_applied_in_order() -> None:
    carried = carried_sql(REGULAR, POST)
    assert [m.id for m in pending(carried, [])] == [m.id for m in carried], "nothing ran: all pending"
    ran = [applied("20261202120000", Kind.REGULAR, "CREATE TABLE users (id int);\n", "v1")]
    assert [m.id for m in pending(carried, ran)] == ["20261130090000", "20261203100000"], \
        "an older migration merged late still runs, before the post-deployment one"
    everything = [*ran,
                  applied("20261130090000", Kind.REGULAR, "CREATE TABLE projects (id int);\n", "v1"),
                  applied("20261203100000", Kind.POST_DEPLOYMENT,
                          "ALTER TABLE users DROP COLUMN name;\n", "v2")]
    assert pending(carried, everything) == () and runnable(carried, everything) == (), "all ran"
    newer = [*everything, applied("20270101000000", Kind.REGULAR, "x", "v3")]
    assert pending(carried, newer) == (), "a migration a newer version ran is not this one's concern"


def test_a_changed_migration_is_refused() -> None:
    carried = carried_sql(REGULAR, POST)
    edited = [applied("20261202120000", Kind.REGULAR, "CREATE TABLE users (id bigint);\n", "v1")]
    found = changed(carried, edited)
    assert len(found) == 1 and found[0].migration.id == "20261202120000", "the edited file is found"
    with pytest.raises(MigrationError) as caught:
        runnable(carried, edited)
    assert "migration 20261202120000_add_users (regular) changed after it ran: v1 applied" \
        in caught.value.line(), caught.value.line()
    assert "never edit a migration that ran" in caught.value.line(), "the fix says what to do"
    moved = [applied("20261202120000", Kind.POST_DEPLOYMENT, "CREATE TABLE users (id int);\n", "v1")]
    assert "ran as post_deployment (by v1) and is now regular" in changed(carried, moved)[0].line(), \
        "a migration moved to the other directory after it ran is a change too"


# ---- the point of no return ---------------------------------------------------------------

def test_a_rollback_past_an_applied_post_deployment_migration_crosses_the_point_of_no_return() -> None:
    v1 = carried_sql({"1_users.sql": b"a"}, {})
    v2 = carried_sql({"1_users.sql": b"a", "2_add_email.sql": b"b"}, {"3_drop_name.sql": b"c"})
    history = [applied("1", Kind.REGULAR, "a", "v1", "2026-12-01T10:00:00+00:00"),
               applied("2", Kind.REGULAR, "b", "v2", "2026-12-02T10:00:00+00:00")]
    assert crosses_point_of_no_return(history, v1) == (), "only regular (expand) ones ran: v1 is safe"
    assert point_of_no_return(history) is None, "no point of no return yet"
    contracted = [*history, applied("3", Kind.POST_DEPLOYMENT, "c", "v2", "2026-12-03T10:00:00+00:00")]
    crossed = crosses_point_of_no_return(contracted, v1)
    assert [(a.id, a.version) for a in crossed] == [("3", "v2")], "v1 predates 3_drop_name, applied by v2"
    assert crosses_point_of_no_return(contracted, v2) == (), "v2 carries it: safe"
    v3 = carried_sql({"1_users.sql": b"a", "2_add_email.sql": b"b"}, {"3_drop_name.sql": b"c"})
    assert crosses_point_of_no_return(contracted, v3) == (), "a later version carrying it: safe"
    later = [*contracted, applied("4", Kind.POST_DEPLOYMENT, "d", "v3", "2026-12-04T10:00:00+00:00")]
    assert [a.id for a in crosses_point_of_no_return(later, v1)] == ["3", "4"], "all crossed, by id"
    newest = point_of_no_return(later)
    assert newest is not None and (newest.id, newest.version) == ("4", "v3"), "the newest is shown"


# ---- shared databases ---------------------------------------------------------------------

def test_post_deployment_waits_for_every_environment_sharing_the_database() -> None:
    assert sharing(FLEET, "production") == ("canary", "production"), "canary reads production's"
    assert sharing(FLEET, "canary") == ("canary", "production"), "asked through the borrower too"
    assert sharing(FLEET, "staging") == ("staging",), "staging has its own"
    assert post_deployment_ready(FLEET, "production", {"canary": "v2", "production": "v1"}, "v2") \
        == ("production",), "the canary runs v2 but production still runs v1: not yet"
    assert post_deployment_ready(FLEET, "production", {"canary": "v1", "production": "v2"}, "v2") \
        == ("canary",), "a canary still on v1 reads the database: not yet"
    assert post_deployment_ready(FLEET, "production", {"canary": "v2", "production": "v2"}, "v2") \
        == (), "everyone on the database runs v2: ready"
    assert post_deployment_ready(FLEET, "production", {"production": "v2", "staging": "v1"}, "v2") \
        == (), "a canary running nothing waits for no one; staging's database is its own"
    assert post_deployment_ready(FLEET, "staging", {"staging": "v2", "production": "v1"}, "v2") == (), \
        "staging's post-deployment migrations wait only for staging"
    with pytest.raises(ConfigError, match='unknown environment "prod"'):
        post_deployment_ready(FLEET, "prod", {}, "v2")


# ---- the rehearsal verdict ----------------------------------------------------------------

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def verdict(**kw: object) -> Rehearsal:
    runs = (MigrationRun("2", "add_email", Kind.REGULAR, 0.4, ("AccessExclusiveLock users",), 0.01,
                         8192, 16384),
            MigrationRun("3", "drop_name", Kind.POST_DEPLOYMENT, 0.2))
    fields: dict[str, object] = {
        "role": "web", "version": "v2", "env": "production", "snapshot":
        "postgres-01-20261205T110000Z-1a2b3c", "migrations": runs, "passed": True,
        "at": (NOW - timedelta(hours=1)).isoformat(), "by": "ops@ci", "seconds": 3.5}
    fields.update(kw)
    return Rehearsal(**fields)  # type: ignore[arg-type]


def test_a_rehearsal_verdict_round_trips_and_gates_by_age() -> None:
    good = verdict()
    assert Rehearsal.from_json(good.to_json()) == good, "the record round-trips"
    assert good.summary().startswith("passed 2 migration(s) in 3.5s on production's data"), good.summary()
    day = 86400
    assert rehearsal_ok(good, day, NOW), "an hour-old passing rehearsal admits the version"
    assert not rehearsal_ok(good, 1800, NOW), "not when the limit is 30 minutes"
    assert "3600s old" in rehearsal_problem(good, 1800, NOW), "the reason says how old"
    assert not rehearsal_ok(None, day, NOW), "no rehearsal, no entry"
    assert rehearsal_problem(None, day, NOW) == "it was never rehearsed"
    broken = verdict(passed=False, migrations=(
        MigrationRun("2", "add_email", Kind.REGULAR, 0.1,
                     error='psql:db/migrate/2_add_email.sql:3: ERROR: syntax error at or near "COLUM"'),))
    assert Rehearsal.from_json(broken.to_json()) == broken, "a failed one round-trips too"
    assert not rehearsal_ok(broken, day, NOW), "a failed rehearsal admits nothing"
    assert "failed at 2_add_email: psql:db/migrate/2_add_email.sql:3: ERROR" in \
        rehearsal_problem(broken, day, NOW), "the reason names the migration, file and line"
    restore = verdict(passed=False, migrations=(), error="the snapshot's checksum does not match")
    assert "failed: the snapshot's checksum does not match" in restore.summary()
    assert rehearsal_problem(good, day, NOW, version="v3") == "the rehearsal is of v2, not v3"
    assert rehearsal_problem(good, day, NOW, env="staging") == \
        "the rehearsal ran on production's data, not staging's"
    assert rehearsal_problem(good, day, NOW, version="v2", env="production") == "", "it matches"
    assert "no time zone" in rehearsal_problem(replace(good, at="2026-12-05T11:00:00"), day, NOW)
    assert "unreadable" in rehearsal_problem(replace(good, at="yesterday"), day, NOW)
    with pytest.raises(RehearsalError, match="rehearsal record is unreadable"):
        Rehearsal.from_json('{"role": "web"}')
    with pytest.raises(RehearsalError, match="rehearsal record is unreadable"):
        Rehearsal.from_json("not json")


def test_migration_file_names() -> None:
    m = migration("20261202120000_add_users.sql", b"x", Kind.POST_DEPLOYMENT)
    assert (m.id, m.name, m.kind, m.label) == (
        "20261202120000", "add_users", Kind.POST_DEPLOYMENT,
        "20261202120000_add_users (post_deployment)"), "id, name, kind and label"
    for bad in ("20261202120000-add-users.sql", "20261202120000_AddUsers.sql", "1_x.SQL", "_x.sql"):
        with pytest.raises(MigrationError, match="is not named"):
            migration(bad, b"", Kind.REGULAR)
