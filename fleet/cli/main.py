"""`fleet`: the console script. One error boundary turns every failure into one line and an exit code.

Exit codes: 0 ok; 1 a failure (bad config, a dependency down, a command that failed);
2 usage error; 130 interrupted.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from fleet import __version__
from fleet.cli import render
from fleet.errors import FleetError

F = TypeVar("F", bound=Callable[..., Any])


class Session:
    """What every command gets: the fleet file it works on."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def context(self) -> Any:
        from fleet.services.context import load

        return load(self.file)


def json_option(fn: F) -> F:
    """--json on every command: the result as JSON on stdout."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as JSON on stdout.")(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-f", "--file", type=click.Path(path_type=Path), default="fleet.toml",
              envvar="FLEET_FILE", show_default=True, help="The fleet definition.")
@click.version_option(__version__, prog_name="fleet")
@click.pass_context
def cli(ctx: click.Context, file: Path) -> None:
    """Bake, catalog and promote immutable images; Terraform for every machine."""
    ctx.obj = Session(file)


@cli.command()
@json_option
@click.pass_obj
def validate(session: Session, as_json: bool) -> None:
    """Check fleet.toml and report every problem at once."""
    from fleet.workflows.validate import validate as run

    result = run(session.file)
    if as_json:
        render.emit_json(result)
    elif result.ok:
        classes = sorted(set(result.roles.values()))
        counts = ", ".join(f"{list(result.roles.values()).count(c)} {c}" for c in classes)
        click.echo(f"{result.file.name}: ok: {len(result.roles)} roles ({counts}); "
                   f"environments {' -> '.join(result.environments)}")
    if not result.ok:
        if not as_json:
            for line in result.problems:
                click.echo(line, err=True)
        raise FleetError(f"{result.file.name} has {len(result.problems)} problem(s)",
                         "fix them and run `fleet validate` again")


@cli.command()
@json_option
def schema(as_json: bool) -> None:
    """Print the JSON Schema of fleet.toml (it is JSON either way)."""
    from fleet.model.grammar import json_schema

    render.emit_json(json_schema())


@cli.group()
def lab() -> None:
    """The local lab: real Consul, OpenBao, Docker and the base image on this machine."""


def _lab_result(report: Any, as_json: bool, *, fail_unhealthy: bool) -> None:
    if as_json:
        render.emit_json(report)
    else:
        for action in report.actions:
            render.progress(action)
        render.table("lab", ["part", "state", "version", "address", "detail"], [
            [p.name, _state(p.state.value), p.version, p.address, p.detail] for p in report.parts
        ])
    down = [p.name for p in report.parts if p.state.value != "up"]
    if fail_unhealthy and down:
        raise FleetError(f"lab part(s) not up: {', '.join(down)}",
                         "run `fleet lab up` (or scripts/setup.sh for a missing tool)")


def _state(state: str) -> str:
    colour = {"up": "green", "down": "red"}.get(state, "yellow")
    return render.colour(state, colour)


@lab.command()
@json_option
@click.pass_obj
def up(session: Session, as_json: bool) -> None:
    """Start every part of the lab; does nothing when all are up."""
    from fleet.workflows import lab as workflow
    from fleet.workflows import secrets

    started = time.monotonic()
    report = workflow.up(session.context(), render.progress,
                         lambda ctx: secrets.redeliver(ctx, render.progress))
    _lab_result(report, as_json, fail_unhealthy=True)
    render.progress(f"lab up in {time.monotonic() - started:.1f}s")


@lab.command()
@json_option
@click.pass_obj
def down(session: Session, as_json: bool) -> None:
    """Stop what the lab started, by PID; its data stays."""
    from fleet.workflows import lab as workflow

    _lab_result(workflow.down(session.context(), render.progress), as_json,
                fail_unhealthy=False)


@lab.command()
@json_option
@click.pass_obj
def status(session: Session, as_json: bool) -> None:
    """Each part of the lab: state, version, address. Exit 1 if any is not up."""
    from fleet.workflows import lab as workflow

    _lab_result(workflow.status(session.context()), as_json, fail_unhealthy=True)


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
    _lab_result(workflow.reset(ctx, render.progress), as_json, fail_unhealthy=False)


@cli.command()
@click.argument("roles", nargs=-1)
@click.option("--all", "all_cattle", is_flag=True, help="Bake every cattle role.")
@click.option("--version", help="The version to bake (e.g. v1.2); derived from git if omitted.")
@click.option("--rebake", is_flag=True, help="Build even if an image with the same inputs exists.")
@click.option("--target", default="lab", show_default=True,
              help="A target of fleet.toml: lab builds; aws renders and validates.")
@click.option("--parallel", default=2, show_default=True, type=int,
              help="How many roles bake at once.")
@json_option
@click.pass_obj
def bake(session: Session, roles: tuple[str, ...], all_cattle: bool, version: str | None,
         rebake: bool, target: str, parallel: int, as_json: bool) -> None:
    """Bake role images with Packer and record them in the catalog."""
    from fleet.workflows import bake as workflow

    ctx = session.context()
    names = [r.name for r in workflow.select_roles(ctx, roles, all_cattle)]
    with render.RoleProgress(names) as say:
        report = workflow.bake(ctx, roles, all_cattle=all_cattle, version=version,
                               rebake=rebake, target_name=target, parallel=parallel, say=say)
    if as_json:
        render.emit_json(report)
    else:
        render.table("bake", ["role", "outcome", "version", "digest", "image", "seconds", "detail"], [
            [r.role, _outcome(r.outcome.value), r.version, r.digest[:12], r.artifact[7:19],
             f"{r.seconds:.1f}", r.detail] for r in report.results])
    failed = [r for r in report.results if r.outcome.value == "failed"]
    if failed:
        raise FleetError(f"bake of {', '.join(r.role for r in failed)} failed: {failed[0].detail}")


def _outcome(outcome: str) -> str:
    colour = {"built": "green", "cached": "cyan", "failed": "red"}.get(outcome, "yellow")
    return render.colour(outcome, colour)


@cli.command()
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
        record = workflow.show(ctx, args[1])
        if as_json:
            render.emit_json(record)
        else:
            render.table(record.ref, ["field", "value"],
                         [[k, str(v)] for k, v in render.jsonable(record).items()])
        return
    if len(args) > 1:
        raise click.UsageError("usage: fleet images [ROLE] | fleet images show ROLE:VERSION")
    records = workflow.list_images(ctx, args[0] if args else None)
    if as_json:
        render.emit_json(records)
        return
    render.table("images", ["image", "digest", "artifact", "git", "baked", "by", "state"], [
        [r.ref, r.digest[:12], r.artifact[7:19], r.git_commit[:8] + ("+" if r.git_dirty else ""),
         r.baked_at, r.baked_by, render.colour(f"revoked: {r.revoked_reason}", "red") if r.revoked else "ok"]
        for r in records])


@cli.command()
@click.argument("ref", metavar="ROLE:VERSION")
@click.option("--reason", required=True, help="Why it must not be promoted (recorded).")
@json_option
@click.pass_obj
def revoke(session: Session, ref: str, reason: str, as_json: bool) -> None:
    """Revoke an image: it can no longer be promoted, and plan flags nodes still running it."""
    from fleet.workflows import images as workflow

    record = workflow.revoke(session.context(), ref, reason)
    if as_json:
        render.emit_json(record)
    else:
        click.echo(f"revoked {record.ref}: {record.revoked_reason}")


@cli.command()
@click.argument("version")
@click.option("--to", "env", required=True, help="The environment to promote to.")
@click.option("--role", "roles", multiple=True, help="Only these roles (default: every cattle "
              "role baked at VERSION).")
@click.option("--wait", is_flag=True, help="Wait for another rollout of ENV, and for the soak "
              "time of the environment before, instead of failing.")
@click.option("--force", is_flag=True, help="Skip the order and soak gates (needs --reason).")
@click.option("--reason", default="", help="Why, recorded in the history.")
@click.option("--step-timeout", default=120.0, show_default=True,
              help="Seconds a step's new nodes have to pass before the rollout rolls back.")
@click.option("--yes", is_flag=True,
              help="Approve an environment with manual_approval without asking (recorded).")
@json_option
@click.pass_obj
def promote(session: Session, version: str, env: str, roles: tuple[str, ...], wait: bool,
            force: bool, reason: str, step_timeout: float, yes: bool, as_json: bool) -> None:
    """Make VERSION the channel of ENV and roll its nodes, gated on health."""
    from fleet.workflows import promote as workflow

    def approve(question: str) -> bool:
        if yes:
            return True
        return sys.stdin.isatty() and click.confirm(question, err=True)

    report = workflow.promote(session.context(), version, env, list(roles), wait=wait,
                              force=force, reason=reason, say=render.progress,
                              step_timeout=step_timeout, approve=approve)
    _promotion_result([report], as_json)


def _promotion_result(reports: list[Any], as_json: bool) -> None:
    if as_json:
        render.emit_json(reports)
        return
    for r in reports:
        click.echo(f"{r.env}: {', '.join(r.roles)} at {r.version} ({r.state.value}, "
                   f"{r.steps} step(s), {r.seconds:.1f}s, rollout {r.rollout})")


@cli.command()
@click.argument("env")
@click.option("--role", "roles", multiple=True, help="Only these roles.")
@click.option("--wait", is_flag=True, help="Wait for another rollout of ENV instead of failing.")
@json_option
@click.pass_obj
def rollback(session: Session, env: str, roles: tuple[str, ...], wait: bool,
             as_json: bool) -> None:
    """Put ENV back on each role's previous version, the same gated way."""
    from fleet.workflows import promote as workflow

    _promotion_result(workflow.rollback(session.context(), env, list(roles), wait=wait,
                                        say=render.progress), as_json)


