"""fleet db rehearse: a version's pending migrations run on a copy of an environment's
database, in isolation; the verdict admits the version where `require_rehearsal` is set."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fleet.cli import render
from fleet.cli.meta import Session, json_option
from fleet.cli.views import View
from fleet.errors import FleetError

if TYPE_CHECKING:
    from fleet.model.rehearsal import Rehearsal


def _size(before: int, after: int) -> str:
    return f"{before / 1048576:.1f} -> {after / 1048576:.1f} MiB" if before or after else "-"


def _rehearsals(result: list[Rehearsal]) -> None:
    for r in result:
        click.echo(f"{r.role}:{r.version} on {r.env}'s data: "
                   f"{'passed' if r.passed else 'FAILED'} in {r.seconds:.1f}s "
                   f"(snapshot {r.snapshot or 'none'})")
        if r.error:
            click.echo(f"  {r.error}")
        if r.migrations:
            render.table(f"{r.role}:{r.version} migrations", ["migration", "kind", "seconds",
                                                              "locks", "lock wait", "tables",
                                                              "error"],
                         [[f"{m.id}_{m.name}", str(m.kind), f"{m.seconds:.3f}",
                           ", ".join(m.locks) or "-", f"{m.lock_wait_seconds:.2f}s",
                           _size(m.bytes_before, m.bytes_after), m.error or "-"]
                          for m in r.migrations])
        if r.schema_diff:
            click.echo(r.schema_diff)


REHEARSALS = View(_rehearsals)


@click.group()
def db() -> None:
    """The databases of the pets: rehearse a version's migrations on a copy."""


@db.command()
@click.argument("version")
@click.option("--env", "env", required=True, help="The environment whose data is copied "
              "(a pets_from borrower's is its lender's).")
@click.option("--role", default=None, help="One role (default: every role whose image at "
              "VERSION carries migrations).")
@json_option
@click.pass_obj
def rehearse(session: Session, version: str, env: str, role: str | None, as_json: bool) -> None:
    """Run VERSION's pending migrations on a throwaway copy of ENV's database and record the
    verdict (durations, locks, table sizes, schema difference); ENV's data is not touched."""
    from fleet.workflows import rehearse as workflow

    verdicts = workflow.rehearse(session.context(), version, env, role, render.progress)
    REHEARSALS.show(verdicts, as_json)
    failed = [v for v in verdicts if not v.passed]
    if failed:
        raise FleetError(f"rehearsal of {failed[0].role}:{version} {failed[0].summary()}",
                         "fix the migration in a new version (never edit one that ran), bake, "
                         "rehearse again")


def register(group: click.Group) -> None:
    group.add_command(db)
