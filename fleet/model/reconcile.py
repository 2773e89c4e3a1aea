"""`fleet reconcile`'s policy: what one pass heals, given the plan it read. Pure.

A pass reads the plan (the same computation as `fleet plan`), then every change in it is a
finding, and each finding gets one verdict:

- `heal`: the reconciler carries it out. Only three kinds of work are ever healed:
  a cattle node that is gone (the plan's `repair`), or alive but failing its service checks
  for longer than the grace period (at least an interval; not when most of its role's nodes
  fail: their cause is shared, a dependency down, and new nodes would fail alike), where its
  role says `heal = "replace"`;
  a pet or snowflake whose provisioner changed, or whose files were changed by hand since
  its last converge, where its role says `heal = "converge"` (converged in place); an
  ephemeral environment past its expiry (destroyed, as `fleet env gc` does).
- `report`: everything else -- a pet's container gone or stopped (a pet is never replaced
  or destroyed by the reconciler), a group below its count, nodes at another version or on
  a revoked image, images to bake, secrets missing: a person decides those.
- `grace`: a heal whose drift is younger than the grace period (a node restarting, an
  operator at work): healed if it lasts.
- `rate-limited`: over the environment's heals for this interval (`max_heals`).
- `locked`: the environment is being rolled (its lock is held, or a rollout is unfinished):
  never fought over.

`heal` per role (fleet.toml `[roles.R] heal`), report-only by default:
cattle "report" | "replace"; pets and snowflakes "report" | "converge".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from fleet.errors import FleetError
from fleet.model.grammar import RoleClass
from fleet.model.heal import Heal
from fleet.model.plan import Action, Plan


class Verdict(StrEnum):
    HEAL = "heal"
    REPORT = "report"
    GRACE = "grace"
    LIMITED = "rate-limited"
    LOCKED = "locked"


EXPIRE = "expire"       # a finding's action for an ephemeral environment past its expiry
FILES = "converge"      # a pet's files changed by hand since its last converge
DOWN = "down"           # a pet's or snowflake's container is there but not running
ENVIRONMENT = "environment"


@dataclass(frozen=True)
class Finding:
    env: str
    role: str
    cls: str
    target: str
    action: str          # the plan's Action value, or EXPIRE
    detail: str
    verdict: Verdict
    why: str = ""

    @property
    def key(self) -> str:
        """What names the same drift from one pass to the next (for its grace period)."""
        return f"{self.env}/{self.target}/{self.action}"


@dataclass(frozen=True)
class Policy:
    heal: Mapping[str, Heal]       # role -> its heal
    grace: float = 0.0             # seconds a drift must last before it is healed
    max_heals: int = 3             # heals per environment per interval
    classes: Mapping[str, str] = field(default_factory=dict)   # role -> its class
    # an alive node whose checks fail is given at least this long (a check flapping, a
    # service restarting): the interval by default
    failing_grace: float = 0.0


@dataclass(frozen=True)
class Situation:
    """What a pass knows besides the plan."""

    now: float
    first_seen: Mapping[str, float] = field(default_factory=dict)  # Finding.key -> since when
    healed: Mapping[str, int] = field(default_factory=dict)        # env -> heals this interval
    busy: Mapping[str, str] = field(default_factory=dict)          # env -> why it is left alone
    expired: tuple[str, ...] = ()                                  # ephemeral envs past expiry
    files: Mapping[tuple[str, str, str], str] = field(default_factory=dict)
    # (env, role, instance) -> which files differ from its last converge's (a probe)
    down: Mapping[tuple[str, str, str], str] = field(default_factory=dict)
    # (env, role, instance) of a pet or snowflake -> why it is down (its container stopped)
    failing: Mapping[tuple[str, str, str], str] = field(default_factory=dict)
    # (env, role, node) of a cattle node that is alive but whose service checks fail
    sizes: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # (env, role) -> the role's count there: when most of its nodes fail, the cause is shared


def policy(heals: Mapping[str, str], grace: float, max_heals: int,
           classes: Mapping[str, str] | None = None, failing_grace: float = 0.0) -> Policy:
    return Policy({r: Heal(h) for r, h in heals.items()}, grace, max_heals, classes or {},
                  failing_grace)


def _wanted(item_cls: str, action: str, heal: Heal) -> bool:
    """Whether a role's heal asks for this work."""
    if heal is Heal.REPLACE:
        return item_cls == RoleClass.CATTLE.value and action == Action.REPAIR.value
    if heal is Heal.CONVERGE:
        return item_cls != RoleClass.CATTLE.value and action == Action.CONVERGE.value
    return False


def _report_why(cls: str, action: str, heal: Heal) -> str:
    if cls == RoleClass.PET.value and action in (Action.REPLACE.value, Action.DESTROY.value,
                                                 Action.CREATE.value):
        return "a pet is never replaced, created or destroyed by the reconciler"
    if cls == RoleClass.CATTLE.value and action == Action.REPAIR.value:
        return f'heal = "{heal.value}": set heal = "replace" to have it replaced'
    if cls != RoleClass.CATTLE.value and action == Action.CONVERGE.value:
        return f'heal = "{heal.value}": set heal = "converge" to have it converged'
    return "a person decides this one (fleet apply, fleet promote)"


