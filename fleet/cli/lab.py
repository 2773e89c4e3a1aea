"""fleet lab up|down|status|reset: the local lab."""

from __future__ import annotations

import sys
import time

import click

from fleet.cli import render, views
from fleet.cli.meta import Session, json_option, raise_if
from fleet.errors import FleetError


@click.group()
def lab() -> None:
    """The local lab: real Consul, OpenBao, Docker and the base image on this machine."""


@lab.command()
@json_option
@click.pass_obj
def up(session: Session, as_json: bool) -> None:
    """Start every part of the lab; does nothing when all are up."""
    from fleet.workflows import lab as workflow

    started = time.monotonic()
    report = workflow.up(session.context(), render.progress)
    views.LAB.show(report, as_json)
    raise_if(report.error())
    render.progress(f"lab up in {time.monotonic() - started:.1f}s")


@lab.command()
@json_option
@click.pass_obj
def down(session: Session, as_json: bool) -> None:
    """Stop what the lab started, by PID; its data stays."""
    from fleet.workflows import lab as workflow

    views.LAB.show(workflow.down(session.context(), render.progress), as_json)


@lab.command()
@json_option
@click.pass_obj
def status(session: Session, as_json: bool) -> None:
    """Each part of the lab: state, version, address. Exit 1 if any is not up."""
    from fleet.workflows import lab as workflow

    report = workflow.status(session.context())
    views.LAB.show(report, as_json)
    raise_if(report.error())


@lab.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_obj
def reset(session: Session, yes: bool, as_json: bool) -> None:
    """Wipe the lab: its containers, network, Consul data and OpenBao data and keys."""
    from fleet.workflows import lab as workflow

    ctx = session.context()
    if not yes:
        if not sys.stdin.isatty():
            raise FleetError("lab reset wipes all lab state and needs confirmation",
                             "pass --yes to confirm without a terminal")
        click.confirm(f"Wipe all lab state under {ctx.state_dir / 'lab'}?", abort=True)
    views.LAB.show(workflow.reset(ctx, render.progress), as_json)


@lab.command(name="boots", hidden=True)
@click.pass_obj
def boots(session: Session) -> None:
    """Hand the fleet's rebooted nodes their credentials again (`lab up` runs it)."""
    from fleet.workflows.lab import boots as workflow

    workflow.watch(session.context(), render.progress)


def register(group: click.Group) -> None:
    group.add_command(lab)
