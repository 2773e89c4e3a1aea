"""An environment's database as a role's migrations see it: which pet serves it (the one of
the environment that owns the pets: a borrower through pets_from uses the lender's), where it is
on the lab's network, its password from Vault, and fleet-migrate run from a role's image
against it (fleet.adapters.postgres). Also the rehearsal verdicts that admit migrations.

The example's postgres pet has database `gitlab` owned by role `gitlab`, whose password is the
pet's `db_password` in Vault (fleet/postgres/<env>); a pet role's settings `database` and
`user` name others.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

from fleet.adapters import postgres
from fleet.errors import FleetError
from fleet.model import secrets as secrets_model
from fleet.model.definition import Role
from fleet.model.image import ImageRecord
from fleet.model.migrations import Applied, Migration, from_record, pending, point_of_no_return
from fleet.model.rehearsal import Rehearsal
from fleet.model.secret import Secret
from fleet.services import credentials, topology
from fleet.services.catalog import KV
from fleet.services.context import Context

PORT = 5432
PASSWORD_KEY = "db_password"


@dataclass(frozen=True)
class Target:
    """The database a role's migrations change for one environment."""

    role: str       # the cattle role that carries the migrations
    env: str        # the environment whose pet it is (pets_env)
    instance: str   # the pet instance serving it
    db: postgres.Database


def database_env(ctx: Context, env: str) -> str:
    """The environment whose pets serve env (env itself, or its pets_from lender)."""
    return ctx.fleet.environment(env).pets_env


def target(ctx: Context, role: Role, env: str) -> Target:
    """Where role's migrations run for env: the first instance of its database pet in the
    environment owning env's pets, with that pet's password."""
    owner, pet, instance = database_pet(ctx, role, env)
    found = credentials.vault(ctx).kv_get(ctx.fleet.secrets_mount,
                                          secrets_model.kv_path(pet.name, owner))
    if not found or PASSWORD_KEY not in found:
        raise FleetError(f"{pet.name}'s {PASSWORD_KEY} in {owner} is not in Vault: "
                         f"{role.name}'s migrations cannot log in",
                         f"fleet secrets put {pet.name} {PASSWORD_KEY} --env {owner}")
    settings = pet.settings
    db = postgres.Database(topology.container(ctx, instance), PORT,
                           str(settings.get("database", "gitlab")),
                           str(settings.get("user", "gitlab")), Secret(found[PASSWORD_KEY]))
    return Target(role.name, owner, instance, db)


def database_pet(ctx: Context, role: Role, env: str) -> tuple[str, Role, str]:
    """(the environment owning env's pets, the database's pet role, the instance role's
    migrations run against): the first of that role's instances there."""
    decl = role.migrations
    if decl is None:
        raise FleetError(f"{role.name} declares no migrations")
    owner = database_env(ctx, env)
    pet = ctx.fleet.role(decl.database)
    instances = pet.instances.get(owner, ())
    if not instances:
        raise FleetError(f"{owner} has no {pet.name} instance for {role.name}'s migrations",
                         f"list one in roles.{pet.name}.instances.{owner}")
    return owner, pet, instances[0]


# What a database that is still coming up answers: its server not listening yet, or its
# application role not yet given its password (the pet's check passes once 5432 accepts, a
# moment before fleet-postgres-password has run): a new pet's first promotion waits these out.
STARTING = ("password authentication failed", "Connection refused",
            "the database system is starting up", "does not exist")
READY_WAIT = 60.0  # seconds


def applied(ctx: Context, t: Target, image: ImageRecord, *,
            wait: float = 0.0) -> tuple[Applied, ...]:
    """What the database has run, read with image's fleet-migrate; with wait, a database still
    coming up (STARTING) is asked again for that long."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return postgres.applied(image.artifact, topology.network(ctx).name, t.db)
        except FleetError as exc:
            if time.monotonic() > deadline or not any(s in exc.what for s in STARTING):
                raise
        time.sleep(2.0)


def apply(ctx: Context, t: Target, image: ImageRecord, ids: list[str], *,
          lock_timeout: str = "5s") -> tuple[postgres.Ran, ...]:
    """Run image's migrations `ids` against the database, in order; what each did."""
    return postgres.apply(image.artifact, topology.network(ctx).name, t.db, image.version, ids,
                          lock_timeout=lock_timeout)


def carried(image: ImageRecord) -> tuple[Migration, ...]:
    return from_record(image.migrations)


def rehearsal_key(prefix: str, role: str, version: str, env: str) -> str:
    return f"{prefix}/rehearsals/{role}/{version}/{env}"


def read_rehearsal(kv: KV, prefix: str, role: str, version: str,
                   env: str) -> Rehearsal | None:
    """The rehearsal verdict of role's version on env's data (`fleet db rehearse`), if any."""
    entry = kv.get(rehearsal_key(prefix, role, version, env))
    return Rehearsal.from_json(entry.value) if entry is not None and entry.value else None


@dataclass(frozen=True)
class Schema:
    """What `fleet status` and `fleet plan` say of a role's database in an environment."""

    pending: tuple[str, ...]   # labels of the migrations `version` carries that have not run
    point_of_no_return: str    # the newest post-deployment migration run ('' for none)
    error: str = ""            # why the database could not be read ('' when it was)


def schema(ctx: Context, role: Role, env: str, image: ImageRecord,
           running: Collection[str] | None = None) -> Schema:
    """Pending migrations of image and the point of no return of env's database; a database
    that cannot be read is said, not raised (status and plan show everything else anyway).
    running: the lab's running containers, when the caller has listed them: a database pet
    not among them is said to be so, not asked (a plan before the first apply)."""
    try:
        if running is not None:
            owner, pet, instance = database_pet(ctx, role, env)
            if topology.container(ctx, instance) not in running:
                return Schema((), "", f"{pet.name} {instance} in {owner} is not running "
                                      "(fleet apply creates or starts it)")
        t = target(ctx, role, env)
        ran = applied(ctx, t, image)
    except FleetError as exc:
        return Schema((), "", exc.line())
    last = point_of_no_return(ran)
    return Schema(tuple(m.label for m in pending(carried(image), ran)),
                  f"{last.id} (by {last.version}{' at ' + last.at if last.at else ''})"
                  if last else "")
