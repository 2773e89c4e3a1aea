"""Pet data snapshots, pure parts: the record, ids, where the aws target keeps one, which pet
a name is, which way `fleet env refresh` lets data flow, how pets are matched, and how a
rebuild takes cattle. The swap of a restore runs in a temporary directory; the rest of it in
tests/integration/test_snapshots.py."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleet.errors import ConfigError
from fleet.model.definition import parse
from fleet.model.snapshot import (
    Snapshot,
    SnapshotError,
    batches,
    check_direction,
    check_id,
    object_location,
    off_channel,
    pairs,
    pet,
    same_role,
    snapshot_id,
)
from fleet.workflows.snapshots import SWAP
from tests.conftest import EXAMPLE

FLEET = parse(EXAMPLE.read_text())


def env(name: str, **changes: object) -> object:
    return replace(FLEET.environment(name), **changes)


def record(**changes: object) -> Snapshot:
    snap = Snapshot("postgres-01-20260514T101500Z-1a2b3c", "postgres-01", "postgres",
                    "production", "volume", "gitlab-postgres-01-data", 10240, "ab" * 32,
                    "2026-05-14T10:15:00+00:00", "ops@host", "/lab/.fleet/snapshots/x.tar",
                    "s3://fleet-gitlab-snapshots-eu-west-1/production/postgres/x.tar")
    return replace(snap, **changes)


def test_the_record_round_trips_and_is_read_strictly() -> None:
    snap = record()
    assert Snapshot.from_json(snap.to_json()) == snap, "a record reads back as written"
    with pytest.raises(SnapshotError, match="missing 'sha256'"):
        Snapshot.from_json(snap.to_json().replace('"sha256"', '"sha"'))


def test_ids_name_the_pet_and_the_time() -> None:
    made = snapshot_id("postgres-01", datetime(2026, 5, 14, 10, 15, tzinfo=UTC), "1a2b3cdeff")
    assert made == "postgres-01-20260514T101500Z-1a2b3c"
    assert check_id(made) == made
    for bad in ("x", "../etc/passwd", "postgres-01-20260514T101500Z-1a2b3c/extra", ""):
        with pytest.raises(SnapshotError, match="not a snapshot id"):
            check_id(bad)


def test_the_aws_target_location_is_rendered_from_fleet_and_region() -> None:
    assert object_location(FLEET, "i", "production", "postgres") == \
        "s3://fleet-gitlab-snapshots-eu-west-1/production/postgres/i.tar"
    lab_only = replace(FLEET, targets={"lab": FLEET.targets["lab"]})
    assert object_location(lab_only, "i", "production", "postgres") == "", "no aws target"


def test_a_pet_is_found_by_its_instance_name() -> None:
    found = pet(FLEET, "postgres-stg-01")
    assert (found.role.name, found.env) == ("postgres", "staging")
    with pytest.raises(ConfigError, match=r'no pet instance "postgres-1".*did you mean'):
        pet(FLEET, "postgres-1")
    with pytest.raises(ConfigError, match="no pet instance"):
        pet(FLEET, "bastion-01")  # a snowflake is no pet


def test_a_snapshot_goes_only_into_the_same_role() -> None:
    same_role(record(), pet(FLEET, "postgres-stg-01"))
    with pytest.raises(SnapshotError, match="holds postgres data; redis-stg-01 is a redis"):
        same_role(record(), pet(FLEET, "redis-stg-01"))


def test_data_flows_only_down_the_chain() -> None:
    staging, production = env("staging"), env("production")
    check_direction(FLEET, staging, production)  # type: ignore[arg-type]
    with pytest.raises(SnapshotError, match="only from a later environment into an earlier"):
        check_direction(FLEET, production, staging)  # type: ignore[arg-type]
    with pytest.raises(SnapshotError, match="from itself"):
        check_direction(FLEET, staging, staging)  # type: ignore[arg-type]
    borrower = env("canary", pets_from="production")
    with pytest.raises(SnapshotError, match=r"uses the pets of production.*none of its own"):
        check_direction(FLEET, borrower, production)  # type: ignore[arg-type]
    with pytest.raises(SnapshotError, match="no data of its own"):
        check_direction(FLEET, staging, borrower)  # type: ignore[arg-type]
    review = replace(FLEET.environment("staging"), name="review-x", ephemeral=True)
    check_direction(FLEET, review, production)  # type: ignore[arg-type]
    with pytest.raises(SnapshotError, match="ephemeral"):
        check_direction(FLEET, staging, review)  # type: ignore[arg-type]


def test_pets_are_matched_by_role() -> None:
    assert [(r.name, s, t) for r, s, t in pairs(FLEET, "staging", "production")] == [
        ("gitaly", "gitaly-01", "gitaly-stg-01"), ("postgres", "postgres-01", "postgres-stg-01"),
        ("redis", "redis-01", "redis-stg-01")]
    roles = dict(FLEET.roles)
    roles["redis"] = replace(roles["redis"], instances={**roles["redis"].instances,
                                                        "production": ("redis-01", "redis-02")})
    with pytest.raises(SnapshotError, match=r"redis: staging has 1 instance.*production 2"):
        pairs(replace(FLEET, roles=roles), "staging", "production")
    with pytest.raises(SnapshotError, match="canary has no pets"):
        pairs(FLEET, "canary", "production")


def test_rebuild_takes_cattle_in_batches_at_their_channels() -> None:
    assert batches(["a", "b", "c"], 2) == [["a", "b"], ["c"]]
    assert batches(["a", "b"], 0) == [["a"], ["b"]], "at least one node a batch"
    desired = {"web": {"v1": 0, "v2": 2}, "api": {"v2": 1}}
    assert off_channel(desired, {"web": "v2", "api": "v2"}) == []
    assert off_channel(desired, {"web": "v1", "api": "v2"}) == ["web"]
    assert off_channel(desired, {"web": "v2"}) == ["api"], "nodes without a channel"


# ---- the swap of a restore, on a real file tree ------------------------------------------------

def swap(tmp_path: Path, *, fail_copy: bool = False) -> subprocess.CompletedProcess[str]:
    script = SWAP.replace("/target", str(tmp_path / "target")).replace("/new", str(tmp_path / "new"))
    path = "/usr/bin:/bin"
    if fail_copy:  # a cp that copies one file, then fails (a disk filling up)
        fake = tmp_path / "bin"
        fake.mkdir(exist_ok=True)
        (fake / "cp").write_text('#!/bin/sh\ntouch "$3/half-copied"\nexit 1\n')
        (fake / "cp").chmod(0o755)
        path = f"{fake}:{path}"
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                          env={"PATH": path})


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_the_swap_replaces_the_data_and_undoes_a_failed_or_interrupted_one(tmp_path: Path) -> None:
    (tmp_path / "target" / "base").mkdir(parents=True)
    (tmp_path / "target" / "base" / "old").write_text("old data")
    (tmp_path / "target" / ".hidden old").write_text("old, hidden")
    (tmp_path / "new" / "base").mkdir(parents=True)
    (tmp_path / "new" / "base" / "new").write_text("new data")
    before = tree(tmp_path / "target")

    failed = swap(tmp_path, fail_copy=True)
    assert failed.returncode == 1 and "old data is back" in failed.stderr, failed.stderr
    assert tree(tmp_path / "target") == before, "a failed copy leaves the old data as it was"

    # cut short after the old data was set aside and half the new data copied
    target = tmp_path / "target"
    (target / ".fleet-before").mkdir()
    for entry in ("base", ".hidden old"):
        (target / entry).rename(target / ".fleet-before" / entry)
    (target / ".fleet-before-moved").touch()
    (target / "half").write_text("half of the new data")
    done = swap(tmp_path)
    assert done.returncode == 0, done.stderr
    assert tree(target) == {"base/new": "new data"}, "the next swap undoes, then swaps"

    # cut short after the swap was done, before the old data was dropped
    (target / ".fleet-before-done").mkdir()
    (target / ".fleet-before-done" / "stale").write_text("old")
    assert swap(tmp_path).returncode == 0
    assert tree(target) == {"base/new": "new data"}, "a finished swap is cleaned up, not undone"
