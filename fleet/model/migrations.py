"""Schema migrations: what a role declares ([roles.ROLE.migrations] and the environments'
rehearsal settings in fleet.toml), what an image carries, what is pending against a database,
and when a rollback would cross the point of no return. Pure.

The tool: **plain SQL files and a `schema_migrations` table**, applied by psql. A migration is
one file `<numeric id>_<name>.sql` (20261202120000_add_users.sql) in the role's regular
directory (expand: runs before the new code) or its post-deployment one (contract: runs once
every node that reads the database runs the new code), as GitLab splits db/migrate and
db/post_migrate. Why not the others:
- what runs is exactly the file whose sha256 the image records, so "changed after it ran" is a
  byte comparison; Alembic runs Python whose meaning depends on the libraries beside it, and
  needs Python, SQLAlchemy and psycopg in every image that migrates;
- psql (postgresql-client, one Debian package in the role's base) reports an error as
  `psql:FILE:LINE: ERROR: ...`, the file and line the rehearsal report must name; with
  `--single-transaction` and `ON_ERROR_STOP` each file is its own transaction, with its row in
  schema_migrations inserted in that same transaction, so kill -9 leaves a file either applied
  and recorded or not at all (a file that cannot run in a transaction,
  such as CREATE INDEX CONCURRENTLY, says so and must be idempotent);
- `schema_migrations(id, kind, sha256, version, applied_at)` is Rails' table plus the checksum and
  the image version that applied it: the history the point of no return is read from;
- Sqitch (Perl, a plan file, deploy/revert/verify triples) would add a second ordering (its plan)
  beside the ids, and its reverts invite rolling back a contract that already dropped data.
Only `carried_sql` knows the choice: a Sqitch or Alembic listing would produce the same
Migration records, and everything below them (pending, changed, point of no return) stays.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from fleet.errors import FleetError
from fleet.model.grammar import RoleClass
from fleet.model.spec import Problem, did_you_mean, seconds

if TYPE_CHECKING:
    from fleet.model.definition import Fleet

DEFAULT_REGULAR, DEFAULT_POST = "db/migrate", "db/post_migrate"
DEFAULT_REHEARSAL_MAX_AGE = "24h"
DEFAULT_MAX_AGE_SECONDS = seconds(DEFAULT_REHEARSAL_MAX_AGE)
FILE = re.compile(r"(\d+)_([a-z0-9_]+)\.sql")


class MigrationError(FleetError):
    """A migration that cannot be listed, trusted or run."""


class Kind(StrEnum):
    REGULAR = "regular"                   # expand: before the rollout's first step
    POST_DEPLOYMENT = "post_deployment"   # contract: after every reader runs the new code


ORDER = {Kind.REGULAR: 0, Kind.POST_DEPLOYMENT: 1}


@dataclass(frozen=True)
class Migrations:
    """[roles.ROLE.migrations]: the database they change and where the image keeps them."""

    database: str              # a pet role
    regular: str = DEFAULT_REGULAR
    post_deployment: str = DEFAULT_POST
    command: str = ""          # "" = fleet's own runner of plain SQL files (psql)


def declared(role: Mapping[str, Any]) -> Migrations | None:
    """A validated role's [migrations] with its defaults; None for a role without."""
    table = role.get("migrations")  # optional table
    if table is None:
        return None
    return Migrations(table["database"], table.get("regular", DEFAULT_REGULAR),
                      table.get("post_deployment", DEFAULT_POST), table.get("command", ""))


def max_age_seconds(env: Mapping[str, Any]) -> int:
    return seconds(env.get("rehearsal_max_age", DEFAULT_REHEARSAL_MAX_AGE))  # optional key


