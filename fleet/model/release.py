"""A release: one version walked through the promotion chain (`fleet release`). Pure: what to do
in each environment of the chain, decided from what the workflow read there.

A release keeps no state of its own. Where it stands is read again on every run from what the
promotions left: each role's channel and each environment's rollout. So a rerun of the same
release, after it stopped at an approval gate or was killed, skips the environments that
already run the version and carries on from the first that does not.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from enum import StrEnum

from fleet.errors import FleetError
from fleet.model.definition import Environment, Fleet
from fleet.model.promotion import Purpose, Rollout, RolloutState
from fleet.model.spec import did_you_mean


class ReleaseError(FleetError):
    """A release refused before it starts, or stopped on the way."""


class Step(StrEnum):
    """What a release does in one environment of the chain."""

    SKIP = "skip"            # every role already runs the version there
    PROMOTE = "promote"      # promote it there (no approval needed, or --yes-to gave it)
    CARRY_ON = "carry-on"    # a rollout to the version was left unfinished there: carry it on
    ASK = "ask"              # manual approval needed and not given: ask on a terminal, or stop


class Outcome(StrEnum):
    """How one environment of a release ended."""

    SKIPPED = "skipped"
    PROMOTED = "promoted"
    AWAITING_APPROVAL = "awaiting-approval"
    FAILED = "failed"


class ReleaseState(StrEnum):
    """How a whole release ended. Awaiting approval is an outcome, not a failure."""

    RELEASED = "released"
    AWAITING_APPROVAL = "awaiting-approval"
    FAILED = "failed"


def approved_to(fleet: Fleet, yes_to: str) -> int:
    """How far `--yes-to ENV` approves: the position of ENV in the chain (-1 without it).

    ENV must be an environment of the chain: an unknown name or an ephemeral environment
    (outside the chain, it is never released to) is one clear error.
    """
    if not yes_to:
        return -1
    order = [e.name for e in fleet.chain]
    if yes_to in order:
        return order.index(yes_to)
    known = yes_to in fleet.env_names()
    why = ("an ephemeral environment, outside the promotion chain" if known
           else "not an environment of the chain" + did_you_mean(yes_to, order))
    raise ReleaseError(f'--yes-to "{yes_to}" is {why}',
                       f"name one of the chain: {' -> '.join(order)}")


def carries_on(rollout: Rollout | None, version: str, roles: Sequence[str]) -> bool:
    """Whether ROLLOUT is a promotion of VERSION, of every one of ROLES, left unfinished (its
    command killed). It was approved when it started, so a release carries it on without
    asking again; a rollback under way is not one (it was a failure, a new attempt asks)."""
    return (rollout is not None and rollout.state is RolloutState.ROLLING
            and rollout.purpose is Purpose.PROMOTE and rollout.version == version
            and set(roles) <= set(rollout.roles))


def runs(channels: Sequence[str | None], rollout: Rollout | None, version: str) -> bool:
    """Whether an environment already runs VERSION: every role's channel ('' or None for none)
    is at it and no rollout there is unfinished."""
    return (bool(channels) and all(c == version for c in channels)
            and (rollout is None or rollout.finished))


def decide(env: Environment, position: int, approved: int, *, running: bool,
           unfinished: bool) -> Step:
    """What to do in ENV, at POSITION in the chain, when --yes-to approves up to APPROVED."""
    if running:
        return Step.SKIP
    if unfinished:
        return Step.CARRY_ON
    if env.manual_approval and position > approved:
        return Step.ASK
    return Step.PROMOTE


def go_on(version: str, env: str, roles: Sequence[str]) -> str:
    """The command that carries a release stopped at ENV's approval gate on."""
    words = ["fleet", "release", version]
    for role in roles:
        words += ["--role", role]
    return shlex.join([*words, "--yes-to", env])
