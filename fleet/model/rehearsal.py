"""The verdict of a migration rehearsal (`fleet db rehearse VERSION --env ENV`): a version's
pending migrations run on a copy of an environment's database in a throwaway instance, what
each one did, and whether that verdict admits the version to an environment that sets
`require_rehearsal`. Pure.

A rehearsal is of one role's version against one environment's database (the environment whose
pets serve the one promoted to: the canary's rehearsal is against production's data), taken from
one snapshot; it is recorded in Consul KV like a verify verdict.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from fleet.errors import FleetError
from fleet.model.migrations import Kind


class RehearsalError(FleetError):
    """A rehearsal record that cannot be used."""


@dataclass(frozen=True)
class MigrationRun:
    """What one migration did on the copy."""

    id: str
    name: str
    kind: Kind
    seconds: float
    locks: tuple[str, ...] = ()   # locks it took, as sampled from pg_locks: "AccessExclusiveLock users"
    lock_wait_seconds: float = 0.0   # how long it waited for them (lock_timeout caps it)
    bytes_before: int = 0         # size of the tables it touched, before and after
    bytes_after: int = 0
    error: str = ""               # psql's "FILE:LINE: ERROR: ..."; "" when it ran

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class Rehearsal:
    """The verdict of one rehearsal, as recorded under <prefix>/rehearsals/<role>/<version>/<env>."""

    role: str
    version: str
    env: str            # the environment whose database was copied
    snapshot: str       # the snapshot id the copy was restored from
    migrations: tuple[MigrationRun, ...]   # in the order they ran; stops at the first error
    passed: bool
    at: str             # when it finished (ISO 8601, UTC)
    by: str = ""        # user@host
    seconds: float = 0.0
    error: str = ""     # what failed outside any migration (the restore, the instance); "" if none
    schema_diff: str = ""   # the schema before and after, as a unified diff

    @property
    def failed(self) -> tuple[MigrationRun, ...]:
        return tuple(m for m in self.migrations if not m.ok)

    def summary(self) -> str:
        """One line: 'passed 3 migrations in 4.2s on production's data (snapshot ...) at ...'."""
        if self.passed:
            verdict = f"passed {len(self.migrations)} migration(s) in {self.seconds:.1f}s"
        elif self.failed:
            bad = self.failed[0]
            verdict = f"failed at {bad.id}_{bad.name}: {bad.error}"
        else:
            verdict = f"failed: {self.error or 'no reason recorded'}"
        return f"{verdict} on {self.env}'s data (snapshot {self.snapshot}) at {self.at}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Rehearsal:
        try:
            data: dict[str, Any] = json.loads(text)
            runs = tuple(MigrationRun(**{**m, "kind": Kind(m["kind"]), "locks": tuple(m["locks"])})
                         for m in data["migrations"])
            return cls(**{**{f.name: data[f.name] for f in fields(cls)}, "migrations": runs})
        except (KeyError, TypeError, ValueError) as exc:
            raise RehearsalError(f"rehearsal record is unreadable ({exc})",
                                 "it was written by another tool; rehearse again") from exc


def rehearsal_problem(verdict: Rehearsal | None, max_age: int, now: datetime, *,
                      version: str = "", env: str = "") -> str:
    """Why verdict does not admit a version ("" when it does): it must exist, have passed, be
    of that version and environment's database (when given), and be at most max_age seconds
    old at now (a timezone-aware time)."""
    if verdict is None:
        return "it was never rehearsed"
    if version and verdict.version != version:
        return f"the rehearsal is of {verdict.version}, not {version}"
    if env and verdict.env != env:
        return f"the rehearsal ran on {verdict.env}'s data, not {env}'s"
    if not verdict.passed:
        return f"its rehearsal {verdict.summary()}"
    try:
        at = datetime.fromisoformat(verdict.at)
    except ValueError:
        return f'the rehearsal\'s time "{verdict.at}" is unreadable'
    if at.tzinfo is None:
        return f'the rehearsal\'s time "{verdict.at}" has no time zone'
    age = (now - at).total_seconds()
    if age > max_age:
        return f"its rehearsal is {int(age)}s old (at {verdict.at}); the limit is {max_age}s"
    return ""


def rehearsal_ok(verdict: Rehearsal | None, max_age: int, now: datetime) -> bool:
    """Whether verdict passed and is at most max_age seconds old at now."""
    return not rehearsal_problem(verdict, max_age, now)
