"""packer/base/fleet-migrate against a real PostgreSQL 15 of the test's own: a container of the
lab's postgres base image (initdb in it, a Unix socket only, no network, removed afterwards),
with the working tree's runner mounted over the image's: applied and skipped, a failure that
commits nothing, the locks a migration held, a runner killed with -9 mid-migration beside a
second runner (each migration applied exactly once), and a lock not granted within
lock_timeout failing its migration. (test_migrations.py runs the runner of a
baked image through promotions.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.adapters import postgres
from tests.conftest import ROOT

pytestmark = pytest.mark.lab
IMAGE = "fleet-base-bookworm-postgres:latest"   # `fleet lab up` builds it
BIN = "/usr/lib/postgresql/15/bin"
RUNNER = ROOT / "packer" / "base" / "fleet-migrate"
ENV = {"PGHOST": "/tmp", "PGUSER": "postgres", "PGDATABASE": "postgres",
       "FLEET_MIGRATIONS": "/migrations"}
START = (f"runuser -u postgres -- {BIN}/initdb -D /tmp/data -A trust -U postgres >/dev/null && "
         f"exec runuser -u postgres -- {BIN}/postgres -D /tmp/data -c listen_addresses='' "
         "-c unix_socket_directories=/tmp")


@pytest.fixture
def server(lab: Any) -> Iterator[dict[str, str]]:
    """A PostgreSQL in a container; what to reach it by (its name, the migrations' host dir)."""
    scratch = Path(tempfile.mkdtemp(prefix="fleet-migrate-", dir="/tmp"))
    name = f"fleet-migrate-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "--detach", "--name", name, "--network", "none",
                    "--label", "fleet.throwaway=1", "--entrypoint", "sh",
                    f"--volume={RUNNER}:/usr/local/sbin/fleet-migrate:ro",
                    f"--volume={scratch}:/migrations:ro", IMAGE, "-c", START],
                   check=True, capture_output=True, timeout=60)
    try:
        deadline = time.monotonic() + 60
        while psql({"container": name}, "SELECT 1") != "1":
            assert time.monotonic() < deadline, "the test's PostgreSQL did not start"
            time.sleep(0.3)
        yield {"container": name, "dir": str(scratch)}
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, timeout=60)
        shutil.rmtree(scratch, ignore_errors=True)


def exec_argv(env: dict[str, str], *argv: str) -> list[str]:
    return ["docker", "exec", *(f"--env={k}={v}" for k, v in ENV.items()), env["container"],
            *argv]


