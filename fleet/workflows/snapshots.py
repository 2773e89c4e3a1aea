"""fleet snapshot create | list | restore: consistent copies of a pet's data, each with a
sha256 checksum, recorded in Consul KV; one primitive for `fleet env refresh` and, later, for
database rehearsals and pet moves.

- **Where.** The lab keeps each archive under .fleet/snapshots/<id>.tar (never committed) and
  records it, check-and-set, under <prefix>/snapshots/<id>: pet, role, environment, method,
  source volume, size, sha256, when and by whom, and where the aws target would keep it (an
  S3 location, rendered only).
- **How a pet's data is copied** is its role's `Method` (`method(role)`, the one seam): by
  default the pet's Docker volume is archived (tar, sorted, numeric owners) by a one-shot
  container of the role's base image while the pet's container is paused (`docker pause`:
  nothing it runs can write), and unpaused afterwards, even when the copy fails. A role with
  its own way (PostgreSQL's tools) gets a Method of its own here.
- **Restore** into another instance of the same role (another role is refused): the archive's
  checksum is verified before anything is written; the archive is unpacked into a scratch
  volume and `prepare` (refresh's scrub) runs on it, while the target still serves its old
  data; only then is the target's container stopped (its agent leaves Consul), its volume
  swapped for the scratch copy (SWAP: the old data is set aside on the same volume and put
  back if the copy fails; an interrupted swap is undone by the next one), and the container
  started again, handed its credentials and waited for until it passes in Consul. If anything
  fails before the swap is done, the target keeps its data and runs as it did.
- Snapshot and restore hold the environment's lock (services/lock.py): no rollout, rebuild
  or other restore of that environment meanwhile.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fleet.adapters import docker, process
from fleet.errors import FleetError
from fleet.model.definition import Role
from fleet.model.plan import data_path
from fleet.model.snapshot import (
    DEFAULT_METHOD,
    PetInstance,
    Snapshot,
    SnapshotError,
    check_id,
    object_location,
    pet,
    same_role,
    snapshot_id,
)
from fleet.services import cattle, credentials, memo, topology
from fleet.services.bakeinputs import base_image
from fleet.services.catalog import KV
from fleet.services.context import Context, who
from fleet.services.lock import env_lock
from fleet.services.state import FleetState, StateConflict

Say = Callable[[str], None]
PASS_TIMEOUT = 120.0  # seconds a restored pet has to pass its checks in Consul


@dataclass(frozen=True)
class Pet:
    """A pet instance as the lab runs it: its container and its data volume."""

    instance: PetInstance
    container: str
    volume: str
    data_path: str

    @property
    def name(self) -> str:
        return self.instance.name


def locate(ctx: Context, name: str) -> Pet:
    """The pet instance called name (fleet.toml), with its container and volume."""
    found = pet(ctx.fleet, name)
    container = topology.container(ctx, name)
    return Pet(found, container, f"{container}-data", data_path(found.role))


@dataclass(frozen=True)
class Method:
    """How a role's data is copied consistently: `take` writes the archive of a pet's data to
    a file; `put` unpacks such an archive into a scratch volume (no pet runs on it)."""

    name: str
    take: Callable[[Context, Pet, Path], None]
    put: Callable[[Context, Pet, Path, str], None]


def _take_volume(ctx: Context, p: Pet, archive: Path) -> None:
    """The pet's volume, archived while its container is paused (then unpaused, always)."""
    found = docker.status(p.container)
    if found is None:
        raise SnapshotError(f"{p.name} has no container {p.container}",
                            f"create it: fleet apply {p.instance.env}")
    if found[0] == "paused":
        raise SnapshotError(f"{p.container} is paused already (a snapshot cut short?)",
                            f"unpause it once nothing else holds it: docker unpause {p.container}")
    argv = docker.throwaway_argv(base_image(ctx, p.instance.role.base),
                                 ["tar", "--sort=name", "--numeric-owner", "-C", "/data", "-cf",
                                  "-", "."], volumes={p.volume: "/data:ro"})
    paused = found[0] == "running"  # a stopped pet writes nothing: copied as it is
    if paused:
        docker.pause(p.container)
    try:
        with process.reading(argv) as stream, archive.open("wb") as out:
            while chunk := stream.read(1 << 20):
                out.write(chunk)
    except FleetError as exc:
        raise SnapshotError(f"{p.name}: the copy of {p.volume} failed ({exc.what}); nothing "
                            "was recorded", "fix the cause and take the snapshot again") from exc
    finally:
        if paused:
            docker.unpause(p.container)


def _put_volume(ctx: Context, p: Pet, archive: Path, scratch: str) -> None:
    docker.throwaway(base_image(ctx, p.instance.role.base),
                     ["tar", "--numeric-owner", "-C", "/data", "-xpf", "/snapshot.tar"],
                     volumes={scratch: "/data"}, binds={archive: "/snapshot.tar"})