def decide(plan: Plan, policy: Policy, situation: Situation) -> tuple[Finding, ...]:
    """Every change in the plan (and each probe's and expiry's) with its verdict, in the
    plan's order; expired environments last."""
    drafts: list[Finding] = []
    converging, failing = set(), set()
    for item in plan.items:
        if not item.change:
            continue  # information (awaits promotion, moved): nothing differs
        heal = policy.heal.get(item.role, Heal.REPORT)
        if _wanted(item.cls, item.action.value, heal):
            converging.add((item.env, item.target))
            drafts.append(Finding(item.env, item.role, item.cls, item.target, item.action.value,
                                  item.detail, Verdict.HEAL))
        else:
            drafts.append(Finding(item.env, item.role, item.cls, item.target, item.action.value,
                                  item.detail, Verdict.REPORT,
                                  item.blocked or _report_why(item.cls, item.action.value, heal)))
    for (env, role, instance), changed in sorted(situation.files.items()):
        if not changed or (env, instance) in converging:
            continue
        heal = policy.heal.get(role, Heal.REPORT)
        cls = RoleClass.PET.value
        drafts.append(Finding(env, role, cls, instance, FILES, changed,
                              Verdict.HEAL if heal is Heal.CONVERGE else Verdict.REPORT,
                              "" if heal is Heal.CONVERGE else _report_why(cls, FILES, heal)))
    repairing = {(f.env, f.target) for f in drafts if f.action == Action.REPAIR.value}
    per_role: dict[tuple[str, str], int] = {}
    for env, role, _ in situation.failing:
        per_role[(env, role)] = per_role.get((env, role), 0) + 1
    for (env, role, node), why in sorted(situation.failing.items()):
        if (env, node) in repairing:
            continue  # gone already: the plan's repair says so
        heal = policy.heal.get(role, Heal.REPORT)
        size = situation.sizes.get((env, role), 0)
        shared = per_role[(env, role)] * 2 > size  # most of the role: new nodes would fail too
        wanted = heal is Heal.REPLACE and not shared
        drafts.append(Finding(
            env, role, RoleClass.CATTLE.value, node, Action.REPAIR.value,
            f"{node} {why}: replaced", Verdict.HEAL if wanted else Verdict.REPORT,
            "" if wanted else
            f"{per_role[(env, role)]} of {size} {role} node(s) fail: a cause they share (a "
            "dependency down?), which new nodes would not mend" if shared else
            _report_why(RoleClass.CATTLE.value, Action.REPAIR.value, heal)))
        failing.add((env, node))
    drafts += [Finding(env, role, policy.classes.get(role, RoleClass.PET.value), instance,
                       DOWN, why, Verdict.REPORT,
                       "never replaced by the reconciler: start it again (docker start), or "
                       "fleet apply")
               for (env, role, instance), why in sorted(situation.down.items())]
    drafts += [Finding(env, "", ENVIRONMENT, env, EXPIRE, "past its expiry", Verdict.HEAL)
               for env in situation.expired]
    healed = dict(situation.healed)
    decided = []
    for f in drafts:
        if f.verdict is Verdict.HEAL:
            since = situation.first_seen.get(f.key, situation.now)
            if f.env in situation.busy:
                f = _with(f, Verdict.LOCKED, situation.busy[f.env])
            elif f.action != EXPIRE and situation.now - since < (
                    grace := max(policy.grace, policy.failing_grace)
                    if (f.env, f.target) in failing else policy.grace):
                f = _with(f, Verdict.GRACE, f"drifted {situation.now - since:.0f}s ago, grace "
                                            f"{grace:.0f}s")
            elif f.action != EXPIRE and healed.get(f.env, 0) >= policy.max_heals:
                f = _with(f, Verdict.LIMITED, f"{policy.max_heals} heal(s) in {f.env} this "
                                              "interval already")
            elif f.action != EXPIRE:
                healed[f.env] = healed.get(f.env, 0) + 1
        decided.append(f)
    return tuple(decided)


def _with(f: Finding, verdict: Verdict, why: str) -> Finding:
    return Finding(f.env, f.role, f.cls, f.target, f.action, f.detail, verdict, why)


def remember(first_seen: Mapping[str, float], findings: Iterable[Finding],
             now: float) -> dict[str, float]:
    """When each current finding was first seen: kept while it lasts, forgotten once gone."""
    return {f.key: first_seen.get(f.key, now) for f in findings}


def drift(findings: Iterable[Finding]) -> dict[tuple[str, str], int]:
    """(env, class) -> how many findings: the drift a pass saw."""
    counts: dict[tuple[str, str], int] = {}
    for f in findings:
        counts[(f.env, f.cls)] = counts.get((f.env, f.cls), 0) + 1
    return counts


_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smh])+")


def duration(text: str, flag: str, minimum: float = 0.0) -> float:
    """--interval 30s, --grace 2m: seconds; one clear line when it is not a duration."""
    if not _DURATION.fullmatch(text.strip()):
        raise FleetError(f'{flag} "{text}" is not a duration',
                         "give one such as 30s, 2m or 1h30m")
    total = sum(float(n) * {"s": 1, "m": 60, "h": 3600}[u]
                for n, u in re.findall(r"(\d+(?:\.\d+)?)([smh])", text))
    if total < minimum:
        raise FleetError(f"{flag} {text} is shorter than {minimum:g}s", f"give at least {minimum:g}s")
    return total
