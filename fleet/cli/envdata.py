"""fleet env refresh ENV --from SRC, fleet env rebuild ENV: a fixed environment's data and
nodes made again. `register` adds both to the `fleet env` group (fleet/cli/env.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fleet.cli import render
from fleet.cli.meta import Session, json_option
from fleet.cli.views import View

if TYPE_CHECKING:
    from fleet.workflows.rebuild import RebuildReport
    from fleet.workflows.refresh import RefreshReport


def _refreshed(result: RefreshReport) -> None:
    for pet in result.pets:
        scrub = f", scrubbed by {pet.scrub}" if pet.scrub else ", no scrub declared"
        click.echo(f"  {pet.target} <- {pet.source} (snapshot {pet.snapshot}, sha256 "
                   f"{pet.sha256[:12]}{scrub})")
    click.echo(f"{result.env}: pet data refreshed from {result.source} ({len(result.pets)} "
               f"pet(s), {result.seconds:.1f}s)")


def _rebuilt(result: RebuildReport) -> None:
    for name in (*result.machines, *result.cattle):
        click.echo(f"  {name}: created again")
    click.echo(f"{result.env}: rebuilt {len(result.machines)} pet(s) and snowflake(s), "
               f"{len(result.cattle)} cattle node(s) ({result.seconds:.1f}s)")


REFRESHED, REBUILT = View(_refreshed), View(_rebuilt)


@click.command()
@click.argument("env_name", metavar="ENV")
@click.option("--from", "source", required=True,
              help="The environment whose pet data is copied (later in the chain than ENV).")
@json_option
@click.pass_obj
def refresh(session: Session, env_name: str, source: str, as_json: bool) -> None:
    """Replace ENV's pet data with a copy of SRC's, each role's scrub run on it first."""
    from fleet.workflows import refresh as workflow

    REFRESHED.show(workflow.refresh(session.live_context(), env_name, source, render.progress),
                   as_json)


@click.command()
@click.argument("env_name", metavar="ENV")
@json_option
@click.pass_obj
def rebuild(session: Session, env_name: str, as_json: bool) -> None:
    """Create every node of ENV again (cattle at their channels, pets on their data)."""
    from fleet.workflows import rebuild as workflow

    REBUILT.show(workflow.rebuild(session.live_context(), env_name, render.progress), as_json)


def register(group: click.Group) -> None:
    """Add `refresh` and `rebuild` to a group (`fleet env`)."""
    group.add_command(refresh)
    group.add_command(rebuild)