@cli.command()
@click.argument("env", required=False)
@click.option("--role", help="Only events about this role.")
@json_option
@click.pass_obj
def history(session: Session, env: str | None, role: str | None, as_json: bool) -> None:
    """Every promotion, rollout step, gate result and rollback: who, when, what, outcome."""
    from fleet.workflows import status as workflow

    events = workflow.history(session.context(), env, role)
    if as_json:
        render.emit_json(events)
        return
    skip = {"at", "event", "env", "who"}
    render.table("history", ["at", "env", "event", "who", "detail"], [
        [e["at"][:19], e["env"], e["event"], e["who"],
         "; ".join(f"{k}={v}" for k, v in e.items() if k not in skip)] for e in events])


@cli.command(name="status")
@click.argument("envs", nargs=-1)
@json_option
@click.pass_obj
def fleet_status(session: Session, envs: tuple[str, ...], as_json: bool) -> None:
    """Cattle per environment and role: channel, desired and passing nodes, canary share."""
    from fleet.workflows import status as workflow

    rows = workflow.status(session.context(), list(envs))
    if as_json:
        render.emit_json(rows)
        return

    def counts(groups: dict[str, int]) -> str:
        return ", ".join(f"{v}: {n}" for v, n in sorted(groups.items())) or "-"

    render.table("status", ["env", "role", "channel", "desired", "passing", "failing", "floor",
                            "traffic"], [
        [r.env, r.role, r.channel or "-", counts(r.desired), counts(r.passing),
         counts(r.failing), render.colour(f"{r.floor}: below", "red") if r.below_floor else str(r.floor),
         "" if r.traffic_share is None else f"{r.traffic_share}%"]
        for r in rows])


