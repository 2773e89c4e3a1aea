"""fleet plan, fleet apply: what differs from fleet.toml and the channels, and carrying it out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fleet.cli import render, views
from fleet.cli.meta import F, Session, json_option, raise_if
from fleet.errors import FleetError

if TYPE_CHECKING:
    from fleet.model.plan import Options, Plan


def _plan_options(fn: F) -> F:
    fn = click.option("--snowflake", "snowflakes", multiple=True, metavar="NAME",
                      help="A snowflake apply may change (repeatable).")(fn)
    return click.option("--allow-replace", "allow_replace", multiple=True, metavar="PET",
                        help="A pet whose container may be replaced; its data volume stays "
                        "(repeatable).")(fn)


def _options(allow_replace: tuple[str, ...], snowflakes: tuple[str, ...]) -> Options:
    from fleet.model.plan import Options

    return Options(tuple(sorted(set(allow_replace))), tuple(sorted(set(snowflakes))))


@click.command(name="plan")
@click.argument("envs", nargs=-1)
@_plan_options
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the plan for `fleet apply --plan FILE`.")
@json_option
@click.pass_obj
def plan_command(session: Session, envs: tuple[str, ...], allow_replace: tuple[str, ...],
                 snowflakes: tuple[str, ...], detailed_exitcode: bool, out: Path | None,
                 as_json: bool) -> None:
    """Everything that differs between fleet.toml, the channels and what runs."""
    from fleet.services import bulk

    # every node of the fleet, begun before fleet.toml is loaded and the plan's code imported
    nodes = bulk.declared_read(session.file, bulk.FLEET_NODES)
    ctx = session.live_context()
    from fleet.workflows import plan as workflow

    reading = workflow.plan(ctx, envs, _options(allow_replace, snowflakes), nodes)
    views.PLAN.show(reading.plan, as_json)
    if out is not None:
        out.write_text(reading.plan.to_json())
        render.progress(f"saved the plan to {out}; fleet apply --plan {out} carries it out")
    raise_if(reading.error())
    if detailed_exitcode and reading.plan.pending:
        raise click.exceptions.Exit(2)


@click.command(name="apply")
@click.argument("envs", nargs=-1)
@_plan_options
@click.option("--plan", "plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Carry out this saved plan (fleet plan --out), if it still matches reality.")
@click.option("--yes", is_flag=True, help="Do not ask; also approves manual_approval "
              "environments (recorded).")
@json_option
@click.pass_obj
def apply_command(session: Session, envs: tuple[str, ...], allow_replace: tuple[str, ...],
                  snowflakes: tuple[str, ...], plan_file: Path | None, yes: bool,
                  as_json: bool) -> None:
    """Carry out the plan in depends_on order, after showing it and asking."""
    from fleet.model.plan import Plan
    from fleet.workflows import apply as workflow

    saved = None
    if plan_file is not None:
        if envs or allow_replace or snowflakes:
            raise click.UsageError("a saved plan carries its environments and options")
        saved = Plan.from_json(plan_file.read_text())

    def confirm(plan: Plan) -> bool:
        if not as_json:
            views.PLAN.human(plan)  # what will be done, before asking
        if yes:
            return True
        if not sys.stdin.isatty():
            raise FleetError("fleet apply needs confirmation", "pass --yes, or apply a saved "
                             "plan with --plan FILE")
        return click.confirm(f"apply {plan.changes} change(s)?", err=True)

    def approve(question: str) -> bool:
        return yes or (sys.stdin.isatty() and click.confirm(question, err=True))

    report = workflow.apply(session.live_context(), envs, _options(allow_replace, snowflakes),
                            saved=saved, confirm=confirm, approve=approve, say=render.progress)
    views.APPLY.show(report, as_json)


def register(group: click.Group) -> None:
    group.add_command(plan_command)
    group.add_command(apply_command)
