"""fleet move PET --to INSTANCE: a pet's data moved to another instance of its role without
losing a write, reversible until --finish. The state machine and its record are
fleet/model/move.py (read its doc: what each step is, what a rerun after kill -9 redoes, what
--abort undoes); what each step does to the world is `world`.

The driver: a move is started by recording it (check-and-set: one move per pet), then each
step is done and the record moved on before the next, the environment's lock held throughout
(no rollout, restore or other move of that environment meanwhile; a holder killed with -9 is
taken over, services/lock.py). A step that fails records `failed` with why and raises; the
source stays read-only and intact; a rerun retries it, --abort undoes. The cut-over stops at
100 % held: only `--finish` decommissions the source (its data volume is kept until
`--purge`). Every recorded step is also an event in the fleet's history.

Choices where the issue is silent:
- `--to` names an instance fleet.toml declares for the role in the same environment, or a new
  name; the move keeps a new one in Terraform's state (fleet/model/moved.py) until someone
  writes it into fleet.toml, and `fleet plan` never destroys it meanwhile.
- The target runs the version `--version` names, else the role's current image.
- A copy method other than rsync (pg_basebackup) is refused for now, naming it: the example's
  database is not moved by this command yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fleet.adapters import docker
from fleet.errors import FleetError
from fleet.model.cutover import MoveSettings, weights_for
from fleet.model.image import current
from fleet.model.move import (
    ORDER,
    Move,
    MoveError,
    Step,
    abort_plan,
    begin,
    check_target,
    fail,
    next_step,
    resume,
    start_or_resume,
    weight_held,
)
from fleet.model.move import abort as aborting
from fleet.model.move import finish as finishing
from fleet.services.catalog import Catalog
from fleet.services.context import Context, who
from fleet.services.lock import env_lock
from fleet.services.moves import Moves
from fleet.services.state import FleetState, now
from fleet.workflows.move import world

Say = Callable[[str], None]


@dataclass(frozen=True)
class MoveReport:
    move: Move
    size: int = 0            # bytes of the pet's data (the plan's survey)
    estimate: float = 0.0    # seconds the copy is expected to take
    dry_run: bool = False

    @property
    def next(self) -> str:
        """What the person does now."""
        m = self.move
        if self.dry_run:
            return f"fleet move {m.source} --to {m.target} to move it"
        if m.held:
            return f"fleet move {m.source} --finish decommissions {m.source}, or --abort"
        if m.step is Step.FINISHED:
            return f"rename {m.source} to {m.target} in fleet.toml; --purge drops the old volume"
        return ""


def status(ctx: Context) -> list[Move]:
    """Every move on record: those in flight first."""
    return sorted(Moves(ctx.consul(), ctx.fleet.kv_prefix).all(),
                  key=lambda m: (not m.in_flight, m.source))


def run(ctx: Context, source: str, target: str, *, version: str = "", dry_run: bool = False,
        say: Say) -> MoveReport:
    """Start the move of source to target, or carry on the one in flight (target '')."""
    moves = Moves(ctx.consul(), ctx.fleet.kv_prefix)
    existing, index = moves.get(source)
    if start_or_resume(existing, source, target):
        assert existing is not None
        if dry_run:   # what is in flight, untouched
            return MoveReport(existing)
        with env_lock(ctx.consul(), ctx.fleet.kv_prefix, existing.env, wait=False, say=say):
            return MoveReport(_drive(ctx, moves, source, say, rerun=True))
    move = _new(ctx, source, target, version)
    size = world.survey(ctx, move, fresh=True)
    report = MoveReport(move, size, world.estimate(size), dry_run)
    say(f"{source} -> {target} ({move.role}, {move.env}, {move.version}): {size} bytes to copy, "
        f"~{report.estimate}s at {world.RATE / 1e6:.0f} MB/s; cut-over "
        f"{' -> '.join(f'{w}%' for w in move.cutover)}, {move.soak_seconds}s each")
    if dry_run:
        return report
    with env_lock(ctx.consul(), ctx.fleet.kv_prefix, move.env, wait=False, say=say):
        moves.write(move, index, None)
        return MoveReport(_drive(ctx, moves, source, say), size, report.estimate)


def _new(ctx: Context, source: str, target: str, version: str) -> Move:
    role, env, declared = check_target(ctx.fleet, source, target)
    settings = ctx.fleet.role(role).move or MoveSettings()
    if settings.method != "rsync":
        raise MoveError(f"{role} moves with {settings.method}, which fleet move does not do yet",
                        "move it by hand (pg_basebackup), or use fleet snapshot")
    catalog = Catalog(ctx.consul(), ctx.fleet.kv_prefix)
    if version:
        catalog.require(role, version)
    else:
        image = current(catalog.records(role))
        if image is None:
            raise MoveError(f"{role} has no image to run the target on", f"fleet bake {role}")
        version = image.version
    return begin(role, source, target, env, version, settings.method, settings.cutover,
                 settings.soak_seconds, declared, who(), now())


def _drive(ctx: Context, moves: Moves, source: str, say: Say, rerun: bool = False) -> Move:
    """Each step in turn, recorded before the next, until the cut-over is held or it fails."""
    by = who()
    move, index = moves.get(source)
    assert move is not None
    if move.step is Step.ABORTING:
        raise MoveError(f"the move of {source} is being aborted", f"fleet move {source} --abort "
                        "finishes that")
    if rerun or move.step is Step.FAILED:   # say so in the record
        index, move = moves.write(resumed := resume(move, by, now()), index, move), resumed
    while (step := next_step(move)) is not None:
        say(f"{source}: {step}")
        try:
            detail = _do(ctx, move, step, say)
        except FleetError as exc:
            moves.write(fail(move, exc.what, by, now()), index, move)
            raise MoveError(f"the move of {source} to {move.target} failed at {step}: {exc.what}",
                            exc.fix or f"fix it and run fleet move {source} again, or "
                            f"fleet move {source} --abort") from exc
        if step is Step.CUT_OVER:
            done = weight_held(move, by, now())
        elif step is Step.FINISHING:
            done = move.go(Step.FINISHED, by, now(), detail)
        else:
            done = move.go(ORDER[ORDER.index(step) + 1], by, now(), detail)
        index, move = moves.write(done, index, move), done
    return move


def _do(ctx: Context, move: Move, step: Step, say: Say) -> str:
    """One step's work on the world (each idempotent); a line for the history."""
    planfile = ctx.state_dir / "plans" / f"move-{move.source}.tfplan"
    if step is Step.PLAN:
        size = world.survey(ctx, move, fresh=True)
        return f"{size} bytes, ~{world.estimate(size)}s"
    if step is Step.CREATE_TARGET:
        if not world.running(ctx, move.target):   # no trace of an old node of its name first
            world.stop(ctx, move.target)
        world.terraform(ctx, move, [move.target], planfile)
        world.wait_passing(ctx, move, move.target)
        return f"{move.target} runs {move.role}:{move.version}, held back from traffic"
    if step is Step.READ_ONLY:
        world.read_only(ctx, move, say)
        return f"{move.source} refuses writes"
    if step is Step.COPY:
        world.copy(ctx, move, say)
        return "rsync over SSH"
    if step is Step.VERIFY:
        return f"{world.verify(ctx, move)} repositories and files match"
    if step is Step.CUT_OVER:
        world.soak(ctx, move, move.cutover[move.weights_done], say)
        return ""
    if step is Step.FINISHING:
        world.forget_volume(ctx, move, move.source)           # kept: out of Terraform's hands
        writable = f"{world.DATA} read-only off"
        if world.held_back(ctx, move):                        # not yet replaced (a rerun)
            # writable first (the flag is on its volume): it takes writes once it is back;
            # the source serves reads meanwhile
            if world.running(ctx, move.target):
                world.on(ctx, move.target, writable, "making the target writable")
            say(f"{move.target}: made again, registered as declared (the source serves)")
            world.stop(ctx, move.target)
            world.terraform(ctx, move, [move.target], planfile)   # registered as declared
        world.wait_passing(ctx, move, move.target)
        say(f"{move.target} passes; decommissioning {move.source}")
        world.on(ctx, move.target, writable, "making the target writable")
        world.terraform(ctx, move, [move.source], planfile)   # decommissioned
        return f"{move.target} takes writes; {move.source} decommissioned, its volume kept"
    raise MoveError(f"the move of {move.source} has no work at {step}")