@cli.command()
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
        plan = workflow.machines(session.context())
        if as_json:
            click.echo(plan.to_json())
        else:
            render.table("vagrant machines", ["machine", "image", "node", "ssh"], [
                [m.name, m.ref, m.node, f"127.0.0.1:{m.ssh_port}"] for m in plan.machines]
                + [[r, render.colour("not baked", "yellow"), "", ""] for r in plan.unbaked])
        return
    if role is None:
        raise click.UsageError("name the ROLE to verify")
    report = workflow.verify(session.context(), role, version, keep=keep, say=render.progress,
                             passing_timeout=wait_seconds)
    result = report.verification
    if as_json:
        render.emit_json(report)
    else:
        render.table(f"verify {result.ref} ({result.artifact[7:19]})",
                     ["check", "result", "seconds", "detail"],
                     [[c.name, _verdict(c.outcome.value), f"{c.seconds:.2f}", c.detail]
                      for c in result.checks])
        render.progress(f"{result.summary()}; recorded at {report.key}")
    if report.kept:
        render.progress(report.kept)
    if not result.passed:
        failed = result.failed
        if not failed:
            raise FleetError(f"verify of {result.ref} ran no check")
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise FleetError(f"verify of {result.ref} failed: {failed[0].name}{more}",
                         failed[0].detail)


