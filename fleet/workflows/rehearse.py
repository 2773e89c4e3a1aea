"""fleet db rehearse VERSION --env ENV: a version's pending migrations run on a copy of an
environment's database, in isolation, and the verdict recorded where a promotion to an
environment with `require_rehearsal` reads it (services/database.read_rehearsal).

Per role whose image at VERSION carries migrations:
1. **Snapshot.** A physical base backup (pg_basebackup -Ft -X fetch) of the database that ENV's
   nodes use (ENV's own pets, or its pets_from lender's: the canary's is production's), taken
   from the running pet: consistent, and nothing written to it. Its sha256 names it in the
   verdict. A physical copy, not pg_dump: restoring it is moving bytes, where a logical restore
   rebuilds every index (bench/rehearsal.py measures the difference against a plain copy).
2. **A throwaway instance** of the pet's own image (the same PostgreSQL build as the data's) on
   the copy, on an internal Docker network of its own: no route to ENV's nodes or anywhere else,
   no Consul agent (fleet-init never runs), no registration, trust authentication on that
   network only, so no password of ENV is read.
3. **The migrations**, regular then post-deployment, each run alone by VERSION's own image
   (fleet-migrate, a one-shot container on the throwaway network) with the lock_timeout a
   deploy uses. Per migration: its duration; the locks it took, exactly (fleet-migrate reads
   pg_locks inside the migration's transaction, where PostgreSQL holds every lock until the
   commit); how long it waited for one (a sampler in the instance reads pg_locks every 50 ms
   for a lock not granted); the size of the tables it touched before and after; and psql's
   FILE:LINE error. The run stops at the first failure.
4. **The verdict** (schema before and after as a unified diff) is written check-and-set under
   <prefix>/rehearsals/<role>/<version>/<database env>, and everything of the copy is removed:
   container, network, volume, archive — also when the rehearsal fails. A rehearsal that could
   not make or start its copy (the pet down, Docker failing) records nothing and exits 1: a
   dependency's fault is not a verdict on the migrations.

Two rehearsals of one fleet take turns (a lock in Consul); a rehearsal killed with -9 leaves
its container, network and volume under fixed names, which the next one removes first.
"""

from __future__ import annotations

import difflib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleet.adapters import pgcluster, postgres
from fleet.adapters.consul import Consul
from fleet.adapters.postgres import Database, Ran, Status
from fleet.errors import FleetError
from fleet.model.image import ImageRecord
from fleet.model.migrations import Migration, MigrationError, runnable
from fleet.model.rehearsal import MigrationRun, Rehearsal
from fleet.model.secret import Secret
from fleet.services import database, memo
from fleet.services.catalog import Catalog
from fleet.services.context import Context, who
from fleet.services.lock import env_lock
from fleet.services.state import now

Say = Callable[[str], None]
LOCK = "rehearsal"            # the fleet's rehearsals take turns on <prefix>/locks/rehearsal
LOCK_TIMEOUT = "5s"           # what a deploy gives a migration to get its locks
SAMPLE_INTERVAL = 0.05


@dataclass(frozen=True)
class Copy:
    """The throwaway instance of one rehearsal, by fixed names (a rerun removes leftovers)."""

    container: str
    network: str
    volume: str
    archive: Path

    @classmethod
    def of(cls, ctx: Context, role: str) -> Copy:
        base = f"{ctx.fleet.name}-rehearse-{role}"
        return cls(base, base, base, ctx.state_dir / "rehearsals" / role / "base.tar")

    def remove(self) -> None:
        pgcluster.remove_place(self.container, self.network, self.volume)
        shutil.rmtree(self.archive.parent, ignore_errors=True)


def _roles(ctx: Context, consul: Consul, version: str,
           role: str | None) -> list[tuple[str, ImageRecord]]:
    """The roles to rehearse: the one named, or every one whose image at version carries
    migrations."""
    images = Catalog(consul, ctx.fleet.kv_prefix)
    if role is not None:
        r = ctx.fleet.role(role)
        if r.migrations is None:
            raise FleetError(f"{role} declares no migrations ([roles.{role}.migrations])",
                             "rehearse a role that does, or leave --role out")
        return [(role, images.require(role, version).record)]
    found = [(r.name, stored.record) for r in ctx.fleet.roles.values()
             if r.migrations is not None and (stored := images.get(r.name, version)) is not None]
    if not found:
        raise FleetError(f"no role with migrations has an image {version}",
                         "name one with --role, or bake it: fleet bake ROLE --version VERSION")
    return found


def rehearse(ctx: Context, version: str, env: str, role: str | None, say: Say) -> list[Rehearsal]:
    """Rehearse each role's pending migrations at version on env's data; the verdicts."""
    ctx.fleet.environment(env)  # an unknown environment, named
    consul = ctx.consul()
    roles = _roles(ctx, consul, version, role)
    verdicts = []
    with env_lock(consul, ctx.fleet.kv_prefix, LOCK, wait=True, timeout=1800, say=say):
        for name, image in roles:
            verdict = _one(ctx, name, image, env, say)
            key = database.rehearsal_key(ctx.fleet.kv_prefix, name, version, verdict.env)
            entry = consul.get(key)
            if not consul.put(key, verdict.to_json(), cas=entry.modify_index if entry else 0):
                raise FleetError(f"the rehearsal verdict at {key} changed while it was written",
                                 "rehearse again")
            say(f"{name}:{version} {verdict.summary()}")
            verdicts.append(verdict)
    return verdicts


