"""What a pet's move (fleet/model/move.py) is told and checks: [roles.ROLE.move] in fleet.toml
(how the data is copied, the cut-over's weights, the soak of each), the Consul service Weights
of source and target at each cut-over step, and the verification diff. Pure.

- Copy methods: "rsync" (the default: over SSH, incremental, so a rerun after kill -9 sends only
  what is missing) or "pg_basebackup" (PostgreSQL's own copy of a running cluster, consistent
  without stopping it; only for a role whose base installs the PostgreSQL server).
- Weights: GitLab's storage weights, through Consul's service Weights. Consul refuses a Passing
  weight below 1, so a share of 0 % is Passing 1 and Warning 0 plus the tag NO_NEW_WORK, which
  whoever picks by weight (the git role) honours; a pet's usual weight is 100.
- Verification: a repository is its refs' checksum (GitLab's repository checksum: every ref
  and the object it points at) and `git fsck` on the target; any other file is its sha256.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise
from typing import Any

from fleet.errors import FleetError
from fleet.model.grammar import RoleClass
from fleet.model.spec import Problem, seconds

METHODS = ("rsync", "pg_basebackup")
DEFAULT_METHOD = "rsync"
DEFAULT_CUTOVER = (10, 50, 100)
DEFAULT_SOAK = "30s"
NO_NEW_WORK = "weight:0"        # a share of 0 %: Consul cannot say Passing 0
READONLY = "readonly"           # the tag a read-only source registers with
FULL_WEIGHT = 100               # a pet's Passing weight when it takes all its traffic
SERVER = re.compile(r"postgresql-\d+")   # the Debian package of the PostgreSQL server
SHOWN = 3                       # differences a summary names


class CutoverError(FleetError):
    """A cut-over schedule that cannot be used."""


@dataclass(frozen=True)
class MoveSettings:
    """[roles.ROLE.move], with its defaults."""

    method: str = DEFAULT_METHOD
    cutover: tuple[int, ...] = DEFAULT_CUTOVER
    soak_seconds: int = seconds(DEFAULT_SOAK)


def declared(role: Mapping[str, Any]) -> MoveSettings | None:
    """A validated role's [move] with its defaults; None for a role without."""
    table = role.get("move")  # optional table
    if table is None:
        return None
    return MoveSettings(table.get("method", DEFAULT_METHOD),
                        tuple(table.get("cutover", DEFAULT_CUTOVER)),
                        seconds(table.get("soak", DEFAULT_SOAK)))


def schedule_problem(weights: Iterable[object]) -> str:
    """Why a cut-over schedule is unusable ("" when it is): the target's share after each step,
    each 1..100, strictly increasing, ending at 100."""
    checked: list[int] = []
    for w in weights:
        if not isinstance(w, int) or isinstance(w, bool) or not 1 <= w <= 100:
            return f"{w!r} is not a percentage from 1 to 100"
        checked.append(w)
    if not checked:
        return "needs at least one step (100)"
    for a, b in pairwise(checked):
        if b <= a:
            return f"must increase step by step ({a} then {b})"
    if checked[-1] != 100:
        return f"must end at 100 (all traffic on the target), not {checked[-1]}"
    return ""


def parse_schedule(text: str) -> tuple[int, ...]:
    """`--cutover 10,50,100`: the schedule, or one CutoverError; "" is the default."""
    if not text.strip():
        return DEFAULT_CUTOVER
    parts = [p.strip().rstrip("%") for p in text.split(",")]
    if not all(re.fullmatch(r"\d+", p) for p in parts):
        raise CutoverError(f'cut-over "{text}" is not a list of percentages',
                           "give them like 10,50,100")
    weights = tuple(int(p) for p in parts)
    problem = schedule_problem(weights)
    if problem:
        raise CutoverError(f'cut-over "{text}" {problem}', "give them like 10,50,100")
    return weights