VOLUME = Method(DEFAULT_METHOD, _take_volume, _put_volume)
METHODS = {VOLUME.name: VOLUME}


def method(role: Role) -> Method:
    """The way ROLE's data is copied: the paused volume copy, until a role brings its own."""
    return VOLUME


# ---- the records -------------------------------------------------------------------------

class Store:
    """Snapshot records in Consul KV: <prefix>/snapshots/<id>, created with check-and-set."""

    def __init__(self, kv: KV, prefix: str) -> None:
        self.kv = kv
        self.root = f"{prefix}/snapshots"

    def all(self) -> list[Snapshot]:
        found = [Snapshot.from_json(e.value) for e in self.kv.list(f"{self.root}/") if e.value]
        return sorted(found, key=lambda s: (s.created, s.id))

    def get(self, snap_id: str) -> Snapshot:
        entry = self.kv.get(f"{self.root}/{check_id(snap_id)}")
        if entry is None or not entry.value:
            raise SnapshotError(f"no snapshot {snap_id}", "fleet snapshot list shows them")
        return Snapshot.from_json(entry.value)

    def add(self, snap: Snapshot) -> None:
        if not self.kv.put(f"{self.root}/{snap.id}", snap.to_json(), cas=0):
            raise StateConflict(f"snapshot {snap.id} is recorded already", "take it again")


def store(ctx: Context) -> Store:
    return Store(ctx.consul(), ctx.fleet.kv_prefix)


def snapshots(ctx: Context) -> list[Snapshot]:
    """Every snapshot recorded for the fleet, oldest first."""
    return store(ctx).all()


@contextmanager
def held(ctx: Context, env: str) -> Iterator[None]:
    """ENV's lock (the one rollouts take) for the length of a copy or a restore."""
    with env_lock(ctx.consul(), ctx.fleet.kv_prefix, env, wait=False):
        yield


# ---- create --------------------------------------------------------------------------------

def create(ctx: Context, name: str, say: Say) -> Snapshot:
    """Snapshot the pet called name, holding its environment's lock."""
    p = locate(ctx, name)
    with held(ctx, p.instance.env):
        return take(ctx, p, say)


def take(ctx: Context, p: Pet, say: Say) -> Snapshot:
    """Snapshot a pet whose environment's lock the caller holds: archive, checksum, record."""
    records = store(ctx)
    records.all()  # Consul answers before the pet is paused
    at = datetime.now(UTC)
    snap_id = snapshot_id(p.name, at, uuid.uuid4().hex)
    folder = ctx.state_dir / "snapshots"
    folder.mkdir(parents=True, exist_ok=True)
    archive, partial = folder / f"{snap_id}.tar", folder / f"{snap_id}.tar.partial"
    how = method(p.instance.role)
    say(f"{p.name}: copying volume {p.volume} ({how.name}: {p.container} paused meanwhile)")
    try:
        how.take(ctx, p, partial)
        digest, size = memo.file_sha256(partial)
        partial.replace(archive)
    finally:
        partial.unlink(missing_ok=True)
    snap = Snapshot(snap_id, p.name, p.instance.role.name, p.instance.env, how.name, p.volume,
                    size, digest, at.isoformat(timespec="seconds"), who(), str(archive),
                    object_location(ctx.fleet, snap_id, p.instance.env, p.instance.role.name))
    try:
        records.add(snap)
    except FleetError:
        archive.unlink(missing_ok=True)
        raise
    FleetState(ctx.consul(), ctx.fleet.kv_prefix).record(
        {"event": "snapshot", "env": p.instance.env, "who": who(), "snapshot": snap_id,
         "pet": p.name, "sha256": digest[:12], "size": size})
    return snap


# ---- restore -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Restored:
    snapshot: Snapshot
    target: str          # the pet instance written
    container: str
    volume: str
    prepared: bool       # `prepare` (a scrub) ran on the copy before the pet saw it
    seconds: float


Prepare = Callable[[Pet, str], None]   # (the target pet, the scratch volume holding the copy)

# The target's volume becomes the scratch volume's copy. The old data is set aside on the same
# volume (renames), and the step reached is on disk: B exists = old data being set aside;
# B and M = set aside, new data being copied; D = done, D is the old data to drop. Whatever
# an interrupted run left is first finished (D) or undone (B), so the next run starts clean.
SWAP = r"""
set -eu
cd /target
B=.fleet-before M=.fleet-before-moved D=.fleet-before-done
ours="! -name $B ! -name $M ! -name $D"
undo() {
  if [ -e $M ]; then find . -mindepth 1 -maxdepth 1 $ours -exec rm -rf -- {} +; rm -f $M; fi
  find $B -mindepth 1 -maxdepth 1 -exec mv -t . -- {} +; rmdir $B
}
if [ -d $D ]; then rm -f $M; rm -rf $D; fi
if [ -d $B ]; then undo; fi
mkdir $B
find . -mindepth 1 -maxdepth 1 $ours -exec mv -t $B -- {} +
touch $M
if ! cp -a /new/. .; then undo; echo "copy failed: the old data is back" >&2; exit 1; fi
mv $B $D; rm -f $M; rm -rf $D
"""


