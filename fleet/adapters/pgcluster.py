"""PostgreSQL's server-side tools in a container of a pet's image: a base backup of a running
cluster (pg_basebackup), a throwaway instance started on a copy, and the few queries a
rehearsal asks of it (schema, table sizes, locks). Build argv, run, parse strictly; fleet-migrate
(adapters/postgres) is the client side.

The instance a rehearsal starts has the pet's image (the same PostgreSQL build as the data's)
but never its entrypoint: no fleet-init, so no Consul agent, no registration and no secrets;
trust authentication on its own internal network only, so no production password is read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from fleet.adapters import process
from fleet.errors import FleetError

BIN = "/usr/lib/postgresql/15/bin"
CLUSTER = "/var/lib/postgresql/15/main"   # where the pet keeps it (packer/scripts/lib/fleet-postgres)
PET_SOCKETS = "/run/postgresql"
SOCKETS = "/tmp"                          # the throwaway instance's
READY_TIMEOUT = 120.0
SHM = "512m"   # Docker's 64 MB /dev/shm is too small for a parallel CREATE INDEX on a big table
SAMPLER = "fleet-rehearse-sampler"        # the lock sampler's application_name
STOP_FILE = "/tmp/fleet-sampler.stop"
LOCKS_FILE = "/tmp/fleet-locks.log"
RESTRICT_KEY = "fleet"   # pg_dump's \restrict key, fixed: a random one makes two dumps differ


class ClusterError(FleetError):
    """A PostgreSQL tool failed, or its output is not what it promises."""


def base_backup(container: str, archive: Path, *, sockets: str = PET_SOCKETS) -> None:
    """A consistent physical copy of the running cluster in container, as one tar (with the WAL
    it needs: -X fetch), written to archive. The pet keeps serving meanwhile."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    argv = ["docker", "exec", container, "runuser", "-u", "postgres", "--",
            f"{BIN}/pg_basebackup", "-h", sockets, "-U", "postgres", "-D", "-", "-Ft",
            "-X", "fetch", "--checkpoint=fast", "--no-sync"]
    with archive.open("wb") as out:
        try:
            with process.reading(argv) as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    out.write(block)
        except FleetError as exc:
            raise ClusterError(f"pg_basebackup in {container} failed: {exc.line()}",
                               "is the pet up and its PostgreSQL running? (fleet status)") from exc


def image_of(container: str) -> str:
    """The image (ID) a container runs."""
    return process.run(["docker", "inspect", "--format", "{{.Image}}", container],
                       timeout=30).stdout.strip()


def create_place(network: str, volume: str) -> None:
    """An internal network (no route out of it) and an empty volume, for a throwaway copy."""
    process.run(["docker", "network", "create", "--internal", "--label", "fleet.throwaway=1",
                 network], timeout=60)
    process.run(["docker", "volume", "create", "--label", "fleet.throwaway=1", volume],
                timeout=60)


def remove_place(container: str, network: str, volume: str) -> None:
    """The throwaway instance, its network and its volume; what is already gone is fine."""
    process.run(["docker", "rm", "--force", "--volumes", container], check=False, timeout=120)
    process.run(["docker", "network", "rm", network], check=False, timeout=60)
    process.run(["docker", "volume", "rm", "--force", volume], check=False, timeout=60)


def restore(image: str, volume: str, archive: Path) -> None:
    process.run(restore_argv(image, volume, archive), timeout=3600)


def start_instance(image: str, name: str, network: str, volume: str) -> None:
    process.run(instance_argv(image, name, network, volume, {"fleet.throwaway": "1"}),
                timeout=120)


def restore_argv(image: str, volume: str, archive: Path) -> list[str]:
    """Unpack a base backup onto an empty volume (mounted where the pet keeps its data), owned
    by the image's postgres user."""
    script = (f"mkdir -p {CLUSTER} && tar -xf /snapshot/base.tar -C {CLUSTER} && "
              f"chown -R postgres:postgres /var/lib/postgresql && chmod 0700 {CLUSTER}")
    return ["docker", "run", "--rm", "--pull", "never", "--network", "none",
            "--label", "fleet.throwaway=1", "--entrypoint", "sh",
            f"--volume={volume}:/var/lib/postgresql", f"--volume={archive}:/snapshot/base.tar:ro",
            image, "-c", script]


def instance_argv(image: str, name: str, network: str, volume: str, labels: dict[str, str]) -> list[str]:
    """The throwaway instance: postgres on the copy, trusting its own network only."""
    script = (f"printf 'local all all trust\\nhost all all samenet trust\\n' > /tmp/hba.conf && "
              f"exec {BIN}/postgres -D {CLUSTER} -c hba_file=/tmp/hba.conf "
              f"-c listen_addresses='*' -c unix_socket_directories={SOCKETS} -c fsync=off "
              "-c synchronous_commit=off -c full_page_writes=off")
    return ["docker", "run", "--detach", "--pull", "never", "--name", name, "--network", network,
            "--shm-size", SHM,
            *(f"--label={k}={v}" for k, v in sorted(labels.items())), "--user", "postgres",
            "--entrypoint", "sh", f"--volume={volume}:/var/lib/postgresql", image, "-c", script]


