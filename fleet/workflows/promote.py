"""fleet promote / rollback: gated promotion that really rolls the nodes, on Terraform.

A promotion of VERSION to ENV:
1. checks the gates (baked, not revoked; the environment before runs VERSION, passing, for its
   soak time; a passing verify where the environment has require_verify; --force --reason
   overrides all but the first and is recorded), then asks for manual approval where the
   environment wants it;
2. takes the environment's lock (a Consul session; --wait queues behind a holder);
3. resumes or rolls back an unfinished rollout of that environment first (one killed with -9);
4. plans the red/black steps per role (model.promotion.steps) and, for each step: records it,
   writes the desired groups, applies them with Terraform, and waits until the new nodes pass
   in Consul. A step whose nodes do not pass within the timeout turns the rollout into a
   rollback to the previous version, by the same machinery, and the command fails saying so;
5. on success, moves each role's channel to VERSION (check-and-set) and records it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from fleet.adapters.consul import Consul
from fleet.errors import FleetError
from fleet.model import nodes as node_model
from fleet.model.image import ImageRecord, check_version
from fleet.model.promotion import (
    Channel,
    Groups,
    PromotionError,
    Rollout,
    RolloutState,
    gate,
    groups_at,
    image_problems,
    must_pass,
    promotable_roles,
    steps,
    weight,
)
from fleet.model.verification import verify_problems
from fleet.services import cattle
from fleet.services.catalog import Catalog
from fleet.services.context import Context, who
from fleet.services.lock import env_lock
from fleet.services.state import FleetState
from fleet.services.verdicts import read_verification

Say = Callable[[str], None]
STEP_TIMEOUT = 120.0  # seconds for a step's new nodes to pass before the rollout rolls back


@dataclass(frozen=True)
class PromotionReport:
    env: str
    version: str
    roles: tuple[str, ...]
    state: RolloutState
    rollout: str
    steps: int
    seconds: float
    detail: str = ""


class Promoter:
    """The shared pieces of one promote or rollback command."""

    def __init__(self, ctx: Context, say: Say, step_timeout: float) -> None:
        self.ctx = ctx
        self.say = say
        self.step_timeout = step_timeout
        self.consul: Consul = ctx.consul()
        self.state = FleetState(self.consul, ctx.fleet.kv_prefix)
        self.catalog = Catalog(self.consul, ctx.fleet.kv_prefix)
        self._images: dict[tuple[str, str], ImageRecord] = {}

    def record(self, role: str, version: str) -> ImageRecord | None:
        key = (role, version)
        if key not in self._images:
            stored = self.catalog.get(role, version)
            if stored is None:
                return None
            self._images[key] = stored.record
        return self._images[key]

    def services(self, role: str) -> list[str]:
        return [s.name for s in self.ctx.fleet.roles[role].services]

    def event(self, event: str, env: str, **fields: object) -> None:
        self.state.record({"event": event, "env": env, "who": who(), **fields})

    def rollout_event(self, event: str, rollout: Rollout, **fields: object) -> None:
        """An event of a rollout: it names the rollout and its roles, so history can filter."""
        self.event(event, rollout.env, rollout=rollout.id, roles=list(rollout.roles), **fields)

    def gates(self, env: str, version: str, roles: list[str]) -> tuple[list[str], float | None]:
        """Why VERSION may not go to ENV yet (model.promotion.gate), and, when the only thing
        missing is soak time, how many seconds are left of it."""
        fleet = self.ctx.fleet
        before_env = fleet.previous(fleet.environment(env))
        previous_env = before_env.name if before_env else ""
        problems: list[str] = []
        soak_left: list[float] = []
        for role in roles:
            before = self.state.channel(previous_env, role) if previous_env else None
            passing = False
            if before is not None and previous_env:
                want = fleet.roles[role].count[previous_env]
                seen = cattle.health(self.ctx, self.services(role), previous_env, role)
                passing = seen.passing_of(before.version) >= want
            since = _seconds_since(before.since) if before else None
            found = gate(fleet, env, role, version, before, passing, since)
            problems += found
            if found and before_env and before and before.version == version and passing:
                soak_left.append(before_env.soak_seconds - (since or 0))
        only_soak = bool(problems) and len(soak_left) == len(problems)
        return problems, max(soak_left) if only_soak else None

    # ---- Terraform ----
    def apply(self, env: str, desired: dict[str, Groups]) -> None:
        """Write the desired groups, then make Terraform match them."""
        self.state.set_desired(env, desired)
        fleet = self.ctx.fleet
        wanted: list[node_model.Node] = []
        for role, groups in sorted(desired.items()):
            for version, count in sorted(groups.items()):
                if count <= 0:
                    continue
                image = self.record(role, version)
                if image is None:
                    raise FleetError(f"{role}:{version} is in the desired state of {env} but "
                                     "not in the catalog", "bake it again under that version")
                wanted += node_model.group(fleet.name, fleet.roles[role], env, version,
                                           image.artifact, count, weight(fleet, env, role))
        cattle.apply(self.ctx, env, wanted)

    def wait(self, env: str, role: str, version: str, target: int) -> tuple[bool, str]:
        """Until `target` nodes of ROLE at VERSION pass every check in ENV, or the step timeout."""
        if target == 0 or not self.services(role):
            return True, ""  # nothing to wait for; a role without services has no checks

        def enough(seen: cattle.Health) -> bool:
            return seen.passing_of(version) >= target

        met, seen = cattle.wait_passing(self.ctx, self.services(role), env, role, enough,
                                        self.step_timeout)
        if met:
            return True, ""
        return False, (f"{role}:{version} in {env}: {seen.passing_of(version)} of {target} "
                       f"node(s) passing after {self.step_timeout:.0f}s")

    def gate_step(self, rollout: Rollout, step: int, targets: dict[str, str],
                  before: bool) -> tuple[bool, str]:
        """Before an apply: the new nodes that cover the old ones it removes pass (must_pass).
        After it: every new node of the step passes."""
        roles = self.ctx.fleet.roles
        for role, version in targets.items():
            after = groups_at(rollout, role, step)
            needed = (must_pass(groups_at(rollout, role, step - 1), after, version,
                                roles[role].count[rollout.env])
                      if before else after.get(version, 0))
            ok, why = self.wait(rollout.env, role, version, needed)
            if not ok:
                return False, why
        return True, ""

    # ---- running a rollout ----
    def run(self, rollout: Rollout, *, resume: bool = False) -> Rollout:
        """Carry a rollout on from its recorded step to DONE or ROLLED_BACK.

        The recorded step is the one last started: a resumed rollout takes it again (Terraform
        makes an applied step a no-op) and waits for its nodes before going further.
        """
        env = rollout.env
        redo = resume and rollout.step > 0
        while not rollout.finished:
            total = rollout.total_steps()
            rolling_back = rollout.state is RolloutState.ROLLING_BACK
            step = rollout.step if redo else rollout.step + 1
            redo = False
            if step > total:
                rollout = self.finish(rollout)
                continue
            desired, _ = self.state.desired(env)
            for role in rollout.roles:
                desired[role] = groups_at(rollout, role, step)
            targets = rollout.previous if rolling_back else dict.fromkeys(rollout.roles,
                                                                          rollout.version)
            targets = {r: v for r, v in targets.items() if v and r in rollout.roles}
            ok, why = self.gate_step(rollout, step, targets, before=True)
            if ok:
                self.rollout_event("rollback-step" if rolling_back else "step", rollout,
                                   step=step, of=total,
                                   groups={r: desired[r] for r in rollout.roles})
                rollout = rollout.move(rollout.state, step=step)
                self.state.save_rollout(rollout)  # recorded before it is taken
                self.say(f"{env}: {'rollback ' if rolling_back else ''}step {step}/{total}: "
                         + ", ".join(f"{r} {_groups(desired[r])}" for r in rollout.roles))
                self.apply(env, desired)
                ok, why = self.gate_step(rollout, step, targets, before=False)
            self.rollout_event("gate", rollout, step=step, passed=ok, detail=why)
            if ok:
                continue
            if rolling_back:
                raise FleetError(f"rollback of {env} is stuck: {why}",
                                 "look at the nodes (fleet status), then rerun fleet promote or "
                                 "fleet rollback to carry on")
            self.say(f"{env}: {why}; rolling back")
            rollout = self.start_rollback(rollout, why)
        return rollout

    def settle(self, rollout: Rollout, superseded_by: str) -> Rollout:
        """Finish a rollout left unfinished (its fleet killed, or a step that failed outside
        fleet, say a Terraform error): carry it on, or, when a newer command supersedes it,
        roll it back first. A rollback under way is always carried on."""
        env = rollout.env
        if superseded_by and rollout.state is RolloutState.ROLLING:
            self.say(f"{env}: rolling back unfinished rollout {rollout.id} of {rollout.version}, "
                     f"superseded by {superseded_by}")
            return self.run(self.start_rollback(rollout, f"superseded by {superseded_by}"))
        self.say(f"{env}: carrying on rollout {rollout.id} of {rollout.version} "
                 f"({rollout.state}, step {rollout.step}) left unfinished")
        self.rollout_event("resume", rollout, state=rollout.state.value, step=rollout.step)
        return self.run(rollout, resume=True)

    def start_rollback(self, rollout: Rollout, why: str) -> Rollout:
        desired, _ = self.state.desired(rollout.env)
        fleet = self.ctx.fleet
        batch = fleet.environment(rollout.env).batch_size
        plan: dict[str, list[Groups]] = {}
        for role in rollout.roles:
            now_groups = desired.get(role, {})
            previous = rollout.previous.get(role, "")
            if previous:
                plan[role] = steps(now_groups, previous, fleet.roles[role].count[rollout.env],
                                   batch)
            else:  # nothing ran before: remove the new nodes
                plan[role] = [{**now_groups, rollout.version: 0}]
        self.rollout_event("rollback", rollout, version=rollout.version, to=rollout.previous,
                           reason=why)
        back = rollout.move(RolloutState.ROLLING_BACK, plan=plan, step=0, reason=why,
                            groups={r: desired.get(r, {}) for r in rollout.roles})
        self.state.save_rollout(back)
        return back

    def finish(self, rollout: Rollout) -> Rollout:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        if rollout.state is RolloutState.ROLLING:
            for role in rollout.roles:
                self.state.set_channel(rollout.env, role, Channel(
                    rollout.version, rollout.previous.get(role, ""), stamp))
            done = rollout.move(RolloutState.DONE)
            self.rollout_event("promoted", rollout, version=rollout.version,
                               previous=rollout.previous)
        else:
            done = rollout.move(RolloutState.ROLLED_BACK)
            self.rollout_event("rolled-back", rollout, version=rollout.version,
                               to=rollout.previous, reason=rollout.reason)
        self.state.save_rollout(done)
        return done


def _groups(groups: Groups) -> str:
    """{'v1': 3, 'v2': 1} -> 'v1=3 v2=1', for progress lines."""
    return " ".join(f"{v}={n}" for v, n in sorted(groups.items())) or "none"


def _seconds_since(stamp: str) -> float:
    return (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()


def promote(ctx: Context, version: str, env: str, roles: list[str], *, wait: bool = False,
            force: bool = False, reason: str = "", say: Say,
            step_timeout: float = STEP_TIMEOUT, rollback: bool = False,
            approve: Callable[[str], bool] | None = None) -> PromotionReport:
    """Promote VERSION to ENV for the roles (every cattle role baked at VERSION by default).

    An environment with manual_approval asks `approve` (the CLI: --yes, or a prompt on a
    terminal); a refusal changes nothing and is recorded. Rollbacks need no approval: they put
    back what was approved before.
    """
    started = time.monotonic()
    environment = ctx.fleet.environment(env)
    check_version(version)
    if force and not reason.strip():
        raise PromotionError("--force needs --reason TEXT", "say why the gates are skipped")
    p = Promoter(ctx, say, step_timeout)
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
    if hard or (soft and not force):
        problems = hard + soft
        p.event("refused", env, version=version, roles=chosen, problems=problems)
        fix = ("bake it, or promote another version" if hard else
               "meet the gate, or skip it with --force --reason TEXT (recorded)")
        raise PromotionError(f"promotion of {version} to {env} refused: {problems[0]}"
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
    with env_lock(p.consul, fleet.kv_prefix, env, wait=wait):
        unfinished = p.state.rollout(env)
        if unfinished is not None and not unfinished.finished:
            p.settle(unfinished, superseded_by="" if unfinished.version == version else
                     f"the promotion of {version}")
        desired, _ = p.state.desired(env)
        batch = environment.batch_size
        previous = {}
        channels = {role: p.state.channel(env, role) for role in chosen}
        for role, channel in channels.items():
            # promoting the version already there keeps what ran before it, for rollback
            previous[role] = ("" if channel is None else
                              channel.previous if channel.version == version else channel.version)
        plan = {r: steps(desired.get(r, {}), version, fleet.roles[r].count[env], batch)
                for r in chosen}
        if not any(plan.values()) and all(c is not None and c.version == version
                                          for c in channels.values()):
            say(f"{env}: {', '.join(chosen)} already at {version}: nothing to do")
            return PromotionReport(env, version, tuple(chosen), RolloutState.DONE, "", 0,
                                   round(time.monotonic() - started, 1), "already there")
        rollout = Rollout(
            id=uuid.uuid4().hex[:12], env=env, version=version, roles=tuple(chosen),
            previous=previous, plan=plan, step=0, state=RolloutState.ROLLING,
            started_by=who(), started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            reason=reason, groups={r: desired.get(r, {}) for r in chosen})
        p.rollout_event("rollback-to" if rollback else "promote", rollout, version=version,
                        previous=previous, forced=force and bool(soft), reason=reason,
                        skipped_gates=soft if force else [], approved=approved,
                        verified=verified)
        p.state.save_rollout(rollout)
        say(f"{env}: rolling {', '.join(chosen)} to {version} in {rollout.total_steps()} step(s)")
        final = p.run(rollout)
    report = PromotionReport(env, version, tuple(chosen), final.state, final.id,
                             final.total_steps(), round(time.monotonic() - started, 1),
                             final.reason)
    if final.state is RolloutState.ROLLED_BACK:
        back = ", ".join(f"{r} {v or '(none)'}" for r, v in final.previous.items())
        raise PromotionError(f"promotion of {version} to {env} failed and was rolled back "
                             f"({final.reason}); {env} runs {back}",
                             "see fleet history and the nodes' logs")
    return report


def rollback(ctx: Context, env: str, roles: list[str], *, wait: bool, say: Say,
             step_timeout: float = STEP_TIMEOUT) -> list[PromotionReport]:
    """Back to each role's previous version in ENV, through the same rollout machinery."""
    ctx.fleet.environment(env)
    p = Promoter(ctx, say, step_timeout)
    with env_lock(p.consul, ctx.fleet.kv_prefix, env, wait=wait):
        unfinished = p.state.rollout(env)
        if unfinished is not None and not unfinished.finished:
            # a rollout stuck half-way: rolling it back is the rollback that was asked for
            started = time.monotonic()
            final = p.settle(unfinished, superseded_by="fleet rollback")
            return [PromotionReport(env, final.version, final.roles, final.state, final.id,
                                    final.total_steps(), round(time.monotonic() - started, 1),
                                    final.reason)]
    state = p.state
    chosen = roles or [r.name for r in ctx.fleet.roles.values()
                       if r.cls.value == "cattle" and state.channel(env, r.name) is not None]
    by_version: dict[str, list[str]] = {}
    for role in chosen:
        channel = state.channel(env, role)
        if channel is None or not channel.previous:
            raise PromotionError(f"{role} has no previous version in {env} to roll back to")
        by_version.setdefault(channel.previous, []).append(role)
    if not by_version:
        raise PromotionError(f"nothing has been promoted to {env}")
    return [promote(ctx, version, env, names, wait=wait, say=say, step_timeout=step_timeout,
                    rollback=True) for version, names in by_version.items()]
