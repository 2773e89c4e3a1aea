"""Moving a pet (`fleet move PET --to INSTANCE`): the move's state machine, its record, what a
rerun after kill -9 resumes, what --abort undoes and what --finish needs. Pure: the workflow
reads the world, asks this module what to do, does it, and records the answer. The fleet.toml
table ([roles.ROLE.move]), the cut-over weights and the verification diff are
fleet/model/cutover.py.

The steps, in order: plan -> create-target -> read-only -> copy -> verify -> cut-over (one
weight step after another) -> finishing -> finished; or aborting -> aborted; a step that fails
leaves the move `failed`, at that step, resumable or abortable.

Choices:
- **The record lives in Consul KV under <prefix>/moves/<pet>** (pet = the source instance),
  beside the channels and rollouts, written with check-and-set like them. One key per pet makes
  "one move in flight per pet" a property of the store: a move starts by writing the key with
  cas=0 if it is absent (or with the index of a finished or aborted record), so two operators
  starting moves of one pet cannot both win; every later write carries the index it read, so
  two processes driving the same move (a rerun while the killed one was not dead) conflict
  instead of both acting. A local file would not be seen from another machine; Terraform's
  state knows instances, not steps. Each step is also an event in the fleet's history.
- **A step is recorded before it acts and left only once done**: `step` is the step in
  progress, so a kill -9 anywhere leaves the step to redo, and every step is idempotent
  (RESUME says how each is redone). Nothing is credited that a kill may have cut short: a
  cut-over weight counts as done only once its soak passed with the target healthy, and a
  rerun applies that weight again and soaks it from the start.
- **No write lands anywhere but on the source until --finish**: the source refuses writes from
  read-only on, the target takes them only from finishing on. So --abort never loses a write
  and needs no reverse copy (Vitess's reverse workflow); the price is a read-only window that
  spans copy, verify and the cut-over, which the benchmark prints on its own. finishing is
  recorded before the target is made writable and the source decommissioned: from there on
  there is no way back, and --abort refuses.
- **A failed step keeps the source intact and read-only** (a verify mismatch stops the move
  with the list of what differs); a rerun retries it (RETRY: a failed verify copies again
  first), --abort puts the source back.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from fleet.errors import FleetError
from fleet.model.cutover import schedule_problem
from fleet.model.grammar import RoleClass
from fleet.model.spec import NAME

if TYPE_CHECKING:
    from fleet.model.definition import Fleet


class MoveError(FleetError):
    """A move the rules refuse, or a record that cannot be used."""


class Step(StrEnum):
    PLAN = "plan"                    # what moves, how big, how long; --dry-run stops here
    CREATE_TARGET = "create-target"  # Terraform: the target instance, same role
    READ_ONLY = "read-only"          # the source refuses writes; writes in flight drain
    COPY = "copy"                    # rsync over SSH, or the role's own way (pg_basebackup)
    VERIFY = "verify"                # git fsck and refs checksums, file checksums
    CUT_OVER = "cut-over"            # weight steps, each soaked and gated on health
    FINISHING = "finishing"          # target writable, source decommissioned (volume kept)
    FINISHED = "finished"
    ABORTING = "aborting"            # traffic, writes and target put back as they were
    ABORTED = "aborted"
    FAILED = "failed"                # stopped at `halted_at`; rerun retries, --abort undoes


ORDER = (Step.PLAN, Step.CREATE_TARGET, Step.READ_ONLY, Step.COPY, Step.VERIFY, Step.CUT_OVER,
         Step.FINISHING, Step.FINISHED)
TERMINAL = frozenset({Step.FINISHED, Step.ABORTED})
TRANSITIONS: dict[Step, frozenset[Step]] = {
    **{s: frozenset({ORDER[i + 1], Step.FAILED, Step.ABORTING})
       for i, s in enumerate(ORDER[:ORDER.index(Step.CUT_OVER)])},
    Step.CUT_OVER: frozenset({Step.FINISHING, Step.FAILED, Step.ABORTING}),
    Step.FINISHING: frozenset({Step.FINISHED, Step.FAILED}),
    Step.FAILED: frozenset({*ORDER[:-1], Step.ABORTING}),   # a rerun re-enters at RETRY's step
    Step.ABORTING: frozenset({Step.ABORTED}),
    Step.FINISHED: frozenset(),
    Step.ABORTED: frozenset(),
}
# How a rerun redoes each step after kill -9 (every one is idempotent).
RESUME: dict[Step, str] = {
    Step.PLAN: "plans again: it only reads",
    Step.CREATE_TARGET: "applies the target's Terraform again: it converges to one instance",
    Step.READ_ONLY: "sets the read-only switch again and waits again for writes to drain",
    Step.COPY: "copies again: rsync sends only what differs and deletes what the source lacks; "
               "pg_basebackup empties the target's data directory and starts over",
    Step.VERIFY: "checksums both sides again from scratch",
    Step.CUT_OVER: "sets the weights of the step not yet held again and soaks it from the start",
    Step.FINISHING: "makes the target writable and destroys the source again (both idempotent); "
                    "the source's data volume is kept",
    Step.ABORTING: "undoes again: weights back, source writable, target destroyed unless kept",
}
RETRY = {Step.VERIFY: Step.COPY}   # a failed step's retry: a mismatch is copied again first


class Outcome(StrEnum):
    STARTED = "started"
    DONE = "done"
    FAILED = "failed"
    RESUMED = "resumed"
    STOPPED = "stopped"   # by --abort


@dataclass(frozen=True)
class Entry:
    """One line of a move's own history."""

    step: Step
    outcome: Outcome
    at: str            # ISO 8601, UTC
    by: str            # user@host
    detail: str = ""   # the weight held, the error, what was undone


