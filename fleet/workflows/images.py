"""fleet images / revoke / images prune: read, revoke and prune catalog records and their images.

`prune` reads what needs images, asks the retention policy (fleet.model.retention) what to
keep and why, and carries out the rest:

- read: the catalog; the channels, desired groups and rollouts of every environment in KV
  (those fleet.toml no longer names too); the latest verify verdicts; every container on this
  machine and the image it was made from; the pets' and snowflakes' Terraform states (the
  image each instance records); Docker's image ids; the fleet's base images and what is built
  on each;
- decide: `retention.retain` and `retention.retain_bases`, pure;
- act (not with dry_run), holding every environment's rollout lock, so that no rollout starts
  or moves meanwhile (a rollout under way makes the prune refuse, naming it): first each
  record is marked pruned (check-and-set, refused if a bake rebuilt it meanwhile), so that no
  promotion picks it from then on; then the catalog is read again, and an image a record not
  pruned still names (a bake that reused it meanwhile) stays; then the image is removed by id,
  never forced, so Docker itself refuses an image a container started meanwhile uses, and the
  record is then unmarked. Base images go last, once the images built on them are gone.

A record marked pruned stays in the catalog as history; a second prune finds nothing to do.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from fleet.adapters import docker
from fleet.adapters.consul import Consul
from fleet.errors import FleetError
from fleet.model.image import ImageError, ImageRecord, parse_ref
from fleet.model.promotion import Channel, Rollout
from fleet.model.retention import (
    BaseCandidate,
    Kind,
    Needs,
    Verdict,
    check_keep,
    retain,
    retain_bases,
)
from fleet.model.verification import Verification
from fleet.services import baseimage, cattle
from fleet.services.catalog import Catalog
from fleet.services.context import Context, who
from fleet.services.lock import LockHeld, env_lock
from fleet.services.verdicts import Verifications


def catalog(ctx: Context) -> Catalog:
    consul = ctx.consul()
    return Catalog(consul, ctx.fleet.kv_prefix)


def list_images(ctx: Context, role: str | None) -> list[ImageRecord]:
    if role is not None:
        ctx.fleet.role(role)
    return catalog(ctx).records(role)


def show(ctx: Context, ref: str) -> ImageRecord:
    role, version = parse_ref(ref)
    ctx.fleet.role(role)
    return catalog(ctx).require(role, version).record


def revoke(ctx: Context, ref: str, reason: str) -> ImageRecord:
    role, version = parse_ref(ref)
    ctx.fleet.role(role)
    return catalog(ctx).revoke(role, version, reason, _now())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---- prune ---------------------------------------------------------------------------------

class Outcome(StrEnum):
    KEPT = "kept"
    PRUNED = "pruned"             # record marked and image removed (or already gone)
    WOULD_PRUNE = "would prune"   # --dry-run
    FAILED = "failed"             # left as it was; detail says why


@dataclass(frozen=True)
class Pruned:
    """One image's verdict and what became of it."""

    verdict: Verdict
    outcome: Outcome
    detail: str = ""      # why it failed


@dataclass(frozen=True)
class PruneReport:
    keep: int
    dry_run: bool
    images: tuple[Pruned, ...]

    @property
    def pruned(self) -> int:
        return sum(1 for p in self.images if p.outcome in (Outcome.PRUNED, Outcome.WOULD_PRUNE))

    def error(self) -> FleetError | None:
        failed = [p for p in self.images if p.outcome is Outcome.FAILED]
        if not failed:
            return None
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return FleetError(f"could not prune {failed[0].verdict.ref}{more}: {failed[0].detail}")


def prune(ctx: Context, keep: int, *, dry_run: bool = False) -> PruneReport:
    """Prune the fleet's images down to the retention policy (see fleet.model.retention)."""
    check_keep(keep)
    docker.require_daemon()
    consul = ctx.consul()
    consul.leader()  # fail before reading anything else when Consul is down
    if dry_run:
        return PruneReport(keep, True, tuple(
            Pruned(v, Outcome.KEPT if v.keep else Outcome.WOULD_PRUNE)
            for v in _decide(ctx, consul, keep)))
    with _every_env_locked(ctx, consul):
        verdicts = _decide(ctx, consul, keep)
        done = _act(ctx, consul, verdicts)
    if any(p.outcome is Outcome.PRUNED for p in done):
        _record(ctx, consul, keep, done)
    return PruneReport(keep, False, tuple(done))


@contextlib.contextmanager
def _every_env_locked(ctx: Context, consul: Consul) -> Iterator[None]:
    prefix = ctx.fleet.kv_prefix
    envs = set(ctx.fleet.env_names())
    for part in ("channels", "desired", "rollouts"):
        envs |= {e.key[len(f"{prefix}/{part}/"):].split("/")[0]
                 for e in consul.list(f"{prefix}/{part}/")}
    with contextlib.ExitStack() as stack:
        for env in sorted(e for e in envs if e):
            try:
                stack.enter_context(env_lock(consul, prefix, env, wait=False))
            except LockHeld as exc:
                raise LockHeld(exc.what, "prune once it is over: a rollout needs its images, "
                               "and the prune may not change them under it") from exc
        yield


def _decide(ctx: Context, consul: Consul, keep: int) -> tuple[Verdict, ...]:
    records = Catalog(consul, ctx.fleet.kv_prefix).records()
    needs = _needs(ctx, consul)
    verdicts = retain(records, needs, keep, docker.image_ids())
    current, bases = _bases(ctx)
    return verdicts + retain_bases(bases, current, records, verdicts, needs)


