"""fleet move: a pet's data moved to another instance of its role, step by step, reversible
until --finish (fleet/workflows/move)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fleet.cli import render
from fleet.cli.meta import Session, json_option
from fleet.cli.views import View

if TYPE_CHECKING:
    from fleet.model.move import Move
    from fleet.workflows.move import MoveReport


def _line(m: Move) -> str:
    share = f", {m.weights_done}/{len(m.cutover)} weights held" if m.weights_done else ""
    error = f": {m.error}" if m.error else ""
    where = f"{m.step} at {m.reached}" if m.halted_at else str(m.step)
    return f"{m.source} -> {m.target} ({m.role}, {m.env}, {m.version}): {where}{share}{error}"


def _report(result: MoveReport) -> None:
    click.echo(_line(result.move))
    if result.next:
        click.echo(f"  next: {result.next}")


def _status(result: list[Move]) -> None:
    if not result:
        render.progress("no moves on record: fleet move PET --to INSTANCE starts one")
        return
    render.table("moves", ["pet", "to", "role", "env", "step", "cut-over", "updated", "by"],
                 [[m.source, m.target, m.role, m.env,
                   f"{m.step} at {m.reached}" if m.halted_at else str(m.step),
                   f"{m.weights_done}/{len(m.cutover)} of {','.join(map(str, m.cutover))}%",
                   m.updated_at, m.updated_by] for m in result])


REPORT, STATUS = View(_report), View(_status)


@click.command()
@click.argument("pet", required=False)
@click.option("--to", "to", default="", help="The instance it moves to: another of its role in "
              "its environment, declared in fleet.toml or new.")
@click.option("--version", default="", help="The image version the target runs (default: the "
              "role's current image).")
@click.option("--dry-run", is_flag=True, help="Plan only: what moves, how big, how long.")
@click.option("--finish", "finish_", is_flag=True, help="Once the cut-over is held at 100 %: the "
              "target takes writes, the source is decommissioned (its volume kept).")
@click.option("--abort", "abort_", is_flag=True, help="Before --finish: traffic and writes back "
              "on the source, the target destroyed unless fleet.toml declares it.")
@click.option("--purge", is_flag=True, help="After --finish: remove the source's data volume.")
@click.option("--status", "status_", is_flag=True, help="Every move on record and its step.")
@json_option
@click.pass_obj
def move(session: Session, pet: str | None, to: str, version: str, dry_run: bool,
         finish_: bool, abort_: bool, purge: bool, status_: bool, as_json: bool) -> None:
    """Move PET's data to another instance: plan, create the target, source read-only, copy,
    verify, cut over by weight; then --finish (or --abort). Rerun to carry a move on."""
    from fleet.workflows import move as moves

    chosen = [n for n, on in (("--finish", finish_), ("--abort", abort_), ("--purge", purge),
                              ("--status", status_), ("--dry-run", dry_run)) if on]
    if len(chosen) > 1:
        raise click.UsageError(f"{' and '.join(chosen)} do not go together")
    ctx = session.context()
    if status_:
        STATUS.show(moves.status(ctx), as_json)
        return
    if not pet:
        raise click.UsageError("name the pet instance to move (or --status)")
    if (finish_ or abort_ or purge) and to:
        raise click.UsageError(f"{chosen[0]} takes no --to: it acts on the move in flight")
    if finish_:
        REPORT.show(moves.finish(ctx, pet, render.progress), as_json)
    elif abort_:
        REPORT.show(moves.abort(ctx, pet, render.progress), as_json)
    elif purge:
        click.echo(f"removed {moves.purge(ctx, pet, render.progress)}")
    else:
        REPORT.show(moves.run(ctx, pet, to, version=version, dry_run=dry_run,
                              say=render.progress), as_json)


def register(group: click.Group) -> None:
    group.add_command(move)
