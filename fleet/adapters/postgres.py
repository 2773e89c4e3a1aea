"""PostgreSQL's schema migrations through fleet-migrate, the runner every image carries
(packer/base/fleet-migrate): run in a one-shot container of a role's image on the lab's network,
against a database named by libpq's environment. Build argv, run, parse strictly.

The password never reaches argv: `docker run --env PGPASSWORD` (a name without a value) takes
it from the docker client's environment, which is ours for that one call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from fleet.adapters import process
from fleet.errors import FleetError
from fleet.model.migrations import Applied, Kind
from fleet.model.secret import Secret

RUNNER = "/usr/local/sbin/fleet-migrate"
APPLY_TIMEOUT = 3600.0   # seconds a run of migrations may take, all of them
READ_TIMEOUT = 120.0


class MigrateError(FleetError):
    """The runner's output is not what it promises, or the database could not be read."""


class Status(StrEnum):
    APPLIED = "applied"
    SKIPPED = "skipped"   # already recorded: an earlier run (perhaps killed) committed it
    FAILED = "failed"


@dataclass(frozen=True)
class Ran:
    """One migration as fleet-migrate reports it."""

    id: str
    name: str
    kind: Kind
    seconds: float
    status: Status
    error: str = ""   # psql's "psql:FILE:LINE: ERROR:  ..." line
    locks: tuple[str, ...] = ()   # the relation locks its transaction held: "AccessExclusiveLock users"

    @property
    def label(self) -> str:
        return f"{self.id}_{self.name} ({self.kind})"


@dataclass(frozen=True)
class Database:
    """Where a database is, as libpq's environment says it (the password apart)."""

    host: str
    port: int
    name: str
    user: str
    password: Secret

    def env(self) -> dict[str, str]:
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGDATABASE": self.name,
                "PGUSER": self.user}


def runner_argv(image: str, network: str, db: Database, command: list[str]) -> list[str]:
    """`docker run --rm` of image's fleet-migrate on the lab's network (as docker.throwaway_argv,
    with a network); PGPASSWORD by name only."""
    argv = ["docker", "run", "--rm", "--pull", "never", "--network", network,
            "--label", "fleet.throwaway=1", "--entrypoint", RUNNER]
    argv += [f"--env={k}={v}" for k, v in sorted(db.env().items())]
    return [*argv, "--env=PGPASSWORD", image, *command]


def parse_applied(text: str) -> tuple[Applied, ...]:
    """`fleet-migrate applied`: one JSON list of schema_migrations rows."""
    try:
        rows = json.loads(text)
        return tuple(Applied(r["id"], Kind(r["kind"]), r["sha256"], r["version"], r["applied_at"])
                     for r in rows)
    except (KeyError, TypeError, ValueError) as exc:
        raise MigrateError(f"fleet-migrate applied printed what fleet cannot read ({exc}): "
                           f"{text.strip()[:200]}", "the image's runner is not fleet's") from exc


def parse_run(text: str) -> tuple[Ran, ...]:
    """`fleet-migrate apply`: one JSON line per migration it took."""
    found = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            found.append(Ran(r["id"], r["name"], Kind(r["kind"]), float(r["seconds"]),
                             Status(r["status"]), r["error"],
                             tuple(str(x) for x in r.get("locks", ()))))
        except (KeyError, TypeError, ValueError) as exc:
            raise MigrateError(f"fleet-migrate apply printed a line fleet cannot read ({exc}): "
                               f"{line.strip()[:200]}", "the image's runner is not fleet's") from exc
    return tuple(found)


def _why(result: process.Result) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    return lines[-1].removeprefix("fleet-migrate: ") if lines else f"exit {result.returncode}"


def applied(image: str, network: str, db: Database) -> tuple[Applied, ...]:
    """What the database has run (its schema_migrations rows; none before the first run)."""
    result = process.run(runner_argv(image, network, db, ["applied"]), check=False,
                         env={"PGPASSWORD": db.password.reveal()}, timeout=READ_TIMEOUT)
    if result.returncode != 0:
        raise MigrateError(f"cannot read the migrations {db.name} at {db.host} ran: "
                           f"{_why(result)}", "is the database up, and its password in Vault "
                           "the one it knows? (fleet status, fleet secrets check)")
    return parse_applied(result.stdout)


def apply(image: str, network: str, db: Database, version: str, ids: list[str], *,
          lock_timeout: str = "5s") -> tuple[Ran, ...]:
    """Run the migrations `ids`, in order, stopping at the first that fails; what each did.
    A run that fails before any migration (the database down) is one failed Ran for the first."""
    command = ["apply", "--version", version, "--lock-timeout", lock_timeout, *ids]
    result = process.run(runner_argv(image, network, db, command), check=False,
                         env={"PGPASSWORD": db.password.reveal()}, timeout=APPLY_TIMEOUT)
    ran = parse_run(result.stdout)
    if result.returncode != 0 and not any(r.status is Status.FAILED for r in ran):
        raise MigrateError(f"fleet-migrate failed in {image[7:19] or image}: {_why(result)}",
                           "the image may predate fleet-migrate: bake it again")
    return ran
