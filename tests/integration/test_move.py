"""fleet move, in the lab, on the example's gitaly pet holding real repositories: a copy of the
example fleet cut down to gitaly (tests/integration/test_gitaly_storage.py) moves staging's
gitaly-stg-01 to a new instance twice: to gitaly-stg-02, aborted, then to gitaly-stg-03.

The first move meets every fault: killed with -9 as it starts creating the target and as it
starts copying (each rerun carries it on), a byte corrupted on the target before verify (the
move stops naming the repository, the source read-only and intact; the rerun copies again and
verifies), pushes refused while the source is read-only, the target failing its health check
in the middle of the cut-over (traffic back on the source by itself, exit 1), then --abort
(the source takes writes again, the target and its volume are gone).

The second goes through while clones run in a loop, each from a gitaly instance chosen by
weight (Consul's passing instances, never one tagged weight:0 while another serves): not one
fails, and the cut-over's shares show in where they were served. Meanwhile staging's git front
end (the git role, promoted beside the pet) is asked where new repositories go, again and
again: by the weights its Consul watch renders, never to the target while it is held back, to
both during the cut-over, only to the target once the move is finished. --finish makes the
target writable and decommissions the source, keeping its volume until --purge; every ref
matches; `fleet plan` keeps the new instance; the history tells both moves.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, FleetCopy, eventually
from tests.integration.test_gitaly_storage import commit, git, keep_gitaly, on_pet, sums

pytestmark = pytest.mark.lab

MOVE = '\n[roles.gitaly.move]\ncutover = [50, 100]\nsoak = "3s"\n'
BEFORE_CUTOVER = ("plan", "create-target", "read-only", "copy", "verify")
REPO = "group/project-001.git"


def start(fc: FleetCopy, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "fleet", "-f", str(fc.file), *args],
                            cwd=ROOT, env={**os.environ, **fc.env}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)


def record(lab: Any, fc: FleetCopy) -> dict[str, Any]:
    entry = lab.consul().get(f"fleet/{fc.name}/moves/gitaly-stg-01")
    return dict(json.loads(entry.value)) if entry is not None and entry.value else {}


def when_at(lab: Any, fc: FleetCopy, proc: subprocess.Popen[str], step: str,
            timeout: float = 180) -> None:
    """Wait until the move's record says `step` is under way (recorded before it acts)."""
    deadline = time.monotonic() + timeout
    while record(lab, fc).get("step") != step:
        assert proc.poll() is None, f"the move ended before {step}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"the move never reached {step}"
        time.sleep(0.01)


