"""Rehearsal benchmark: the copy a migration rehearsal makes of a database, against the plain
copy of the same data, in one run.

A PostgreSQL 15 cluster of about GB gigabytes (users, projects and events tables with realistic
indexes, generated in the instance) runs in a container of the postgres pet's base image. Then:

- **plain copy**: the cluster's files copied to a fresh volume (`cp -a` in a one-shot
  container): moving the bytes once, the physical limit of any copy;
- **rehearsal**: what `fleet db rehearse` does around the migrations, through the same adapter
  (fleet/adapters/pgcluster.py): pg_basebackup of the running cluster to an archive, an internal
  network and a volume, the archive unpacked, a throwaway instance started and recovered, the
  migrations run, everything removed;
- **migrations alone**: the same migrations' own time on that instance (ADD COLUMN with a
  default, CREATE INDEX on the largest table), measured inside the rehearsal.

Target: rehearsal <= 1.5 x plain copy + migrations.

Needs the lab up (`fleet lab up`: dockerd and the bookworm-postgres base image).
Usage: .venv/bin/python bench/rehearsal.py [--gb 1.0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet.adapters import pgcluster, process  # noqa: E402  (after the path is set)

IMAGE = "fleet-base-bookworm-postgres:latest"
SOURCE = "fleet-bench-pg-source"
COPY = "fleet-bench-pg-copy"
REHEARSAL = "fleet-bench-pg-rehearsal"
DB = "bench"
MIGRATIONS = ("ALTER TABLE users ADD COLUMN bio text NOT NULL DEFAULT ''",
              "CREATE INDEX events_kind_created ON events (kind, created_at)")

START = (f"mkdir -p /var/lib/postgresql/15 && chown -R postgres /var/lib/postgresql && "
         f"mkdir -p /run/postgresql && chown postgres /run/postgresql && "
         f"runuser -u postgres -- {pgcluster.BIN}/initdb -D {pgcluster.CLUSTER} -U postgres "
         f"--auth-local=peer >/dev/null && exec runuser -u postgres -- {pgcluster.BIN}/postgres "
         f"-D {pgcluster.CLUSTER} -c unix_socket_directories=/run/postgresql,/tmp "
         "-c max_wal_size=4GB -c checkpoint_timeout=30min")

GENERATE = """
CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL, name text NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE projects (id bigserial PRIMARY KEY, owner_id bigint NOT NULL REFERENCES users,
                       path text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE events (id bigserial PRIMARY KEY, user_id bigint NOT NULL, project_id bigint NOT NULL,
                     kind smallint NOT NULL, payload text NOT NULL,
                     created_at timestamptz NOT NULL);
INSERT INTO users (email, name)
  SELECT 'user' || g || '@example.com', 'User ' || g FROM generate_series(1, {users}) g;
INSERT INTO projects (owner_id, path)
  SELECT 1 + g % {users}, 'group/project-' || g FROM generate_series(1, {projects}) g;
INSERT INTO events (user_id, project_id, kind, payload, created_at)
  SELECT 1 + g % {users}, 1 + g % {projects}, g % 12, md5(g::text) || md5((g * 7)::text),
         now() - (g || ' seconds')::interval FROM generate_series(1, {events}) g;
CREATE UNIQUE INDEX users_email ON users (email);
CREATE INDEX projects_owner ON projects (owner_id);
CREATE INDEX events_user ON events (user_id, created_at);
CREATE INDEX events_project ON events (project_id, created_at);
VACUUM ANALYZE;
"""


def run(argv: list[str], timeout: float = 3600) -> str:
    return process.run(argv, timeout=timeout).stdout


def cleanup() -> None:
    for name in (SOURCE, COPY, REHEARSAL):
        pgcluster.remove_place(name, name, name)


def source(gb: float) -> int:
    """The source cluster, generated; its size in bytes."""
    run(["docker", "volume", "create", SOURCE])
    run(["docker", "run", "--detach", "--name", SOURCE, "--network", "none", "--entrypoint", "sh",
         "--shm-size", pgcluster.SHM,
         f"--volume={SOURCE}:/var/lib/postgresql", IMAGE, "-c", START])
    pgcluster.wait_ready(SOURCE, "postgres")
    pgcluster.query(SOURCE, "postgres", f"CREATE DATABASE {DB}")
    events = int(gb * 5_200_000)
    sql = GENERATE.format(users=max(events // 50, 1000), projects=max(events // 200, 100),
                          events=events)
    psql = pgcluster.as_postgres(SOURCE, f"{pgcluster.BIN}/psql", "-h", "/tmp", "-U", "postgres",
                                 "-d", DB, "-X", "-q", "-v", "ON_ERROR_STOP=1")
    process.run([*psql[:2], "-i", *psql[2:]], input_text=sql, timeout=7200)
    return int(pgcluster.query(SOURCE, DB, "SELECT pg_database_size(current_database())")[0][0])


def plain_copy() -> float:
    run(["docker", "volume", "create", COPY])
    began = time.monotonic()
    run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "cp",
         f"--volume={SOURCE}:/src:ro", f"--volume={COPY}:/dst", IMAGE, "-a", "/src/.", "/dst/"])
    took = time.monotonic() - began
    pgcluster.remove_place(COPY, COPY, COPY)
    return took


def rehearsal(work: Path) -> tuple[float, float]:
    """The rehearsal's whole time, and the migrations' own share of it."""
    archive = work / "base.tar"
    began = time.monotonic()
    pgcluster.base_backup(SOURCE, archive, sockets="/tmp")
    pgcluster.create_place(REHEARSAL, REHEARSAL)
    pgcluster.restore(IMAGE, REHEARSAL, archive)
    pgcluster.start_instance(IMAGE, REHEARSAL, REHEARSAL, REHEARSAL)
    pgcluster.wait_ready(REHEARSAL, DB)
    migrating = time.monotonic()
    for sql in MIGRATIONS:
        pgcluster.query(REHEARSAL, DB, sql)
    migrations = time.monotonic() - migrating
    pgcluster.remove_place(REHEARSAL, REHEARSAL, REHEARSAL)
    archive.unlink()
    return time.monotonic() - began, migrations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="database size to generate")
    args = parser.parse_args()
    cleanup()
    try:
        began = time.monotonic()
        size = source(args.gb)
        print(f"source: {size / 1e9:.2f} GB generated in {time.monotonic() - began:.0f}s")
        copy = plain_copy()
        with tempfile.TemporaryDirectory(prefix="fleet-bench-") as work:
            whole, migrations = rehearsal(Path(work))
        bound = 1.5 * copy + migrations
        print(f"plain copy:          {copy:7.1f}s ({size / 1e6 / copy:.0f} MB/s)")
        print(f"migrations alone:    {migrations:7.1f}s")
        print(f"rehearsal (all):     {whole:7.1f}s")
        print(f"rehearsal overhead:  {whole - migrations:7.1f}s = "
              f"{(whole - migrations) / copy:.2f}x the plain copy")
        print(f"target 1.5 x copy + migrations = {bound:.1f}s: "
              f"{'met' if whole <= bound else 'MISSED'}")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
