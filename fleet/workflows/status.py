"""fleet status / history: what runs where, from Consul; and what happened, from the history."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleet.adapters import consul_checks
from fleet.adapters.consul import Consul, Instance
from fleet.model.definition import Role
from fleet.model.grammar import RoleClass
from fleet.model.history import since as since_time
from fleet.model.promotion import floor
from fleet.services import bulk
from fleet.services.catalog import Catalog
from fleet.services.context import Context
from fleet.services.environments import live
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


def status(ctx: Context, envs: list[str],
           checks_read: bulk.Early[consul_checks.ServiceChecks] | None = None) -> list[RoleStatus]:
    """Each cattle role in each environment (all by default; ctx as fleet.toml has it, the
    ephemeral environments Consul records are added here). What is read does not grow with
    the environments or roles asked about: every check of the fleet's services and every
    member's node checks (one request: Consul.service_checks, which says each node's role,
    environment, version and health; sent first, and worked out by Consul while the rest is
    read: bulk.Early, or checks_read if the command began it before loading fleet.toml:
    bulk.declared_read), the ephemeral environments, every channel and every desired group (one
    request each), the database of a role with migrations, and, only where a canary
    environment is shown, its and the last environment's instances of each service with their
    Weights (one request a service, READERS at a time): the traffic share."""
    consul = ctx.consul()
    tag = f"fleet:{ctx.fleet.name}"
    with bulk.decoding():
        reading = bulk.on(ctx, checks_read, bulk.FLEET_CHECKS)
        consul_checks.decoder()  # its import, while Consul works
        ctx = live(ctx)
        fleet = ctx.fleet
        for env in envs:
            fleet.environment(env)
        shown = envs or list(fleet.env_names())
        state = FleetState(consul, fleet.kv_prefix)
        catalog = Catalog(consul, fleet.kv_prefix)
        roles = [r for r in fleet.roles.values() if r.cls is RoleClass.CATTLE]
        last = fleet.env_names()[-1]
        weighed = [e for e in shown if e != last and fleet.environment(e).canary_weight > 0]
        channels, every_desired = state.channels(), state.every_desired()
        checks, members = reading.result()
    health = tally(checks, members, roles)
    instances: dict[str, list[Instance]] = {}
    serving: dict[tuple[str, str], int] = {}
    if weighed:  # the traffic share: the instances that weigh other than USUAL_WEIGHT
        instances = _instances(consul, tag, sorted({s.name for r in roles for s in r.services}),
                               [*weighed, last])
        serving = passing_instances(checks, members, roles)
    out = []
    for env in shown:
        desired = every_desired.get(env, {})
        environment = fleet.environment(env)
        for role in roles:
            nodes = health.get((env, role.name), {})
            share = None
            if env in weighed:
                mine = [i for s in role.services for i in instances[s.name]
                        if i.meta.get("role") == role.name and i.passing]
                # the weights of its passing instances here and in the last environment: the
                # usual one each, but those read as weighing otherwise
                here, rest = (USUAL_WEIGHT * serving.get((e, role.name), 0) + sum(
                    i.weight - USUAL_WEIGHT for i in mine if i.meta.get("env") == e)
                    for e in (env, last))
                share = round(100 * here / (here + rest), 1) if here + rest else None
            channel = channels.get((env, role.name))
            pending, point_of_no_return, schema_error = _schema(
                ctx, catalog, role, env, channel.version if channel else "")
            out.append(RoleStatus(
                env, role.name, channel.version if channel else "",
                {v: n for v, n in desired.get(role.name, {}).items() if n},
                dict(Counter(v for v, ok in nodes.values() if ok)),
                dict(Counter(v for v, ok in nodes.values() if not ok)),
                share, floor(role.count[env], environment.min_healthy_percent),
                environment.pets_from, pending, point_of_no_return, schema_error))
    return out


Check = consul_checks.ServiceCheck


def _role_checks(checks: Iterable[Check], members: Mapping[str, bool], roles: Iterable[Role]
                 ) -> Iterator[tuple[str, str, str, str, str, bool]]:
    """(env, role, node, service, version, passes) of each check of one of the roles' services
    on a member node, tagged with its environment; passes counts the node's own checks too.
    What a (service, tag list) says is worked out once: at 10,000 nodes they are a few hundred."""
    services = {(s.name, r.name) for r in roles for s in r.services}
    said: dict[tuple[str, tuple[str, ...]], tuple[str, str, str] | None] = {}
    for node, service, tags, passing in checks:
        member = members.get(node)
        if member is None:
            continue
        key = (service, tags)
        if key in said:
            found = said[key]
        else:
            pairs = dict(t.split(":", 1) for t in tags if ":" in t)
            role, env = pairs.get("role"), pairs.get("env")
            found = said[key] = None if env is None or (service, role) not in services else (
                env, str(role), pairs.get("version", ""))
        if found is not None:
            env, role, version = found
            yield env, role, node, service, version, passing and member


def tally(checks: Iterable[Check], members: Mapping[str, bool],
          roles: Iterable[Role]) -> dict[tuple[str, str], dict[str, tuple[str, bool]]]:
    """(env, role) -> node -> (version, passing), from Consul.service_checks: the nodes that
    are members of the cluster with a check of one of the role's services, tagged with the
    role and the environment; a node passes when every check of those services on it, and
    every check of the node itself, passes (as services.cattle.health counts them, from the
    tags fleet registers beside the same meta: model.nodes.tags). Nodes in Consul's order."""
    found: dict[tuple[str, str], dict[str, tuple[str, bool]]] = {}
    for env, role, node, _, version, passing in _role_checks(checks, members, roles):
        nodes = found.get((env, role))
        if nodes is None:
            nodes = found[(env, role)] = {}
        seen = nodes.get(node)
        nodes[node] = (version, passing if seen is None else seen[1] and passing)
    return found


