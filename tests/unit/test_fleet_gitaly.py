"""fleet-gitaly (packer/scripts/lib/fleet-gitaly), the gitaly pet's storage tool, run here as
it runs on the node, against a storage in a temporary directory: real git, its real git daemon
on a loopback port, its pre-receive hook put in place the way install_gitaly puts it (a
symlink named pre-receive in core.hooksPath, from a system config of the test's own). The lab
test (tests/integration/test_gitaly_storage.py) does the same on the baked pet."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "packer" / "scripts" / "lib" / "fleet-gitaly"
IDENTITY = ["-c", "user.name=Tester", "-c", "user.email=tester@example.invalid"]


@dataclass(frozen=True)
class Storage:
    root: Path
    env: dict[str, str]
    url: str

    def tool(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(SCRIPT), *args], env=self.env,
                              capture_output=True, text=True, timeout=60)

    def git(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *IDENTITY, *args], env=self.env, cwd=cwd,
                              capture_output=True, text=True, timeout=60)

    def sums(self) -> dict[str, Any]:
        done = self.tool("checksums")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def tree(self) -> list[tuple[str, int]]:
        """Every file of the storage with its size: what a refused push must not change."""
        return sorted((str(p.relative_to(self.root)), p.stat().st_size)
                      for p in self.root.rglob("*") if p.is_file())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "pre-receive").symlink_to(SCRIPT)
    (tmp_path / "gitconfig").write_text(f"[core]\n\thooksPath = {hooks}\n")
    root = tmp_path / "gitaly"
    root.mkdir()
    env = {**os.environ, "FLEET_GITALY_ROOT": str(root), "FLEET_GITALY_USER": "",
           "GIT_CONFIG_SYSTEM": str(tmp_path / "gitconfig"), "GIT_CONFIG_GLOBAL": "/dev/null"}
    port = free_port()
    daemon = subprocess.Popen([sys.executable, str(SCRIPT), "serve", "--listen", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert daemon.poll() is None, f"serve stopped: {daemon.stderr.read()}"  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "git daemon never listened"
                time.sleep(0.05)
        yield Storage(root, env, f"git://127.0.0.1:{port}")
    finally:
        daemon.terminate()  # serve passes it on to git daemon
        assert daemon.wait(timeout=10) == 128 + 15, "serve stops with its git daemon"
    log = daemon.stderr.read()  # type: ignore[union-attr]
    assert "git daemon on 127.0.0.1" in log and "hung up" not in log, \
        f"the log says where it serves, not every hang-up of a TCP check: {log}"


def commit(storage: Storage, clone: Path, text: str) -> None:
    (clone / "notes.txt").write_text(text)
    assert storage.git("add", "notes.txt", cwd=clone).returncode == 0
    assert storage.git("commit", "-q", "-m", text, cwd=clone).returncode == 0


def test_storage_serves_refuses_pushes_while_read_only_and_verifies(
        storage: Storage, tmp_path: Path) -> None:
    seeded = storage.tool("seed", "2", "--commits", "3", "--size", "30000")
    assert seeded.returncode == 0 and "seeded 2 repositories (0 kept)" in seeded.stdout, \
        f"two repositories made: {seeded.stdout}{seeded.stderr}"
    again = storage.tool("seed", "3", "--commits", "3", "--size", "30000")
    assert "seeded 1 repositories (2 kept)" in again.stdout, f"idempotent: {again.stdout}"
    sums = storage.sums()
    assert sorted(sums["repositories"]) == [f"group/project-00{i}.git" for i in (1, 2, 3)], sums
    assert sums["fsck"] == {} and sums["files"] == {}, f"sound, no other file: {sums}"
    assert storage.sums() == sums, "checksums are the same when nothing changed"

    # the same name is the same repository anywhere: another storage seeds the same refs
    other = {**storage.env, "FLEET_GITALY_ROOT": str(tmp_path / "other")}
    (tmp_path / "other").mkdir()
    subprocess.run([sys.executable, str(SCRIPT), "seed", "1", "--commits", "3", "--size",
                    "30000"], env=other, check=True, capture_output=True)
    twin = json.loads(subprocess.run([sys.executable, str(SCRIPT), "checksums"], env=other,
                                     check=True, capture_output=True, text=True).stdout)
    assert twin["repositories"]["group/project-001.git"] == \
        sums["repositories"]["group/project-001.git"], "seeding is deterministic"

    # served: a clone has the seeded history; a push is accepted and changes the checksum
    clone = tmp_path / "clone"
    cloned = storage.git("clone", "-q", f"{storage.url}/group/project-001.git", str(clone))
    assert cloned.returncode == 0, f"clone over git://: {cloned.stderr}"
    log = storage.git("log", "--format=%s", cwd=clone).stdout.split("\n")
    assert log[:3] == ["Part 3 of group/project-001.git", "Part 2 of group/project-001.git",
                       "Part 1 of group/project-001.git"], f"the seeded commits: {log}"
    commit(storage, clone, "first push")
    pushed = storage.git("push", "origin", "main", cwd=clone)
    assert pushed.returncode == 0, f"a push is accepted: {pushed.stderr}"
    after = storage.sums()
    assert after["repositories"]["group/project-001.git"] != \
        sums["repositories"]["group/project-001.git"], "a push changes the refs' checksum"
    assert after["repositories"]["group/project-002.git"] == \
        sums["repositories"]["group/project-002.git"], "the other repositories' stay"

    # read-only: a push is refused with the reason and changes nothing; reads go on
    on = storage.tool("read-only", "on")
    assert on.returncode == 0 and on.stdout.startswith("on since "), on.stdout + on.stderr
    flag = json.loads((storage.root / "READ_ONLY").read_text())
    assert "being moved" in flag["reason"], f"the flag holds its reason: {flag}"
    assert storage.tool("read-only", "status").stdout == on.stdout, "status says the same"
    before, files = storage.sums(), storage.tree()
    assert before == after, "the flag is the service's switch, not data: not in the checksums"
    commit(storage, clone, "refused push")
    refused = storage.git("push", "origin", "main", cwd=clone)
    assert refused.returncode != 0, "a push to a read-only storage fails"
    assert (f"{socket.gethostname()} is read-only: its storage is being moved; reads go on, "
            "push again after the move") in refused.stderr, f"with the reason: {refused.stderr}"
    assert storage.tree() == files and storage.sums() == before, "the refused push left nothing"
    assert storage.git("clone", "-q", f"{storage.url}/group/project-002.git",
                       str(tmp_path / "read")).returncode == 0, "a clone still works"
    drained = storage.tool("drain", "--timeout", "5")
    assert drained.returncode == 0 and "no push in flight" in drained.stdout, drained.stderr

    # drain names a push still in flight (a stand-in process: argv "git receive-pack" in a repo)
    slow = storage.root / "repositories" / "group" / "project-002.git"
    (slow / "receive-pack").write_text("sleep 30\n")
    stuck = subprocess.Popen(["git", "receive-pack"], executable="/bin/sh", cwd=slow)
    try:
        late = storage.tool("drain", "--timeout", "0.5")
        assert late.returncode == 1, f"a push still running fails the drain: {late.stdout}"
        assert f"group/project-002.git (pid {stuck.pid}" in late.stderr and \
            late.stderr.count("\n") == 1, f"one line naming it: {late.stderr}"
    finally:
        stuck.kill()
        stuck.wait()
        (slow / "receive-pack").unlink()

    off = storage.tool("read-only", "off")
    assert off.stdout.startswith("off"), off.stdout
    accepted = storage.git("push", "origin", "main", cwd=clone)
    assert accepted.returncode == 0, f"writable again, the push goes in: {accepted.stderr}"

    # other files are checksummed; a corrupted object is named by fsck
    (storage.root / "marker").write_text("hello\n")
    packs = sorted((storage.root / "repositories/group/project-003.git/objects/pack").glob("*.pack"))
    data = bytearray(packs[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    packs[0].write_bytes(bytes(data))
    broken = storage.sums()
    hello = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"  # sha256 of it
    assert broken["files"] == {"marker": hello}, f"a file outside the repositories: {broken}"
    assert list(broken["fsck"]) == ["group/project-003.git"], f"fsck names it: {broken['fsck']}"
    assert broken["fsck"]["group/project-003.git"].startswith(("error", "fatal")), broken["fsck"]


def test_serve_refuses_without_the_hook_and_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "gitconfig").write_text("")
    env = {**os.environ, "FLEET_GITALY_ROOT": str(tmp_path / "gitaly"), "FLEET_GITALY_USER": "",
           "GIT_CONFIG_SYSTEM": str(tmp_path / "gitconfig"), "GIT_CONFIG_GLOBAL": "/dev/null"}

    def tool(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(SCRIPT), *args], env=env,
                              capture_output=True, text=True, timeout=30)

    served = tool("serve", "--listen", "127.0.0.1", "--port", str(free_port()))
    assert served.returncode == 1 and "read-only switch would not hold" in served.stderr, \
        served.stderr
    missing = tool("checksums")
    assert missing.returncode == 1 and missing.stderr == \
        f"fleet-gitaly: no storage at {tmp_path / 'gitaly'}\n", missing.stderr
    bad = tool("seed", "2", "--commits", "0")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr
    assert tool("read-only", "maybe").returncode == 2, "usage error"
