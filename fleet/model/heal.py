"""A role's `heal` (fleet.toml `[roles.R] heal`): what `fleet reconcile` may do about its drift.
Report-only by default; cattle "report" | "replace", pets and snowflakes "report" | "converge"
(fleet/model/reconcile.py says what each means). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from fleet.model.grammar import RoleClass


class Heal(StrEnum):
    REPORT = "report"       # drift is reported, never acted on (the default)
    REPLACE = "replace"     # cattle: a node that is gone is replaced through Terraform
    CONVERGE = "converge"   # pets, snowflakes: converged in place (never replaced)


ALLOWED: Mapping[RoleClass, tuple[Heal, ...]] = {
    RoleClass.CATTLE: (Heal.REPORT, Heal.REPLACE),
    RoleClass.PET: (Heal.REPORT, Heal.CONVERGE),
    RoleClass.SNOWFLAKE: (Heal.REPORT, Heal.CONVERGE),
}


def heal_problem(cls: RoleClass, value: str) -> str:
    """'' when VALUE is a heal a role of CLS may take; else why not (for fleet validate)."""
    allowed = ALLOWED[cls]
    if value in allowed:
        return ""
    said = " or ".join(f'"{h.value}"' for h in allowed)
    if value in {h.value for h in Heal}:
        why = {RoleClass.CATTLE: "cattle are replaced, never changed in place",
               RoleClass.PET: "a pet is never replaced by the reconciler: its data lives there",
               RoleClass.SNOWFLAKE: "a snowflake is never replaced by the reconciler"}[cls]
        return f'a {cls.value} role cannot heal = "{value}" ({why}); use {said}'
    return f'unknown heal "{value}": a {cls.value} role takes {said}'