def _verdict(outcome: str) -> str:
    colour = {"passed": "green", "failed": "red"}.get(outcome, "yellow")
    return render.colour(outcome, colour)


@cli.group()
def secrets() -> None:
    """Secrets in Vault: per-role policies and AppRoles, checks, values, rotation."""


@secrets.command(name="sync")
@json_option
@click.pass_obj
def secrets_sync(session: Session, as_json: bool) -> None:
    """Write every role's policy and AppRole per environment (secrets-policy/); idempotent."""
    from fleet.workflows import secrets as workflow

    report = workflow.sync(session.context())
    if as_json:
        render.emit_json(report)
        return
    for enabled in report.enabled:
        render.progress(f"enabled {enabled}")
    render.table("secrets sync", ["kind", "name", "action"], [
        [c.kind, c.name, _change(c.action.value)] for c in report.changes])
    render.progress(f"{report.changed} change(s)")


def _change(action: str) -> str:
    return render.colour(action, {"create": "green", "update": "yellow"}.get(action, "cyan"))


@secrets.command(name="check")
@click.argument("env", required=False)
@json_option
@click.pass_obj
def secrets_check(session: Session, env: str | None, as_json: bool) -> None:
    """Every secret each role declares exists in Vault (names only, never values)."""
    from fleet.workflows import secrets as workflow

    report = workflow.check(session.context(), env)
    if as_json:
        render.emit_json(report)
    else:
        for missing in report.missing:
            click.echo(f"missing: {missing}")
        for approle in report.unsynced:
            click.echo(f"no AppRole: {approle}")
        render.progress(f"{report.checked - len(report.missing)} of {report.checked} "
                        "declared secret(s) present")
    if report.unsynced:
        raise FleetError(f"{len(report.unsynced)} AppRole(s) missing in Vault, first "
                         f"{report.unsynced[0]}", "run `fleet secrets sync`")
    if report.missing:
        first = report.missing[0]
        raise FleetError(f"{len(report.missing)} declared secret(s) missing in Vault, first "
                         f"{first}", f"fleet secrets put {first.role} {first.key} --env {first.env}")


@secrets.command(name="put")
@click.argument("role")
@click.argument("key")
@click.option("--env", required=True, help="The environment the value is for.")
@json_option
@click.pass_obj
def secrets_put(session: Session, role: str, key: str, env: str, as_json: bool) -> None:
    """Store ROLE's secret KEY for ENV; the value comes from stdin or a hidden prompt, never
    the command line."""
    from fleet.model.secret import Secret
    from fleet.workflows import secrets as workflow

    ctx = session.context()
    if sys.stdin.isatty():
        value = click.prompt(f"{role}/{env} {key}", hide_input=True, confirmation_prompt=True,
                             err=True)
    else:
        value = sys.stdin.read().removesuffix("\n")
    where = workflow.put(ctx, role, key, env, Secret(value))
    if as_json:
        render.emit_json({"role": role, "key": key, "env": env, "path": where})
    else:
        render.progress(f"stored {key} at {where}")


@secrets.command(name="rotate")
@click.argument("role")
@click.option("--env", required=True, help="The environment whose credentials rotate.")
@json_option
@click.pass_obj
def secrets_rotate(session: Session, role: str, env: str, as_json: bool) -> None:
    """New AppRole credentials for ROLE in ENV; its running nodes log in again with them."""
    from fleet.workflows import secrets as workflow

    report = workflow.rotate(session.context(), role, env)
    if as_json:
        render.emit_json(report)
    else:
        render.progress(f"{report.approle}: new RoleID, {report.destroyed} SecretID(s) destroyed")
        render.table("secrets rotate", ["node", "result"],
                     [[n, said] for n, said in report.nodes]
                     + [[n, render.colour(why, "red")] for n, why in report.failed])
    if report.failed:
        raise FleetError(f"{len(report.failed)} node(s) of {role} in {env} did not log in "
                         f"again: {report.failed[0][1]}")