READERS = 4  # services read at once (the client keeps a connection per thread)


USUAL_WEIGHT = 100  # Weights.Passing of every node but a canary environment's (promotion.weight)


def passing_instances(checks: Iterable[Check], members: Mapping[str, bool],
                      roles: Iterable[Role]) -> dict[tuple[str, str], int]:
    """(env, role) -> its passing instances (a node's instance of one of its services: every
    check of it and of the node passes, as Consul.instances says), from service_checks."""
    found: dict[tuple[str, str, str, str], bool] = {}  # (env, role, node, service) -> passes
    for env, role, node, service, _, passing in _role_checks(checks, members, roles):
        key = (env, role, node, service)
        found[key] = found.get(key, True) and passing
    return dict(Counter((env, role) for (env, role, _, _), ok in found.items() if ok))


def _instances(consul: Consul, tag: str, services: list[str],
               envs: list[str]) -> dict[str, list[Instance]]:
    """service -> its instances carrying tag in envs that weigh other than USUAL_WEIGHT
    (Consul.instances_in: a canary environment's, and the odd one), for every service."""

    def read(chunk: list[str]) -> dict[str, list[Instance]]:
        return {service: consul.instances_in(service, tag, envs, USUAL_WEIGHT)
                for service in chunk}

    from concurrent.futures import ThreadPoolExecutor  # only here: ~2 ms of a status' start

    chunks = [c for c in (services[i::READERS] for i in range(READERS)) if c]
    found: dict[str, list[Instance]] = {}
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        for part in pool.map(read, chunks):
            found.update(part)
    return found


def _schema(ctx: Context, catalog: Catalog, role: Role, env: str,
            version: str) -> tuple[tuple[str, ...], str, str]:
    """(pending, point of no return, error) of role's database in env as its channel's image
    sees it (services.database.Schema; nothing to say for a role without migrations, or
    nothing promoted yet). The database service is imported only then: its import (Vault,
    SSH, PostgreSQL) is ~20 ms of a status that needs none of it."""
    stored = catalog.get(role.name, version) if role.migrations and version else None
    if stored is None or not stored.record.migrations:
        return (), "", ""
    from fleet.services import database

    schema = database.schema(ctx, role, env, stored.record)
    return schema.pending, schema.point_of_no_return, schema.error


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