def _one(ctx: Context, role: str, image: ImageRecord, env: str, say: Say) -> Rehearsal:
    target = database.target(ctx, ctx.fleet.role(role), env)
    copy = Copy.of(ctx, role)
    started = time.monotonic()
    copy.remove()  # what a rehearsal killed with -9 left
    snapshot, error, diff = "", "", ""
    runs: list[MigrationRun] = []
    try:
        pet_image = pgcluster.image_of(target.db.host)
        say(f"copying {target.env}'s {target.db.name} from {target.db.host} (pg_basebackup)")
        pgcluster.base_backup(target.db.host, copy.archive)
        digest, size = memo.file_sha256(copy.archive)
        snapshot = f"pg_basebackup:{digest[:16]} ({size} bytes)"
        say(f"restoring it into {copy.container} on the internal network {copy.network}")
        pgcluster.create_place(copy.network, copy.volume)
        pgcluster.restore(pet_image, copy.volume, copy.archive)
        pgcluster.start_instance(pet_image, copy.container, copy.network, copy.volume)
        pgcluster.wait_ready(copy.container, target.db.name)
        try:
            runs, diff = _migrate(copy, target, image, say)
        except MigrationError as exc:  # the version's own fault (an edited migration): a verdict
            error = exc.line()
    except FleetError as exc:  # no copy, no verdict: a dependency's fault records nothing
        raise FleetError(f"the rehearsal of {role}:{image.version} could not run on a copy of "
                         f"{target.env}'s database: {exc.what}",
                         exc.fix or f"is {target.instance} up? fleet status {target.env}") from exc
    finally:
        copy.remove()
    passed = not error and all(r.ok for r in runs)
    return Rehearsal(role, image.version, target.env, snapshot, tuple(runs), passed,
                     now(), who(), round(time.monotonic() - started, 2), error, diff)


def _migrate(copy: Copy, target: database.Target, image: ImageRecord,
             say: Say) -> tuple[list[MigrationRun], str]:
    """Run image's pending migrations on the copy, one at a time; what each did, and the
    schema's difference."""
    db = Database(copy.container, target.db.port, target.db.name, target.db.user,
                  Secret("trusted"))
    applied = postgres.applied(image.artifact, copy.network, db)
    todo: tuple[Migration, ...] = runnable(database.carried(image), applied)
    say(f"{len(todo)} migration(s) pending on the copy: "
        f"{', '.join(m.label for m in todo) or 'none'}")
    before_schema = pgcluster.schema(copy.container, target.db.name)
    runs: list[MigrationRun] = []
    for m in todo:
        sizes = pgcluster.sizes(copy.container, target.db.name)
        pgcluster.start_sampler(copy.container, target.db.name)
        try:
            ran = postgres.apply(image.artifact, copy.network, db, image.version, [m.id],
                                 lock_timeout=LOCK_TIMEOUT)
        finally:
            samples = pgcluster.stop_sampler(copy.container)
        after = pgcluster.sizes(copy.container, target.db.name)
        run = _run(m, ran, samples, sizes, after)
        say(f"  {m.label}: " + (f"{run.seconds:.2f}s, locks {', '.join(run.locks) or 'none'}"
                                if run.ok else f"failed: {run.error}"))
        runs.append(run)
        if not run.ok:
            break
    after_schema = pgcluster.schema(copy.container, target.db.name)
    diff = "\n".join(difflib.unified_diff(before_schema.splitlines(), after_schema.splitlines(),
                                          "schema before", "schema after", lineterm=""))
    return runs, diff


def _run(m: Migration, ran: tuple[Ran, ...], samples: list[pgcluster.LockSample],
         before: dict[str, int], after: dict[str, int]) -> MigrationRun:
    """One migration's report from the runner's line, the lock samples and the table sizes."""
    mine = next((r for r in ran if r.id == m.id), None)
    if mine is None:
        return MigrationRun(m.id, m.name, m.kind, 0.0, error="fleet-migrate did not run it")
    waits = sum(1 for s in samples if not s.granted) * SAMPLE_INTERVAL  # this migration's own
    touched = ({lock.split(" ", 1)[-1] for lock in mine.locks} | {s.relation for s in samples}
               | {t for t in set(before) | set(after) if before.get(t) != after.get(t)})
    error = mine.error or ("" if mine.status is not Status.FAILED else "failed")
    return MigrationRun(m.id, m.name, m.kind, round(mine.seconds, 3), mine.locks, round(waits, 3),
                        sum(before.get(t, 0) for t in touched),
                        sum(after.get(t, 0) for t in touched), error)