@secrets.command(name="deliver", hidden=True)
@click.argument("node")
@click.argument("role")
@click.argument("env")
@json_option
@click.pass_obj
def secrets_deliver(session: Session, node: str, role: str, env: str, as_json: bool) -> None:
    """Hand a node just created its Consul token and Vault login (run by its provisioner)."""
    from fleet.workflows import secrets as workflow

    said = workflow.deliver(session.context(), node, role, env)
    if as_json:
        render.emit_json({"node": node, "result": said})
    else:
        click.echo(said)


@secrets.command(name="scan")
@json_option
@click.pass_obj
def secrets_scan(session: Session, as_json: bool) -> None:
    """Look for every lab secret value in every image, log, Terraform state and Consul KV."""
    from fleet.workflows import secrets as workflow

    report = workflow.scan(session.context())
    if as_json:
        render.emit_json(report)
    else:
        if report.findings:
            render.table("secrets found", ["where", "what"],
                         [[f.where, f.what] for f in report.findings])
        for path in report.skipped:
            render.progress(f"not scanned (over {workflow.SCAN_FILE_LIMIT >> 20} MiB): {path}")
        render.progress(f"looked for {report.values} secret value(s) in {len(report.images)} "
                        f"image(s), {len(report.nodes)} node(s), {report.files} file(s) under "
                        f".fleet and {report.keys} Consul KV entries")
    if report.findings:
        first = report.findings[0]
        raise FleetError(f"{len(report.findings)} secret(s) found, first {first.what} in "
                         f"{first.where}", "remove it there and rotate the secret "
                         "(fleet secrets put, then fleet secrets rotate)")


# ---- plan, apply, converge, run ------------------------------------------------------------

def _plan_options(fn: F) -> F:
    fn = click.option("--snowflake", "snowflakes", multiple=True, metavar="NAME",
                      help="A snowflake apply may change (repeatable).")(fn)
    return click.option("--allow-replace", "allow_replace", multiple=True, metavar="PET",
                        help="A pet whose container may be replaced; its data volume stays "
                        "(repeatable).")(fn)


def _options(allow_replace: tuple[str, ...], snowflakes: tuple[str, ...]) -> Any:
    from fleet.model.plan import Options

    return Options(tuple(sorted(set(allow_replace))), tuple(sorted(set(snowflakes))))


def _plan_table(plan: Any) -> None:
    colours = {"bake": "cyan", "create": "green", "promote": "green", "grow": "green",
               "update": "yellow", "roll": "yellow", "shrink": "yellow", "repair": "yellow",
               "replace": "red", "destroy": "red", "revoked": "red", "missing secret": "red"}
    render.table(f"plan of {plan.fleet}: {plan.changes} change(s)",
                 ["env", "role", "class", "target", "action", "detail", "note"], [
        [i.env or "(images)", i.role, i.cls, i.target,
         render.colour(i.action.value, colours.get(i.action.value, "white")), i.detail,
         render.colour(i.blocked, "red") if i.blocked else ("drift" if i.drift else "")]
        for i in plan.items])


@cli.command(name="plan")
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
    from fleet.model.plan import refusals
    from fleet.workflows import plan as workflow

    plan = workflow.plan(session.context(), envs, _options(allow_replace, snowflakes)).plan
    if as_json:
        click.echo(plan.to_json())
    else:
        _plan_table(plan)
    if out is not None:
        out.write_text(plan.to_json())
        render.progress(f"saved the plan to {out}; fleet apply --plan {out} carries it out")
    refused = refusals(plan)
    if refused:
        raise FleetError(f"refused: {refused[0]}"
                         + (f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""))
    if detailed_exitcode and plan.pending:
        raise click.exceptions.Exit(2)


