"""fleet snapshot create | list | restore: consistent copies of a pet's data, with checksums."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fleet.cli import render
from fleet.cli.meta import Session, json_option
from fleet.cli.views import View

if TYPE_CHECKING:
    from fleet.model.snapshot import Snapshot
    from fleet.workflows.snapshots import Restored


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _list(result: list[Snapshot]) -> None:
    if not result:
        render.progress("no snapshots: fleet snapshot create PET takes one")
        return
    render.table("snapshots", ["id", "pet", "env", "size", "sha256", "source", "created",
                               "by"],
                 [[s.id, f"{s.pet} ({s.role})", s.env, _size(s.size), s.sha256[:16],
                   f"{s.source} ({s.method})", s.created, s.created_by] for s in result])


def _created(result: Snapshot) -> None:
    click.echo(f"{result.id}: {result.pet} ({result.role}, {result.env}), {_size(result.size)}, "
               f"sha256 {result.sha256}")
    click.echo(f"  from {result.source}, at {result.location}")
    if result.object_store:
        click.echo(f"  aws target: {result.object_store}")


def _restored(result: Restored) -> None:
    click.echo(f"{result.target}: restored from {result.snapshot.id} ({result.snapshot.pet}, "
               f"sha256 verified) into {result.volume}; {result.container} passes again "
               f"({result.seconds:.1f}s)")


LIST, CREATED, RESTORED = View(_list), View(_created), View(_restored)


@click.group()
def snapshot() -> None:
    """Copies of a pet's data: create, list, restore (each with a sha256 checksum)."""


@snapshot.command()
@click.argument("pet")
@json_option
@click.pass_obj
def create(session: Session, pet: str, as_json: bool) -> None:
    """Snapshot PET (a pet instance, e.g. postgres-01): its data copied consistently."""
    from fleet.workflows import snapshots

    CREATED.show(snapshots.create(session.context(), pet, render.progress), as_json)


@snapshot.command(name="list")
@json_option
@click.pass_obj
def list_(session: Session, as_json: bool) -> None:
    """Every snapshot of the fleet: pet, size, checksum, source."""
    from fleet.workflows import snapshots

    LIST.show(snapshots.snapshots(session.context()), as_json)


@snapshot.command()
@click.argument("snapshot_id", metavar="ID")
@click.option("--to", "to", required=True, help="The pet instance to restore into (same role).")
@json_option
@click.pass_obj
def restore(session: Session, snapshot_id: str, to: str, as_json: bool) -> None:
    """Restore snapshot ID into another instance of the same role (its checksum verified first)."""
    from fleet.workflows import snapshots

    RESTORED.show(snapshots.restore(session.context(), snapshot_id, to, render.progress),
                  as_json)


def register(group: click.Group) -> None:
    group.add_command(snapshot)
