"""fleet images, fleet revoke: the catalog of baked images."""

from __future__ import annotations

import click

from fleet.cli import views
from fleet.cli.meta import Session, json_option


@click.command()
@click.argument("args", nargs=-1, metavar="[ROLE] | show ROLE:VERSION")
@json_option
@click.pass_obj
def images(session: Session, args: tuple[str, ...], as_json: bool) -> None:
    """List the catalog's images (of one role), or show one: images show ROLE:VERSION."""
    from fleet.workflows import images as workflow

    ctx = session.context()
    if args[:1] == ("show",):
        if len(args) != 2:
            raise click.UsageError("usage: fleet images show ROLE:VERSION")
        views.IMAGE.show(workflow.show(ctx, args[1]), as_json)
        return
    if len(args) > 1:
        raise click.UsageError("usage: fleet images [ROLE] | fleet images show ROLE:VERSION")
    views.IMAGES.show(workflow.list_images(ctx, args[0] if args else None), as_json)


@click.command()
@click.argument("ref", metavar="ROLE:VERSION")
@click.option("--reason", required=True, help="Why it must not be promoted (recorded).")
@json_option
@click.pass_obj
def revoke(session: Session, ref: str, reason: str, as_json: bool) -> None:
    """Revoke an image: it can no longer be promoted, and plan flags nodes still running it."""
    from fleet.workflows import images as workflow

    views.REVOKED.show(workflow.revoke(session.context(), ref, reason), as_json)


def register(group: click.Group) -> None:
    group.add_command(images)
    group.add_command(revoke)
