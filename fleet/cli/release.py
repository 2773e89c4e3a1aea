"""fleet release: a version through the promotion chain, stopping at manual approval; its views."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from fleet.cli import render
from fleet.cli.meta import Session, json_option, raise_if
from fleet.cli.views import View

if TYPE_CHECKING:
    from fleet.workflows.release import ReleaseReport, ReleaseStep


def _step(roles: tuple[str, ...], version: str, s: ReleaseStep) -> str:
    if s.outcome == "skipped":
        return f"{s.env}: {', '.join(roles)} at {version} (already there)"
    if s.outcome == "awaiting-approval":
        return f"{s.env}: awaiting approval ({s.detail})"
    what = "carried on" if s.carried_on else "promoted"
    rollout = f"rollout {s.rollout}, {s.steps} step(s), " if s.rollout else ""
    return f"{s.env}: {', '.join(roles)} at {version} ({what}; {rollout}{s.seconds:.1f}s)"


def _release(result: ReleaseReport) -> None:
    """One line per environment reached, then where the release ended. A failed environment
    is left to the one error line on stderr (the result's error())."""
    for s in result.steps:
        if s.outcome != "failed":
            click.echo(_step(result.roles, result.version, s))
    if result.state == "released":
        click.echo(f"released {result.version} ({', '.join(result.roles)}) through "
                   f"{' -> '.join(s.env for s in result.steps)} ({result.seconds:.1f}s)")
    elif result.state == "awaiting-approval":
        click.echo(f"{result.version} stopped at {result.stopped_at}, awaiting approval; "
                   f"to go on: {result.go_on}")


RELEASE = View(_release)


@click.command()
@click.argument("version")
@click.option("--role", "roles", multiple=True, help="Only these roles (default: every cattle "
              "role baked at VERSION).")
@click.option("--yes-to", "yes_to", default="", metavar="ENV",
              help="Approve every environment of the chain up to and including ENV without "
              "asking (recorded as approved).")
@click.option("--step-timeout", default=120.0, show_default=True,
              help="Seconds a step's new nodes have to pass before that environment is rolled "
              "back.")
@json_option
@click.pass_obj
def release(session: Session, version: str, roles: tuple[str, ...], yes_to: str,
            step_timeout: float, as_json: bool) -> None:
    """Walk VERSION through the promotion chain, waiting out each soak.

    Stops at an environment with manual_approval: asks on a terminal, else stops with exit 0
    and the command that goes on (--yes-to ENV). A failed promotion stops the release with
    that environment rolled back. A rerun of the same command carries on where it stopped.
    """
    from fleet.workflows import release as workflow

    def ask(question: str) -> bool:
        return click.confirm(question, default=False, err=True)

    report = workflow.release(session.context(), version, list(roles), yes_to=yes_to,
                              ask=ask if sys.stdin.isatty() else None, say=render.progress,
                              step_timeout=step_timeout)
    RELEASE.show(report, as_json)
    raise_if(report.error())


def register(group: click.Group) -> None:
    group.add_command(release)
