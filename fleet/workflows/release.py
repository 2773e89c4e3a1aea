"""fleet release: one version walked through the promotion chain, by `fleet promote`.

A release of VERSION goes through `Fleet.chain` (the fixed environments in promotion order;
ephemeral ones are never in it), and in each environment (model.release.decide):
- skips it when every role already runs VERSION there;
- otherwise promotes VERSION there through promote's public entry point, with `wait`, so it
  waits out the soak of the environment before exactly as `fleet promote --wait` does (and
  queues behind another rollout of that environment);
- stops at an environment with manual_approval, unless `--yes-to` approves up to it or the
  person at the terminal says yes (`ask`); with no one to ask that is an outcome, not a
  failure: the report says where it stopped and the command that goes on;
- stops at the first promotion that fails: promote has rolled that environment back by itself
  (or, for a failure outside the rollout, says what is left), and the report says where.

The release keeps no state of its own: a rerun reads the channels and rollouts again, so after
a stop, or a kill -9, the same command skips what is done and carries on; a rollout to VERSION
left unfinished is carried on by promote without asking again (it was approved when it
started). The history gets a `release` event when a release starts to act, then `released`,
or `release-stopped` naming the environment; each promotion records its own events as ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fleet.errors import FleetError
from fleet.model.grammar import RoleClass
from fleet.model.image import check_version
from fleet.model.promotion import image_problems, promotable_roles
from fleet.model.release import (
    Outcome,
    ReleaseError,
    ReleaseState,
    Step,
    approved_to,
    carries_on,
    decide,
    go_on,
    runs,
)
from fleet.services.catalog import Catalog
from fleet.services.context import Context, who
from fleet.services.state import FleetState
from fleet.workflows.promote import STEP_TIMEOUT, Say, promote

Ask = Callable[[str], bool]  # a yes/no question to the person at the terminal


@dataclass(frozen=True)
class ReleaseStep:
    """One environment of the chain, as the release left it."""

    env: str
    outcome: Outcome
    rollout: str = ""        # the rollout that took it there ('' for none)
    steps: int = 0
    seconds: float = 0.0
    carried_on: bool = False
    detail: str = ""


@dataclass(frozen=True)
class ReleaseReport:
    """A release: each environment it reached, how it ended, and where it stopped.

    `stopped_at` is the environment it stopped at ('' once released); `go_on` the command
    that carries on a release awaiting approval; `detail` and `fix` say why it stopped.
    """

    version: str
    roles: tuple[str, ...]
    state: ReleaseState
    steps: tuple[ReleaseStep, ...]
    seconds: float
    stopped_at: str = ""
    go_on: str = ""
    detail: str = ""
    fix: str = ""

    def error(self) -> FleetError | None:
        """A promotion that failed is a failure; awaiting approval is not."""
        if self.state is not ReleaseState.FAILED:
            return None
        return ReleaseError(f"release of {self.version} stopped at {self.stopped_at}: "
                            f"{self.detail}", self.fix)


def release(ctx: Context, version: str, roles: list[str], *, yes_to: str = "",
            ask: Ask | None, say: Say, step_timeout: float = STEP_TIMEOUT) -> ReleaseReport:
    """Walk VERSION through the chain for the roles (every cattle role baked at it by default).

    `ask` puts a manual-approval question to the person at a terminal (None: nobody to ask).
    Bad input (a version not baked, revoked or pruned, an unknown or non-cattle role, a
    --yes-to outside the chain) raises before anything is promoted.
    """
    started = time.monotonic()
    fleet = ctx.fleet
    check_version(version)
    approved = approved_to(fleet, yes_to)
    consul = ctx.consul()
    state = FleetState(consul, fleet.kv_prefix)
    catalog = Catalog(consul, fleet.kv_prefix)
    baked = {r.name: stored.record if (stored := catalog.get(r.name, version)) else None
             for r in fleet.roles.values() if r.cls is RoleClass.CATTLE}
    chosen = promotable_roles(fleet, baked, roles)
    problems = [m for r in chosen for m in image_problems(r, version, baked[r])]
    if problems:
        raise ReleaseError(f"release of {version} refused: {problems[0]}"
                           + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                           "bake it, or release another version")

    def event(kind: str, env: str, **fields: object) -> None:
        state.record({"event": kind, "env": env, "who": who(), "version": version,
                      "roles": chosen, **fields})

    def report(outcome: ReleaseState, done: list[ReleaseStep], **fields: str) -> ReleaseReport:
        return ReleaseReport(version, tuple(chosen), outcome, tuple(done),
                             round(time.monotonic() - started, 1), **fields)

    done: list[ReleaseStep] = []
    acting = False
    for position, env in enumerate(fleet.chain):
        rollout = state.rollout(env.name)
        at = [c.version if (c := state.channel(env.name, r)) else "" for r in chosen]
        step = decide(env, position, approved, running=runs(at, rollout, version),
                      unfinished=carries_on(rollout, version, chosen))
        if step is Step.SKIP:
            say(f"{env.name}: {', '.join(chosen)} already at {version}")
            done.append(ReleaseStep(env.name, Outcome.SKIPPED, detail="already there"))
            continue
        if not acting:
            acting = True
            event("release", "", chain=[e.name for e in fleet.chain], approved_to=yes_to,
                  starts_at=env.name)
        if step is Step.ASK and not (ask is not None and ask(f"promote {version} to "
                                                               f"{env.name}?")):
            why = (f"{env.name} needs manual approval"
                   + (", not given on the terminal" if ask is not None else ""))
            command = go_on(version, env.name, roles)
            event("release-stopped", env.name, reason=why, go_on=command)
            done.append(ReleaseStep(env.name, Outcome.AWAITING_APPROVAL, detail=why))
            return report(ReleaseState.AWAITING_APPROVAL, done, stopped_at=env.name,
                          go_on=command, detail=why)
        if step is Step.CARRY_ON:
            say(f"{env.name}: carrying on the approved rollout of {version} left unfinished")
        try:
            # approval was decided above: --yes-to, the terminal, or a rollout approved before
            promoted = promote(ctx, version, env.name, chosen, wait=True, say=say,
                               step_timeout=step_timeout, approve=lambda _question: True)
        except FleetError as exc:
            event("release-stopped", env.name, reason=exc.what)
            done.append(ReleaseStep(env.name, Outcome.FAILED, detail=exc.what))
            return report(ReleaseState.FAILED, done, stopped_at=env.name, detail=exc.what,
                          fix=exc.fix)
        done.append(ReleaseStep(env.name, Outcome.PROMOTED, promoted.rollout, promoted.steps,
                                promoted.seconds, promoted.carried_on, promoted.detail))
    if acting:
        event("released", "", chain=[e.name for e in fleet.chain])
    return report(ReleaseState.RELEASED, done)
