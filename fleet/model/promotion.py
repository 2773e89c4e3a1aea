"""Promotion and rollout: channels, gates, the steps of a red/black rollout, and its state
machine. Pure: the workflow reads the world, asks this module what to do, and does it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from fleet.errors import FleetError
from fleet.model.definition import Fleet
from fleet.model.grammar import RoleClass
from fleet.model.image import ImageRecord


class PromotionError(FleetError):
    """A promotion the rules refuse."""


@dataclass(frozen=True)
class Channel:
    """The version one role should run in one environment."""

    version: str
    previous: str     # what ran before, for rollback ('' for none)
    since: str        # when its rollout finished with every node passing (ISO 8601, UTC)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Channel:
        data = json.loads(text)
        return cls(data["version"], data["previous"], data["since"])


def image_problems(role: str, version: str, record: ImageRecord | None) -> list[str]:
    """What no --force overrides: an image that is not baked, is revoked, or was pruned."""
    if record is None:
        return [f"{role}:{version} is not baked (fleet bake {role} --version {version})"]
    if record.revoked:
        return [f"{role}:{version} is revoked ({record.revoked_reason})"]
    if record.pruned:
        return [f"{role}:{version} was pruned at {record.pruned_at}: its image is gone "
                f"(fleet bake {role} --version {version} builds it again)"]
    return []


def gate(fleet: Fleet, env: str, role: str, version: str, before: Channel | None,
         before_passing: bool, seconds_since: float | None) -> list[str]:
    """Why VERSION may not go to ENV yet for ROLE (--force --reason overrides); [] if it may.

    The environment before ENV must run VERSION, with its nodes passing, for at least its
    soak time. An ephemeral environment is outside the chain: nothing gates it.
    """
    if fleet.environment(env).ephemeral:
        return []
    order = tuple(e.name for e in fleet.chain)
    index = order.index(env)
    if index == 0:
        return []
    previous = order[index - 1]
    if before is None or before.version != version:
        running = before.version if before else "nothing"
        return [f"{role}:{version} has not been promoted to {previous} first "
                f"({previous} runs {running}); environments go {' -> '.join(order)}"]
    if not before_passing:
        return [f"{role}:{version} is not passing in {previous}"]
    soak = fleet.chain[index - 1].soak_seconds
    if seconds_since is None or seconds_since < soak:
        waited = 0 if seconds_since is None else int(seconds_since)
        return [f"{role}:{version} has soaked {waited}s in {previous}, which needs {soak}s"]
    return []


def weight(fleet: Fleet, env: str, role: str) -> int:
    """Consul Weights.Passing for a node of ROLE in ENV.

    Nodes weigh 100, except in an environment with a canary_weight of W percent: its nodes
    weigh so much that, next to the last environment's nodes (the ones serving everyone), they
    get W percent of the role's traffic.
    """
    environment = fleet.environment(env)
    last = fleet.chain[-1].name
    share = environment.canary_weight
    counts = fleet.roles[role].count
    if share == 0 or env == last or counts[env] == 0 or counts[last] == 0:
        return 100
    return max(1, round(100 * counts[last] * share / (counts[env] * (100 - share))))


def promotable_roles(fleet: Fleet, baked: Mapping[str, ImageRecord | None],
                     asked: list[str]) -> list[str]:
    """The cattle roles a promotion covers: those asked, or every cattle role baked at it."""
    if asked:
        for name in asked:
            if fleet.role(name).cls is not RoleClass.CATTLE:
                raise PromotionError(f"{name} is a {fleet.roles[name].cls.value}: only cattle are "
                                     "promoted", "pets and snowflakes change through fleet apply")
        return list(dict.fromkeys(asked))
    roles = [r.name for r in fleet.roles.values()
             if r.cls is RoleClass.CATTLE and baked.get(r.name) is not None]
    if not roles:
        raise PromotionError("no cattle role is baked at that version",
                             "bake it first (fleet bake --all --version V) or name --role")
    return roles


Groups = dict[str, int]   # version -> node count, for one role in one environment


def steps(current: Mapping[str, int], target: str, count: int, batch: int,
          max_surge: int = 0) -> list[Groups]:
    """Red/black, batch by batch: the desired groups after each Terraform apply.

    Each apply grows the new group by `batch` and, in the same apply, shrinks the old groups
    to what the new nodes that already passed do not cover yet; the workflow waits until the
    grown nodes pass before the next apply, and a last apply removes the rest of the old nodes.
    So passing nodes stay at or above `count` (or what ran before, if less) throughout, also
    when an apply is cut short: an apply only removes old nodes that passing new ones replaced
    (see `must_pass`). N nodes in batches of B take ceil(N/B) + 1 applies.

    max_surge: how many nodes the role may run above `count` at once, as Kubernetes' maxSurge
    and an ASG instance refresh's max healthy percentage allow; 0 or `batch` (the default) is
    the shape above: one batch booting at a time. In whole batches: with k = max_surge // batch
    batches, the next batch boots while the k - 1 before it are still gated, and an apply
    removes the old nodes covered by the new ones made k applies before (those the gate before
    it waits for: `after_need`). Once the new group is whole, one last apply removes every old
    node, after all new ones pass. The floor holds as before: an old node goes only once a
    passing new one covers it. Same number of applies; less time when a batch's boot, not the
    host, is what an apply waits for.

    Old groups stay in the result at 0 once empty: they are kept until cleanup, so a rollback
    re-grows them.
    """
    ahead = max(1, max_surge // batch) if max_surge else 1
    groups: Groups = dict(current)
    groups.setdefault(target, 0)
    made = [groups[target]]  # the new group's size after each apply so far (made[0]: before)
    out: list[Groups] = []
    while True:
        new = groups[target]
        grown = min(count, new + batch) if new < count else count
        covered = made[max(0, len(made) - ahead)] if grown > new else new
        keep = max(0, count - covered)  # old nodes the gated new ones do not cover yet
        following = {target: grown}
        for version in sorted(v for v in groups if v != target):
            following[version] = min(groups[version], keep)
            keep -= following[version]
        if following == groups:
            return out
        out.append(following)
        made.append(grown)
        groups = following


def must_pass(before: Mapping[str, int], after: Mapping[str, int], target: str,
              count: int) -> int:
    """How many nodes of `target` must pass before the apply from `before` to `after` is safe.

    The old nodes the apply removes must be covered by new nodes that already pass; nodes the
    apply itself creates cannot count, so this is at most the new nodes there are before it.
    """
    old_after = sum(n for v, n in after.items() if v != target)
    return max(0, min(before.get(target, 0), count - old_after))


def floor(count: int, min_healthy_percent: int) -> int:
    """How many nodes of a role must pass in an environment at every moment."""
    return math.ceil(count * min_healthy_percent / 100)


class Purpose(StrEnum):
    """What the command that started a rollout asked for: it decides what a later command does
    with the rollout if it is left unfinished (see `superseded`)."""

    PROMOTE = "promote"     # fleet promote (and apply): the roles to a version
    ROLLBACK = "rollback"   # fleet rollback: the roles back to their previous version


class RolloutState(StrEnum):
    ROLLING = "rolling"
    DONE = "done"
    ROLLING_BACK = "rolling-back"
    ROLLED_BACK = "rolled-back"


TRANSITIONS: dict[RolloutState, set[RolloutState]] = {
    RolloutState.ROLLING: {RolloutState.ROLLING, RolloutState.DONE, RolloutState.ROLLING_BACK},
    RolloutState.ROLLING_BACK: {RolloutState.ROLLING_BACK, RolloutState.ROLLED_BACK},
    RolloutState.DONE: set(),
    RolloutState.ROLLED_BACK: set(),
}


@dataclass(frozen=True)
class Rollout:
    """One environment's rollout, as stored in Consul before each step is taken."""

    id: str
    env: str
    version: str
    roles: tuple[str, ...]
    previous: dict[str, str]                 # role -> version before
    plan: dict[str, list[Groups]]            # role -> desired groups per half-step
    step: int                                # half-steps of plan already applied
    state: RolloutState
    started_by: str
    started_at: str
    reason: str = ""
    groups: dict[str, Groups] = field(default_factory=dict)  # role -> groups now
    purpose: Purpose = Purpose.PROMOTE
    max_surge: int = 0  # steps' max_surge, which a rollback of this rollout keeps (0: a batch)

    @property
    def finished(self) -> bool:
        return self.state in (RolloutState.DONE, RolloutState.ROLLED_BACK)

    def total_steps(self) -> int:
        return max((len(p) for p in self.plan.values()), default=0)

    def move(self, state: RolloutState, **changes: Any) -> Rollout:
        if state not in TRANSITIONS[self.state]:
            raise PromotionError(f"rollout {self.id} cannot go from {self.state} to {state}")
        return replace(self, state=state, **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Rollout:
        d = json.loads(text)
        # a rollout recorded before rollouts knew their purpose was a promotion's, or an
        # unfinished rollback's, which was then treated alike: read it as a promotion
        purpose = Purpose(d["purpose"]) if "purpose" in d else Purpose.PROMOTE
        return cls(d["id"], d["env"], d["version"], tuple(d["roles"]), d["previous"], d["plan"],
                   d["step"], RolloutState(d["state"]), d["started_by"], d["started_at"],
                   d["reason"], d["groups"], purpose, d.get("max_surge", 0))


def superseded(found: Rollout, command: Purpose, version: str = "") -> bool:
    """Whether a command (a promotion of VERSION, or a rollback) that finds FOUND unfinished
    rolls it back before it does its own work (True), or carries it on (False).

    A rollback under way is always carried on: it puts back what ran before. Otherwise
    `fleet rollback` carries on an unfinished rollback (the rollback it asks for again: rolling
    it back would undo it) and rolls back an unfinished promotion (that is the rollback asked
    for); a promotion carries on a rollout to its own version and supersedes any other.
    """
    if found.state is not RolloutState.ROLLING:
        return False
    if command is Purpose.ROLLBACK:
        return found.purpose is Purpose.PROMOTE
    return found.version != version


def settles_rollback(final: Rollout) -> bool:
    """Whether a rollout left unfinished, once `fleet rollback` carried it to FINAL, is the
    rollback asked for, for its roles: a promotion undone, or a rollback done. A rollback that
    had to be undone (its nodes failed) is not."""
    if final.purpose is Purpose.PROMOTE:
        return final.state is RolloutState.ROLLED_BACK
    return final.state is RolloutState.DONE


def groups_at(rollout: Rollout, role: str, step: int) -> Groups:
    """The desired groups of a role after `step` half-steps (its last ones once it is done)."""
    plan = rollout.plan[role]
    if step <= 0 or not plan:
        return dict(rollout.groups.get(role, {}))
    return dict(plan[min(step, len(plan)) - 1])


def after_need(rollout: Rollout, role: str, step: int, target: str, count: int) -> int:
    """How many nodes of `target` must pass once apply number `step` of the role's plan is
    done: what the next apply's `must_pass` asks, or, after the role's last one, every new
    node. With one batch booting at a time that is every new node of the step; with a surge
    (steps' max_surge), only those the next apply's removals need: the next batch boots while
    the rest are still gated."""
    after = groups_at(rollout, role, step)
    if step >= len(rollout.plan[role]):
        return after.get(target, 0)
    return must_pass(after, groups_at(rollout, role, step + 1), target, count)
