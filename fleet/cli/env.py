"""fleet env: environments that live and die (create, list, extend, pin, destroy, gc), and
(fleet/cli/envdata.py) what refreshes or rebuilds an environment's data and nodes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fleet.cli import envdata, render
from fleet.cli.meta import Session, json_option, raise_if
from fleet.cli.views import View
from fleet.model.ephemeral import Record, expires_in

if TYPE_CHECKING:
    from fleet.workflows.environments import Created, Destroyed, EnvLine, Sweep


def _lines(lines: list[EnvLine]) -> None:
    render.table("environments", ["environment", "kind", "versions", "nodes", "created by",
                                  "branch", "expires in"],
                 [[x.name + (f" ({x.state})" if x.state not in ("", "ready") else ""),
                   x.kind if not x.like else f"{x.kind}, like {x.like}",
                   ", ".join(f"{r} {v or '-'}" for r, v in x.versions.items()) or "-",
                   str(x.nodes), x.created_by or "-", x.branch or "-", x.expires_in or "-"]
                  for x in lines])


def _record(record: Record) -> None:
    import time

    click.echo(f"{record.name}: expires in {expires_in(record, time.time())}"
               f"{' (pinned)' if record.pinned else ''}")


def _created(result: Created) -> None:
    for step in result.steps:
        click.echo(f"  {step}")
    _record(result.record)


def _destroyed(result: Destroyed) -> None:
    for step in result.steps:
        click.echo(f"  {step}")
    click.echo(f"{result.name}: destroyed")


def _sweep(result: Sweep) -> None:
    if result.dry_run:
        click.echo(f"would destroy {len(result.expired)} expired environment(s)"
                   + (f": {', '.join(result.expired)}" if result.expired else ""))
        return
    click.echo(f"destroyed {len(result.destroyed)} expired environment(s)"
               + (f": {', '.join(result.destroyed)}" if result.destroyed else ""))


LIST, RECORD, CREATED = View(_lines), View(_record), View(_created)
DESTROYED, SWEEP = View(_destroyed), View(_sweep)


@click.group()
def env() -> None:
    """Environments that live and die: review apps and other ephemeral ones ([review])."""


@env.command(name="list")
@json_option
@click.pass_obj
def env_list(session: Session, as_json: bool) -> None:
    """Every environment, fixed or ephemeral: versions, nodes, who made it, when it expires."""
    from fleet.workflows import environments

    LIST.show(environments.listing(session.live_context()), as_json)


@env.command()
@click.argument("name")
@click.option("--like", help="The fixed environment to make it like (default: [review] like).")
@click.option("--ttl", help="How long it lives after its last deploy: 30m, 8h, 2d.")
@click.option("--version", help="Deploy the cattle at this version once it is made.")
@json_option
@click.pass_obj
def create(session: Session, name: str, like: str | None, ttl: str | None,
           version: str | None, as_json: bool) -> None:
    """Make an ephemeral environment NAME (or finish one a killed command left)."""
    from fleet.workflows import environments

    CREATED.show(environments.create(session.live_context(), name, like=like, ttl=ttl,
                                   version=version, say=render.progress), as_json)


@env.command()
@click.argument("name")
@click.option("--ttl", required=True, help="Its new time to live, from now: 30m, 8h, 2d.")
@json_option
@click.pass_obj
def extend(session: Session, name: str, ttl: str, as_json: bool) -> None:
    """Give an ephemeral environment more time."""
    from fleet.workflows import environments

    RECORD.show(environments.extend(session.live_context(), name, ttl), as_json)


@env.command()
@click.argument("name")
@json_option
@click.pass_obj
def pin(session: Session, name: str, as_json: bool) -> None:
    """Keep an ephemeral environment past its expiry (fleet env gc leaves it)."""
    from fleet.workflows import environments

    RECORD.show(environments.pin(session.live_context(), name, True), as_json)


@env.command()
@click.argument("name")
@json_option
@click.pass_obj
def unpin(session: Session, name: str, as_json: bool) -> None:
    """Let a pinned environment expire again."""
    from fleet.workflows import environments

    RECORD.show(environments.pin(session.live_context(), name, False), as_json)


@env.command()
@click.argument("name")
@click.option("--keep-data", is_flag=True, help="Keep its pets' data volumes.")
@json_option
@click.pass_obj
def destroy(session: Session, name: str, keep_data: bool, as_json: bool) -> None:
    """Destroy an ephemeral environment and everything of it (never a fixed one)."""
    from fleet.workflows import environments

    DESTROYED.show(environments.destroy(session.live_context(), name, keep_data=keep_data,
                                    say=render.progress), as_json)


@env.command()
@click.option("--dry-run", is_flag=True, help="Only say what has expired.")
@json_option
@click.pass_obj
def gc(session: Session, dry_run: bool, as_json: bool) -> None:
    """Destroy every ephemeral environment whose time is up and that is not pinned."""
    from fleet.workflows import environments

    result = environments.gc(session.live_context(), dry_run=dry_run, say=render.progress)
    SWEEP.show(result, as_json)
    raise_if(result.error())


def register(group: click.Group) -> None:
    envdata.register(env)  # refresh, rebuild: an environment's pet data and nodes again
    group.add_command(env)
