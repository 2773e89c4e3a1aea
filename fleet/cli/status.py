"""fleet status, fleet history: what runs where, and what happened."""

from __future__ import annotations

import click

from fleet.cli import views
from fleet.cli.meta import Session, json_option


@click.command()
@click.argument("env", required=False)
@click.option("--role", help="Only events about this role.")
@json_option
@click.pass_obj
def history(session: Session, env: str | None, role: str | None, as_json: bool) -> None:
    """Every promotion, rollout step, gate result and rollback: who, when, what, outcome."""
    from fleet.workflows import status as workflow

    views.HISTORY.show(workflow.history(session.context(), env, role), as_json)


@click.command(name="status")
@click.argument("envs", nargs=-1)
@json_option
@click.pass_obj
def fleet_status(session: Session, envs: tuple[str, ...], as_json: bool) -> None:
    """Cattle per environment and role: channel, desired and passing nodes, canary share."""
    from fleet.workflows import status as workflow

    views.STATUS.show(workflow.status(session.context(), list(envs)), as_json)


def register(group: click.Group) -> None:
    group.add_command(history)
    group.add_command(fleet_status)
