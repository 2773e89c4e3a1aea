"""fleet release against the real lab: a version walks canary -> staging, stops at production's
manual approval, goes on with --yes-to; a release killed with -9 is finished by its rerun; a
failed step stops it with that environment rolled back. One web node per environment, short
soaks, so the whole chain stays cheap."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from fleet.services import cattle
from fleet.services.context import load
from tests.conftest import ROOT, FleetCopy, Run, eventually

pytestmark = pytest.mark.lab


def small(copy: FleetCopy) -> None:
    """Canary soaks 2 s, staging 1 s; production runs one web node."""
    copy.edit("fleet.toml", 'soak = "30s"', 'soak = "2s"')
    copy.edit("fleet.toml", 'soak = "1m"', 'soak = "1s"')
    copy.edit("fleet.toml", "count = { canary = 1, staging = 1, production = 2 }\n\n[roles.web.",
              "count = { canary = 1, staging = 1, production = 1 }\n\n[roles.web.")


def bake(copy: FleetCopy, version: str) -> None:
    run = copy.run("bake", "web", "--version", version, "--json")
    assert run.code == 0, run.stderr


def channels(copy: FleetCopy) -> dict[str, str]:
    """web's channel in each environment ('' for none), as fleet status shows it."""
    run = copy.run("status", "--json")
    assert run.code == 0, run.stderr
    return {r["env"]: r["channel"] or "" for r in run.json() if r["role"] == "web"}


def passing(copy: FleetCopy, env: str) -> dict[str, str]:
    ctx = load(copy.file, copy.env)
    return cattle.health(ctx, ["web"], env, "web").passing


def events(copy: FleetCopy, *args: str) -> list[dict[str, Any]]:
    run = copy.run("history", *args, "--json")
    assert run.code == 0, run.stderr
    return list(run.json())


def one_line(run: Run) -> str:
    """The only line a failed command wrote on stderr (progress lines aside)."""
    errors = [x for x in run.stderr.splitlines() if x.startswith("fleet: error:")]
    assert len(errors) == 1, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    return errors[0]


def teardown(copy: FleetCopy) -> None:
    ctx = load(copy.file, copy.env)
    for env in ctx.fleet.env_names():
        cattle.apply(ctx, env, [])


