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
    from fleet.workflows.images import PruneReport
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
    colours = {"built": "green", "cached": "cyan", "skipped": "bright_black", "failed": "red"}
    render.table("bake", ["role", "outcome", "version", "digest", "image", "seconds", "detail"], [
        [r.role, _coloured(r.outcome.value, colours, "yellow"), r.version, r.digest[:12],
         r.artifact[7:19], f"{r.seconds:.1f}", r.detail] for r in result.results])


def _image(result: ImageRecord) -> None:
    render.table(result.ref, ["field", "value"],
                 [[k, str(v)] for k, v in render.jsonable(result).items() if k != "migrations"])
    if result.migrations:
        render.table("migrations it carries", ["id", "name", "kind", "sha256"],
                     [[m["id"], m["name"], m["kind"], m["sha256"][:12]] for m in result.migrations])


def _state(r: ImageRecord) -> render.Styled | str:
    if r.revoked:
        return render.colour(f"revoked: {r.revoked_reason}", "red")
    if r.pruned:
        return render.colour(f"pruned {r.pruned_at}", "bright_black")
    return "ok"


def _images(result: Sequence[ImageRecord]) -> None:
    render.table("images", ["image", "digest", "artifact", "git", "baked", "by", "state"], [
        [r.ref, r.digest[:12], r.artifact[7:19], r.git_commit[:8] + ("+" if r.git_dirty else ""),
         r.baked_at, r.baked_by, _state(r)]
        for r in result])


def _revoked(result: ImageRecord) -> None:
    click.echo(f"revoked {result.ref}: {result.revoked_reason}")


def _prune(result: PruneReport) -> None:
    colours = {"kept": "green", "pruned": "yellow", "would prune": "yellow", "failed": "red"}
    title = f"images prune --keep {result.keep}" + (" --dry-run" if result.dry_run else "")
    render.table(title, ["image", "kind", "id", "outcome", "why"], [
        [p.verdict.ref, p.verdict.kind.value, p.verdict.artifact[7:19],
         _coloured(p.outcome.value, colours, "white"),
         "; ".join(p.verdict.reasons) + (f" ({p.detail})" if p.detail else "")
         + ("" if p.verdict.present or not p.verdict.keep else " (but its image is not in Docker)")]
        for p in result.images])
    verb = "would prune" if result.dry_run else "pruned"
    render.progress(f"{verb} {result.pruned} of {len(result.images)} image(s)")


BAKE = View(_bake)
IMAGE = View(_image)
IMAGES = View(_images)
REVOKED = View(_revoked)
PRUNE = View(_prune)


# ---- promote, rollback, status, history -----------------------------------------------------

def _on(at: Mapping[str, str]) -> str:
    """{'web': 'v2', 'api': 'v2', 'git': ''} -> 'web, api at v2; git at nothing'."""
    by: dict[str, list[str]] = {}
    for role, version in at.items():
        by.setdefault(version, []).append(role)
    return "; ".join(f"{', '.join(roles)} at {v or 'nothing'}" for v, roles in by.items())


def _promotions(result: Sequence[PromotionReport]) -> None:
    """One line per rollout, where its roles are told from the channels it left (as `fleet
    status` shows them), then what the rollout was and how it ended."""
    for r in result:
        kind = "rollback to" if r.purpose == "rollback" else "promotion to"
        if not r.rollout:
            what = "already there, nothing to roll"
        elif r.state.value == "done":
            what = f"{kind} {r.version} done" + (", carried on" if r.carried_on else "")
        else:
            undone = "undone" if r.purpose == "rollback" else "rolled back"
            what = f"{kind} {r.version} {undone}: {r.detail}"
        rollout = f"rollout {r.rollout}, {r.steps} step(s), " if r.rollout else ""
        click.echo(f"{r.env}: {_on(r.at)} ({what}; {rollout}{r.seconds:.1f}s)")


def _status(result: Sequence[RoleStatus]) -> None:
    def counts(groups: dict[str, int]) -> str:
        return ", ".join(f"{v}: {n}" for v, n in sorted(groups.items())) or "-"

    render.table("status", ["env", "role", "channel", "desired", "passing", "failing", "floor",
                            "traffic", "pets"], [
        [r.env, r.role, r.channel or "-", counts(r.desired), counts(r.passing), counts(r.failing),
         render.colour(f"{r.floor}: below", "red") if r.below_floor else str(r.floor),
         "" if r.traffic_share is None else f"{r.traffic_share}%",
         f"{r.pets_from}'s" if r.pets_from else "own"]
        for r in result])
    for r in result:  # roles with migrations: their database in each environment
        if r.pending or r.point_of_no_return or r.schema_error:
            click.echo(f"{r.env}: {r.role}'s database: "
                       + (f"cannot be read ({r.schema_error})" if r.schema_error else
                          f"pending {', '.join(r.pending) or 'none'}; point of no return "
                          f"{r.point_of_no_return or 'none'}"))


