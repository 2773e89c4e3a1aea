"""fleet promote, fleet rollback: a version onto an environment's channel, gated on health."""

from __future__ import annotations

import sys

import click

from fleet.cli import render, views
from fleet.cli.meta import Session, json_option


@click.command()
@click.argument("version")
@click.option("--to", "env", required=True, help="The environment to promote to.")
@click.option("--role", "roles", multiple=True, help="Only these roles (default: every cattle "
              "role baked at VERSION).")
@click.option("--wait", is_flag=True, help="Wait for another rollout of ENV, and for the soak "
              "time of the environment before, instead of failing.")
@click.option("--force", is_flag=True, help="Skip the order and soak gates (needs --reason).")
@click.option("--reason", default="", help="Why, recorded in the history.")
@click.option("--step-timeout", default=120.0, show_default=True,
              help="Seconds a step's new nodes have to pass before the rollout rolls back.")
@click.option("--yes", is_flag=True,
              help="Approve an environment with manual_approval without asking (recorded).")
@click.option("--max-surge", type=click.IntRange(min=0), default=None,
              help="Nodes a role may run above its count meanwhile, in whole batches "
                   "(default: the environment's max_surge, else one batch): 2 x batch_size "
                   "boots the next batch while the one before is gated.")
@json_option
@click.pass_obj
def promote(session: Session, version: str, env: str, roles: tuple[str, ...], wait: bool,
            force: bool, reason: str, step_timeout: float, yes: bool, max_surge: int | None,
            as_json: bool) -> None:
    """Make VERSION the channel of ENV and roll its nodes, gated on health."""
    from fleet.workflows import promote as workflow

    def approve(question: str) -> bool:
        if yes:
            return True
        return sys.stdin.isatty() and click.confirm(question, err=True)

    report = workflow.promote(session.live_context(), version, env, list(roles), wait=wait,
                              force=force, reason=reason, say=render.progress,
                              step_timeout=step_timeout, approve=approve, max_surge=max_surge)
    views.PROMOTIONS.show([report], as_json)


@click.command()
@click.argument("env")
@click.option("--role", "roles", multiple=True, help="Only these roles.")
@click.option("--wait", is_flag=True, help="Wait for another rollout of ENV instead of failing.")
@click.option("--force", is_flag=True, help="Go back past the point of no return (a "
              "post-deployment migration the previous version predates); needs --reason.")
@click.option("--reason", default="", help="Why, recorded in the history.")
@json_option
@click.pass_obj
def rollback(session: Session, env: str, roles: tuple[str, ...], wait: bool, force: bool,
             reason: str, as_json: bool) -> None:
    """Put ENV back on each role's previous version, the same gated way; never past the
    point of no return unless --force --reason."""
    from fleet.workflows import promote as workflow

    reports = workflow.rollback(session.live_context(), env, list(roles), wait=wait,
                                say=render.progress, force=force, reason=reason)
    views.PROMOTIONS.show(reports, as_json)


def register(group: click.Group) -> None:
    group.add_command(promote)
    group.add_command(rollback)
