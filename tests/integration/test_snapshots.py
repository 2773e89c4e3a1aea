"""Pet data snapshots, `fleet env refresh` and `fleet env rebuild` against the real lab: a copy
of the example fleet cut down to two pet roles (postgres, redis) and one cattle role (sidekiq,
one node in staging) is applied with Terraform, production's postgres gets known data, and a
snapshot, a refresh of staging from production (scrubbed on the way) and a rebuild of staging
are checked with docker and Consul.

Everything runs through the real command line."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from typing import Any

import pytest

from fleet.adapters import docker
from fleet.model.nodes import node_name
from fleet.services.state import FleetState
from tests.conftest import FleetCopy, eventually, pg_dump

pytestmark = pytest.mark.lab

ROLES = ("postgres", "redis", "sidekiq")  # what this test needs: the rest of the example goes
DATA = "/var/lib/postgresql"


def keep_only(copy: FleetCopy, roles: tuple[str, ...]) -> None:
    """The copy's fleet.toml without the other roles, and without secrets (none is needed)."""
    out, skip = [], False
    for line in copy.file.read_text().splitlines(keepends=True):
        header = re.match(r"\[+([^\]]+)\]", line)
        if header:
            name = header.group(1).split(".")
            skip = name[0] == "roles" and name[1] not in roles
        if not skip and not line.startswith("secrets = "):
            out.append(line)
    copy.file.write_text("".join(out))
    copy.edit("fleet.toml", "count = { canary = 0, staging = 1, production = 1 }",
              "count = { canary = 0, staging = 1, production = 0 }")


def sh(container: str, command: str) -> str:
    return subprocess.run(["docker", "exec", container, "sh", "-c", command],
                          capture_output=True, text=True, check=True).stdout


def sql(container: str, statements: str) -> str:
    """SQL in the pet's database gitlab, as the postgres OS user on its Unix socket."""
    return subprocess.run(["docker", "exec", container, "runuser", "-u", "postgres", "--",
                           "/usr/lib/postgresql/15/bin/psql", "-X", "-A", "-t", "-q", "-v",
                           "ON_ERROR_STOP=1", "-h", "/run/postgresql", "-d", "gitlab", "-c",
                           statements], capture_output=True, text=True, check=True
                          ).stdout.strip()


def checksum(container: str) -> str:
    """The pet's data as it is, through the pet itself (not through fleet's own copy): every
    file outside the PostgreSQL cluster byte for byte, and the cluster's content as pg_dump
    prints it. PostgreSQL rewrites its own files when nobody writes data (checkpoints, hint
    bits, statistics, the bgwriter's WAL records), so their bytes say nothing of a writer."""
    files = sh(container, f"tar --sort=name --numeric-owner --exclude=./15 -C {DATA} -cf - . "
                          "| sha256sum").split()[0]
    rows = hashlib.sha256(pg_dump(container).encode()).hexdigest()
    return f"{files}:{rows}"


def container_id(name: str) -> str:
    return subprocess.run(["docker", "inspect", "--format", "{{.Id}}", name],
                          capture_output=True, text=True, check=True).stdout.strip()


def passing(lab: Any, fleet: str, service: str) -> set[str]:
    return {i.node for i in lab.consul().instances(service, f"fleet:{fleet}") if i.passing}


