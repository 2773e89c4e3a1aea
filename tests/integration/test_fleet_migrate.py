"""packer/base/fleet-migrate against a real PostgreSQL 15 of the test's own (initdb in a scratch
directory, a Unix socket only, stopped afterwards): applied and skipped, a failure that commits
nothing, and a runner killed with -9 mid-migration beside a second runner: each migration
applied exactly once. Skipped where this machine has no PostgreSQL server binaries (the lab
test, test_migrations.py, runs the same runner inside an image)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.adapters import postgres
from tests.conftest import ROOT

BIN = Path("/usr/lib/postgresql/15/bin")
RUNNER = ROOT / "packer" / "base" / "fleet-migrate"
pytestmark = pytest.mark.skipif(not (BIN / "initdb").exists() or shutil.which("psql") is None
                                or shutil.which("runuser") is None,
                                reason="no PostgreSQL 15 server binaries on this machine")


@pytest.fixture
def server() -> Iterator[dict[str, str]]:
    scratch = Path(tempfile.mkdtemp(prefix="fleet-migrate-pg-", dir="/tmp"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(scratch, "postgres")
    data = scratch / "data"
    subprocess.run([*as_postgres, str(BIN / "initdb"), "-D", str(data), "-A", "trust",
                    "-U", "postgres"], check=True, capture_output=True)
    subprocess.run([*as_postgres, str(BIN / "pg_ctl"), "-D", str(data), "-w", "-l",
                    str(scratch / "log"), "-o", f"-c listen_addresses='' "
                    f"-c unix_socket_directories={scratch}", "start"], check=True,
                   capture_output=True)
    try:
        yield {"PGHOST": str(scratch), "PGUSER": "postgres", "PGDATABASE": "postgres",
               "FLEET_MIGRATIONS": str(scratch / "migrations")}
    finally:
        subprocess.run([*as_postgres, str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


def runner(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)


def write(env: dict[str, str], kind: str, name: str, text: str) -> None:
    where = Path(env["FLEET_MIGRATIONS"]) / kind
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
    columns = subprocess.run(["psql", "-X", "-At", "-c", "SELECT string_agg(column_name, ',' "
                              "ORDER BY column_name) FROM information_schema.columns WHERE "
                              "table_name = 'users'"], capture_output=True, text=True,
                             env={**os.environ, **env}).stdout.strip()
    assert columns == "email,id", f"the failed migration committed nothing: {columns}"
    (Path(env["FLEET_MIGRATIONS"]) / "regular" / "2_broken.sql").unlink()
    again = postgres.parse_run(runner(env, "apply", "--version", "v2", "1", "3").stdout)
    assert [r.status.value for r in again] == ["skipped", "applied"], again
    rows = postgres.parse_applied(runner(env, "applied").stdout)
    assert [(r.id, r.kind.value, r.version) for r in rows] == [
        ("1", "regular", "v1"), ("3", "post_deployment", "v2")], rows

    # a runner killed with -9 in the middle of a slow migration, and a second one at once
    write(env, "regular", "4_slow.sql", "CREATE TABLE slow (id int);\nSELECT pg_sleep(3);\n")
    killed = subprocess.Popen([sys.executable, str(RUNNER), "apply", "--version", "v3", "4"],
                              env={**os.environ, **env}, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    time.sleep(1)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    second = runner(env, "apply", "--version", "v3", "4")
    assert second.returncode == 0, second.stdout + second.stderr
    rows = postgres.parse_applied(runner(env, "applied").stdout)
    assert [r.id for r in rows].count("4") == 1, f"applied exactly once: {rows}"
    assert json.loads(second.stdout)["status"] in ("applied", "skipped"), second.stdout


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
