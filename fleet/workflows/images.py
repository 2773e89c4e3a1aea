"""fleet images / revoke: read and revoke catalog records."""

from __future__ import annotations

from datetime import UTC, datetime

from fleet.model.image import ImageRecord, parse_ref
from fleet.services.catalog import Catalog
from fleet.services.context import Context


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
    return catalog(ctx).revoke(role, version, reason, datetime.now(UTC).isoformat(timespec="seconds"))