# what each kind of event says, from its fields; fields a sentence does not use follow it
EVENTS = {
    "promote": "{roles} to {version}; before: {previous}",
    "rollback-to": "{roles} back to {version}; before: {previous}",
    "step": "{step} of {of}: {groups}",
    "rollback-step": "{step} of {of}, back: {groups}",
    "gate": "step {step} passed",
    "gate-failed": "step {step} failed: {detail}",
    "rollback": "rolling {version} back to {to}: {reason}",
    "rolled-back": "{version} rolled back to {to}: {reason}",
    "promoted": "{roles} at {version}; before: {previous}",
    "resume": "carried on at step {step} ({state})",
    "refused": "{version} for {roles}: {problems}",
    "lock-taken-over": "the lock, from {holder} (pid {pid}, since {since}), whose process was gone",
    "release": "{version} for {roles} through {chain}, from {starts_at}",
    "release-stopped": "{version} for {roles}: {reason}",
    "released": "{version} for {roles} through {chain}",
    "migrated": "{kind} migrations of {version} on {database}'s database: {migrations}",
    "migration-failed": "{kind} migration {migration} of {version} on {database}'s database: {error}",
    "migrations-waiting": "post-deployment {migrations} of {version} wait for {waiting_for}",
    "rollback-refused": "step {step} failed ({reason}) and rolling back would cross: {detail}",
    "move": "{pet} to {target}: {step} {outcome}",
}
HEAD = {"at", "env", "event", "who", "rollout", "roles"}  # said around the sentence


def _text(value: object) -> str:
    """A field of an event as words: {'web': 'v1', 'api': ''} -> 'web v1, api nothing',
    {'v1': 0, 'v2': 1} -> 'v1=0 v2=1', lists joined, True -> 'yes'."""
    if isinstance(value, Mapping):
        if all(isinstance(v, int) for v in value.values()):
            return " ".join(f"{k}={v}" for k, v in value.items())
        return ", ".join(f"{k} {_text(v) or 'nothing'}" for k, v in value.items())
    if isinstance(value, list | tuple):
        words = [_text(v) for v in value]
        return ("; " if any(" " in w for w in words) else ", ").join(words)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else str(value)


def _event(e: Event, widths: tuple[int, int] = (0, 0)) -> str:
    """One event as one line: when, where, what happened, then who (and which rollout);
    `widths` pads the environment and the event's kind, so that lines align."""
    import string

    kind = str(e["event"])
    template = EVENTS.get("gate-failed" if kind == "gate" and e.get("passed") is False
                          else kind, "")
    used = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    if not used <= e.keys():
        template, used = "", set()  # an event of another shape: its fields say it all
    said = template.format(**{k: _text(e[k]) for k in used})
    rest = [f"{k}: {_text(v)}" for k, v in e.items()
            if k not in HEAD | used | {"passed"} and _text(v) not in ("", "no")]
    rollout = f", rollout {e['rollout']}" if "rollout" in e else ""
    where, kind = f"{e['env'] or '-'}", f"{kind}:"
    return (f"{str(e['at'])[:19].replace('T', ' ')}  {where:<{widths[0]}}  "
            f"{kind:<{widths[1]}} "
            + "; ".join(x for x in [said, *rest] if x) + f"  ({e['who']}{rollout})")


def _history(result: Sequence[Event]) -> None:
    widths = (max((len(str(e["env"])) or 1 for e in result), default=0),
              max((len(str(e["event"])) + 1 for e in result), default=0))
    for e in result:
        click.echo(_event(e, widths))
    if not result:
        render.progress("no events")


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
    for copied in result.copied:
        render.progress(f"copied from the lender (pets_from): {copied}")
    render.progress(f"{result.changed} change(s)")


def _check(result: CheckReport) -> None:
    for missing in result.missing:
        click.echo(f"missing: {missing}")
    for stale in result.stale:
        click.echo(f"stale copy: {stale}")
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
                "update": "yellow", "converge": "yellow", "move": "yellow", "roll": "yellow",
                "shrink": "yellow", "repair": "yellow",
                "replace": "red", "destroy": "red", "revoked": "red", "missing secret": "red"}


def _plan(result: Plan) -> None:
    render.table(f"plan of {result.fleet}: {result.changes} change(s)",
                 ["env", "role", "class", "target", "action", "detail", "note"], [
        [i.env or "(images)", i.role, i.cls, i.target,
         _coloured(i.action.value, PLAN_COLOURS, "white"), i.detail,
         render.colour(i.blocked, "red") if i.blocked else ("drift" if i.drift else "")]
        for i in result.items])
    for env, lender in result.pets_from.items():
        click.echo(f"{env} uses {lender}'s pets (pets_from): "
                   f"{', '.join(result.borrowed[env]) or 'none yet'}; never created, changed "
                   f"or destroyed from {env}")
    for where, line in result.migrations.items():
        click.echo(f"{where} migrations: {line}")


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
