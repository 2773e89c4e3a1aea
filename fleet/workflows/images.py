"""fleet images / revoke: read and revoke catalog records."""

from __future__ import annotations

from datetime import UTC, datetime

from fleet.errors import FleetError
from fleet.model.image import ImageRecord, parse_ref
from fleet.model.spec import did_you_mean
from fleet.workflows.catalog import Catalog
from fleet.workflows.context import Context


def catalog(ctx: Context) -> Catalog:
    consul = ctx.consul()
    return Catalog(consul, ctx.fleet.kv_prefix)


def _known_role(ctx: Context, role: str) -> None:
    if role not in ctx.fleet.roles:
        raise FleetError(f'unknown role "{role}"{did_you_mean(role, ctx.fleet.roles)}',
                         f"roles: {', '.join(ctx.fleet.roles)}")


def list_images(ctx: Context, role: str | None) -> list[ImageRecord]:
    if role is not None:
        _known_role(ctx, role)
    return catalog(ctx).records(role)


def show(ctx: Context, ref: str) -> ImageRecord:
    role, version = parse_ref(ref)
    _known_role(ctx, role)
    return catalog(ctx).require(role, version).record


def revoke(ctx: Context, ref: str, reason: str) -> ImageRecord:
    role, version = parse_ref(ref)
    _known_role(ctx, role)
    return catalog(ctx).revoke(role, version, reason, datetime.now(UTC).isoformat(timespec="seconds"))