@dataclass(frozen=True)
class Move:
    """One move of a pet, as recorded under <prefix>/moves/<source>."""

    role: str
    source: str                # the pet instance that moves (the key)
    target: str                # the instance it moves to
    env: str
    version: str               # the image the target runs
    method: str                # how the data is copied ("rsync", "pg_basebackup")
    cutover: tuple[int, ...]   # the target's share after each weight step, ending at 100
    soak_seconds: int          # how long each weight step is held
    target_declared: bool      # fleet.toml declared the target before the move (kept on abort)
    step: Step
    started_by: str
    started_at: str
    updated_by: str
    updated_at: str
    weights_done: int = 0      # cut-over steps held (soaked, target healthy)
    halted_at: Step | None = None   # the step it failed or began aborting at
    error: str = ""
    history: tuple[Entry, ...] = ()

    @property
    def key(self) -> str:
        return key(self.source)

    @property
    def in_flight(self) -> bool:
        return self.step not in TERMINAL

    @property
    def reached(self) -> Step:
        """The furthest step taken (the one it failed or was aborted at, when it did)."""
        return self.halted_at if self.halted_at is not None else self.step

    @property
    def held(self) -> bool:
        """The cut-over is at 100 % and held: --finish may go on."""
        return self.step is Step.CUT_OVER and self.weights_done >= len(self.cutover)

    def go(self, to: Step, by: str, at: str, detail: str = "", **changes: Any) -> Move:
        """The record once the current step is done (or failed, or abort began) and `to` starts."""
        if to not in TRANSITIONS[self.step]:
            raise MoveError(f"the move of {self.source} cannot go from {self.step} to {to}")
        if to is Step.FINISHING and self.step is Step.CUT_OVER:
            refuse_finish(self)
        outcome = {Step.FAILED: Outcome.FAILED, Step.ABORTING: Outcome.STOPPED}.get(to, Outcome.DONE)
        done = () if self.step is Step.FAILED else (Entry(self.step, outcome, at, by, detail),)
        why = detail if self.step is Step.FAILED else ""   # a retry (or abort) says after what
        begun = () if to in (Step.FAILED, *TERMINAL) else (Entry(to, Outcome.STARTED, at, by, why),)
        return replace(self, step=to, updated_by=by, updated_at=at,
                       history=(*self.history, *done, *begun), **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Move:
        try:
            data: dict[str, Any] = json.loads(text)
            values = {f.name: data[f.name] for f in fields(cls)}
            halted = values["halted_at"]
            history = tuple(Entry(Step(e["step"]), Outcome(e["outcome"]), e["at"], e["by"],
                                  e["detail"]) for e in values["history"])
            move = cls(**{**values, "step": Step(values["step"]),
                          "halted_at": None if halted is None else Step(halted),
                          "cutover": tuple(values["cutover"]), "history": history})
        except (KeyError, TypeError, ValueError) as exc:
            raise MoveError(f"move record is unreadable ({type(exc).__name__}: {exc})",
                            "it was written by another tool or version; inspect it in Consul "
                            "(consul kv get -recurse <prefix>/moves/)") from exc
        bad = schedule_problem(move.cutover)
        if bad:
            raise MoveError(f"move record of {move.source} has a bad cut-over "
                            f"{list(move.cutover)}: it {bad}", "inspect it in Consul")
        return move


def key(pet: str) -> str:
    """The move's key under the fleet's KV prefix."""
    return f"moves/{pet}"


def begin(role: str, source: str, target: str, env: str, version: str, method: str,
          cutover: tuple[int, ...], soak_seconds: int, target_declared: bool, by: str,
          at: str) -> Move:
    """A new move, at its plan step."""
    return Move(role, source, target, env, version, method, tuple(cutover), soak_seconds,
                target_declared, Step.PLAN, by, at, by, at,
                history=(Entry(Step.PLAN, Outcome.STARTED, at, by),))


def next_step(move: Move) -> Step | None:
    """What the workflow does now: the step recorded (redone, as each step is idempotent), the
    step a failed move retries, or None when nothing moves until --finish or --abort (the
    cut-over held at 100 %) or the move is over. The step after a done one is in TRANSITIONS;
    a cut-over step is done only once every weight is held."""
    if move.step in TERMINAL or move.held:
        return None
    if move.step is Step.FAILED:
        return retry_step(move)
    return move.step


def retry_step(move: Move) -> Step:
    """The step a rerun of a failed move starts at."""
    failed = move.reached
    return RETRY.get(failed, failed)


def resume(move: Move, by: str, at: str) -> Move:
    """The record a rerun writes before it redoes its step: a failed move re-enters the step it
    retries (a failed cut-over from its first weight: traffic went back to the source); an
    interrupted one notes it was resumed."""
    if move.step is Step.FAILED:
        step = retry_step(move)
        weights = 0 if step is Step.CUT_OVER else move.weights_done
        return move.go(step, by, at, f"retry after: {move.error}", halted_at=None, error="",
                       weights_done=weights)
    if move.step in TERMINAL or move.step is Step.ABORTING:
        return move
    return replace(move, updated_by=by, updated_at=at,
                   history=(*move.history, Entry(move.step, Outcome.RESUMED, at, by)))


def fail(move: Move, error: str, by: str, at: str) -> Move:
    """The record of a step that failed: the move stops there, resumable or abortable. A
    cut-over that fails has had its traffic sent back to the source: no weight is held."""
    weights = 0 if move.step is Step.CUT_OVER else move.weights_done
    return move.go(Step.FAILED, by, at, error, halted_at=move.step, error=error,
                   weights_done=weights)


def weight_held(move: Move, by: str, at: str) -> Move:
    """The record once the cut-over's current weight has soaked with the target healthy."""
    if move.step is not Step.CUT_OVER or move.held:
        raise MoveError(f"the move of {move.source} has no cut-over weight to hold")
    share = move.cutover[move.weights_done]
    return replace(move, weights_done=move.weights_done + 1, updated_by=by, updated_at=at,
                   history=(*move.history, Entry(Step.CUT_OVER, Outcome.DONE, at, by,
                                                 f"{share}% held {move.soak_seconds}s")))


def target_share(move: Move) -> int:
    """The target's share of the pet's traffic (percent) the workflow sets now: none before the
    cut-over, the weight not yet held during it (the last once all are), all from finishing on;
    none again once the move fails or aborts (the source takes it all back)."""
    if move.step is Step.CUT_OVER:
        return move.cutover[min(move.weights_done, len(move.cutover) - 1)]
    return 100 if move.step in (Step.FINISHING, Step.FINISHED) else 0


def writable(move: Move) -> str:
    """The instance that accepts writes now ("" while none does: the read-only window, which
    a move that failed or is being aborted stays in until --abort is done)."""
    if move.reached in (Step.FINISHING, Step.FINISHED):
        return move.target
    if move.step is Step.ABORTED or move.reached in (Step.PLAN, Step.CREATE_TARGET):
        return move.source
    return ""


@dataclass(frozen=True)
class Undo:
    """What --abort must do, in this order."""

    traffic_to_source: bool    # weights back to 100 % source (the cut-over had begun)
    source_writable: bool      # the read-only switch off, the registration's readonly tag gone
    destroy_target: bool       # Terraform destroys the target (data and all)
    keep_target_why: str = ""  # why a target that exists is kept

    def lines(self) -> list[str]:
        out = ["traffic back to the source"] if self.traffic_to_source else []
        out += ["source writable again"] if self.source_writable else []
        out += ["target destroyed"] if self.destroy_target else []
        return out + ([f"target kept: {self.keep_target_why}"] if self.keep_target_why else [])


def abort_plan(move: Move, keep_target: bool = False) -> Undo:
    """What --abort undoes from the step the move reached. Refused once finishing began (the
    target may hold writes the source never saw) and after the move is over."""
    refuse_abort(move)
    reached = move.reached
    created = ORDER.index(reached) >= ORDER.index(Step.CREATE_TARGET)
    why = ""
    if created and move.target_declared:
        why = "fleet.toml declares it (remove it there, then fleet apply)"
    elif created and keep_target:
        why = "--keep-target"
    return Undo(traffic_to_source=reached is Step.CUT_OVER,
                source_writable=ORDER.index(reached) >= ORDER.index(Step.READ_ONLY),
                destroy_target=created and not why, keep_target_why=why)


def abort(move: Move, by: str, at: str) -> Move:
    """The record written before --abort undoes anything (a rerun of --abort carries it on)."""
    refuse_abort(move)
    if move.step is Step.ABORTING:
        return move
    return move.go(Step.ABORTING, by, at, "abort asked", halted_at=move.reached)


def refuse_abort(move: Move) -> None:
    if move.step is Step.FINISHED:
        raise MoveError(f"the move of {move.source} to {move.target} is finished: there is "
                        "nothing to abort", f"move it back: fleet move {move.target} --to NEW")
    if move.step is Step.ABORTED:
        raise MoveError(f"the move of {move.source} to {move.target} is already aborted")
    if move.reached is Step.FINISHING:
        raise MoveError(f"the move of {move.source} to {move.target} is finishing: the target "
                        "may already hold writes, so it cannot be aborted",
                        f"finish it: fleet move {move.source} --finish")


def refuse_finish(move: Move) -> None:
    """--finish needs the cut-over at 100 % and held (or a finishing to carry on)."""
    if move.step in (Step.FINISHING, Step.FINISHED) or move.held:
        return
    where = f"{move.step}" if move.step is not Step.FAILED else f"failed at {move.reached}"
    if move.step in (Step.ABORTING, Step.ABORTED):
        raise MoveError(f"the move of {move.source} was aborted: there is nothing to finish")
    if move.step is Step.CUT_OVER:
        share = target_share(move)
        raise MoveError(f"the move of {move.source} is cutting over ({move.weights_done} of "
                        f"{len(move.cutover)} weights held, {share}% on {move.target} now): "
                        "--finish needs 100 % held", "wait for it (fleet move --status), then rerun")
    raise MoveError(f"the move of {move.source} is at {where}: --finish needs the cut-over at "
                    "100 % and held", f"run fleet move {move.source} to carry it on first")


def finish(move: Move, by: str, at: str) -> Move:
    """The record written before the target is made writable and the source decommissioned."""
    refuse_finish(move)
    return move if move.step is not Step.CUT_OVER else move.go(Step.FINISHING, by, at)


def start_or_resume(existing: Move | None, source: str, target: str) -> bool:
    """Whether `fleet move SOURCE --to TARGET` resumes the move in flight (True) or starts one
    (False). A move in flight to another target is refused; target "" resumes whatever is."""
    if existing is None or not existing.in_flight:
        if not target:
            raise MoveError(f"no move of {source} is in flight", "name the target: --to INSTANCE")
        return False
    if target and existing.target != target:
        raise MoveError(f"{source} is already moving to {existing.target} (at {existing.step}, "
                        f"since {existing.started_at}, by {existing.started_by})",
                        f"carry it on (fleet move {source}) or abort it (fleet move {source} "
                        "--abort) first")
    return True


def check_target(fleet: Fleet, source: str, target: str) -> tuple[str, str, bool]:
    """(role, environment, declared) of a move from source to target: the source a pet
    instance of fleet.toml, the target another instance of its role in the same environment,
    declared there or a new name the move creates; anything else refused in one line."""
    instances = {name: (role.name, role.cls, env) for role in fleet.roles.values()
                 for env, names in role.instances.items() for name in names}
    if source not in instances or instances[source][1] is not RoleClass.PET:
        pets = sorted(n for n, (_, cls, _) in instances.items() if cls is RoleClass.PET)
        raise MoveError(f'"{source}" is not a pet instance of fleet.toml: only pets move',
                        f"pet instances: {', '.join(pets) or 'none'}")
    role, _, env = instances[source]
    if target == source:
        raise MoveError(f"{source} cannot move to itself", "name another instance: --to NAME")
    if target in instances:
        other, _, other_env = instances[target]
        if other != role:
            raise MoveError(f"{target} is an instance of {other}, not of {role}: a pet moves "
                            f"only to another instance of its own role",
                            f"name a new instance, or one of roles.{role}.instances.{env}")
        if other_env != env:
            raise MoveError(f"{target} serves {other_env}, {source} serves {env}: a pet moves "
                            "within its environment")
    elif not re.fullmatch(NAME, target):
        raise MoveError(f'"{target}" is not an instance name',
                        "lower-case letters, digits and '-', starting with a letter")
    return role, env, target in instances
