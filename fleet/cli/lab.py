"""fleet lab up|down|status|reset|kill|start|snapshot|restore: the local lab."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fleet.cli import render, views
from fleet.cli.meta import Session, json_option, raise_if
from fleet.errors import FleetError

if TYPE_CHECKING:
    from fleet.workflows.lab import Backup, Fault


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
    """Stop what the lab started here, by PID; its data stays. Refused while other fleets
    have nodes on the lab's servers."""
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
@click.option("--delete-volumes", is_flag=True,
              help="Also remove this fleet's pet data volumes (FLEET-INSTANCE-data).")
@json_option
@click.pass_obj
def reset(session: Session, yes: bool, delete_volumes: bool, as_json: bool) -> None:
    """Wipe the lab (its containers, network, Consul data and OpenBao data and keys) where it
    was made, refused while other fleets have nodes on it; elsewhere, remove only this fleet
    from the shared lab. Pet data volumes stay unless --delete-volumes."""
    from fleet.workflows import lab as workflow

    ctx = session.context()
    if not yes:
        if not sys.stdin.isatty():
            raise FleetError("lab reset removes lab state and needs confirmation",
                             "pass --yes to confirm without a terminal")
        click.confirm(workflow.reset_scope(ctx, delete_volumes), abort=True)
    report = workflow.reset(ctx, render.progress, delete_volumes=delete_volumes)
    views.LAB.show(report, as_json)


def _fault(result: Fault) -> None:
    pid = f" (pid {result.pid})" if result.pid else ""
    click.echo(f"{result.server}: {result.action}{pid}")


def _backup(result: Backup) -> None:
    for action in result.actions:
        render.progress(action)
    click.echo(f"{result.file}: consul {result.consul_bytes} bytes, openbao "
               f"{result.openbao_bytes} bytes")


FAULT: views.View[Fault] = views.View(_fault)
BACKUP: views.View[Backup] = views.View(_backup)


@lab.command(name="kill")
@click.argument("name")
@json_option
@click.pass_obj
def kill_(session: Session, name: str, as_json: bool) -> None:
    """Crash one lab server: SIGKILL by the PID the lab recorded (NAME: consul-1..N,
    openbao-1..N). Its data stays; `fleet lab start NAME` starts it again."""
    from fleet.workflows import lab as workflow

    FAULT.show(workflow.kill(session.context(), name), as_json)


@lab.command(name="start")
@click.argument("name")
@json_option
@click.pass_obj
def start_(session: Session, name: str, as_json: bool) -> None:
    """Start one lab server again with its own argv and configuration (an OpenBao node is
    unsealed again), and wait until it serves."""
    from fleet.workflows import lab as workflow

    FAULT.show(workflow.start(session.context(), name, render.progress), as_json)


@lab.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@click.pass_obj
def snapshot(session: Session, file: Path, as_json: bool) -> None:
    """Save both stores (Consul's, OpenBao's raft) and the lab's keys to FILE, written 0600:
    it holds the unseal key and the root and management tokens."""
    from fleet.workflows import lab as workflow

    BACKUP.show(workflow.snapshot(session.context(), file, render.progress), as_json)


@lab.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@click.pass_obj
def restore(session: Session, file: Path, as_json: bool) -> None:
    """Put both stores back from a `fleet lab snapshot` FILE (the lab up, any size), its keys
    becoming the lab's: the servers restart with them and OpenBao is unsealed with its key."""
    from fleet.workflows import lab as workflow

    BACKUP.show(workflow.restore(session.context(), file, render.progress), as_json)


@lab.command(name="boots", hidden=True)
@json_option
@click.pass_obj
def boots(session: Session, as_json: bool) -> None:
    """Hand the fleet's rebooted nodes their credentials again (`lab up` runs it); --json:
    each line it says as a JSON object on stdout, for a log shipper."""
    from fleet.workflows.lab import boots as workflow

    def said(line: str) -> None:
        click.echo(json.dumps({"said": line}))

    workflow.watch(session.context(), said if as_json else render.progress)


def register(group: click.Group) -> None:
    group.add_command(lab)
