"""Views: one human and one JSON view per result type, chosen once (`View.show`).

A human view writes tables and lines to stdout and notes to stderr; a JSON view writes the
result as JSON on stdout (`render.emit_json` unless the result has its own JSON). Views only
show: whether a result is a failure is the result's own `error()`. The result types are
imported for the type checker only, so that `fleet --help` loads no workflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

import click

from fleet.cli import render

if TYPE_CHECKING:
    from fleet.cli.secrets import Delivered, Stored
    from fleet.model.image import ImageRecord
    from fleet.model.plan import Plan
    from fleet.workflows.apply import ApplyReport
    from fleet.workflows.bake import BakeReport
    from fleet.workflows.lab import LabReport
    from fleet.workflows.promote import PromotionReport
    from fleet.workflows.remote import RemoteReport
    from fleet.workflows.secrets import CheckReport, RotateReport, ScanReport, SyncReport
    from fleet.workflows.status import RoleStatus
    from fleet.workflows.validate import Validation
    from fleet.workflows.verify import VagrantPlan, VerifyReport

R = TypeVar("R")
Event = Mapping[str, object]  # one entry of the history, as recorded in Consul KV


class View(Generic[R]):
    """How one result type is shown: `human` for people (tables and lines on stdout, notes on
    stderr), `json` for programs (the result as JSON on stdout)."""

    def __init__(self, human: Callable[[R], None],
                 json: Callable[[R], None] = render.emit_json) -> None:
        self.human = human
        self.json = json

    def show(self, result: R, as_json: bool) -> None:
        """The one place the view is chosen: --json gets the JSON one."""
        (self.json if as_json else self.human)(result)


def _coloured(text: str, colours: Mapping[str, str], default: str) -> render.Styled:
    return render.colour(text, colours.get(text, default))


# ---- validate -------------------------------------------------------------------------------

def _validation(result: Validation) -> None:
    if not result.ok:
        for line in result.problems:
            click.echo(line, err=True)
        return
    classes = sorted(set(result.roles.values()))
    counts = ", ".join(f"{list(result.roles.values()).count(c)} {c}" for c in classes)
    click.echo(f"{result.file.name}: ok: {len(result.roles)} roles ({counts}); "
               f"environments {' -> '.join(result.environments)}")


VALIDATION = View(_validation)


# ---- lab ------------------------------------------------------------------------------------

def _lab(result: LabReport) -> None:
    for action in result.actions:
        render.progress(action)
    render.table("lab", ["part", "state", "version", "address", "detail"], [
        [p.name, _coloured(p.state.value, {"up": "green", "down": "red"}, "yellow"),
         p.version, p.address, p.detail] for p in result.parts])


LAB = View(_lab)


# ---- bake, images, revoke -------------------------------------------------------------------

def _bake(result: BakeReport) -> None:
    colours = {"built": "green", "cached": "cyan", "failed": "red"}
    render.table("bake", ["role", "outcome", "version", "digest", "image", "seconds", "detail"], [
        [r.role, _coloured(r.outcome.value, colours, "yellow"), r.version, r.digest[:12],
         r.artifact[7:19], f"{r.seconds:.1f}", r.detail] for r in result.results])


def _image(result: ImageRecord) -> None:
    render.table(result.ref, ["field", "value"],
                 [[k, str(v)] for k, v in render.jsonable(result).items()])


def _images(result: Sequence[ImageRecord]) -> None:
    render.table("images", ["image", "digest", "artifact", "git", "baked", "by", "state"], [
        [r.ref, r.digest[:12], r.artifact[7:19], r.git_commit[:8] + ("+" if r.git_dirty else ""),
         r.baked_at, r.baked_by,
         render.colour(f"revoked: {r.revoked_reason}", "red") if r.revoked else "ok"]
        for r in result])


def _revoked(result: ImageRecord) -> None:
    click.echo(f"revoked {result.ref}: {result.revoked_reason}")


BAKE = View(_bake)
IMAGE = View(_image)
IMAGES = View(_images)
REVOKED = View(_revoked)


# ---- promote, rollback, status, history -----------------------------------------------------

def _promotions(result: Sequence[PromotionReport]) -> None:
    for r in result:
        click.echo(f"{r.env}: {', '.join(r.roles)} at {r.version} ({r.state.value}, "
                   f"{r.steps} step(s), {r.seconds:.1f}s, rollout {r.rollout})")


def _status(result: Sequence[RoleStatus]) -> None:
    def counts(groups: dict[str, int]) -> str:
        return ", ".join(f"{v}: {n}" for v, n in sorted(groups.items())) or "-"

    render.table("status", ["env", "role", "channel", "desired", "passing", "failing", "floor",
                            "traffic"], [
        [r.env, r.role, r.channel or "-", counts(r.desired), counts(r.passing), counts(r.failing),
         render.colour(f"{r.floor}: below", "red") if r.below_floor else str(r.floor),
         "" if r.traffic_share is None else f"{r.traffic_share}%"]
        for r in result])


def _history(result: Sequence[Event]) -> None:
    shown = {"at", "event", "env", "who"}  # columns of their own; the rest is the detail
    render.table("history", ["at", "env", "event", "who", "detail"], [
        [str(e["at"])[:19], str(e["env"]), str(e["event"]), str(e["who"]),
         "; ".join(f"{k}={v}" for k, v in e.items() if k not in shown)] for e in result])


PROMOTIONS = View(_promotions)
STATUS = View(_status)
HISTORY = View(_history)


# ---- verify ---------------------------------------------------------------------------------

def _machines(result: VagrantPlan) -> None:
    render.table("vagrant machines", ["machine", "image", "node", "ssh"], [
        [m.name, m.ref, m.node, f"127.0.0.1:{m.ssh_port}"] for m in result.machines]
        + [[r, render.colour("not baked", "yellow"), "", ""] for r in result.unbaked])


def _machines_json(result: VagrantPlan) -> None:
    click.echo(result.to_json())  # what the Vagrantfile reads


def _verify(result: VerifyReport) -> None:
    verdict = result.verification
    colours = {"passed": "green", "failed": "red"}
    render.table(f"verify {verdict.ref} ({verdict.artifact[7:19]})",
                 ["check", "result", "seconds", "detail"],
                 [[c.name, _coloured(c.outcome.value, colours, "yellow"), f"{c.seconds:.2f}",
                   c.detail] for c in verdict.checks])
    render.progress(f"{verdict.summary()}; recorded at {result.key}")


MACHINES = View(_machines, _machines_json)
VERIFY = View(_verify)


# ---- secrets --------------------------------------------------------------------------------

def _sync(result: SyncReport) -> None:
    for enabled in result.enabled:
        render.progress(f"enabled {enabled}")
    render.table("secrets sync", ["kind", "name", "action"], [
        [c.kind, c.name, _coloured(c.action.value, {"create": "green", "update": "yellow"}, "cyan")]
        for c in result.changes])
    render.progress(f"{result.changed} change(s)")


def _check(result: CheckReport) -> None:
    for missing in result.missing:
        click.echo(f"missing: {missing}")
    for approle in result.unsynced:
        click.echo(f"no AppRole: {approle}")
    render.progress(f"{result.checked - len(result.missing)} of {result.checked} "
                    "declared secret(s) present")


def _stored(result: Stored) -> None:
    render.progress(f"stored {result['key']} at {result['path']}")


def _rotate(result: RotateReport) -> None:
    render.progress(f"{result.approle}: new RoleID, {result.destroyed} SecretID(s) destroyed")
    render.table("secrets rotate", ["node", "result"],
                 [[n, said] for n, said in result.nodes]
                 + [[n, render.colour(why, "red")] for n, why in result.failed])


def _delivered(result: Delivered) -> None:
    click.echo(result["result"])


def _scan(result: ScanReport) -> None:
    from fleet.workflows.secrets import SCAN_FILE_LIMIT  # loaded already: it made the result

    if result.findings:
        render.table("secrets found", ["where", "what"],
                     [[f.where, f.what] for f in result.findings])
    for path in result.skipped:
        render.progress(f"not scanned (over {SCAN_FILE_LIMIT >> 20} MiB): {path}")
    render.progress(f"looked for {result.values} secret value(s) in {len(result.images)} "
                    f"image(s), {len(result.nodes)} node(s), {result.files} file(s) under "
                    f".fleet and {result.keys} Consul KV entries")


SYNC = View(_sync)
CHECK = View(_check)
STORED = View(_stored)
ROTATE = View(_rotate)
DELIVERED = View(_delivered)
SCAN = View(_scan)


# ---- plan, apply, converge, run -------------------------------------------------------------

PLAN_COLOURS = {"bake": "cyan", "create": "green", "promote": "green", "grow": "green",
                "update": "yellow", "roll": "yellow", "shrink": "yellow", "repair": "yellow",
                "replace": "red", "destroy": "red", "revoked": "red", "missing secret": "red"}


def _plan(result: Plan) -> None:
    render.table(f"plan of {result.fleet}: {result.changes} change(s)",
                 ["env", "role", "class", "target", "action", "detail", "note"], [
        [i.env or "(images)", i.role, i.cls, i.target,
         _coloured(i.action.value, PLAN_COLOURS, "white"), i.detail,
         render.colour(i.blocked, "red") if i.blocked else ("drift" if i.drift else "")]
        for i in result.items])


def _plan_json(result: Plan) -> None:
    click.echo(result.to_json())  # what `fleet apply --plan FILE` reads


def _apply(result: ApplyReport) -> None:
    if not result.done:
        click.echo("nothing to do: what runs matches fleet.toml and the channels")
        return
    render.table(f"applied in {result.seconds:.1f}s", ["env", "role", "target", "action", "detail"], [
        [d.env or "(images)", d.role, d.target, d.action.value, d.detail] for d in result.done])


def _remote(result: RemoteReport) -> None:
    for r in result.results:
        state = "ok" if r.ok else "FAILED"
        code = "-" if r.exit_code is None else str(r.exit_code)
        click.echo(f"== {r.host}: {state} (exit {code}){': ' + r.error if r.error else ''}")
        for text in (r.stdout, r.stderr):
            if text.strip():
                click.echo(text.rstrip("\n"))


PLAN = View(_plan, _plan_json)
APPLY = View(_apply)
REMOTE = View(_remote)