@contextmanager
def _locked(ctx: Context, moves: Moves, source: str, say: Say) -> Iterator[tuple[Move, int]]:
    """The move of source on record, read again once its environment's lock is held."""
    move, _ = moves.get(source)
    if move is None:
        raise MoveError(f"no move of {source} is on record", "fleet move --status lists them")
    with env_lock(ctx.consul(), ctx.fleet.kv_prefix, move.env, wait=False, say=say):
        move, index = moves.get(source)
        assert move is not None
        yield move, index


def finish(ctx: Context, source: str, say: Say) -> MoveReport:
    """--finish: the target writable, the source decommissioned (its volume kept)."""
    moves = Moves(ctx.consul(), ctx.fleet.kv_prefix)
    with _locked(ctx, moves, source, say) as (move, index):
        begun = finishing(move, who(), now())
        if begun is not move:
            moves.write(begun, index, move)
        return MoveReport(_drive(ctx, moves, source, say, rerun=begun is move))


def abort(ctx: Context, source: str, say: Say) -> MoveReport:
    """--abort: traffic and writes back on the source, the target destroyed unless declared."""
    moves = Moves(ctx.consul(), ctx.fleet.kv_prefix)
    with _locked(ctx, moves, source, say) as (move, index):
        stopped = aborting(move, who(), now())
        index = moves.write(stopped, index, move) if stopped is not move else index
        undo = abort_plan(stopped)
        for line in undo.lines():
            say(f"{source}: {line}")
        if undo.traffic_to_source:
            try:   # the target may be the reason for the abort: down, unreachable
                world.weigh(ctx, stopped.target, weights_for(0), readonly=True)
            except FleetError as exc:
                say(f"{source}: the target's weights stay as they were ({exc.what})")
            world.weigh(ctx, source, None, readonly=False)
        if undo.source_writable:   # and the copy's grant gone, if a killed copy left it
            world.on(ctx, source, f"rm -f {world.KEYS} && {world.DATA} read-only off",
                     "making the source writable")
            world.weigh(ctx, source, None, readonly=False)
        if undo.destroy_target:
            world.forget_volume(ctx, stopped, stopped.target)
            world.terraform(ctx, stopped, [stopped.target],
                            ctx.state_dir / "plans" / f"move-{source}.tfplan")
            world.stop(ctx, stopped.target)   # out of Consul: a next move may take its name
            volume = f"{world.container(ctx, stopped.target)}-data"
            if docker.volume_exists(volume):
                docker.remove_volumes([volume])
        done = stopped.go(Step.ABORTED, who(), now(), "; ".join(undo.lines()))
        moves.write(done, index, stopped)
        return MoveReport(done)


def purge(ctx: Context, source: str, say: Say) -> str:
    """--purge: the data volume a finished move left behind, removed."""
    move, _ = Moves(ctx.consul(), ctx.fleet.kv_prefix).get(source)
    if move is None or move.step is not Step.FINISHED:
        raise MoveError(f"{source} has no finished move: its data volume is its own",
                        "--purge follows fleet move --finish")
    volume = f"{world.container(ctx, source)}-data"
    if docker.volume_exists(volume):
        FleetState(ctx.consul(), ctx.fleet.kv_prefix).record(
            {"event": "move-purged", "env": move.env, "roles": [move.role], "pet": source,
             "volume": volume, "who": who()})
        docker.remove_volumes([volume])
        say(f"removed {volume}")
    return volume
