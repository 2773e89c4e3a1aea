"""fleet status / history: what runs where, from Consul; and what happened, from the history."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fleet.adapters.consul import Consul, Instance
from fleet.model.definition import Role
from fleet.model.grammar import RoleClass
from fleet.model.history import since as since_time
from fleet.model.promotion import floor
from fleet.services.catalog import Catalog
from fleet.services.context import Context
from fleet.services.state import FleetState

if TYPE_CHECKING:
    from fleet.services import database


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
    """Each cattle role in each environment (all by default). What is read does not grow with
    the environments or roles asked about: each cattle service's instances once (one request
    a service, READERS at a time), every channel and every desired group (one request each),
    and the database of a role with migrations."""
    from fleet.services import cattle  # lazy, as database in _schema: history needs neither

    fleet = ctx.fleet
    for env in envs:
        fleet.environment(env)
    consul = ctx.consul()
    state = FleetState(consul, fleet.kv_prefix)
    catalog = Catalog(consul, fleet.kv_prefix)
    roles = [r for r in fleet.roles.values() if r.cls is RoleClass.CATTLE]
    with ThreadPoolExecutor(max_workers=2) as pool:
        reading_channels = pool.submit(state.channels)
        reading_desired = pool.submit(state.every_desired)
        instances = _instances(consul, f"fleet:{fleet.name}",
                               sorted({s.name for r in roles for s in r.services}))
        channels, every_desired = reading_channels.result(), reading_desired.result()
    last = fleet.env_names()[-1]
    out = []
    for env in envs or list(fleet.env_names()):
        desired = every_desired.get(env, {})
        environment = fleet.environment(env)
        canary = environment.canary_weight > 0
        for role in roles:
            mine = [i for s in role.services for i in instances[s.name]
                    if i.meta.get("role") == role.name]
            health = cattle.health_of(mine, env, role.name)
            share = None
            if canary and env != last:
                here = sum(i.weight for i in mine if i.passing and i.meta.get("env") == env)
                rest = sum(i.weight for i in mine if i.passing and i.meta.get("env") == last)
                share = round(100 * here / (here + rest), 1) if here + rest else None
            channel = channels.get((env, role.name))
            schema = _schema(ctx, catalog, role, env, channel.version if channel else "")
            out.append(RoleStatus(
                env, role.name, channel.version if channel else "",
                {v: n for v, n in desired.get(role.name, {}).items() if n},
                dict(Counter(health.passing.values())), dict(Counter(health.failing.values())),
                share, floor(role.count[env], environment.min_healthy_percent),
                environment.pets_from, schema.pending, schema.point_of_no_return, schema.error))
    return out


READERS = 4  # services read at once (the client keeps a connection per thread)


def _instances(consul: Consul, tag: str, services: list[str]) -> dict[str, list[Instance]]:
    """service -> its instances carrying tag (Consul.instances), for every service."""

    def read(chunk: list[str]) -> dict[str, list[Instance]]:
        return {service: consul.instances(service, tag) for service in chunk}

    chunks = [c for c in (services[i::READERS] for i in range(READERS)) if c]
    found: dict[str, list[Instance]] = {}
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        for part in pool.map(read, chunks):
            found.update(part)
    return found


def _schema(ctx: Context, catalog: Catalog, role: Role, env: str,
            version: str) -> database.Schema:
    """The schema of role's database in env as its channel's image sees it (nothing to say
    for a role without migrations, or nothing promoted yet)."""
    from fleet.services import database

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