def problems(data: Mapping[str, Any]) -> list[Problem]:
    """What is wrong in the roles' [migrations] and the environments' rehearsal settings."""
    found: list[Problem] = []
    roles: Mapping[str, Any] = data["roles"]
    for rname, role in roles.items():
        decl, path = declared(role), f"roles.{rname}.migrations"
        if decl is None:
            continue
        if role["class"] != RoleClass.CATTLE:
            found.append((path, f"migrations belong to a cattle role's image, not to a "
                                f"{role['class']} role"))
        db = decl.database
        if db not in roles:
            found.append((f"{path}.database", f'unknown role "{db}"{did_you_mean(db, roles)}'))
        elif roles[db]["class"] != RoleClass.PET:
            found.append((f"{path}.database", f'"{db}" is a {roles[db]["class"]} role: the '
                                              "database must be a pet role"))
        elif db not in role.get("depends_on", ()):
            found.append((f"{path}.database", f'{rname} does not depend on "{db}": add it to '
                                              f"roles.{rname}.depends_on"))
        for key in ("regular", "post_deployment"):
            if ".." in getattr(decl, key).split("/"):
                found.append((f"{path}.{key}", "must stay inside the fleet's directory (no '..')"))
        a, b = decl.regular.rstrip("/"), decl.post_deployment.rstrip("/")
        if a == b or a.startswith(b + "/") or b.startswith(a + "/"):
            found.append((f"{path}.post_deployment", f'"{decl.post_deployment}" and regular '
                                                     f'"{decl.regular}" must be separate directories'))
    for i, env in enumerate(data["environments"]):
        where = f"environments[{i}].rehearsal_max_age"
        if "rehearsal_max_age" in env and not env.get("require_rehearsal", False):
            found.append((where, "has no effect without require_rehearsal = true"))
        elif "rehearsal_max_age" in env and max_age_seconds(env) == 0:
            found.append((where, "must be longer than 0s (a rehearsal is never that fresh)"))
    return found


@dataclass(frozen=True)
class Migration:
    """One migration an image carries."""

    id: str        # the numeric prefix of its file name: 20261202120000
    name: str      # the rest: add_users
    kind: Kind
    sha256: str    # of its text, as the image carries it

    @property
    def key(self) -> tuple[int, int, str]:
        """The order migrations run in: regular before post-deployment, each by numeric id."""
        return ORDER[self.kind], int(self.id), self.name

    @property
    def label(self) -> str:
        return f"{self.id}_{self.name} ({self.kind})"


@dataclass(frozen=True)
class Applied:
    """One migration a database has run: its row in schema_migrations."""

    id: str
    kind: Kind
    sha256: str
    version: str   # the image version that applied it
    at: str = ""   # ISO 8601, UTC


def migration(filename: str, text: bytes, kind: Kind) -> Migration:
    """The migration in one file `<digits>_<name>.sql` of a migrations directory."""
    found = FILE.fullmatch(filename)
    if not found:
        raise MigrationError(f'migration file "{filename}" is not named <digits>_<name>.sql',
                             "name it like 20261202120000_add_users.sql (lower case, digits, _)")
    return Migration(found[1], found[2], kind, hashlib.sha256(text).hexdigest())


def ordered(migrations: Iterable[Migration]) -> tuple[Migration, ...]:
    return tuple(sorted(migrations, key=lambda m: m.key))


def carried_sql(regular: Mapping[str, bytes],
                post_deployment: Mapping[str, bytes]) -> tuple[Migration, ...]:
    """The migrations an image carries, from its two directories (file name -> text), in the
    order they run. Files not ending in .sql (a README) are not migrations; an id used twice
    (schema_migrations keys by id) is refused."""
    found = [migration(name, text, kind)
             for kind, files in ((Kind.REGULAR, regular), (Kind.POST_DEPLOYMENT, post_deployment))
             for name, text in files.items() if name.endswith(".sql")]
    seen: dict[str, Migration] = {}
    for m in found:
        if m.id in seen:
            raise MigrationError(f"migration id {m.id} is used twice: {seen[m.id].label} and "
                                 f"{m.label}", "give one of them a new id (a newer timestamp)")
        seen[m.id] = m
    return ordered(found)


def to_record(migrations: Iterable[Migration]) -> list[dict[str, str]]:
    """The migrations as an image's catalog record keeps them (JSON)."""
    return [asdict(m) for m in ordered(migrations)]


def from_record(rows: Iterable[Mapping[str, str]]) -> tuple[Migration, ...]:
    try:
        return ordered(Migration(r["id"], r["name"], Kind(r["kind"]), r["sha256"]) for r in rows)
    except (KeyError, ValueError) as exc:
        raise MigrationError(f"an image's migration record is unreadable ({exc})",
                             "it was written by another tool; bake the image again") from exc


