"""fleet converge, fleet run: work on running instances in place, over SSH."""

from __future__ import annotations

import click

from fleet.cli import render, views
from fleet.cli.meta import Session, json_option, raise_if


@click.command()
@click.argument("role")
@click.option("--env", "envs", multiple=True, help="Only this environment (repeatable).")
@click.option("--limit", default=5, show_default=True, help="Hosts worked on at once.")
@json_option
@click.pass_obj
def converge(session: Session, role: str, envs: tuple[str, ...], limit: int,
             as_json: bool) -> None:
    """Run a pet's or snowflake's provisioner on each instance in place, over SSH."""
    from fleet.workflows import remote

    report = remote.converge(session.live_context(), role, envs, limit=limit, say=render.progress)
    views.REMOTE.show(report, as_json)
    raise_if(report.error(f"converge of {role}"))


@click.command(name="run", context_settings={"ignore_unknown_options": True})
@click.argument("role")
@click.option("--env", "envs", multiple=True, help="Only this environment (repeatable).")
@click.option("--limit", default=5, show_default=True, help="Hosts worked on at once.")
@json_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def run_command(session: Session, role: str, envs: tuple[str, ...], limit: int, as_json: bool,
                command: tuple[str, ...]) -> None:
    """An ad-hoc command on every node of ROLE: fleet run ROLE [--env E] -- COMMAND."""
    import shlex

    from fleet.workflows import remote

    line = command[0] if len(command) == 1 else shlex.join(command)
    report = remote.run(session.live_context(), role, envs, line, limit=limit)
    views.REMOTE.show(report, as_json)
    raise_if(report.error(f"`{line}`"))


def register(group: click.Group) -> None:
    group.add_command(converge)
    group.add_command(run_command)
