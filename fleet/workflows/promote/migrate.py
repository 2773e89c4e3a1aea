"""The schema migrations of a promotion (see fleet/model/migrations.py): read what each role's
database ran, gate on the point of no return and on rehearsals, run the regular migrations
before a rollout's first step and the post-deployment ones after its last.

Where environments share a database (pets_from: the canary uses production's), the regular
migrations run at the first promotion that brings the version to that database, and the
post-deployment ones once every environment using it runs the version; until then a promotion
says they wait. Every run is recorded in the history ("migrated", "migration-failed",
"migrations-waiting").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fleet.adapters.postgres import Ran, Status
from fleet.errors import FleetError
from fleet.model import migrations as model
from fleet.model.image import ImageRecord
from fleet.model.migrations import Applied, Kind, Migration
from fleet.model.promotion import PromotionError, Rollout
from fleet.model.rehearsal import rehearsal_problem
from fleet.services import database
from fleet.workflows.promote.runner import Promoter


@dataclass(frozen=True)
class Read:
    """One role's database as a promotion of `image` to an environment sees it."""

    role: str
    image: ImageRecord
    target: database.Target
    applied: tuple[Applied, ...]

    @property
    def carried(self) -> tuple[Migration, ...]:
        return database.carried(self.image)

    @property
    def pending(self) -> tuple[Migration, ...]:
        """What to run (refused when a migration that ran has changed: MigrationError)."""
        return model.runnable(self.carried, self.applied)


def migrating(p: Promoter, roles: list[str] | tuple[str, ...], version: str) -> list[str]:
    """The roles among these whose image at version carries migrations: only they have
    anything to run (a role whose images carry none never needs its database)."""
    return [r for r in roles if p.ctx.fleet.roles[r].migrations is not None
            and (image := p.record(r, version)) is not None and image.migrations]


def contracting(p: Promoter, roles: list[str] | tuple[str, ...]) -> list[str]:
    """The roles among these of which some image ever carried a post-deployment migration:
    only their databases can hold a point of no return."""
    return [r for r in roles if p.ctx.fleet.roles[r].migrations is not None
            and any(m["kind"] == Kind.POST_DEPLOYMENT for image in p.catalog.records(r)
                    for m in image.migrations)]


def read(p: Promoter, env: str, role: str, version: str) -> Read:
    image = p.record(role, version)
    if image is None:
        raise PromotionError(f"no image {role}:{version} in the catalog")
    target = database.target(p.ctx, p.ctx.fleet.roles[role], env)
    return Read(role, image, target,  # a pet apply has just created may still be coming up
                database.applied(p.ctx, target, image, wait=database.READY_WAIT))


def names(p: Promoter, applied: tuple[Applied, ...], role: str) -> dict[str, str]:
    """id -> name of applied migrations, from the images that applied them (where known)."""
    found: dict[str, str] = {}
    for version in {a.version for a in applied}:
        image = p.record(role, version)
        if image is not None:
            found.update({m.id: m.name for m in database.carried(image)})
    return found


def crossing(p: Promoter, env: str, role: str, version: str) -> str:
    """Why running role's version in env would cross the point of no return ("" if not)."""
    r = read(p, env, role, version)
    crossed = model.crosses_point_of_no_return(r.applied, r.carried)
    return model.crossing_line(role, version, crossed, names(p, crossed, role)) if crossed else ""


def problems(p: Promoter, env: str, version: str, roles: list[str], *,
             rollback: bool) -> list[str]:
    """The gates migrations put on taking `roles` to version in env: the point of no return
    (promotion and rollback alike), and for a promotion with pending migrations to an
    environment with require_rehearsal, a passing, fresh rehearsal on its database's data."""
    environment = p.ctx.fleet.environment(env)
    found: list[str] = []
    for role in dict.fromkeys([*contracting(p, roles), *migrating(p, roles, version)]):
        r = read(p, env, role, version)
        crossed = model.crosses_point_of_no_return(r.applied, r.carried)
        if crossed:
            found.append(model.crossing_line(role, version, crossed, names(p, crossed, role)))
        if rollback or not environment.require_rehearsal or not r.pending:
            continue
        owner = r.target.env
        verdict = database.read_rehearsal(p.consul, p.ctx.fleet.kv_prefix, role, version, owner)
        why = rehearsal_problem(verdict, environment.rehearsal_max_age_seconds,
                                datetime.now(UTC), version=version, env=owner)
        if why:
            found.append(f"{role} {version} has {len(r.pending)} pending migration(s) for "
                         f"{owner}'s database and {env} requires a rehearsal: {why}")
    return found