def test_release_walks_the_chain_stops_at_approval_and_carries_on(
        lab: Any, fleet_copy: FleetCopy) -> None:
    small(fleet_copy)
    bake(fleet_copy, "v1")
    name = fleet_copy.name
    try:
        # ---- bad input: one line, exit 1, nothing promoted
        for args, message in (
            (("v9", "--role", "web"), "release of v9 refused: web:v9 is not baked"),
            (("v1", "--role", "wbe"), 'unknown role "wbe" (did you mean "web"?)'),
            (("v1", "--role", "gitaly"), "gitaly is a pet"),
            (("v1", "--role", "web", "--yes-to", "prod"),
             '--yes-to "prod" is not an environment of the chain'),
        ):
            bad = fleet_copy.run("release", *args)
            assert bad.code == 1, (args, bad.stdout, bad.stderr)
            assert message in one_line(bad), (args, bad.stderr)
            assert bad.stderr.count("\n") == 1, f"more than one line for {args}: {bad.stderr}"
            assert bad.stdout == "", bad.stdout
        assert set(channels(fleet_copy).values()) == {""}, "bad input promoted something"
        assert events(fleet_copy) == [], "bad input left history behind"

        # ---- canary -> staging, then production's manual approval: exit 0, where and how
        first = fleet_copy.run("release", "v1", "--role", "web", "--json")
        assert first.code == 0, first.stderr
        report = first.json()
        assert report["state"] == "awaiting-approval", report
        assert report["stopped_at"] == "production", report
        assert report["go_on"] == "fleet release v1 --role web --yes-to production", report
        assert [(s["env"], s["outcome"]) for s in report["steps"]] == [
            ("canary", "promoted"), ("staging", "promoted"),
            ("production", "awaiting-approval")], report
        assert "to soak in the environment before" in first.stderr, first.stderr
        assert channels(fleet_copy) == {"canary": "v1", "staging": "v1", "production": ""}
        for env in ("canary", "staging"):
            want = {f"{name}-web-{env}-v1-0": "v1"}
            assert eventually(lambda env=env: passing(fleet_copy, env), want) == want, env
        assert passing(fleet_copy, "production") == {}, "production was rolled unapproved"

        # the same without --json, for people: nothing more to do until it is approved
        again = fleet_copy.run("release", "v1", "--role", "web")
        assert again.code == 0, again.stderr
        assert ("v1 stopped at production, awaiting approval; to go on: "
                "fleet release v1 --role web --yes-to production") in again.stdout, again.stdout
        assert "canary: web at v1 (already there)" in again.stdout, again.stdout

        # ---- approved: production gets it, canary and staging are skipped
        second = fleet_copy.run("release", "v1", "--role", "web", "--yes-to", "production",
                                "--json")
        assert second.code == 0, second.stderr
        report = second.json()
        assert report["state"] == "released" and report["stopped_at"] == "", report
        assert [(s["env"], s["outcome"]) for s in report["steps"]] == [
            ("canary", "skipped"), ("staging", "skipped"), ("production", "promoted")], report
        assert channels(fleet_copy) == {"canary": "v1", "staging": "v1", "production": "v1"}
        want = {f"{name}-web-production-v1-0": "v1"}
        assert eventually(lambda: passing(fleet_copy, "production"), want) == want
        (promoted,) = [e for e in events(fleet_copy, "production") if e["event"] == "promote"]
        assert promoted["approved"] is True, promoted
        kinds = [e["event"] for e in events(fleet_copy) if e["event"].startswith("release")]
        assert kinds == ["release", "release-stopped", "release", "release-stopped", "release",
                         "released"], kinds
        table = fleet_copy.run("history", "production")
        assert "release-stopped:" in table.stdout, table.stdout
        assert "v1 for web: production needs manual approval" in table.stdout, table.stdout

        # ---- killed with -9 mid-way (staging rolling), then the same command finishes it
        bake(fleet_copy, "v2")  # the same inputs: the same image under a new version, no build
        ctx = load(fleet_copy.file, fleet_copy.env)
        consul, prefix = ctx.consul(), ctx.fleet.kv_prefix

        def staging_rolling() -> bool:
            entry = consul.get(f"{prefix}/rollouts/staging")
            data = json.loads(entry.value) if entry is not None and entry.value else {}
            return data.get("version") == "v2" and data.get("state") == "rolling"

        argv = [sys.executable, "-m", "fleet", "-f", str(fleet_copy.file), "release", "v2",
                "--yes-to", "production"]  # no --role: every cattle role baked at v2 (web)
        proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **fleet_copy.env},
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while not staging_rolling():
            assert proc.poll() is None, "the release ended before it could be killed"
            assert time.monotonic() < deadline, "staging never started rolling v2"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert channels(fleet_copy)["production"] == "v1"

        rerun = fleet_copy.run("release", "v2", "--yes-to", "production", "--json")
        assert rerun.code == 0, rerun.stderr
        report = rerun.json()
        assert report["state"] == "released", report
        steps = {s["env"]: s for s in report["steps"]}
        assert steps["canary"]["outcome"] == "skipped", report
        assert steps["staging"]["outcome"] == "promoted" and steps["staging"]["carried_on"], \
            report
        assert "carrying on rollout" in rerun.stderr, rerun.stderr
        assert channels(fleet_copy) == {"canary": "v2", "staging": "v2", "production": "v2"}
        for env in ("canary", "staging", "production"):
            want = {f"{name}-web-{env}-v2-0": "v2"}
            assert eventually(lambda env=env: passing(fleet_copy, env), want) == want, env

        # ---- a failed step: v3's web listens on nothing, so its canary node never passes and
        # canary is rolled back (a short step timeout alone was a race: a node may pass in 1 s)
        fleet_copy.edit("packer/scripts/web.sh", "install_services",
                        "FLEET_SERVICES=''\ninstall_services")
        bake(fleet_copy, "v3")
        failed = fleet_copy.run("release", "v3", "--role", "web", "--step-timeout", "5")
        assert failed.code == 1, failed.stdout + failed.stderr
        line = one_line(failed)
        assert "release of v3 stopped at canary" in line, line
        assert "failed and was rolled back" in line and "canary runs web v2" in line, line
        assert channels(fleet_copy) == {"canary": "v2", "staging": "v2", "production": "v2"}
        want = {f"{name}-web-canary-v2-0": "v2"}
        assert eventually(lambda: passing(fleet_copy, "canary"), want) == want
        (stopped,) = [e for e in events(fleet_copy, "canary") if e["event"] == "release-stopped"]
        assert stopped["version"] == "v3" and "rolled back" in stopped["reason"], stopped
    finally:
        teardown(fleet_copy)
