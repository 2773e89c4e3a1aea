"""fleet review up / down: a review app per branch (fleet/workflows/review.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from fleet.cli import render
from fleet.cli.meta import Session, json_option
from fleet.cli.views import View
from fleet.model.ephemeral import expires_in

if TYPE_CHECKING:
    from fleet.workflows.environments import Destroyed
    from fleet.workflows.review import ReviewApp


def _app(app: ReviewApp) -> None:
    done = "made" if app.created else "updated"
    click.echo(f"{app.env}: {done} from {app.branch} at {app.commit[:12]}, version "
               f"{app.version}; expires in {expires_in(app.record, time.time())}")
    for e in app.endpoints:
        click.echo(f"  {e.role} {e.service}: {e.url} ({e.node}, "
                   f"{'passing' if e.passing else 'not passing'})")


def _down(result: Destroyed) -> None:
    click.echo(f"{result.name}: destroyed")


APP, DOWN = View(_app), View(_down)


@click.group()
def review() -> None:
    """Review apps: an ephemeral environment per branch, made and updated from the checkout."""


@review.command()
@click.argument("branch", required=False)
@json_option
@click.pass_obj
def up(session: Session, branch: str | None, as_json: bool) -> None:
    """Bake the checkout, make or update BRANCH's review app (default: the checked-out
    branch), and say where it answers. Each run resets its expiry."""
    from fleet.workflows import review as workflow

    APP.show(workflow.up(session.live_context(), branch, say=render.progress), as_json)


@review.command()
@click.argument("branch", required=False)
@click.option("--keep-data", is_flag=True, help="Keep its pets' data volumes.")
@json_option
@click.pass_obj
def down(session: Session, branch: str | None, keep_data: bool, as_json: bool) -> None:
    """Destroy BRANCH's review app (default: the checked-out branch's)."""
    from fleet.workflows import review as workflow

    DOWN.show(workflow.down(session.live_context(), branch, keep_data=keep_data,
                            say=render.progress), as_json)


def register(group: click.Group) -> None:
    group.add_command(review)
