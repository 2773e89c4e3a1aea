"""One pass of `fleet reconcile`: read, decide (fleet/model/reconcile.py), act.

Read: the plan (workflows/plan, the very computation `fleet plan` runs), the ephemeral
environments past their expiry (`fleet env gc --dry-run`), which environments are being rolled
(their lock held, or a rollout unfinished), the pets' files (files.py) for the roles with
`heal = "converge"`, and what the previous passes remembered (<prefix>/reconcile/seen: when
each drift was first seen, for its grace period, and the heals of the last interval, for the
rate limit). A pass that cannot read all of it does nothing and says so.

Act, environment by environment, only as the active reconciler and only while its lease is
safe: before touching an environment the pass reads its lock, rollout and desired groups
again, and leaves it to the next pass when any of them changed after its own read (a plan is
never acted on once it is older than what it would change). Cattle are replaced through
apply's repair (Terraform's -replace under the environment's rollout lock, then waited for
until they pass), pets converged with fleet converge's code, expired environments destroyed
with `fleet env destroy`'s. Every action is in the history, `who` being the reconciler.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from fleet.adapters import docker
from fleet.adapters.consul import Consul
from fleet.errors import FleetError
from fleet.model import reconcile as policy
from fleet.model.grammar import RoleClass
from fleet.model.heal import Heal
from fleet.model.plan import Action, Item
from fleet.model.promotion import Rollout
from fleet.model.reconcile import EXPIRE, Finding, Situation, Verdict
from fleet.services.context import Context, who
from fleet.services.lock import Holder, LockHeld
from fleet.services.state import FleetState, StateConflict
from fleet.services.topology import container
from fleet.workflows import apply, environments, plan
from fleet.workflows.reconcile import files

Say = Callable[[str], None]


def identity() -> str:
    """Who the reconciler is in the history: `fleet-reconcile user@host pid N`."""
    return f"fleet-reconcile {who()} pid {os.getpid()}"


class Unread(FleetError):
    """The pass could not read what it needs: it did nothing."""


@dataclass(frozen=True)
class Settings:
    interval: float = 30.0     # seconds between passes (and the rate limit's window)
    grace: float = 0.0         # seconds a drift must last before it is healed
    max_heals: int = 3         # heals per environment per interval


@dataclass(frozen=True)
class Done:
    env: str
    role: str
    target: str
    action: str
    outcome: str        # healed | failed | skipped
    detail: str


@dataclass(frozen=True)
class PassReport:
    fleet: str
    findings: tuple[Finding, ...]
    done: tuple[Done, ...]
    seconds: float
    mode: str           # active | dry-run | standby (another reconciler is active)
    active: str = ""    # who the active reconciler is, for a standby

    @property
    def pending(self) -> bool:
        """Something differs (the exit code 2 of --detailed-exitcode)."""
        return bool(self.findings)

    def error(self) -> FleetError | None:
        failed = [d for d in self.done if d.outcome == "failed"]
        if not failed:
            return None
        return FleetError(f"{len(failed)} heal(s) failed, first {failed[0].target} "
                          f"({failed[0].env}): {failed[0].detail}",
                          "the next pass tries again; fleet history shows each one")


class Memory:
    """What passes remember (<prefix>/reconcile/seen), written with check-and-set."""

    def __init__(self, consul: Consul, prefix: str) -> None:
        self.consul, self.key = consul, f"{prefix}/reconcile/seen"
        self.index = 0

    def load(self) -> tuple[dict[str, float], dict[str, list[float]]]:
        entry = self.consul.get(self.key)
        if entry is None or not entry.value:
            return {}, {}
        self.index = entry.modify_index
        data = json.loads(entry.value)
        return ({str(k): float(v) for k, v in data["first_seen"].items()},
                {str(e): [float(t) for t in ts] for e, ts in data["heals"].items()})

    def save(self, first_seen: dict[str, float], heals: dict[str, list[float]]) -> None:
        # a conflict: another pass wrote meanwhile (a takeover); its memory is as good
        self.consul.put(self.key, json.dumps({"first_seen": first_seen, "heals": heals},
                                             sort_keys=True), cas=self.index)


def busy(consul: Consul, prefix: str) -> dict[str, str]:
    """env -> why it is left alone: its rollout lock is held, or a rollout is unfinished."""
    found = {}
    for entry in consul.list(f"{prefix}/rollouts/"):
        if entry.value and not (rollout := Rollout.from_json(entry.value)).finished:
            found[rollout.env] = (f"a rollout to {rollout.version} is unfinished "
                                  f"({rollout.state.value})")
    for entry in consul.list(f"{prefix}/locks/"):
        if entry.session:
            holder = Holder.read(entry.value)
            found[entry.key.rsplit("/", 1)[-1]] = (
                f"its lock is held by {holder.line() if holder else 'someone'}: a rollout runs")
    return found


def _converging(ctx: Context, envs: tuple[str, ...]) -> list[files.Pet]:
    """The pets and snowflakes whose role says heal = "converge", with their environment."""
    found = []
    for env in envs:
        owned = set(ctx.fleet.owned_pets(env))
        for role in ctx.fleet.roles.values():
            if role.cls is RoleClass.CATTLE or role.heal != Heal.CONVERGE.value:
                continue
            found += [(env, role.name, i) for i in role.instances.get(env, ())
                      if role.cls is not RoleClass.PET or i in owned]
    return found


def _down(ctx: Context, envs: tuple[str, ...]) -> dict[files.Pet, str]:
    """The pets and snowflakes whose container is there but not running (killed, stopped):
    the plan sees a container that is gone, not one that is down."""
    owned = {env: set(ctx.fleet.owned_pets(env)) for env in envs}   # once per environment
    machines = [(env, role.name, i) for env in envs for role in ctx.fleet.roles.values()
                if role.cls is not RoleClass.CATTLE for i in role.instances.get(env, ())
                if role.cls is not RoleClass.PET or i in owned[env]]
    if not machines:
        return {}
    stopped = {n.name for n in docker.lab_nodes() if not n.running}
    return {m: "its container is there but not running" for m in machines
            if container(ctx, m[2]) in stopped}


def _failing(ctx: Context, consul: Consul, envs: tuple[str, ...]) -> dict[files.Pet, str]:
    """The cattle nodes of envs whose service checks fail (one request for the fleet)."""
    cattle = {r.name for r in ctx.fleet.roles.values() if r.cls is RoleClass.CATTLE}
    found = {}
    for node, tags in consul.failing(f"fleet:{ctx.fleet.name}"):
        said = dict(t.split(":", 1) for t in tags if ":" in t)
        if said.get("env") in envs and said.get("role") in cattle \
                and not node.endswith(".draining"):
            found[(said["env"], said["role"], node)] = "fails its service checks"
    return found


def reconcile(ctx: Context, settings: Settings, *, mode: str, say: Say,
              safe: Callable[[], bool] = lambda: True, active: str = "") -> PassReport:
    """One pass. mode "active" acts (while safe() says its lease holds); "dry-run" and
    "standby" only report."""
    started, now = time.monotonic(), time.time()
    prefix = ctx.fleet.kv_prefix
    consul = ctx.consul()
    memory = Memory(consul, prefix)
    try:
        index = consul.kv_index(f"{prefix}/")
        reading = plan.plan(ctx)
        envs = reading.plan.envs
        expired = environments.gc(ctx, dry_run=True, say=say).expired
        rolling = busy(consul, prefix)
        seen, heals = memory.load()
        probed = files.probe(ctx, _converging(ctx, envs))
        down = _down(ctx, envs)
        failing = _failing(ctx, consul, envs)
    except FleetError as exc:
        raise Unread(f"the pass could not read the fleet ({exc.what}): nothing was done",
                     exc.fix or "the next pass tries again") from exc
    recent = {e: [t for t in ts if t > now - settings.interval] for e, ts in heals.items()}
    situation = Situation(now, seen, {e: len(ts) for e, ts in recent.items()}, rolling,
                          tuple(expired), probed, down, failing,
                          {(e, r.name): r.count.get(e, 0) for e in envs
                           for r in ctx.fleet.roles.values() if r.cls is RoleClass.CATTLE})
    rules = policy.policy({r.name: r.heal for r in ctx.fleet.roles.values()}, settings.grace,
                          settings.max_heals, {r.name: r.cls.value for r in ctx.fleet.roles.values()},
                          failing_grace=settings.interval)
    findings = policy.decide(reading.plan, rules, situation)
    done: list[Done] = []
    if mode == "active":
        items = {(i.env, i.target, i.action.value): i for i in reading.plan.items}
        for env in dict.fromkeys(f.env for f in findings if f.verdict is Verdict.HEAL):
            todo = [f for f in findings if f.env == env and f.verdict is Verdict.HEAL]
            why = "" if safe() else "this reconciler is no longer surely the active one"
            why = why or _moved(consul, prefix, env, index, any(f.action == EXPIRE for f in todo))
            if why:
                done += [Done(f.env, f.role, f.target, f.action, "skipped", why) for f in todo]
                continue
            for outcome in _heal(ctx, env, todo, items, say):
                done.append(outcome)
                _record(ctx, outcome)
                if outcome.outcome != "skipped":   # a failed heal counts too: no retry storm
                    recent.setdefault(env, []).append(time.time())
        # the memory is a help, not a duty: the next pass writes it
        with contextlib.suppress(FleetError, StateConflict):
            memory.save(policy.remember(seen, findings, now), recent)
    return PassReport(ctx.fleet.name, findings, tuple(done),
                      round(time.monotonic() - started, 2), mode, active)


def _moved(consul: Consul, prefix: str, env: str, index: int, expiring: bool) -> str:
    """'' when what the pass read of ENV is still what is there; else why it is left."""
    keys = [f"{prefix}/locks/{env}", f"{prefix}/rollouts/{env}", f"{prefix}/desired/{env}"]
    if expiring:
        keys.append(f"{prefix}/environments/{env}")
    for key in keys:
        entry = consul.get(key)
        if entry is not None and entry.session:
            return f"{env}'s lock was taken after this pass read it: left to the next pass"
        if entry is not None and entry.modify_index > index:
            return (f"{key.removeprefix(prefix + '/')} changed after this pass read it: left "
                    "to the next pass, which reads it again")
    return ""


def _heal(ctx: Context, env: str, todo: list[Finding], items: dict[tuple[str, str, str], Item],
          say: Say) -> list[Done]:
    done: list[Done] = []
    # a node failing its checks is no item of the plan: the same repair, asked for it
    repairs = [items.get((f.env, f.target, f.action)) or Item(
        f.env, f.role, RoleClass.CATTLE.value, f.target, Action.REPAIR, f.detail, True)
        for f in todo if f.action == Action.REPAIR.value]
    if repairs:
        try:
            done += [Done(d.env, d.role, d.target, d.action.value, "healed", "replaced")
                     for d in apply.repair(ctx, env, repairs, say)]
        except LockHeld as exc:
            done += [Done(env, i.role, i.target, i.action.value, "skipped", exc.what)
                     for i in repairs]
        except FleetError as exc:
            done += [Done(env, i.role, i.target, i.action.value, "failed", exc.what)
                     for i in repairs]
    converges: dict[str, list[Finding]] = {}
    for f in todo:
        if f.action == Action.CONVERGE.value:
            converges.setdefault(f.role, []).append(f)
    for role, found in converges.items():
        try:
            report = files.converge(ctx, env, role, [f.target for f in found], say)
            results = {r.host: r for r in report.results}
            for f in found:
                r = results.get(f"{ctx.fleet.name}-{f.target}")
                ok = r is not None and r.ok
                done.append(Done(env, role, f.target, f.action, "healed" if ok else "failed",
                                 f"converged in place ({f.detail})" if ok else
                                 (r.error or r.stderr.strip()[-200:] if r else "not converged")))
        except FleetError as exc:
            done += [Done(env, role, f.target, f.action, "failed", exc.what) for f in found]
    for f in todo:
        if f.action == EXPIRE:
            try:
                environments.destroy(ctx, env, say=say)
                done.append(Done(env, "", env, EXPIRE, "healed", "destroyed: past its expiry"))
            except FleetError as exc:
                done.append(Done(env, "", env, EXPIRE, "failed", exc.what))
    return done


def _record(ctx: Context, d: Done) -> None:
    FleetState(ctx.consul(), ctx.fleet.kv_prefix).record(
        {"event": "reconcile", "env": d.env, "who": identity(), "roles": [d.role] if d.role else [],
         "target": d.target, "action": d.action, "outcome": d.outcome, "detail": d.detail})


def single(ctx: Context, settings: Settings, *, dry_run: bool, say: Say) -> PassReport:
    """`fleet reconcile` without --watch: one pass, which acts only if no other reconciler is
    active (it holds the leader key for the pass), and only reports otherwise."""
    if dry_run:
        return reconcile(ctx, settings, mode="dry-run", say=say)
    from fleet.workflows.reconcile.leader import Leadership

    leadership = Leadership(ctx.consul(), ctx.fleet.kv_prefix, settings.interval)
    try:
        if not leadership.campaign():
            say(f"{leadership.holder or 'another reconciler'} is the active reconciler: this "
                "pass only reports")
            return reconcile(ctx, settings, mode="standby", say=say, active=leadership.holder)
        return reconcile(ctx, settings, mode="active", say=say, safe=leadership.safe)
    finally:
        leadership.resign()
