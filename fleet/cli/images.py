"""fleet images [ROLE] | show ROLE:VERSION | prune, fleet revoke: the catalog of baked images."""

from __future__ import annotations

import click

from fleet.cli import views
from fleet.cli.meta import Session, json_option, raise_if


class ListByDefault(click.Group):
    """`fleet images` and `fleet images ROLE` list; `show` and `prune` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group(cls=ListByDefault,
             subcommand_metavar="[ROLE] | show ROLE:VERSION | prune [--keep N] [--dry-run]")
def images() -> None:
    """The catalog: `fleet images [ROLE] [--json]` lists its images (of one role), `show`
    shows one, `prune` removes old ones."""


@images.command(name="list", hidden=True)
@click.argument("role", required=False)
@json_option
@click.pass_obj
def images_list(session: Session, role: str | None, as_json: bool) -> None:
    """List the catalog's images (of one role): fleet images [ROLE]."""
    from fleet.workflows import images as workflow

    views.IMAGES.show(workflow.list_images(session.context(), role), as_json)


@images.command(name="show")
@click.argument("ref", metavar="ROLE:VERSION")
@json_option
@click.pass_obj
def images_show(session: Session, ref: str, as_json: bool) -> None:
    """Show one image with its provenance."""
    from fleet.workflows import images as workflow

    views.IMAGE.show(workflow.show(session.context(), ref), as_json)


@images.command(name="prune")
@click.option("--keep", default=3, show_default=True, type=int,
              help="How many of each role's newest images to keep, besides every image a "
                   "channel, a rollback, a rollout, a node, a Terraform state or a verify needs.")
@click.option("--dry-run", is_flag=True, help="Say what would be pruned; change nothing.")
@json_option
@click.pass_obj
def images_prune(session: Session, keep: int, dry_run: bool, as_json: bool) -> None:
    """Remove old images from Docker and mark their catalog records pruned (kept as history).

    Old base images that nothing uses any more go too, never the current one. Each image is
    listed as kept or pruned, with why.
    """
    from fleet.workflows import images as workflow

    report = workflow.prune(session.context(), keep, dry_run=dry_run)
    views.PRUNE.show(report, as_json)
    raise_if(report.error())


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
