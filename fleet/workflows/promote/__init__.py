"""fleet promote / rollback: gated promotion that really rolls the nodes, on Terraform.

A promotion of VERSION to ENV:
1. checks the gates (baked, not revoked; the environment before runs VERSION, passing, for its
   soak time; a passing verify where the environment has require_verify; --force --reason
   overrides all but the first and is recorded), then asks for manual approval where the
   environment wants it;
2. takes the environment's lock (a Consul session; --wait queues behind a holder; a holder
   whose process is gone from this host is taken over at once, see services/lock.py);
3. settles an unfinished rollout of that environment first (one killed with -9): carries it on
   if it goes to VERSION, else rolls it back (model.promotion.superseded);
4. plans the red/black steps per role (model.promotion.steps) and, for each step: records it,
   writes the desired groups, applies them with Terraform, and waits until the new nodes pass
   in Consul. A step whose nodes do not pass within the timeout turns the rollout into a
   rollback to the previous version, by the same machinery, and the command fails saying so;
5. on success, moves each role's channel to VERSION (check-and-set) and records it.

Every rollout records its purpose (a promotion, or a rollback), so a rerun of an interrupted
command finishes what was asked instead of undoing it. A report is told from the state the
rollout left: its id and steps, and each role's channel as `fleet status` shows it.

The runner (Promoter) is in `runner`, the report in `report`; `promote`, `rollback`,
`Promoter`, `PromotionReport` and `STEP_TIMEOUT` are this package's public names.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from fleet.model.image import check_version
from fleet.model.migrations import Kind
from fleet.model.promotion import (
    PromotionError,
    Purpose,
    Rollout,
    RolloutState,
    image_problems,
    promotable_roles,
    settles_rollback,
    steps,
)
from fleet.model.verification import verify_problems
from fleet.services.context import Context, who
from fleet.services.verdicts import read_verification
from fleet.workflows.promote import migrate
from fleet.workflows.promote.report import PromotionReport
from fleet.workflows.promote.runner import STEP_TIMEOUT, Promoter, Say

__all__ = ["STEP_TIMEOUT", "Promoter", "PromotionReport", "Say", "promote", "rollback"]


def promote(ctx: Context, version: str, env: str, roles: list[str], *, wait: bool = False,
            force: bool = False, reason: str = "", say: Say,
            step_timeout: float = STEP_TIMEOUT, rollback: bool = False,
            approve: Callable[[str], bool] | None = None,
            max_surge: int | None = None) -> PromotionReport:
    """Promote VERSION to ENV for the roles (every cattle role baked at VERSION by default).

    An environment with manual_approval asks `approve` (the CLI: --yes, or a prompt on a
    terminal); a refusal changes nothing and is recorded. Rollbacks need no approval: they put
    back what was approved before. When the only work is an unfinished rollout to VERSION,
    carried on, that rollout is the one reported (its id and steps). max_surge: the nodes a
    role may run above its count meanwhile (model.promotion.steps; default the environment's).
    """
    started = time.monotonic()
    environment = ctx.fleet.environment(env)
    check_version(version)
    if force and not reason.strip():
        raise PromotionError("--force needs --reason TEXT", "say why the gates are skipped")
    command = Purpose.ROLLBACK if rollback else Purpose.PROMOTE
    p = Promoter(ctx, say, step_timeout)
    p.guard = lambda rollout: migrate.guard(p, rollout)
    fleet = ctx.fleet
    cattle_roles = [r for r in fleet.roles.values() if r.cls.value == "cattle"]
    baked = {r.name: p.record(r.name, version) for r in cattle_roles}
    chosen = promotable_roles(fleet, baked, roles)
    hard = [m for r in chosen for m in image_problems(r, version, p.record(r, version))]
    soft: list[str] = []
    while not rollback and not hard:
        soft, soaking = p.gates(env, version, chosen)
        if not (soft and wait and not force and soaking is not None):
            break
        say(f"{env}: waiting {soaking:.0f}s for {version} to soak in the environment before")
        time.sleep(soaking + 0.5)
    verified: dict[str, str] = {}
    if not rollback and not hard and environment.require_verify:
        for role in chosen:
            record = p.record(role, version)
            assert record is not None  # no hard problem: every chosen role is baked
            verdict = read_verification(p.consul, fleet.kv_prefix, role, version)
            soft += verify_problems(fleet, env, record, verdict)
            verified[role] = verdict.summary() if verdict else "not verified"
    if not hard:  # the point of no return, and rehearsals where the environment requires them
        soft += migrate.problems(p, env, version, chosen, rollback=rollback)
    if hard or (soft and not force):
        problems = hard + soft
        p.event("refused", env, version=version, roles=chosen, problems=problems)
        fix = ("bake it, or promote another version" if hard else
               "meet the gate, or skip it with --force --reason TEXT (recorded)")
        what = f"rollback to {version} in {env}" if rollback else f"promotion of {version} to {env}"
        raise PromotionError(f"{what} refused: {problems[0]}"
                             + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                             fix)
    approved = False
    if environment.manual_approval and not rollback:
        question = f"promote {', '.join(chosen)} to {version} in {env}?"
        if approve is None or not approve(question):
            p.event("refused", env, version=version, roles=chosen,
                    problems=[f"{env} needs manual approval"])
            raise PromotionError(f"promotion of {version} to {env} needs manual approval",
                                 "confirm on a terminal, or pass --yes (recorded as approved)")
        approved = True
    with p.locked(env, wait):
        settled = p.settle_found(env, command, version)
        if not rollback:  # expand before any node changes; a failure stops here
            migrate.run(p, env, version, chosen, Kind.REGULAR)
        desired, _ = p.state.desired(env)
        batch = environment.batch_size
        surge = environment.max_surge if max_surge is None else max_surge
        previous = {}
        channels = {role: p.state.channel(env, role) for role in chosen}
        for role, channel in channels.items():
            # promoting the version already there keeps what ran before it, for rollback
            previous[role] = ("" if channel is None else
                              channel.previous if channel.version == version else channel.version)
        plan = {r: steps(desired.get(r, {}), version, fleet.roles[r].count[env], batch, surge)
                for r in chosen}
        if not any(plan.values()) and all(c is not None and c.version == version
                                          for c in channels.values()):
            if not rollback:
                migrate.after(p, env, version, chosen)
            if settled is not None and _finished(settled[1], version, chosen):
                return p.report(settled[1], started, command, carried_on=True)
            say(f"{env}: {', '.join(chosen)} already at {version}: nothing to do")
            return PromotionReport(env, version, tuple(chosen), RolloutState.DONE, "", 0,
                                   round(time.monotonic() - started, 1), "already there",
                                   command, command, p.channels(env, chosen))
        rollout = Rollout(
            id=uuid.uuid4().hex[:12], env=env, version=version, roles=tuple(chosen),
            previous=previous, plan=plan, step=0, state=RolloutState.ROLLING,
            started_by=who(), started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            reason=reason, groups={r: desired.get(r, {}) for r in chosen}, purpose=command,
            max_surge=surge)
        p.rollout_event("rollback-to" if rollback else "promote", rollout, version=version,
                        previous=previous, forced=force and bool(soft), reason=reason,
                        skipped_gates=soft if force else [], approved=approved,
                        verified=verified)
        p.state.save_rollout(rollout)
        say(f"{env}: rolling {', '.join(chosen)} to {version} in {rollout.total_steps()} step(s)")
        final = p.run(rollout)
        if final.state is RolloutState.DONE and not rollback:
            migrate.after(p, env, version, chosen)  # contract, once every reader runs it
        report = p.report(final, started, command)
    error = report.error()
    if error is not None:
        raise error
    return report


def _finished(rollout: Rollout, version: str, roles: list[str]) -> bool:
    """Whether a rollout carried on took every one of ROLES to VERSION."""
    return (rollout.state is RolloutState.DONE and rollout.version == version
            and set(roles) <= set(rollout.roles))


def rollback(ctx: Context, env: str, roles: list[str], *, wait: bool, say: Say,
             step_timeout: float = STEP_TIMEOUT, force: bool = False,
             reason: str = "") -> list[PromotionReport]:
    """Back to each role's previous version in ENV, through the same rollout machinery.

    A rollout of ENV left unfinished is settled first: an unfinished rollback is carried on
    (a rerun of an interrupted `fleet rollback` finishes it), an unfinished promotion is rolled
    back; either is the rollback asked for, for its roles (model.promotion.settles_rollback).
    A rollback an earlier command had to undo (its nodes failed) is finished undoing, then
    asked for again; one this command carries on and has to undo fails the command. Then the
    roles named with --role that the settled rollout did not cover go back as usual; without
    --role, a settled rollout that was the rollback is all there is to do (as before, every
    role with a previous version goes back only when nothing was left unfinished).
    A rollback to a version that predates a post-deployment migration the database ran (the
    point of no return) is refused unless force, with a reason (recorded).
    """
    ctx.fleet.environment(env)
    if force and not reason.strip():
        raise PromotionError("--force needs --reason TEXT", "say why the point of no return "
                             "may be crossed")
    p = Promoter(ctx, say, step_timeout)
    reports: list[PromotionReport] = []
    with p.locked(env, wait):
        started = time.monotonic()
        settled = p.settle_found(env, Purpose.ROLLBACK)
        if settled is not None:
            found, final = settled
            report = p.report(final, started, Purpose.ROLLBACK, carried_on=True)
            if settles_rollback(final):
                reports.append(report)
            elif found.state is RolloutState.ROLLING:  # this command carried it on and failed
                error = report.error()
                assert error is not None  # a rollback that ended rolled back
                raise error
    covered = {r for report in reports for r in report.roles}
    if reports and not roles:
        return reports
    state = p.state
    chosen = [r for r in roles if r not in covered] if roles else [
        r.name for r in ctx.fleet.roles.values()
        if r.cls.value == "cattle" and state.channel(env, r.name) is not None]
    if roles and not chosen:
        return reports
    by_version: dict[str, list[str]] = {}
    for role in chosen:
        channel = state.channel(env, role)
        if channel is None or not channel.previous:
            raise PromotionError(f"{role} has no previous version in {env} to roll back to")
        by_version.setdefault(channel.previous, []).append(role)
    if not by_version:
        raise PromotionError(f"nothing has been promoted to {env}")
    return reports + [promote(ctx, version, env, names, wait=wait, say=say,
                              step_timeout=step_timeout, rollback=True, force=force,
                              reason=reason)
                      for version, names in by_version.items()]
