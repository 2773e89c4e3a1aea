"""fleet verify: boot a role's exact image, check it, tear it down; or the Vagrantfile's list."""

from __future__ import annotations

import click

from fleet.cli import render, views
from fleet.cli.meta import Session, json_option, raise_if


@click.command()
@click.argument("role", required=False)
@click.option("--version", help="The image version to verify (default: the role's current "
              "image, its newest that is not revoked).")
@click.option("--keep", is_flag=True, help="Leave the node running afterwards, to look around.")
@click.option("--wait", "wait_seconds", default=30.0, show_default=True,
              help="Seconds the node's service checks have to pass in Consul.")
@click.option("--machines", is_flag=True, help="Print the Vagrantfile's machines instead: "
              "every cattle role's current image (the Vagrantfile reads this with --json).")
@json_option
@click.pass_obj
def verify(session: Session, role: str | None, version: str | None, keep: bool,
           wait_seconds: float, machines: bool, as_json: bool) -> None:
    """Boot ROLE's exact image through Vagrant, check it in Consul and over SSH, tear it down."""
    from fleet.workflows import verify as workflow

    if machines:
        if role or version or keep:
            raise click.UsageError("--machines takes no ROLE, --version or --keep")
        views.MACHINES.show(workflow.machines(session.context()), as_json)
        return
    if role is None:
        raise click.UsageError("name the ROLE to verify")
    report = workflow.verify(session.context(), role, version, keep=keep, say=render.progress,
                             passing_timeout=wait_seconds)
    views.VERIFY.show(report, as_json)
    if report.kept:
        render.progress(report.kept)
    raise_if(report.error())


def register(group: click.Group) -> None:
    group.add_command(verify)
