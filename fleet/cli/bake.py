"""fleet bake: role images with Packer, recorded in the catalog."""

from __future__ import annotations

import click

from fleet.cli import render, views
from fleet.cli.meta import Session, json_option, raise_if


@click.command()
@click.argument("roles", nargs=-1)
@click.option("--all", "all_roles", is_flag=True,
              help="Bake every role the target can bake: on the lab, every role with shell "
                   "provisioners (cattle, pets, snowflakes: what `fleet plan` wants); chef-solo "
                   "roles are listed as skipped, with why.")
@click.option("--version", help="The version to bake (e.g. v1.2); derived from git if omitted.")
@click.option("--rebake", is_flag=True, help="Build even if an image with the same inputs exists.")
@click.option("--target", default="lab", show_default=True,
              help="A target of fleet.toml: lab builds; aws renders and validates.")
@click.option("--parallel", default=2, show_default=True, type=int,
              help="How many roles bake at once.")
@json_option
@click.pass_obj
def bake(session: Session, roles: tuple[str, ...], all_roles: bool, version: str | None,
         rebake: bool, target: str, parallel: int, as_json: bool) -> None:
    """Bake role images with Packer and record them in the catalog."""
    from fleet.workflows import bake as workflow

    ctx = session.context()
    names = [r.name for r in workflow.select_roles(ctx, roles, all_roles, target).roles]
    with render.RoleProgress(names) as say:
        report = workflow.bake(ctx, roles, all_roles=all_roles, version=version,
                               rebake=rebake, target_name=target, parallel=parallel, say=say)
    views.BAKE.show(report, as_json)
    raise_if(report.error())


def register(group: click.Group) -> None:
    group.add_command(bake)
