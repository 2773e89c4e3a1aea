"""What a bake tells: each role's outcome, and the whole command's."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fleet.errors import FleetError


class Outcome(StrEnum):
    BUILT = "built"
    CACHED = "cached"
    VALIDATED = "validated"   # aws: rendered and `packer validate`d, not built here
    SKIPPED = "skipped"       # --all on the lab: a role the lab cannot bake (chef-solo)
    FAILED = "failed"


@dataclass(frozen=True)
class RoleBake:
    role: str
    outcome: Outcome
    version: str = ""
    digest: str = ""
    artifact: str = ""
    seconds: float = 0.0
    detail: str = ""
    log: str = ""


@dataclass(frozen=True)
class BakeReport:
    results: tuple[RoleBake, ...]

    @property
    def ok(self) -> bool:
        return all(r.outcome is not Outcome.FAILED for r in self.results)

    def error(self) -> FleetError | None:
        failed = [r for r in self.results if r.outcome is Outcome.FAILED]
        if not failed:
            return None
        return FleetError(f"bake of {', '.join(r.role for r in failed)} failed: {failed[0].detail}")