def test_snapshot_refresh_and_rebuild(fleet_copy: FleetCopy, lab: Any) -> None:
    fc, name = fleet_copy, fleet_copy.name
    keep_only(fc, ROLES)
    prod, stg = f"{name}-postgres-01", f"{name}-postgres-stg-01"
    timings: dict[str, float] = {}
    try:
        started = time.monotonic()
        applied = fc.run("apply", "--yes", "staging", "production")
        assert applied.code == 0, f"the pets are applied: {applied.stderr}"
        running = {n.name for n in docker.lab_nodes() if n.running}
        assert {prod, stg, f"{name}-redis-01", f"{name}-redis-stg-01"} <= running, running
        [image] = fc.run("images", "sidekiq", "--json").json()
        promoted = fc.run("promote", image["version"], "--to", "staging", "--force",
                          "--reason", "the snapshot test's one cattle node")
        assert promoted.code == 0, f"sidekiq runs in staging: {promoted.stderr}"
        sidekiq = node_name(name, "sidekiq", "staging", image["version"], 0)
        assert sidekiq in passing(lab, name, "sidekiq"), "the cattle node passes"
        timings["bake + apply 4 pets + 1 node"] = time.monotonic() - started

        sh(prod, f"mkdir -p {DATA}/base && printf '1,alice@example.com,Alice\\n2,bob@corp.example.org,Bob\\n'"
                 f" > {DATA}/base/users.csv")
        sh(stg, f"echo staging-only > {DATA}/stale")
        sh(f"{name}-redis-01", "echo production-queue > /var/lib/redis/appendonly.aof")
        # and in its PostgreSQL cluster, once the pet's first boot is done (its database made,
        # frozen and checkpointed: fleet-postgres-password says so)
        eventually(lambda: "created role gitlab" in subprocess.run(
            ["docker", "exec", prod, "cat", "/var/log/postgres-password.log"],
            capture_output=True, text=True).stdout, True, timeout=60)
        sql(prod, "CREATE TABLE people (id int PRIMARY KEY, email text UNIQUE, name text); "
                  "INSERT INTO people VALUES (1, 'carol@example.com', 'Carol'), (2, NULL, 'Dan')")
        before = checksum(prod)

        # snapshot create + list: size, checksum, source; the pet runs again afterwards
        step = time.monotonic()
        made = fc.run("snapshot", "create", "postgres-01", "--json")
        assert made.code == 0, f"snapshot create: {made.stderr}"
        snap = made.json()
        assert re.fullmatch(r"[0-9a-f]{64}", snap["sha256"]), f"a sha256: {snap}"
        assert snap["size"] > 0 and snap["source"] == f"{prod}-data", f"size and source: {snap}"
        assert snap["object_store"].startswith("s3://"), f"the aws location is rendered: {snap}"
        assert docker.status(prod)[0] == "running", "the pet is unpaused after its snapshot"  # type: ignore[index]
        archive = fc.root / ".fleet" / "snapshots" / f"{snap['id']}.tar"
        assert subprocess.run(["sha256sum", str(archive)], capture_output=True, text=True
                              ).stdout.split()[0] == snap["sha256"], "the archive has its checksum"
        listed = fc.run("snapshot", "list", "--json")
        assert listed.code == 0, listed.stderr
        assert [(s["id"], s["size"], s["sha256"], s["source"]) for s in listed.json()] == [
            (snap["id"], snap["size"], snap["sha256"], f"{prod}-data")], "list shows it"
        table = fc.run("snapshot", "list")
        assert snap["id"] in table.stdout and snap["sha256"][:16] in table.stdout, table.stdout
        timings["snapshot create + list"] = time.monotonic() - step

        # restore into another role: refused, one line, nothing touched
        redis_stg = container_id(f"{name}-redis-stg-01")
        wrong = fc.run("snapshot", "restore", snap["id"], "--to", "redis-stg-01")
        assert wrong.code == 1, "a restore into another role is refused"
        assert "holds postgres data; redis-stg-01 is a redis" in wrong.stderr, wrong.stderr
        assert len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr
        assert container_id(f"{name}-redis-stg-01") == redis_stg, "the redis pet was not touched"

        # an archive that no longer matches its checksum is refused before anything is written
        original = archive.read_bytes()
        archive.write_bytes(original + b"\0")
        tampered = fc.run("snapshot", "restore", snap["id"], "--to", "postgres-stg-01")
        archive.write_bytes(original)
        assert tampered.code == 1 and "does not match its checksum" in tampered.stderr, \
            tampered.stderr
        assert sh(stg, f"cat {DATA}/stale").strip() == "staging-only", "the target kept its data"

        # the direction is checked: production is never refreshed from staging
        refused = fc.run("env", "refresh", "production", "--from", "staging")
        assert refused.code == 1 and "only from a later environment" in refused.stderr, \
            refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, f"one line: {refused.stderr}"
        assert checksum(prod) == before, "a refused refresh touches nothing"

        # refresh staging from production: scrubbed, production untouched, staging passes again
        step = time.monotonic()
        refreshed = fc.run("env", "refresh", "staging", "--from", "production", "--json")
        assert refreshed.code == 0, f"the refresh failed: {refreshed.stderr[-600:]}"
        report = refreshed.json()
        timings["env refresh staging --from production"] = time.monotonic() - step
        assert {(p["role"], p["target"]) for p in report["pets"]} == {
            ("postgres", "postgres-stg-01"), ("redis", "redis-stg-01")}, report
        assert checksum(prod) == before, "production's data is never written"
        users = sh(stg, f"cat {DATA}/base/users.csv")
        people = sql(stg, "SELECT email, name FROM people ORDER BY id").splitlines()
        assert len(people) == 2 and people[0].startswith("masked-") and \
            people[0].endswith("@example.invalid|Carol") and people[1] == "|Dan", \
            f"the copy's email column is masked, NULL kept: {people}"
        assert "carol@" in sql(prod, "SELECT email FROM people"), "production keeps its own"
        assert "alice@example.com" not in users and "bob@corp" not in users, \
            f"staging's copy is scrubbed: {users}"
        assert users.count("masked@example.invalid") == 2 and "Alice" in users, users
        assert "No such file" in subprocess.run(
            ["docker", "exec", stg, "cat", f"{DATA}/stale"], capture_output=True,
            text=True).stderr, "staging's own data was replaced"
        assert sh(f"{name}-redis-stg-01", "cat /var/lib/redis/appendonly.aof").strip() == \
            "production-queue", "a role without a scrub is copied as it is"
        assert stg in passing(lab, name, "postgres"), "staging's postgres passes in Consul again"
        assert f"{name}-redis-stg-01" in passing(lab, name, "redis"), "and its redis"
        # the same data, the same archive (a pet whose files only its users change: PostgreSQL
        # rewrites its own files with nobody writing data, so its archives differ)
        first = fc.run("snapshot", "create", "redis-01", "--json")
        again = fc.run("snapshot", "create", "redis-01", "--json")
        assert first.code == 0 and again.code == 0 and \
            again.json()["sha256"] == first.json()["sha256"], \
            "a snapshot of unchanged data has the same checksum"
        events = [e for e in FleetState(lab.consul(), f"fleet/{name}").history()
                  if e["event"] == "refresh"]
        assert [(e["env"], e["from"], e["scrubbed"]) for e in events] == [
            ("staging", "production", ["postgres-stg-01"])], f"recorded: {events}"

        # rebuild staging: new containers, the data kept, passing again
        step = time.monotonic()
        ids = {c: container_id(c) for c in (stg, f"{name}-redis-stg-01", sidekiq)}
        prod_id = container_id(prod)
        done = fc.run("env", "rebuild", "staging", "--json")
        assert done.code == 0, f"the rebuild failed: {done.stderr[-600:]}"
        rebuilt = done.json()
        timings["env rebuild staging"] = time.monotonic() - step
        assert sorted(rebuilt["machines"]) == ["postgres-stg-01", "redis-stg-01"], rebuilt
        assert rebuilt["cattle"] == [sidekiq], f"the cattle node at its channel: {rebuilt}"
        assert all(container_id(c) != old for c, old in ids.items()), "new containers"
        assert container_id(prod) == prod_id, "production's pets are not rebuilt"
        assert sh(stg, f"cat {DATA}/base/users.csv") == users, "the pet's data is kept"
        assert stg in passing(lab, name, "postgres"), "the rebuilt postgres passes in Consul"
        assert sidekiq in passing(lab, name, "sidekiq"), "the rebuilt cattle node passes"
        assert [e["cattle"] for e in FleetState(lab.consul(), f"fleet/{name}").history()
                if e["event"] == "rebuild"] == [[sidekiq]], "the rebuild is recorded"
        print(json.dumps({k: round(v, 1) for k, v in timings.items()}))
    finally:
        docker.remove_containers([n for n in docker.lab_containers() if n.startswith(f"{name}-")])
        docker.remove_volumes(docker.volumes(f"fleet.name={name}"))