def kill_at(lab: Any, fc: FleetCopy, proc: subprocess.Popen[str], step: str) -> None:
    when_at(lab, fc, proc, step)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def finished(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def instances(fc: FleetCopy) -> list[dict[str, Any]]:
    """gitaly's passing instances of this fleet, as Consul's health API gives them."""
    request = urllib.request.Request(
        f"http://127.0.0.1:8500/v1/health/service/gitaly?passing=1&tag=fleet:{fc.name}",
        headers={"X-Consul-Token": fc.env["CONSUL_HTTP_TOKEN"]})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return list(json.loads(answer.read()))


class Clones(threading.Thread):
    """Clones of one repository in a loop, each from an instance picked by weight."""

    def __init__(self, fc: FleetCopy) -> None:
        super().__init__(daemon=True)
        self.fc, self.stop, self.failures = fc, threading.Event(), []  # type: ignore[var-annotated]
        self.served: dict[str, int] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            found = instances(self.fc)
            serving = [i for i in found if "weight:0" not in i["Service"]["Tags"]] or found
            if not serving:
                self.failures.append("no gitaly instance passes")
                time.sleep(0.2)
                continue
            chosen = random.choices(serving, [i["Service"]["Weights"]["Passing"]
                                              for i in serving])[0]
            node, address = chosen["Node"]["Node"], chosen["Node"]["Address"]
            with tempfile.TemporaryDirectory() as scratch:
                done = git("clone", "-q", f"git://{address}:8075/{REPO}", f"{scratch}/c")
            if done.returncode != 0:
                self.failures.append(f"{node}: {done.stderr.strip()}")
            self.served[node] = self.served.get(node, 0) + 1


def with_git_front_end(fc: FleetCopy) -> None:
    """The copy's gitaly role joined by the git role (staging's front end)."""
    example = (ROOT / "fleet.toml").read_text()
    fc.file.write_text(fc.file.read_text() + "\n" +
                       example[example.index("[roles.git]"):example.index("[roles.sidekiq]")])


def place(front: str, key: str) -> dict[str, str]:
    """Ask the git front end (its TCP service) where a new repository goes."""
    with socket.create_connection((front, 2222), timeout=5) as conn:
        reader = conn.makefile("rb")
        reader.readline()   # its greeting
        conn.sendall(f"place {key}\n".encode())
        return dict(json.loads(reader.readline()))


class Placements(threading.Thread):
    """New repositories placed by the git front end in a loop, each with the move's step read
    just before and just after: (steps, storage or error)."""

    def __init__(self, lab: Any, fc: FleetCopy, front: str) -> None:
        super().__init__(daemon=True)
        self.lab, self.fc, self.front, self.stop = lab, fc, front, threading.Event()
        self.seen: list[tuple[str, str, str]] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            before = record(self.lab, self.fc).get("step", "")
            try:
                said = place(self.front, f"group/new-{n:05}.git")
                where = said.get("storage") or said.get("error", "")
            except OSError as exc:
                where = f"error {exc}"
            self.seen.append((before, record(self.lab, self.fc).get("step", ""), where))
            time.sleep(0.05)


def test_a_gitaly_pet_moves_without_losing_a_byte(lab: Any, fleet_copy: FleetCopy,
                                                  tmp_path: Path) -> None:
    fc, name = fleet_copy, fleet_copy.name
    keep_gitaly(fc)
    with_git_front_end(fc)
    fc.file.write_text(fc.file.read_text() + MOVE)
    source, target = f"{name}-gitaly-stg-01", f"{name}-gitaly-stg-02"
    timings: dict[str, float] = {}
    started = time.monotonic()
    applied = fc.run("apply", "staging", "--yes")
    assert applied.code == 0, applied.stderr[-800:]
    seeded = on_pet(source, "fleet-gitaly", "seed", "6", "--commits", "3")
    assert seeded.returncode == 0, seeded.stderr
    baked = fc.run("bake", "git", "--version", "v1")
    assert baked.code == 0, f"the git front end baked: {baked.stderr[-800:]}"
    promoted = fc.run("promote", "v1", "--to", "staging", "--role", "git", "--force",
                      "--reason", "the move test's front end")
    assert promoted.code == 0, f"the git front end on staging: {promoted.stderr[-800:]}"
    [front_node] = [c for c in containers() if c.startswith(f"{name}-git-")]
    front = address_of(front_node)
    assert eventually(lambda: place(front, "group/first.git").get("storage", ""),
                      f"{address_of(source)}:8075") == f"{address_of(source)}:8075", \
        "the front end places new repositories on the one storage"
    timings["bake + apply + seed + git front end"] = time.monotonic() - started

    # --dry-run: the plan, nothing recorded; bad input: one line each
    dry = fc.run("move", "gitaly-stg-01", "--to", "gitaly-stg-02", "--dry-run")
    assert dry.code == 0 and "bytes to copy" in dry.stderr, dry.stderr
    assert record(lab, fc) == {}, "a dry run records no move"
    for args, said in ((("gitaly-stg-01", "--to", "gitaly-01"), "a pet moves within its"),
                       (("nosuch", "--to", "x-01"), "not a pet instance"),
                       (("gitaly-stg-01", "--finish"), "no move of gitaly-stg-01"),
                       (("gitaly-stg-01", "--to", "gitaly-stg-02", "--abort"), "takes no --to")):
        bad = fc.run("move", *args)
        assert bad.code != 0 and said in bad.stderr, (args, bad.stderr)
        assert "Traceback" not in bad.stderr

    # move 1: kill -9 as it plans, creates the target and copies; each rerun carries it on
    step = time.monotonic()
    kill_at(lab, fc, start(fc, "move", "gitaly-stg-01", "--to", "gitaly-stg-02"), "plan")
    busy = fc.run("move", "gitaly-stg-01", "--to", "gitaly-stg-03")
    assert busy.code == 1 and "already moving to gitaly-stg-02" in busy.stderr, busy.stderr
    kill_at(lab, fc, start(fc, "move", "gitaly-stg-01"), "create-target")
    kill_at(lab, fc, start(fc, "move", "gitaly-stg-01"), "copy")
    assert record(lab, fc)["step"] == "copy"
    # a byte corrupted on the target while the move is stopped before it verifies
    proc = start(fc, "move", "gitaly-stg-01")
    when_at(lab, fc, proc, "verify")
    proc.send_signal(signal.SIGSTOP)
    pack = on_pet(target, "sh", "-c", f"ls /var/opt/gitaly/repositories/{REPO}/objects/pack/"
                                      "*.pack | head -1").stdout.strip()
    assert pack, "the copy brought the repository's pack"
    flipped = on_pet(target, "python3", "-c",
                     f"f=open('{pack}','r+b'); f.seek(40); b=f.read(1); f.seek(40); "
                     "f.write(bytes([b[0] ^ 0xff]))")
    assert flipped.returncode == 0, flipped.stderr
    proc.send_signal(signal.SIGCONT)
    code, _, err = finished(proc)
    assert code == 1 and "verify found" in err and REPO in err, err
    assert "stays read-only and intact" in err, err
    failed = record(lab, fc)
    assert (failed["step"], failed["halted_at"]) == ("failed", "verify"), failed
    pushed = git("clone", "-q", f"git://{address_of(source)}:8075/{REPO}", str(tmp_path / "w"))
    assert pushed.returncode == 0, pushed.stderr
    commit(tmp_path / "w", "while read-only")
    refused = git("push", "-q", "origin", "HEAD", cwd=tmp_path / "w")
    assert refused.returncode != 0 and "is read-only" in refused.stderr, refused.stderr
    # the rerun copies again and verifies; then the target fails mid cut-over
    proc = start(fc, "move", "gitaly-stg-01")
    when_at(lab, fc, proc, "cut-over")
    # its service down for good, inside the test's own target: the tool gone, and its git
    # daemon (the one process of that command name there) stopped by its pid
    broken = on_pet(target, "sh", "-c", "mv /usr/local/sbin/fleet-gitaly /root/ && "
                                        "kill $(ps -o pid= -C git-daemon)")
    assert broken.returncode == 0, broken.stderr
    code, _, err = finished(proc)
    assert code == 1 and "failed its health check" in err and "back on" in err, err
    on_pet(target, "mv", "/root/fleet-gitaly", "/usr/local/sbin/fleet-gitaly")
    tags = {i["Node"]["Node"]: i["Service"]["Tags"] for i in instances(fc)}
    assert "weight:0" not in tags.get(source, ["weight:0"]), f"the source serves: {tags}"
    # --abort: writes back on the source, the target and its volume gone
    aborted = fc.run("move", "gitaly-stg-01", "--abort")
    assert aborted.code == 0, aborted.stderr
    assert record(lab, fc)["step"] == "aborted"
    assert not eventually(lambda: target in containers(), False), "the target is destroyed"
    assert f"{target}-data" not in volumes(), "and its volume with it"
    accepted = git("push", "-q", "origin", "HEAD", cwd=tmp_path / "w")
    assert accepted.returncode == 0, f"the source takes writes again: {accepted.stderr}"
    timings["move 1: kills, corrupt byte, failing target, abort"] = time.monotonic() - step
    target = f"{name}-gitaly-stg-03"

    # move 2, with clones running throughout: not one fails; killed with -9 as it makes the
    # source read-only, verifies, cuts over and finishes, each rerun carrying it on
    step = time.monotonic()
    before = sums(source)
    at = {address_of(source) + ":8075": "source"}   # the source's, gone with it at --finish
    clones, placements = Clones(fc), Placements(lab, fc, front)
    clones.start()
    placements.start()
    try:
        kill_at(lab, fc, start(fc, "move", "gitaly-stg-01", "--to", "gitaly-stg-03"),
                "read-only")
        readers = on_pet(front_node, "cat", "/etc/fleet/upstreams.json").stdout
        assert json.loads(readers)["gitaly"] == [f"{address_of(source)}:8075"], \
            f"the held-back target reaches no reader: {readers}"
        kill_at(lab, fc, start(fc, "move", "gitaly-stg-01"), "verify")
        kill_at(lab, fc, start(fc, "move", "gitaly-stg-01"), "cut-over")
        moved = fc.run("move", "gitaly-stg-01")
        assert moved.code == 0, moved.stderr[-1500:]
        assert "--finish" in moved.stdout, moved.stdout
        commit(tmp_path / "w", "during the move")
        refused = git("push", "-q", "origin", "HEAD", cwd=tmp_path / "w")
        assert refused.returncode != 0 and "is read-only" in refused.stderr, \
            f"no write lands before --finish: {refused.stderr}"
        kill_at(lab, fc, start(fc, "move", "gitaly-stg-01", "--finish"), "finishing")
        done = fc.run("move", "gitaly-stg-01", "--finish")
        assert done.code == 0, done.stderr[-1500:]
        time.sleep(2)
    finally:
        clones.stop.set()
        placements.stop.set()
        clones.join(timeout=60)
        placements.join(timeout=60)
    assert clones.failures == [], clones.failures[:5]
    assert clones.served.get(target, 0) > 0 and sum(clones.served.values()) >= 20, clones.served
    at[address_of(target) + ":8075"] = "target"
    held_back = [at.get(w, w) for b, a, w in placements.seen if b in BEFORE_CUTOVER
                 and a in BEFORE_CUTOVER and b != "plan"]
    assert held_back and set(held_back) == {"source"}, \
        f"new work never on a held-back target: {held_back}"
    during = {at.get(w, w) for b, a, w in placements.seen if "cut-over" in (b, a)}
    assert "target" in during, f"new work reaches the target during the cut-over: {during}"
    def placed() -> set[str]:
        return {at.get(w, w) for w in (place(front, f"group/after-{i}.git").get("storage", "")
                                       for i in range(50))}
    assert eventually(placed, {"target"}) == {"target"}, \
        f"once moved, every new repository goes to the target: {placed()}"
    timings["move 2 + finish"] = time.monotonic() - step
    after = sums(target)
    assert after["repositories"] == before["repositories"], "every ref moved"
    assert after["fsck"] == {}, after["fsck"]
    assert source not in containers() and f"{source}-data" in volumes()
    commit(tmp_path / "w", "after the move")
    git("remote", "set-url", "origin", f"git://{address_of(target)}:8075/{REPO}",
        cwd=tmp_path / "w")
    landed = git("push", "-q", "origin", "HEAD", cwd=tmp_path / "w")
    assert landed.returncode == 0, f"the target takes writes: {landed.stderr}"

    # the plan keeps the new instance; the history tells both moves; --purge
    planned = fc.run("plan", "staging", "--json")
    assert planned.code == 0, planned.stderr
    touched = [i for i in json.loads(planned.stdout)["items"]
               if i["target"] in ("gitaly-stg-01", "gitaly-stg-03")]
    assert not [i for i in touched if i["action"] in ("create", "destroy", "replace")], touched
    said = [i["detail"] for i in touched if i["action"] == "moved"]
    assert said and "gitaly-stg-03" in said[0], f"the plan says where the pet went: {touched}"
    status = fc.run("move", "--status", "--json")
    assert [m["step"] for m in json.loads(status.stdout)] == ["finished"]
    history = fc.run("history", "--json")
    steps = [(e["step"], e["outcome"]) for e in json.loads(history.stdout)
             if e["event"] == "move"]
    for seen in (("plan", "resumed"), ("create-target", "resumed"), ("copy", "resumed"),
                 ("verify", "failed"), ("cut-over", "failed"), ("aborting", "done"),
                 ("read-only", "resumed"), ("verify", "resumed"), ("cut-over", "resumed"),
                 ("cut-over", "done"),
                 ("finishing", "resumed"), ("finishing", "done")):
        assert seen in steps, f"{seen} in the history: {steps}"
    purged = fc.run("move", "gitaly-stg-01", "--purge")
    assert purged.code == 0 and f"{source}-data" not in volumes(), purged.stderr
    print(timings, clones.served)
    for e in record(lab, fc)["history"]:
        print(e["at"][11:19], e["step"], e["outcome"], e["detail"][:60])


def address_of(container: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}"
                           "{{.IPAddress}}{{end}}", container], capture_output=True, text=True,
                          check=True).stdout.strip()


def containers() -> list[str]:
    return subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                          text=True, check=True).stdout.split()


def volumes() -> list[str]:
    return subprocess.run(["docker", "volume", "ls", "--format", "{{.Name}}"],
                          capture_output=True, text=True, check=True).stdout.split()
