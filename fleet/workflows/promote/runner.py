"""The rollout runner shared by promote and rollback (and apply's repairs): gates, Terraform
applies, Consul health, and the rollout's state machine carried from step to step."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from fleet.adapters.consul import Consul
from fleet.errors import FleetError
from fleet.model import nodes as node_model
from fleet.model.image import ImageRecord
from fleet.model.promotion import (
    Channel,
    Groups,
    Purpose,
    Rollout,
    RolloutState,
    after_need,
    gate,
    groups_at,
    must_pass,
    steps,
    superseded,
    weight,
)
from fleet.services import cattle
from fleet.services.catalog import Catalog
from fleet.services.context import Context, who
from fleet.services.lock import env_lock
from fleet.services.state import FleetState
from fleet.workflows.promote.report import PromotionReport

Say = Callable[[str], None]
STEP_TIMEOUT = 120.0  # seconds for a step's new nodes to pass before the rollout rolls back


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
        # why a failed rollout must not roll back ("" if it may): promote's point-of-no-return
        # check (migrate.guard); None where no schema can stand in the way (apply's repairs)
        self.guard: Callable[[Rollout], str] | None = None

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
            since = seconds_since(before.since) if before else None
            found = gate(fleet, env, role, version, before, passing, since)
            problems += found
            if found and before_env and before and before.version == version and passing:
                soak_left.append(before_env.soak_seconds - (since or 0))
        only_soak = bool(problems) and len(soak_left) == len(problems)
        return problems, max(soak_left) if only_soak else None

    # ---- Terraform ----
    def apply(self, env: str, desired: dict[str, Groups], replace: Iterable[str] = ()) -> None:
        """Write the desired groups, then make Terraform match them (replacing the nodes
        named in `replace`: apply's repair of dead nodes)."""
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
        cattle.apply(self.ctx, env, wanted, replace=replace)

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
        # the nodes of the group as last applied, those not passing named with Consul's word
        # (a Consul that cannot say leaves the reason as it was: the gate failed all the same)
        try:
            count = self.state.desired(env)[0].get(role, {}).get(version, 0)
        except FleetError:
            count = 0
        stuck = [n for n in (node_model.node_name(self.ctx.fleet.name, role, env, version, i)
                             for i in range(count)) if n not in seen.passing]
        return False, (f"{role}:{version} in {env}: {seen.passing_of(version)} of {target} "
                       f"node(s) passing after {self.step_timeout:.0f}s"
                       + (f": {cattle.not_passing(self.ctx, stuck)}" if stuck else ""))

    def gate_step(self, rollout: Rollout, step: int, targets: dict[str, str],
                  before: bool) -> tuple[bool, str]:
        """Before an apply: the new nodes that cover the old ones it removes pass (must_pass).
        After it: those the next apply needs (after_need): every new node of the step, but
        with a surge only those its removals need, so that the next batch boots meanwhile."""
        roles = self.ctx.fleet.roles
        for role, version in targets.items():
            count = roles[role].count[rollout.env]
            needed = (must_pass(groups_at(rollout, role, step - 1),
                                groups_at(rollout, role, step), version, count)
                      if before else after_need(rollout, role, step, version, count))
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
            stop = self.guard(rollout) if self.guard is not None else ""
            if stop:
                self.rollout_event("rollback-refused", rollout, step=step, reason=why,
                                   detail=stop)
                raise FleetError(f"{env}: {why}; not rolling back: {stop}",
                                 "fix forward with a new version, or roll back past it with "
                                 "fleet rollback --force --reason TEXT")
            self.say(f"{env}: {why}; rolling back")
            rollout = self.start_rollback(rollout, why)
        return rollout

    def settle(self, rollout: Rollout, superseded_by: str) -> Rollout:
        """Finish a rollout left unfinished (its fleet killed, or a step that failed outside
        fleet, say a Terraform error): carry it on, or, when a newer command supersedes it,
        roll it back first. A rollback under way is always carried on."""
        env = rollout.env
        name = (f"rollout {rollout.id} (a rollback to {rollout.version})"
                if rollout.purpose is Purpose.ROLLBACK
                else f"rollout {rollout.id} of {rollout.version}")
        if superseded_by and rollout.state is RolloutState.ROLLING:
            self.say(f"{env}: rolling back unfinished {name}, superseded by {superseded_by}")
            return self.run(self.start_rollback(rollout, f"superseded by {superseded_by}"))
        self.say(f"{env}: carrying on {name} ({rollout.state}, step {rollout.step}) left "
                 "unfinished")
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
                                   batch, rollout.max_surge)
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

    # ---- what a command does around its rollouts ----
    @contextlib.contextmanager
    def locked(self, env: str, wait: bool) -> Iterator[None]:
        """Hold ENV's rollout lock; a lock taken over from a dead holder is in the history."""
        with env_lock(self.consul, self.ctx.fleet.kv_prefix, env, wait=wait,
                      say=self.say) as dead:
            if dead is not None:
                self.event("lock-taken-over", env, holder=dead.who, pid=dead.pid,
                           since=dead.since)
            yield

    def settle_found(self, env: str, command: Purpose,
                     version: str = "") -> tuple[Rollout, Rollout] | None:
        """Settle the rollout of ENV left unfinished, if any, as a command asking for
        `command` (of VERSION) must (model.promotion.superseded): (as found, as finished)."""
        found = self.state.rollout(env)
        if found is None or found.finished:
            return None
        by = ""
        if superseded(found, command, version):
            by = ("fleet rollback" if command is Purpose.ROLLBACK
                  else f"the promotion of {version}")
        return found, self.settle(found, by)

    def channels(self, env: str, roles: tuple[str, ...] | list[str]) -> dict[str, str]:
        """Each role's channel in ENV now ('' for none): what `fleet status` shows."""
        return {r: c.version if (c := self.state.channel(env, r)) else "" for r in roles}

    def report(self, rollout: Rollout, started: float, command: Purpose, *,
               carried_on: bool = False) -> PromotionReport:
        """The report of a finished rollout, with the channels it left."""
        return PromotionReport(
            rollout.env, rollout.version, rollout.roles, rollout.state, rollout.id,
            rollout.total_steps(), round(time.monotonic() - started, 1), rollout.reason,
            rollout.purpose, command, self.channels(rollout.env, rollout.roles), carried_on)


def _groups(groups: Groups) -> str:
    """{'v1': 3, 'v2': 1} -> 'v1=3 v2=1', for progress lines."""
    return " ".join(f"{v}={n}" for v, n in sorted(groups.items())) or "none"


def seconds_since(stamp: str) -> float:
    return (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()