@cli.command(name="apply")
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

    def confirm(plan: Any) -> bool:
        if not as_json:
            _plan_table(plan)
        if yes:
            return True
        if not sys.stdin.isatty():
            raise FleetError("fleet apply needs confirmation", "pass --yes, or apply a saved "
                             "plan with --plan FILE")
        return click.confirm(f"apply {plan.changes} change(s)?", err=True)

    def approve(question: str) -> bool:
        return yes or (sys.stdin.isatty() and click.confirm(question, err=True))

    report = workflow.apply(session.context(), envs, _options(allow_replace, snowflakes),
                            saved=saved, confirm=confirm, approve=approve, say=render.progress)
    if as_json:
        render.emit_json(report)
        return
    if not report.done:
        click.echo("nothing to do: what runs matches fleet.toml and the channels")
        return
    render.table(f"applied in {report.seconds:.1f}s", ["env", "role", "target", "action",
                                                        "detail"], [
        [d.env or "(images)", d.role, d.target, d.action.value, d.detail] for d in report.done])


def _host_results(report: Any, as_json: bool, what: str) -> None:
    if as_json:
        render.emit_json(report)
    else:
        for r in report.results:
            state = "ok" if r.ok else "FAILED"
            code = "-" if r.exit_code is None else str(r.exit_code)
            click.echo(f"== {r.host}: {state} (exit {code}){': ' + r.error if r.error else ''}")
            for text in (r.stdout, r.stderr):
                if text.strip():
                    click.echo(text.rstrip("\n"))
    if report.failed:
        names = ", ".join(r.host for r in report.failed)
        raise FleetError(f"{what} failed on {len(report.failed)} of {len(report.results)} "
                         f"host(s): {names}", "each host's result is above")


@cli.command()
@click.argument("role")
@click.option("--env", "envs", multiple=True, help="Only this environment (repeatable).")
@click.option("--limit", default=5, show_default=True, help="Hosts worked on at once.")
@json_option
@click.pass_obj
def converge(session: Session, role: str, envs: tuple[str, ...], limit: int,
             as_json: bool) -> None:
    """Run a pet's or snowflake's provisioner on each instance in place, over SSH."""
    from fleet.workflows import remote

    _host_results(remote.converge(session.context(), role, envs, limit=limit,
                                  say=render.progress), as_json, f"converge of {role}")


@cli.command(name="run", context_settings={"ignore_unknown_options": True})
@click.argument("role")
@click.option("--env", "envs", multiple=True, help="Only this environment (repeatable).")
@click.option("--limit", default=5, show_default=True, help="Hosts worked on at once.")
@json_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def run_command(session: Session, role: str, envs: tuple[str, ...], limit: int, as_json: bool,
                command: tuple[str, ...]) -> None:
    """An ad-hoc command on every node of ROLE: fleet run ROLE [--env E] -- COMMAND."""
    import shlex

    from fleet.workflows import remote

    line = command[0] if len(command) == 1 else shlex.join(command)
    _host_results(remote.run(session.context(), role, envs, line, limit=limit), as_json,
                  f"`{line}`")


def _internal_error() -> Path:
    """Write the traceback where the user can find it; return the path."""
    log_dir = Path.cwd() / ".fleet" / "log"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        import tempfile

        log_dir = Path(tempfile.gettempdir())
    path = log_dir / "fleet-internal-error.log"
    with path.open("a") as handle:
        handle.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} fleet {' '.join(sys.argv[1:])}\n")
        handle.write(traceback.format_exc())
    return path


def main() -> None:
    """Entry point of the console script: the one error boundary."""
    try:
        code = cli.main(prog_name="fleet", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("fleet: interrupted", err=True)
        code = 130
    except click.ClickException as exc:  # usage errors: exit 2
        exc.show()
        code = exc.exit_code
    except FleetError as exc:
        click.echo(f"fleet: error: {exc.line()}", err=True)
        code = 1
    except Exception as exc:  # the last resort: never a traceback in front of a user
        path = _internal_error()
        click.echo(f"fleet: internal error: {type(exc).__name__}: {exc} "
                   f"(traceback in {path}; please report it)", err=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


