"""fleet reconcile: keep the fleet as declared (one pass, or --watch as a service)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fleet.cli import render
from fleet.cli.meta import Session, json_option, raise_if

if TYPE_CHECKING:
    from fleet.workflows.reconcile import PassReport, Settings


def show(report: PassReport, as_json: bool) -> None:
    """The human view (a table of findings, then what was done) or the JSON one."""
    if as_json:
        render.emit_json(report)
        return
    title = (f"fleet reconcile ({report.mode}{': ' + report.active if report.active else ''}): "
             f"{len(report.findings)} finding(s) in {report.seconds}s")
    if not report.findings:
        click.echo(f"{title}: the fleet is as declared")
        return
    render.table(title, ["env", "target", "action", "verdict", "why / detail"],
                 [[f.env or "-", f.target, f.action, f.verdict.value, f.why or f.detail]
                  for f in report.findings])
    if report.done:
        render.table("done", ["env", "target", "action", "outcome", "detail"],
                     [[d.env, d.target, d.action, d.outcome, d.detail] for d in report.done])


@click.command(name="reconcile")
@click.option("--dry-run", is_flag=True, help="Say what a pass would heal; change nothing.")
@click.option("--watch", is_flag=True, help="Run passes in a loop (as a service); one of "
              "several reconcilers acts, through a Consul lock.")
@click.option("--interval", default="30s", show_default=True, metavar="DURATION",
              help="Between passes (--watch), and the window of --max-heals.")
@click.option("--grace", default="0s", show_default=True, metavar="DURATION",
              help="How long a drift must last before it is healed.")
@click.option("--max-heals", default=3, show_default=True, type=int, metavar="N",
              help="At most N heals per environment per interval.")
@click.option("--metrics-port", default=9464, show_default=True, type=int, metavar="PORT",
              help="--watch: Prometheus metrics on 127.0.0.1:PORT (0: none).")
@click.option("--json-logs", is_flag=True, help="Logs as JSON lines on stderr.")
@json_option
@click.pass_obj
def reconcile_command(session: Session, dry_run: bool, watch: bool, interval: str, grace: str,
                      max_heals: int, metrics_port: int, json_logs: bool, as_json: bool) -> None:
    """Heal what drifted by policy, report the rest, destroy expired environments.

    Exit 0 when the fleet is as declared, 2 when a pass found drift (healed or reported),
    1 on a failure (a pass that cannot read Consul or Terraform does nothing and exits 1)."""
    from fleet.errors import FleetError
    from fleet.model.reconcile import duration
    from fleet.workflows import reconcile as workflow

    if max_heals < 0:
        raise FleetError(f"--max-heals {max_heals} is negative", "give 0 or more")
    if not 0 <= metrics_port <= 65535:
        raise FleetError(f"--metrics-port {metrics_port} is not a port", "give 1-65535, or 0")
    settings = workflow.Settings(duration(interval, "--interval", minimum=1),
                                 duration(grace, "--grace"), max_heals)
    if watch:
        if dry_run:
            raise click.UsageError("--watch acts; run one pass with --dry-run instead")
        _watch(session, settings, metrics_port, json_logs, as_json)
        return
    report = workflow.single(session.live_context(), settings, dry_run=dry_run,
                             say=render.progress if not json_logs else workflow.Log(True).say)
    show(report, as_json)
    raise_if(report.error())
    if report.pending:
        raise click.exceptions.Exit(2)


def _watch(session: Session, settings: Settings, metrics_port: int, json_logs: bool,
           as_json: bool) -> None:
    import json
    import signal
    import threading

    from fleet.workflows import reconcile as workflow

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())   # systemd's stop: resign, then exit

    def report(done: PassReport) -> None:
        if as_json:
            click.echo(json.dumps(render.jsonable(done)))

    session.live_context()   # fleet.toml and Consul checked once, before anything starts
    workflow.watch(session.live_context, settings, metrics_port=metrics_port,
                   log=workflow.Log(json_logs), stop=stop, report=report)


def register(group: click.Group) -> None:
    group.add_command(reconcile_command)