def problems(data: Mapping[str, Any]) -> list[Problem]:
    """What is wrong in the roles' [move] tables (their shape is grammar.py's MOVE)."""
    found: list[Problem] = []
    for rname, role in data["roles"].items():
        table, path = role.get("move"), f"roles.{rname}.move"  # optional table
        if table is None:
            continue
        if role["class"] != RoleClass.PET:
            found.append((path, f"only a pet role moves, not a {role['class']} role"))
        problem = schedule_problem(table.get("cutover", DEFAULT_CUTOVER))
        if problem:
            found.append((f"{path}.cutover", problem))
        if "soak" in table and seconds(table["soak"]) == 0 and len(table.get("cutover", DEFAULT_CUTOVER)) > 1:
            found.append((f"{path}.soak", "0s holds no step: give each weight time to show "
                                          "the target's health"))
        base = data["bases"].get(role["base"], {})
        if table.get("method") == "pg_basebackup" and not any(
                SERVER.fullmatch(p) for p in base.get("packages", ())):
            found.append((f"{path}.method", f'pg_basebackup copies a PostgreSQL cluster: base '
                                            f'"{role["base"]}" installs no postgresql-NN server'))
    return found


@dataclass(frozen=True)
class Weights:
    """One instance's Consul service Weights, and the tags that go with them."""

    passing: int
    warning: int
    tags: tuple[str, ...] = ()

    def consul(self) -> dict[str, int]:
        return {"Passing": self.passing, "Warning": self.warning}


def weights_for(share: int, full: int = FULL_WEIGHT) -> Weights:
    """An instance taking `share` percent of a pet's traffic, whose whole weight is `full`."""
    if share <= 0:
        return Weights(1, 0, (NO_NEW_WORK,))
    return Weights(max(1, round(full * share / 100)), 1)


def cutover_weights(schedule: Iterable[int], full: int = FULL_WEIGHT) -> list[tuple[Weights, Weights]]:
    """(source, target) Weights at each cut-over step, in order: together they weigh what the
    source weighed alone, so other storages' shares do not change."""
    return [(weights_for(100 - s, full), weights_for(s, full)) for s in schedule]


class Mismatch(StrEnum):
    MISSING = "missing on target"
    EXTRA = "extra on target"
    DIFFERENT = "different"
    BROKEN = "fails git fsck on target"


@dataclass(frozen=True)
class Difference:
    kind: str        # "repository" or "file"
    name: str        # the repository's path, or the file's
    problem: Mismatch
    source: str = ""  # the checksum on each side ("" where absent), or fsck's error
    target: str = ""

    def line(self) -> str:
        if self.problem is Mismatch.DIFFERENT:
            return (f"{self.kind} {self.name} differs ({self.source[:12]} on source, "
                    f"{self.target[:12]} on target)")
        if self.problem is Mismatch.BROKEN:
            return f"{self.kind} {self.name} {self.problem}: {self.target}"
        return f"{self.kind} {self.name} {self.problem}"


def differences(source_repos: Mapping[str, str], target_repos: Mapping[str, str],
                source_files: Mapping[str, str], target_files: Mapping[str, str],
                fsck_errors: Mapping[str, str] | None = None) -> list[Difference]:
    """What differs between source and target, repositories first, then files, each by name:
    repos map a repository to its refs' checksum, files a path to its sha256; fsck_errors a
    target repository to `git fsck`'s first error. Empty = the copy is verified."""
    found: list[Difference] = []
    for kind, src, dst in (("repository", source_repos, target_repos),
                           ("file", source_files, target_files)):
        for name in sorted({*src, *dst}):
            if name not in dst:
                found.append(Difference(kind, name, Mismatch.MISSING, src[name]))
            elif name not in src:
                found.append(Difference(kind, name, Mismatch.EXTRA, "", dst[name]))
            elif src[name] != dst[name]:
                found.append(Difference(kind, name, Mismatch.DIFFERENT, src[name], dst[name]))
            if kind == "repository" and name in dst and (fsck_errors or {}).get(name):
                found.append(Difference(kind, name, Mismatch.BROKEN, "", (fsck_errors or {})[name]))
    return found


def summary(found: Iterable[Difference], shown: int = SHOWN) -> str:
    """One line: 'verify found 5 differences: repository a.git differs (...); ...; and 2 more'."""
    found = list(found)
    if not found:
        return "verify found no difference"
    more = f"; and {len(found) - shown} more" if len(found) > shown else ""
    lines = "; ".join(d.line() for d in found[:shown])
    return f"verify found {len(found)} difference(s): {lines}{more}"
