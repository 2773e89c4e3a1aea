"""fleet status / history: what runs where, from Consul; and what happened, from the history."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleet.model.definition import Role
from fleet.model.grammar import RoleClass
from fleet.model.history import since as since_time
from fleet.model.promotion import floor
from fleet.services import cattle, database
from fleet.services.catalog import Catalog
from fleet.services.context import Context
from fleet.services.state import FleetState


@dataclass(frozen=True)
class RoleStatus:
    env: str
    role: str
    channel: str                  # the version the environment should run ('' if none yet)
    desired: dict[str, int]       # version -> nodes Terraform is asked for
    passing: dict[str, int]       # version -> nodes passing every check in Consul
    failing: dict[str, int]       # version -> nodes registered but not passing
    traffic_share: float | None   # canary environments: percent of the role's traffic
    floor: int                    # nodes that must pass at every moment (min_healthy_percent)
    pets_from: str = ""           # the environment whose pets its nodes use ('' = its own)
    # a role with migrations: those its channel's image carries that the database has not run
    # (post-deployment ones waiting for the environments sharing it), and the database's point
    # of no return; schema_error when the database could not be read
    pending: tuple[str, ...] = ()
    point_of_no_return: str = ""
    schema_error: str = ""

    @property
    def below_floor(self) -> bool:
        return sum(self.passing.values()) < self.floor


def status(ctx: Context, envs: list[str]) -> list[RoleStatus]:
    fleet = ctx.fleet
    for env in envs:
        fleet.environment(env)
    consul = ctx.consul()
    state = FleetState(consul, fleet.kv_prefix)
    catalog = Catalog(consul, fleet.kv_prefix)
    tag = f"fleet:{fleet.name}"
    last = fleet.env_names()[-1]
    out = []
    for env in envs or list(fleet.env_names()):
        desired, _ = state.desired(env)
        environment = fleet.environment(env)
        canary = environment.canary_weight > 0
        for role in fleet.roles.values():
            if role.cls is not RoleClass.CATTLE:
                continue
            instances = [i for s in role.services for i in consul.instances(s.name, tag)
                         if i.meta.get("role") == role.name]
            health = cattle.health(ctx, [s.name for s in role.services], env, role.name)
            share = None
            if canary and env != last:
                mine = sum(i.weight for i in instances if i.passing and i.meta.get("env") == env)
                rest = sum(i.weight for i in instances if i.passing and i.meta.get("env") == last)
                share = round(100 * mine / (mine + rest), 1) if mine + rest else None
            channel = state.channel(env, role.name)
            schema = _schema(ctx, catalog, role, env, channel.version if channel else "")
            out.append(RoleStatus(
                env, role.name, channel.version if channel else "",
                {v: n for v, n in desired.get(role.name, {}).items() if n},
                dict(Counter(health.passing.values())), dict(Counter(health.failing.values())),
                share, floor(role.count[env], environment.min_healthy_percent),
                environment.pets_from, schema.pending, schema.point_of_no_return, schema.error))
    return out


def _schema(ctx: Context, catalog: Catalog, role: Role, env: str, version: str) -> database.Schema:
    """The schema of role's database in env as its channel's image sees it (nothing to say
    for a role without migrations, or nothing promoted yet)."""
    stored = catalog.get(role.name, version) if role.migrations and version else None
    if stored is None or not stored.record.migrations:
        return database.Schema((), "")
    return database.schema(ctx, role, env, stored.record)


def history(ctx: Context, env: str | None, role: str | None, *, since: str = "",
            limit: int | None = None) -> list[dict[str, Any]]:
    """The events about ENV and ROLE (None: any), oldest first: those since `since` (a
    duration back from now or a time, see model.history.since; '' for all) and of them the
    newest `limit` (None for all). A role is not checked against fleet.toml: the history
    names roles that may have gone from it since."""
    if env:
        ctx.fleet.environment(env)
    start = since_time(since, datetime.now(UTC)) if since else None

    def about(event: dict[str, Any]) -> bool:
        # an event about the environment as a whole (a lock taken over) names no roles
        return (env is None or event["env"] == env) and (
            role is None or role in event.get("roles", ()))

    return FleetState(ctx.consul(), ctx.fleet.kv_prefix).history(since=start, limit=limit,
                                                                  keep=about)
