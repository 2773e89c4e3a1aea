"""Reruns that finish what was asked, a dead lock holder taken over at once, and output that
tells the truth (issue 13 items 4, 6 and 7), on the real lab: Terraform rolls the nodes,
Consul gates them and holds the lock, a real (sealed) OpenBao interrupts the rollback."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fleet.services.context import load
from fleet.services.lock import env_lock
from tests.conftest import ROOT, FleetCopy, Run, fleet, throwaway_vault
from tests.integration.test_promote import bake, events, settles, teardown

pytestmark = pytest.mark.lab


@contextlib.contextmanager
def sealed_vault(tmp_path: Path) -> Iterator[str]:
    """A Vault of our own, initialised and so sealed; its address."""
    with throwaway_vault(tmp_path) as (address, _):
        yield address


def channel(copy: FleetCopy, env: str, role: str = "web") -> str:
    status = copy.run("status", env, "--json")
    assert status.code == 0, status.stderr
    return str(next(r for r in status.json() if r["role"] == role)["channel"])


def summary_versions(run: Run) -> dict[str, str]:
    """What the summary lines of a promote/rollback say each role is at:
    'canary: web, api at v2; git at v1 (...)' -> {'web': 'v2', 'api': 'v2', 'git': 'v1'}."""
    said: dict[str, str] = {}
    for line in run.stdout.splitlines():
        head = re.match(r"^\w+: (.*?) \(", line)
        assert head, f"not a summary line: {line!r}"
        for part in head.group(1).split("; "):
            roles, version = part.rsplit(" at ", 1)
            said.update(dict.fromkeys(roles.split(", "), version))
    return said


def cleanup(copy: FleetCopy) -> None:
    """The nodes (through Terraform), then every key the copy wrote under its prefix."""
    teardown(copy)
    ctx = load(copy.file, copy.env)
    ctx.consul().delete_tree(ctx.fleet.kv_prefix)


def test_a_rerun_of_an_interrupted_rollback_finishes_it(lab: Any, fleet_copy: FleetCopy,
                                                        tmp_path: Path) -> None:
    bake(fleet_copy, "v2")
    bake(fleet_copy, "v3")  # same inputs: the same image under another version
    try:
        for version in ("v2", "v3"):
            run = fleet_copy.run("promote", version, "--to", "canary", "--role", "web")
            assert run.code == 0, run.stderr
        with sealed_vault(tmp_path) as address:
            sealed = {**fleet_copy.env, "VAULT_ADDR": address}
            cut = fleet("rollback", "canary", "--role", "web", file=fleet_copy.file, env=sealed)
            assert cut.code == 1, "the rollback went on with Vault sealed"
            assert f"Vault at {address} is sealed" in cut.stderr, cut.stderr
            assert "Traceback" not in cut.stderr, cut.stderr
            assert channel(fleet_copy, "canary") == "v3", "an interrupted rollback moved the channel"

            rerun = fleet_copy.run("rollback", "canary", "--role", "web")
            assert rerun.code == 0, rerun.stderr
            assert "carrying on rollout" in rerun.stderr and "a rollback to v2" in rerun.stderr, \
                rerun.stderr
            assert channel(fleet_copy, "canary") == "v2", "the rerun did not finish the rollback"
            assert summary_versions(rerun) == {"web": "v2"}, \
                f"the summary disagrees with fleet status: {rerun.stdout}"
            assert "rollback to v2 done, carried on" in rerun.stdout, rerun.stdout
            want = {f"{fleet_copy.name}-web-canary-v2-0": "v2"}
            assert settles(fleet_copy, "canary", want) == want, "v2's node is not the one passing"
            seen = events(fleet_copy, "canary")
            (back,) = [e for e in seen if e["event"] == "rollback-to"]
            mine = [e["event"] for e in seen if e.get("rollout") == back["rollout"]]
            assert "resume" in mine and mine[-1] == "promoted", f"rollback's events: {mine}"
            assert "rolled-back" not in mine, "the rerun undid the rollback it was asked for"

            # a promotion interrupted the same way, then `fleet rollback`: rolling the
            # promotion back is the rollback, and its line names where web really is
            cut = fleet("promote", "v3", "--to", "canary", "--role", "web",
                        file=fleet_copy.file, env=sealed)
            assert cut.code == 1 and "is sealed" in cut.stderr, cut.stderr
        back_again = fleet_copy.run("rollback", "canary", "--role", "web")
        assert back_again.code == 0, back_again.stderr
        assert channel(fleet_copy, "canary") == "v2", "rolling back a promotion moved the channel"
        assert summary_versions(back_again) == {"web": "v2"}, \
            f"the summary disagrees with fleet status: {back_again.stdout}"
        assert "promotion to v3 rolled back: superseded by fleet rollback" in back_again.stdout, \
            back_again.stdout
        assert settles(fleet_copy, "canary", want) == want, "web is not back on v2's node"
    finally:
        cleanup(fleet_copy)


def test_a_dead_lock_holder_is_taken_over_at_once(lab: Any, fleet_copy: FleetCopy) -> None:
    bake(fleet_copy, "v1")
    ctx = load(fleet_copy.file, fleet_copy.env)
    consul, prefix = ctx.consul(), ctx.fleet.kv_prefix
    lock = f"{prefix}/locks/canary"

    def rolling() -> str:
        """The id of canary's rollout while it is unfinished and its lock held by `proc`."""
        entry, held = consul.get(f"{prefix}/rollouts/canary"), consul.get(lock)
        if entry is None or held is None or not held.value:
            return ""
        data = json.loads(entry.value)
        mine = json.loads(held.value)["pid"] == proc.pid
        return str(data["id"]) if mine and data["state"] == "rolling" else ""

    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleet", "-f", str(fleet_copy.file), "promote", "v1", "--to",
             "canary", "--role", "web"], cwd=ROOT, env={**os.environ, **fleet_copy.env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (killed := rolling()):
            assert proc.poll() is None, "the promote ended before it could be killed"
            assert time.monotonic() < deadline, "the promote never started rolling"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        died = datetime.now(UTC)

        rerun = fleet_copy.run("promote", "v1", "--to", "canary", "--role", "web", "--json")
        assert rerun.code == 0, rerun.stderr
        assert f"(pid {proc.pid}, since" in rerun.stderr and "is gone" in rerun.stderr \
            and "taking the lock over" in rerun.stderr, rerun.stderr
        (taken,) = [e for e in events(fleet_copy, "canary") if e["event"] == "lock-taken-over"]
        waited = (datetime.fromisoformat(taken["at"]) - died).total_seconds()
        assert waited < 5, f"took the lock over {waited:.1f}s after the holder died (TTL 10s)"
        assert taken["pid"] == proc.pid, taken
        (report,) = rerun.json()
        assert report["rollout"] == killed, f"reported {report['rollout']!r}, carried {killed}"
        assert report["steps"] == 1 and report["carried_on"] is True, report
        assert report["state"] == "done" and report["at"] == {"web": "v1"}, report
        assert channel(fleet_copy, "canary") == "v1"

        # a live holder still blocks: this very process, on this host
        with env_lock(consul, prefix, "canary", wait=False):
            held = fleet_copy.run("promote", "v1", "--to", "canary", "--role", "web")
        assert held.code == 1, "a live holder's lock was taken"
        assert "canary is being rolled by" in held.stderr and f"(pid {os.getpid()}," \
            in held.stderr, held.stderr
        assert "Traceback" not in held.stderr and held.stderr.count("\n") == 1, held.stderr
        # and so does a holder of another host, whatever its pid means here
        dead = subprocess.Popen(["true"])
        dead.wait()
        session = consul.session("a holder elsewhere", 10)
        try:
            elsewhere = {"who": "ci@elsewhere", "pid": dead.pid, "since": "2026-01-01T00:00:00",
                         "host": "elsewhere x pid:[1]", "started": 1, "session": session}
            assert consul.acquire(lock, json.dumps(elsewhere), session)
            foreign = fleet_copy.run("promote", "v1", "--to", "canary", "--role", "web")
            assert foreign.code == 1 and "is being rolled by ci@elsewhere" in foreign.stderr, \
                foreign.stderr
        finally:
            consul.release(lock, session)
            consul.end(session)

        # the history: one line an event, the newest N, since a duration or a time
        everything = events(fleet_copy, "canary")
        assert len(everything) >= 5, everything
        assert events(fleet_copy, "canary", "--limit", "2") == everything[-2:], "--limit 2"
        assert events(fleet_copy, "canary", "--since", "1h") == everything, "--since 1h"
        third = str(everything[-3]["at"])
        assert events(fleet_copy, "canary", "--since", third) == everything[-3:], "--since TIME"
        assert events(fleet_copy, "--since", "2099-01-01") == [], "--since the future"
        web = events(fleet_copy, "--role", "web", "--limit", "1")
        assert web == [e for e in everything if "web" in e.get("roles", [])][-1:], "--role web"
        bad = fleet_copy.run("history", "--since", "yesterday")
        assert bad.code == 1 and bad.stderr.count("\n") == 1, bad.stderr
        assert '--since "yesterday" is neither a duration nor a time' in bad.stderr, bad.stderr
        table = fleet_copy.run("history", "canary")
        lines = table.stdout.splitlines()
        assert table.code == 0 and len(lines) == len(everything), table.stdout
        assert not [x for x in lines if "{" in x or "'" in x], f"raw dicts: {table.stdout}"
        assert any(re.search(r"lock-taken-over: +the lock, from", x) for x in lines), table.stdout
    finally:
        cleanup(fleet_copy)