def runner(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(exec_argv(env, "python3", "/usr/local/sbin/fleet-migrate", *args),
                          capture_output=True, text=True, timeout=60)


def psql(env: dict[str, str], query: str) -> str:
    return subprocess.run(exec_argv(env, "psql", "-X", "-At", "-c", query), capture_output=True,
                          text=True, timeout=60).stdout.strip()


def write(env: dict[str, str], kind: str, name: str, text: str) -> None:
    where = Path(env["dir"]) / kind
    where.mkdir(parents=True, exist_ok=True)
    (where / name).write_text(text)


def test_each_migration_commits_with_its_row_exactly_once(server: dict[str, str]) -> None:
    env = server
    assert runner(env, "applied").stdout.strip() == "[]", "no table yet: nothing applied"
    write(env, "regular", "1_create_users.sql", "CREATE TABLE users (id int, email text);\n")
    write(env, "regular", "2_broken.sql", "ALTER TABLE users ADD COLUMN x int;\nSELEC 1;\n")
    write(env, "post_deployment", "3_drop_email.sql", "ALTER TABLE users DROP COLUMN email;\n")
    first = runner(env, "apply", "--version", "v1", "1", "2", "3")
    ran = postgres.parse_run(first.stdout)
    assert first.returncode == 1 and [r.status.value for r in ran] == ["applied", "failed"], \
        f"stops at the failure: {first.stdout}"
    assert "2_broken.sql:2: ERROR:" in ran[1].error, f"file and line: {ran[1].error}"
    columns = psql(env, "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM "
                        "information_schema.columns WHERE table_name = 'users'")
    assert columns == "email,id", f"the failed migration committed nothing: {columns}"
    assert ran[0].locks == ("AccessExclusiveLock users",), \
        f"the locks its transaction held, exactly: {ran[0].locks}"
    (Path(env["dir"]) / "regular" / "2_broken.sql").unlink()
    again = postgres.parse_run(runner(env, "apply", "--version", "v2", "1", "3").stdout)
    assert [r.status.value for r in again] == ["skipped", "applied"], again
    rows = postgres.parse_applied(runner(env, "applied").stdout)
    assert [(r.id, r.kind.value, r.version) for r in rows] == [
        ("1", "regular", "v1"), ("3", "post_deployment", "v2")], rows

    # a runner killed with -9 in the middle of a slow migration, and a second one at once
    write(env, "regular", "4_slow.sql", "CREATE TABLE slow (id int);\nSELECT pg_sleep(3);\n")
    killed = subprocess.Popen(exec_argv(env, "python3", "/usr/local/sbin/fleet-migrate", "apply",
                                        "--version", "v3", "4"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    subprocess.run(exec_argv(env, "sh", "-c", 'kill -KILL "$(pgrep -o -f "fleet-migrate apply")"'),
                   timeout=30)  # inside the test's own container: its runner, by its PID
    killed.wait()
    second = runner(env, "apply", "--version", "v3", "4")
    assert second.returncode == 0, second.stdout + second.stderr
    rows = postgres.parse_applied(runner(env, "applied").stdout)
    assert [r.id for r in rows].count("4") == 1, f"applied exactly once: {rows}"
    assert json.loads(second.stdout)["status"] in ("applied", "skipped"), second.stdout

    # a lock it cannot get within lock_timeout fails it, instead of queueing every query behind it
    write(env, "regular", "5_add_name.sql", "ALTER TABLE users ADD COLUMN name text;\n")
    holder = subprocess.Popen(exec_argv(env, "psql", "-X", "-q", "-c", "BEGIN", "-c",
                                        "LOCK TABLE users IN ACCESS SHARE MODE", "-c",
                                        "SELECT pg_sleep(8)", "-c", "COMMIT"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        held = "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation " \
               "WHERE c.relname = 'users' AND l.mode = 'AccessShareLock' AND l.granted"
        deadline = time.monotonic() + 10
        while psql(env, held) != "1":
            assert time.monotonic() < deadline, "the other session holds its lock on users"
            time.sleep(0.2)
        began = time.monotonic()
        blocked = runner(env, "apply", "--version", "v4", "--lock-timeout", "1s", "5")
        took = time.monotonic() - began
    finally:
        holder.wait(timeout=30)
    ran = postgres.parse_run(blocked.stdout)
    assert blocked.returncode == 1 and ran[-1].status is postgres.Status.FAILED and \
        "lock timeout" in ran[-1].error and "5_add_name.sql:1:" in ran[-1].error, \
        f"fails on its lock, naming file and line: {ran}"
    assert took < 6, f"within its lock_timeout, not the other session's 8 s: {took:.1f}s"
    assert "5" not in [r.id for r in postgres.parse_applied(runner(env, "applied").stdout)], \
        "nothing of it committed"


def test_a_migration_that_cannot_run_in_a_transaction_says_so(server: dict[str, str]) -> None:
    env = server
    write(env, "regular", "1_create_users.sql", "CREATE TABLE users (id int, email text);\n")
    write(env, "regular", "2_index.sql", "CREATE INDEX CONCURRENTLY users_email ON users (email);\n")
    write(env, "regular", "3_index.sql", "-- fleet: no-transaction (idempotent)\n"
          "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email ON users (email);\n")
    refused = postgres.parse_run(runner(env, "apply", "--version", "v1", "1", "2").stdout)
    assert refused[-1].status is postgres.Status.FAILED and \
        "cannot run inside a transaction block" in refused[-1].error, refused
    ran = postgres.parse_run(runner(env, "apply", "--version", "v1", "3").stdout)
    assert [r.status.value for r in ran] == ["applied"], ran
    again = postgres.parse_run(runner(env, "apply", "--version", "v2", "1", "3").stdout)
    assert [r.status.value for r in again] == ["skipped", "skipped"], again