def _needs(ctx: Context, consul: Consul) -> Needs:
    prefix = ctx.fleet.kv_prefix

    def under(part: str) -> list[tuple[str, bytes]]:
        root = f"{prefix}/{part}/"
        return [(e.key[len(root):], e.value) for e in consul.list(root) if e.value]

    channels = {}
    for key, value in under("channels"):
        env, _, role = key.partition("/")
        channels[(env, role)] = Channel.from_json(value)
    desired = {env: {str(r): {str(v): int(n) for v, n in g.items()}
                     for r, g in json.loads(value).items()} for env, value in under("desired")}
    rollouts = [Rollout.from_json(value) for _, value in under("rollouts")]
    verified = {}
    for entry in consul.list(f"{Verifications(consul, prefix).root}/"):
        if entry.value:
            verdict = Verification.from_json(entry.value)
            if verdict.passed:
                verified[(verdict.role, verdict.version)] = verdict.artifact
    return Needs(channels, desired, rollouts, docker.container_images(),
                 _machines(ctx, consul), verified)


def _machines(ctx: Context, consul: Consul) -> dict[str, str]:
    """'pet gitaly-01 in production' -> its image id, from every environment's Terraform state
    of pets and snowflakes (the image the next apply keeps it on)."""
    root = f"{ctx.fleet.kv_prefix}/terraform/machines/"
    envs = {e.key[len(root):] for e in consul.list(root) if e.value and "/" not in e.key[len(root):]}
    found = {}
    for env in sorted(envs):
        for address, values in cattle.lab_workspace(ctx, "machines", env).state().items():
            if not address.startswith(("terraform_data.pet[", "terraform_data.snowflake[")):
                continue
            kind, instance = address[len("terraform_data."):].split("[")[0], address.split('"')[1]
            found[f"{kind} {instance} in {env}"] = values["input"]["image"]
    return found


def _bases(ctx: Context) -> tuple[dict[str, str], list[BaseCandidate]]:
    """(current base image id -> base name) and every image of the fleet's base repositories,
    with the images built on each (found by the label fleet.base.digest they inherit)."""
    current: dict[str, str] = {}
    candidates: list[BaseCandidate] = []
    for base in ctx.fleet.bases.values():
        _, image = baseimage.current(base, ctx.root / "packer" / "base", ctx.state_dir / "cache")
        if image is not None:
            current[image.id] = base.name
        tags: dict[str, list[str]] = {}
        for tag, image_id in docker.images(baseimage.repository(base)):
            tags.setdefault(image_id, []).append(f"{baseimage.repository(base)}:{tag}")
        for image_id, names in tags.items():
            found = docker.image(image_id)
            if found is None:
                continue  # removed meanwhile
            digest = found.labels.get("fleet.base.digest")  # None: not a base fleet made
            built_on = docker.image_ids(f"fleet.base.digest={digest}") if digest else frozenset()
            candidates.append(BaseCandidate(image_id, tuple(sorted(names)), built_on))
    return current, candidates


def _act(ctx: Context, consul: Consul, verdicts: tuple[Verdict, ...]) -> list[Pruned]:
    store = Catalog(consul, ctx.fleet.kv_prefix)
    at = _now()
    done: dict[str, Pruned] = {}
    for v in verdicts:
        if v.keep:
            done[v.ref] = Pruned(v, Outcome.KEPT)
        elif v.records:
            try:
                store.prune(v.role, v.version, v.artifact, "; ".join(v.reasons), at)
                done[v.ref] = Pruned(v, Outcome.PRUNED)
            except ImageError as exc:
                done[v.ref] = Pruned(v, Outcome.FAILED, exc.line())
        else:
            done[v.ref] = Pruned(v, Outcome.PRUNED)
    named = {r.artifact for r in store.records() if not r.pruned}  # after the marks
    for kind in (Kind.ROLE, Kind.BASE):
        for v in verdicts:
            if kind is not v.kind or not v.removes or done[v.ref].outcome is not Outcome.PRUNED:
                continue
            failure = _remove(v, named)
            if failure:
                if v.records:
                    with contextlib.suppress(FleetError):
                        store.unprune(v.role, v.version)
                done[v.ref] = Pruned(v, Outcome.FAILED, failure)
    return [done[v.ref] for v in verdicts]


def _remove(v: Verdict, named: set[str]) -> str:
    """Remove one image from Docker; why it could not be ('' once removed)."""
    if v.kind is Kind.ROLE and v.artifact in named:
        return "a bake recorded this image again meanwhile"
    image = docker.image(v.artifact)
    if image is None:
        return ""  # gone already
    try:
        docker.delete_image(v.artifact, image.tags)
    except FleetError as exc:
        return exc.line()
    return ""


def _record(ctx: Context, consul: Consul, keep: int, done: list[Pruned]) -> None:
    """One history event per prune that removed something: who pruned what. The marks in the
    catalog are the record of what was pruned; this event, written after them, only says who
    and when in `fleet history`, so a failure to write it does not fail the prune."""
    from fleet.services.state import FleetState

    gone = [p.verdict.ref for p in done if p.outcome is Outcome.PRUNED]
    with contextlib.suppress(FleetError):
        FleetState(consul, ctx.fleet.kv_prefix).record(
            {"event": "prune", "env": "", "who": who(), "keep": keep, "images": gone})