def run(p: Promoter, env: str, version: str, roles: list[str] | tuple[str, ...],
        kind: Kind) -> None:
    """Run the pending migrations of `kind` for each role (under env's lock). A failure is
    recorded and stops the command with one line naming the migration, file and line."""
    for role in migrating(p, roles, version):
        r = read(p, env, role, version)
        todo = model.of_kind(r.pending, kind)
        if not todo:
            continue
        where = f"{r.target.env}'s database ({r.target.instance})"
        p.say(f"{env}: running {len(todo)} {kind} migration(s) of {role} {version} on {where}")
        ran = database.apply(p.ctx, r.target, r.image, [m.id for m in todo])
        done = [x for x in ran if x.status is not Status.FAILED]
        failed = [x for x in ran if x.status is Status.FAILED]
        if done:
            p.event("migrated", env, roles=[role], version=version, kind=kind.value,
                    database=r.target.env, migrations=[_said(x) for x in done])
        if failed:
            bad = failed[0]
            p.event("migration-failed", env, roles=[role], version=version, kind=kind.value,
                    database=r.target.env, migration=f"{bad.id}_{bad.name}", error=bad.error)
            raise PromotionError(
                f"promotion of {version} to {env} stopped before "
                f"{'any node changed' if kind is Kind.REGULAR else 'its post-deployment step'}: "
                f"{kind} migration {bad.id}_{bad.name} of {role} failed: {bad.error}",
                "fix it in a new version (never edit a migration that ran); "
                "nothing of it was committed")
        for x in done:
            p.say(f"{env}: {role} migration {x.label} {x.status} ({x.seconds:.1f}s)")


def _said(x: Ran) -> str:
    return f"{x.id}_{x.name} {x.status}" + (f" {x.seconds:.1f}s" if x.status is Status.APPLIED
                                           else "")


def after(p: Promoter, env: str, version: str, roles: list[str] | tuple[str, ...]) -> None:
    """After the last step: the post-deployment migrations, once every environment sharing
    the database runs version (model.post_deployment_ready); otherwise say they wait."""
    fleet = p.ctx.fleet
    ready: list[str] = []
    for role in migrating(p, roles, version):
        owner = database.database_env(p.ctx, env)
        running = {e: c.version if (c := p.state.channel(e, role)) else ""
                   for e in model.sharing(fleet, env)}
        waiting = model.post_deployment_ready(fleet, owner, running, version)
        image = p.record(role, version)
        if image is None or not model.of_kind(database.carried(image), Kind.POST_DEPLOYMENT):
            continue
        if waiting:
            r = read(p, env, role, version)
            todo = model.of_kind(r.pending, Kind.POST_DEPLOYMENT)
            if todo:
                p.say(f"{env}: {len(todo)} post-deployment migration(s) of {role} {version} "
                      f"wait until {', '.join(waiting)} run(s) {version}")
                p.event("migrations-waiting", env, roles=[role], version=version,
                        database=owner, waiting_for=list(waiting),
                        migrations=[f"{m.id}_{m.name}" for m in todo])
            continue
        ready.append(role)
    run(p, env, version, ready, Kind.POST_DEPLOYMENT)


def guard(p: Promoter, rollout: Rollout) -> str:
    """Why the automatic rollback of a failed rollout must not go back ("" if it may): a
    previous version that predates a post-deployment migration the database ran."""
    lines = []
    for role, previous in rollout.previous.items():
        if not previous or role not in contracting(p, rollout.roles):
            continue
        try:
            lines.append(crossing(p, rollout.env, role, previous))
        except FleetError as exc:  # never cross blindly: stop, and say why it cannot tell
            lines.append(f"cannot tell whether {role} {previous} would cross the point of no "
                         f"return: {exc.line()}")
    return "; ".join(line for line in lines if line)