def as_postgres(container: str, *argv: str) -> list[str]:
    """`docker exec` of argv as the postgres OS user (the socket's peer authentication)."""
    return ["docker", "exec", "--user", "postgres", container, *argv]


def psql_argv(container: str, database: str, sql: str) -> list[str]:
    return as_postgres(container, f"{BIN}/psql", "-h", SOCKETS, "-U", "postgres", "-d", database,
                       "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-c", sql)


def query(container: str, database: str, sql: str) -> list[list[str]]:
    """Rows of sql run as postgres on the instance's socket (tab-separated fields)."""
    result = process.run(psql_argv(container, database, sql), check=False, timeout=300)
    if result.returncode != 0:
        raise ClusterError(f"a query on {container} failed: {result.stderr.strip()[:300]}")
    return [line.split("\t") for line in result.stdout.splitlines() if line]


def wait_ready(container: str, database: str, timeout: float = READY_TIMEOUT) -> None:
    """Until the instance has recovered the copy and accepts queries on its database."""
    deadline = time.monotonic() + timeout
    while True:
        result = process.run(psql_argv(container, database, "SELECT 1"), check=False, timeout=60)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            logs = process.run(["docker", "logs", "--tail", "5", container], check=False,
                               timeout=30)
            raise ClusterError(f"the throwaway instance {container} did not accept queries "
                               f"within {timeout:.0f}s: {(logs.stderr or logs.stdout).strip()[-300:]}")
        time.sleep(0.5)


def schema(container: str, database: str) -> str:
    """The database's schema as pg_dump prints it (no owners, no privileges)."""
    result = process.run(as_postgres(container, f"{BIN}/pg_dump", "-h", SOCKETS, "-U",
                                     "postgres", "--schema-only", "--no-owner",
                                     "--no-privileges", f"--restrict-key={RESTRICT_KEY}",
                                     database), check=False, timeout=300)
    if result.returncode != 0:
        raise ClusterError(f"pg_dump --schema-only on {container} failed: "
                           f"{result.stderr.strip()[:300]}")
    return "\n".join(line for line in result.stdout.splitlines()
                     if not line.startswith("-- Dumped "))


SIZES = ("SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
         "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm', 'p') "
         "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
         "AND n.nspname NOT LIKE 'pg_toast%'")


def sizes(container: str, database: str) -> dict[str, int]:
    """Every user table's size with its indexes and TOAST, in bytes."""
    try:
        return {name: int(size) for name, size in query(container, database, SIZES)}
    except ValueError as exc:
        raise ClusterError(f"table sizes from {container} are unreadable ({exc})") from exc


LOCKS = ("SELECT extract(epoch FROM clock_timestamp()), l.mode, l.granted, c.relname "
         "FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
         "JOIN pg_stat_activity a ON a.pid = l.pid "
         f"WHERE l.locktype = 'relation' AND a.application_name <> '{SAMPLER}' "
         "AND a.backend_type = 'client backend' AND c.relnamespace <> 'pg_catalog'::regnamespace")


def sampler_argv(container: str, database: str, interval: float = 0.05) -> list[str]:
    """A loop in the instance writing every client's relation locks to LOCKS_FILE until
    STOP_FILE appears (detached: it outlives the `docker exec` that starts it)."""
    loop = (f"rm -f {STOP_FILE} {LOCKS_FILE}; while [ ! -e {STOP_FILE} ]; do "
            f"PGAPPNAME={SAMPLER} {BIN}/psql -h {SOCKETS} -U postgres -d {database} -X -A -t -q "
            f"-F '\t' -c \"{LOCKS}\" >> {LOCKS_FILE} 2>/dev/null; sleep {interval}; done")
    return ["docker", "exec", "--detach", "--user", "postgres", container, "sh", "-c", loop]


@dataclass(frozen=True)
class LockSample:
    at: float        # epoch seconds
    mode: str        # AccessExclusiveLock
    granted: bool
    relation: str


def parse_locks(text: str) -> list[LockSample]:
    found = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 4:
            continue  # a line cut by the sampler's stop
        try:
            found.append(LockSample(float(parts[0]), parts[1], parts[2] == "t", parts[3]))
        except ValueError:
            continue
    return found


def start_sampler(container: str, database: str) -> None:
    process.run(sampler_argv(container, database), timeout=30)


def stop_sampler(container: str) -> list[LockSample]:
    """Stop the loop and read what it saw."""
    process.run(as_postgres(container, "touch", STOP_FILE), check=False, timeout=30)
    result = process.run(as_postgres(container, "cat", LOCKS_FILE), check=False, timeout=60)
    return parse_locks(result.stdout)