def pending(carried: Iterable[Migration], applied: Iterable[Applied]) -> tuple[Migration, ...]:
    """carried - applied, in the order they run: regular first, then post-deployment, each by
    id. A migration older than one already applied still runs (a branch merged late)."""
    done = {a.id for a in applied}
    return ordered(m for m in carried if m.id not in done)


@dataclass(frozen=True)
class Changed:
    """A migration that ran, carried again with other text or moved to the other directory."""

    migration: Migration
    applied: Applied

    def line(self) -> str:
        a, m = self.applied, self.migration
        if a.kind != m.kind:
            return f"migration {m.id}_{m.name} ran as {a.kind} (by {a.version}) and is now {m.kind}"
        return (f"migration {m.label} changed after it ran: {a.version} applied sha256 "
                f"{a.sha256[:12]}, this image carries {m.sha256[:12]}")


def changed(carried: Iterable[Migration], applied: Iterable[Applied]) -> tuple[Changed, ...]:
    """The applied migrations whose carried file differs from what ran, in run order."""
    ran = {a.id: a for a in applied}
    return tuple(Changed(m, ran[m.id]) for m in ordered(carried)
                 if m.id in ran and (ran[m.id].sha256 != m.sha256 or ran[m.id].kind != m.kind))


def runnable(carried: Iterable[Migration], applied: Iterable[Applied]) -> tuple[Migration, ...]:
    """What to run: the pending migrations, refused when any migration that ran has changed."""
    carried, applied = tuple(carried), tuple(applied)
    bad = changed(carried, applied)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise MigrationError(bad[0].line() + more,
                             "never edit a migration that ran: restore it and add a new one")
    return pending(carried, applied)


def crosses_point_of_no_return(applied: Iterable[Applied],
                               carried: Iterable[Migration]) -> tuple[Applied, ...]:
    """The post-deployment migrations a rollback to the version carrying `carried` would cross:
    those the database ran that the version predates (does not carry). Empty = safe. A
    post-deployment migration contracts the schema (drops what old code reads), so only code
    written with it may run after it. Regular ones expand only: old code still runs on them."""
    knows = {m.id for m in carried}
    return tuple(sorted((a for a in applied if a.kind is Kind.POST_DEPLOYMENT
                         and a.id not in knows), key=lambda a: int(a.id)))


def point_of_no_return(applied: Iterable[Applied]) -> Applied | None:
    """The newest post-deployment migration the database ran (what `fleet status` shows):
    no version older than the one that applied it, and carrying it, may serve again."""
    post = [a for a in applied if a.kind is Kind.POST_DEPLOYMENT]
    return max(post, key=lambda a: (a.at, int(a.id))) if post else None


def sharing(fleet: Fleet, env: str) -> tuple[str, ...]:
    """The environments whose nodes use env's database: its pets' owner and every borrower."""
    owner = fleet.environment(env).pets_env
    return tuple(e.name for e in fleet.environments if e.pets_env == owner)


def post_deployment_ready(fleet: Fleet, database_env: str, versions_by_env: Mapping[str, str],
                          version: str) -> tuple[str, ...]:
    """The environments that must run `version` before its post-deployment migrations may run
    on database_env's database (every environment that shares it: the canary reads production's);
    empty = ready. versions_by_env: environment -> the version of the role running there; an
    environment where the role runs nothing reads nothing and waits for no one."""
    return tuple(env for env in sharing(fleet, database_env)
                 if versions_by_env.get(env, "") not in ("", version))


def of_kind(migrations: Iterable[Migration], kind: Kind) -> tuple[Migration, ...]:
    """The migrations of one kind, in the order they run."""
    return ordered(m for m in migrations if m.kind is kind)


def crossing_line(role: str, version: str, crossed: Iterable[Applied],
                  names: Mapping[str, str] | None = None) -> str:
    """Why running `version` of role again would cross the point of no return (crossed:
    crosses_point_of_no_return's answer, not empty; names: id -> name where known)."""
    crossed = tuple(crossed)
    first = crossed[0]
    name = (names or {}).get(first.id, "")
    more = f" (and {len(crossed) - 1} more)" if len(crossed) > 1 else ""
    when = f" at {first.at}" if first.at else ""
    label = f"{first.id}_{name}" if name else first.id
    return (f"{role} {version} would cross the point of no return: post-deployment migration "
            f"{label} ran (applied by {first.version}{when}){more} and {version} predates it")
