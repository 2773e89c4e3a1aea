"""fleet promote / rollback / history / status against the real lab: Terraform really replaces
the nodes, Consul really gates each step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fleet.services import cattle
from fleet.services.context import load
from tests.conftest import ROOT, FleetCopy, eventually

pytestmark = pytest.mark.lab


def quick(copy: FleetCopy) -> None:
    """Short soaks so a test can walk the environments: canary 4 s, staging 1 s."""
    copy.edit("fleet.toml", 'soak = "30s"', 'soak = "4s"')
    copy.edit("fleet.toml", 'soak = "1m"', 'soak = "1s"')


def bake(copy: FleetCopy, version: str, role: str = "web") -> str:
    run = copy.run("bake", role, "--version", version, "--json")
    assert run.code == 0, run.stderr
    return str(json.loads(run.stdout)["results"][0]["artifact"])


def containers(copy: FleetCopy, env: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "--format", "{{.Names}}"], capture_output=True,
                         text=True, check=True).stdout.split()
    return sorted(n for n in out if n.startswith(f"{copy.name}-web-{env}-"))


def passing(copy: FleetCopy, env: str) -> dict[str, str]:
    ctx = load(copy.file, copy.env)
    return cattle.health(ctx, ["web"], env, "web").passing


def settles(copy: FleetCopy, env: str, want: dict[str, str]) -> dict[str, str]:
    """The passing nodes once removed ones have drained (they leave Consul in a few seconds)."""
    return eventually(lambda: passing(copy, env), want)


def events(copy: FleetCopy, *args: str) -> list[dict[str, Any]]:
    run = copy.run("history", *args, "--json")
    assert run.code == 0, run.stderr
    return list(run.json())


def teardown(copy: FleetCopy) -> None:
    ctx = load(copy.file, copy.env)
    for env in ctx.fleet.env_names():
        cattle.apply(ctx, env, [])


def test_promote_through_environments_then_roll_back(lab: Any, fleet_copy: FleetCopy) -> None:
    quick(fleet_copy)
    bake(fleet_copy, "v1")
    try:
        early = fleet_copy.run("promote", "v1", "--to", "production", "--role", "web")
        assert early.code == 1
        assert "has not been promoted to staging first" in early.stderr

        for env, count in (("canary", 1), ("staging", 1), ("production", 2)):
            if env == "staging":  # canary's 4 s soak has not passed yet
                early = fleet_copy.run("promote", "v1", "--to", env, "--role", "web")
                assert early.code == 1 and "which needs 4s" in early.stderr, early.stderr
            if env == "production":  # manual_approval: no terminal here, so --yes or refused
                time.sleep(1.2)  # staging's soak
                unapproved = fleet_copy.run("promote", "v1", "--to", env, "--role", "web")
                assert unapproved.code == 1
                assert "needs manual approval" in unapproved.stderr
            # --wait waits out the soak of the environment before
            run = fleet_copy.run("promote", "v1", "--to", env, "--role", "web", "--json",
                                 "--yes", "--wait")
            assert run.code == 0, run.stderr
            assert run.json()[0]["state"] == "done"
            if env == "staging":
                assert "to soak in the environment before" in run.stderr
            want = {f"{fleet_copy.name}-web-{env}-v1-{i}": "v1" for i in range(count)}
            assert settles(fleet_copy, env, want) == want

        bake(fleet_copy, "v2")  # same inputs: the same image under a new version
        fleet_copy.edit("packer/scripts/web.sh", "install_services", "echo v3\ninstall_services")
        bake(fleet_copy, "v3")
        run = fleet_copy.run("promote", "v3", "--to", "canary", "--role", "web")
        assert run.code == 0, run.stderr
        assert eventually(lambda: containers(fleet_copy, "canary"),
                          [f"{fleet_copy.name}-web-canary-v3-0"]) == [
            f"{fleet_copy.name}-web-canary-v3-0"]
        want = {f"{fleet_copy.name}-web-canary-v3-0": "v3"}
        assert settles(fleet_copy, "canary", want) == want

        status = fleet_copy.run("status", "canary", "--json").json()
        web = next(r for r in status if r["role"] == "web")
        assert web["channel"] == "v3" and web["passing"] == {"v3": 1}
        assert web["traffic_share"] == pytest.approx(10, abs=0.5)  # 1 canary node vs 2 in prod

        back = fleet_copy.run("rollback", "canary", "--role", "web", "--json")
        assert back.code == 0, back.stderr
        assert back.json()[0]["version"] == "v1"
        want = {f"{fleet_copy.name}-web-canary-v1-0": "v1"}
        assert settles(fleet_copy, "canary", want) == want

        kinds = [e["event"] for e in events(fleet_copy, "canary", "--role", "web")]
        assert kinds.count("promoted") == 3 and "rollback-to" in kinds
        assert {"promote", "step", "gate"} <= set(kinds)
        production = events(fleet_copy, "production")
        refusals = [e for e in production if e["event"] == "refused"]
        assert "has not been promoted to staging first" in refusals[0]["problems"][0]
        assert refusals[1]["problems"] == ["production needs manual approval"]
        (promoted,) = [e for e in production if e["event"] == "promote"]
        assert promoted["approved"] is True and promoted["who"] and promoted["at"]
        (done,) = [e for e in production if e["event"] == "promoted"]
        assert done["version"] == "v1" and done["previous"] == {"web": ""}
        table = fleet_copy.run("history", "production")
        assert table.code == 0 and "promoted" in table.stdout
    finally:
        teardown(fleet_copy)


def test_failing_nodes_are_rolled_back_by_themselves(lab: Any, fleet_copy: FleetCopy) -> None:
    bake(fleet_copy, "v1")
    fleet_copy.edit("packer/scripts/web.sh", "install_services", "FLEET_SERVICES=''\ninstall_services")
    bake(fleet_copy, "broken")  # boots, but nothing listens on the web port
    try:
        assert fleet_copy.run("promote", "v1", "--to", "canary", "--role", "web").code == 0
        run = fleet_copy.run("promote", "broken", "--to", "canary", "--role", "web",
                             "--step-timeout", "8")
        assert run.code == 1
        assert "failed and was rolled back" in run.stderr
        assert "web:broken in canary: 0 of 1 node(s) passing after 8s" in run.stderr
        # and which node, with what Consul says of it (which case depends on how far it got
        # booting in 8 s: not in the catalog yet, or its web check critical)
        broken = f"{fleet_copy.name}-web-canary-broken-0: "
        assert broken in run.stderr, run.stderr
        print(run.stderr.splitlines()[-1])
        assert "canary runs web v1" in run.stderr
        want = {f"{fleet_copy.name}-web-canary-v1-0": "v1"}
        assert settles(fleet_copy, "canary", want) == want
        v1 = [f"{fleet_copy.name}-web-canary-v1-0"]
        assert eventually(lambda: containers(fleet_copy, "canary"), v1) == v1
        status = fleet_copy.run("status", "canary", "--json").json()
        assert next(r for r in status if r["role"] == "web")["channel"] == "v1"
        kinds = [e["event"] for e in events(fleet_copy, "canary")]
        assert kinds[-4:] == ["rollback", "rollback-step", "gate", "rolled-back"], kinds
        failed_gate = [e for e in events(fleet_copy, "canary") if e["event"] == "gate"][-2]
        assert failed_gate["passed"] is False and "0 of 1 node(s) passing" in failed_gate["detail"]
        assert broken in failed_gate["detail"], failed_gate
    finally:
        teardown(fleet_copy)


def test_bad_input_is_one_line(lab: Any, fleet_copy: FleetCopy) -> None:
    bake(fleet_copy, "v1")
    for args, message in (
        (("promote", "v1", "--to", "canery"), 'unknown environment "canery" (did you mean "canary"?)'),
        (("promote", "v9", "--to", "canary", "--role", "web"), "web:v9 is not baked"),
        (("promote", "v1", "--to", "canary", "--role", "gitaly"), "gitaly is a pet"),
        (("promote", "v1", "--to", "staging", "--role", "web", "--force"), "--force needs --reason"),
        (("rollback", "canary", "--role", "web"), "web has no previous version in canary"),
    ):
        run = fleet_copy.run(*args)
        assert run.code == 1, args
        assert message in run.stderr, run.stderr
        assert "Traceback" not in run.stderr


def test_concurrent_promotes_serialize(lab: Any, fleet_copy: FleetCopy) -> None:
    bake(fleet_copy, "v1")
    bake(fleet_copy, "v1", role="api")
    argv = [sys.executable, "-m", "fleet", "-f", str(fleet_copy.file), "promote", "v1", "--to",
            "canary", "--wait", "--role"]
    env = {**os.environ, **fleet_copy.env}
    try:
        procs = [subprocess.Popen([*argv, role], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for role in ("web", "api")]
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
        history = [e for e in events(fleet_copy, "canary") if "rollout" in e]
        order = [e["rollout"] for e in history]
        first, second = dict.fromkeys(order)
        assert order == [first] * order.count(first) + [second] * order.count(second), \
            "two rollouts of one environment interleaved"
    finally:
        teardown(fleet_copy)


def test_sigterm_then_kill_9_mid_rollout_then_rerun_converges(lab: Any,
                                                             fleet_copy: FleetCopy) -> None:
    """A promotion stopped twice on its way, then run again to the end, the floor held throughout:
    - SIGTERM (`kill`, `timeout`, a cancelled CI job) as a step's apply begins: fleet takes it
      as a Ctrl-C, waits for that apply to end (no Terraform of this fleet is left running,
      its state lock is free: killed, the apply held it until its session's TTL, and the
      rerun waited for it) and exits 143 with one line;
    - its rerun, killed with -9 as step 3's apply begins: nothing runs its `finally`;
    - the last rerun carries the rollout on to its end."""
    fleet_copy.edit("fleet.toml", "count = { canary = 1, staging = 1, production = 2 }\n\n[roles.web.",
                    "count = { canary = 3, staging = 1, production = 2 }\n\n[roles.web.")
    fleet_copy.edit("fleet.toml", "min_healthy_percent = 0", "min_healthy_percent = 100")
    bake(fleet_copy, "v1")
    fleet_copy.edit("packer/scripts/web.sh", "install_services", "echo v2\ninstall_services")
    bake(fleet_copy, "v2")
    lowest: list[int] = []
    stop = threading.Event()
    said = fleet_copy.root / "promote.err"

    def promote_in_background() -> subprocess.Popen[bytes]:
        with said.open("wb") as err:
            return subprocess.Popen([sys.executable, "-m", "fleet", "-f", str(fleet_copy.file),
                                     "promote", "v2", "--to", "canary", "--role", "web"],
                                    cwd=ROOT, env={**os.environ, **fleet_copy.env},
                                    stdout=subprocess.DEVNULL, stderr=err)

    def wait_for(event: str, step: int) -> None:
        """Until the v2 rollout's history has EVENT for STEP ("step": recorded as the step's
        apply begins; "gate": its nodes passed)."""
        deadline = time.monotonic() + 120
        while True:
            seen = events(fleet_copy, "canary")
            ids = {e["rollout"] for e in seen if e["event"] == "promote" and e["version"] == "v2"}
            if any(e["event"] == event and e.get("rollout") in ids and e["step"] == step
                   and e.get("passed", True) for e in seen):
                return
            assert time.monotonic() < deadline, f"the rollout never came to its {event} {step}"
            time.sleep(0.1)

    try:
        assert fleet_copy.run("promote", "v1", "--to", "canary", "--role", "web").code == 0

        def sample() -> None:
            while not stop.is_set():
                lowest.append(len(passing(fleet_copy, "canary")))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample)
        sampler.start()
        proc = promote_in_background()
        wait_for("step", 2)
        proc.send_signal(signal.SIGTERM)  # step 2's apply has begun (it takes ~1-2 s)
        code = proc.wait(timeout=120)
        lines = said.read_text().strip().splitlines()
        assert code == 143, f"SIGTERM: exit {code}: {lines[-5:]}"
        assert lines[-1] == "fleet: terminated", lines[-5:]
        assert any("step 2/4" in line for line in lines), lines[-5:]
        left = [pid for pid in filter(str.isdigit, os.listdir("/proc"))
                if f"-chdir={fleet_copy.root}".encode() in _cmdline(pid)]
        assert not left, f"Terraform outlived the terminated fleet (pids {left}): not waited for"
        ctx = load(fleet_copy.file, fleet_copy.env)
        held = ctx.consul().get(f"{ctx.fleet.kv_prefix}/terraform/cattle/canary/.lockinfo")
        assert held is None, "Terraform's state lock is still held: its apply was cut, not ended"

        proc = promote_in_background()
        wait_for("step", 3)  # not its gate: the last step (removals only) follows it at once
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert "carrying on rollout" in said.read_text(), said.read_text()[-600:]

        rerun = fleet_copy.run("promote", "v2", "--to", "canary", "--role", "web", "--wait")
        assert rerun.code == 0, rerun.stderr
        assert "carrying on rollout" in rerun.stderr
        stop.set()
        sampler.join()
        want = {f"{fleet_copy.name}-web-canary-v2-{i}": "v2" for i in range(3)}
        assert settles(fleet_copy, "canary", want) == want
        assert len(lowest) > 10 and min(lowest) >= 3, f"the floor broke: {lowest}"
        assert [e["event"] for e in events(fleet_copy, "canary")].count("resume") >= 2, \
            "both reruns did not carry the rollout on"
    finally:
        stop.set()
        teardown(fleet_copy)


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""  # gone meanwhile


def test_terraform_failing_mid_rollout_is_one_line_and_rollback_finishes_it(
        lab: Any, fleet_copy: FleetCopy) -> None:
    bake(fleet_copy, "v1")
    fleet_copy.edit("packer/scripts/web.sh", "install_services", "echo v2\ninstall_services")
    gone = bake(fleet_copy, "v2")
    subprocess.run(["docker", "image", "rm", "--force", gone], check=True, capture_output=True)
    try:
        assert fleet_copy.run("promote", "v1", "--to", "canary", "--role", "web").code == 0
        run = fleet_copy.run("promote", "v2", "--to", "canary", "--role", "web")
        assert run.code == 1
        (line,) = [x for x in run.stderr.splitlines() if x.startswith("fleet: error:")]
        assert "terraform" in line and "No such image" in line, run.stderr
        assert "Traceback" not in run.stderr
        status = fleet_copy.run("status", "canary", "--json").json()
        assert next(r for r in status if r["role"] == "web")["channel"] == "v1"

        back = fleet_copy.run("rollback", "canary", "--json")
        assert back.code == 0, back.stderr
        assert back.json()[0]["state"] == "rolled-back"
        want = {f"{fleet_copy.name}-web-canary-v1-0": "v1"}
        assert settles(fleet_copy, "canary", want) == want
        (done,) = [e for e in events(fleet_copy, "canary") if e["event"] == "rolled-back"]
        assert done["reason"] == "superseded by fleet rollback"
        again = fleet_copy.run("promote", "v1", "--to", "canary", "--role", "web")
        assert again.code == 0 and "nothing to do" in again.stderr, again.stderr
    finally:
        teardown(fleet_copy)