def verify(snap: Snapshot) -> Path:
    """The snapshot's archive, once its size and sha256 are those recorded."""
    archive = Path(snap.location)
    if not archive.is_file():
        raise SnapshotError(f"snapshot {snap.id}: its archive {archive} is not on this machine",
                            f"it was taken by {snap.created_by}; restore it there")
    digest, size = memo.file_sha256(archive)
    if (digest, size) != (snap.sha256, snap.size):
        raise SnapshotError(f"snapshot {snap.id}: its archive does not match its checksum "
                            f"(sha256 {digest[:12]}…, recorded {snap.sha256[:12]}…): refused, "
                            "nothing was written", "take a new snapshot")
    return archive


def restore(ctx: Context, snap_id: str, to: str, say: Say) -> Restored:
    """Restore a snapshot into the pet called `to`, holding its environment's lock."""
    snap = store(ctx).get(snap_id)
    target = locate(ctx, to)
    same_role(snap, target.instance)
    with held(ctx, target.instance.env):
        return put(ctx, snap, target, say)


def put(ctx: Context, snap: Snapshot, target: Pet, say: Say,
        prepare: Prepare | None = None) -> Restored:
    """Restore into a pet whose environment's lock the caller holds (see the module's doc)."""
    started = time.monotonic()
    same_role(snap, target.instance)
    archive = verify(snap)
    found = docker.status(target.container)
    if found is None or not docker.volume_exists(target.volume):
        raise SnapshotError(f"{target.name} has no container or no volume {target.volume}",
                            f"create it first: fleet apply {target.instance.env}")
    if found[0] == "paused":
        raise SnapshotError(f"{target.container} is paused (a snapshot cut short?)",
                            f"docker unpause {target.container}, then restore again")
    scratch = f"{target.volume}-restore"
    if docker.volume_exists(scratch):  # left by a restore cut short: it holds nothing needed
        docker.remove_volumes([scratch])
    docker.create_volume(scratch, {"fleet.lab": "1", "fleet.name": ctx.fleet.name})
    try:
        say(f"{target.name}: unpacking {snap.id} into a scratch volume")
        METHODS[snap.method].put(ctx, target, archive, scratch)
        if prepare is not None:
            prepare(target, scratch)
        _swap(ctx, target, scratch, was_running=found[0] == "running", say=say)
    finally:  # the copy (unscrubbed, it may be) never outlives the restore
        docker.remove_volumes([scratch])
    _bring_back(ctx, target, say)
    FleetState(ctx.consul(), ctx.fleet.kv_prefix).record(
        {"event": "restore", "env": target.instance.env, "who": who(), "snapshot": snap.id,
         "pet": target.name, "from": snap.pet, "sha256": snap.sha256[:12]})
    return Restored(snap, target.name, target.container, target.volume, prepare is not None,
                    round(time.monotonic() - started, 1))


def _swap(ctx: Context, target: Pet, scratch: str, *, was_running: bool, say: Say) -> None:
    """Stop the target, make its volume the scratch copy; on failure it runs as before."""
    say(f"{target.name}: stopping {target.container} while its volume is written")
    docker.stop(target.container)
    role = target.instance.role
    services = [s.name for s in role.services]
    if services:  # its agent left: nothing in the environment finds it any more
        cattle.wait_passing(ctx, services, target.instance.env, role.name,
                            lambda h: target.container not in h.passing, 30)
    try:
        docker.throwaway(base_image(ctx, role.base), ["sh", "-c", SWAP],
                         volumes={target.volume: "/target", scratch: "/new:ro"})
    except FleetError as exc:
        if was_running:
            _bring_back(ctx, target, say)
        raise SnapshotError(f"{target.name}: its volume could not be written ({exc.what}); "
                            "its old data is back", "fix the cause and restore again") from exc


def _bring_back(ctx: Context, target: Pet, say: Say) -> None:
    """Start the pet, hand it its credentials again (its tmpfs emptied), wait until it passes."""
    env, role = target.instance.env, target.instance.role
    found = docker.status(target.container)
    if found is not None and found[0] != "running":
        docker.start(target.container)
    credentials.restore(ctx, target.container, role.name, env)
    services = [s.name for s in role.services]
    if not services:
        return
    say(f"{target.name}: waiting for it to pass in Consul")
    ok, _ = cattle.wait_passing(ctx, services, env, role.name,
                                lambda h: target.container in h.passing, PASS_TIMEOUT)
    if not ok:
        raise SnapshotError(f"{target.name} runs on its restored data but does not pass its "
                            f"checks after {PASS_TIMEOUT:.0f}s",
                            f"see docker logs {target.container} and fleet plan {env}")
