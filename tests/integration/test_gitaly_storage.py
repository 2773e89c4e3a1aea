"""The example's gitaly pet holds real git repositories and serves them, in the lab: a copy of the
example fleet cut down to its gitaly role is applied (the image baked, staging's gitaly-stg-01
made on its volume), seeded with three repositories by its own fleet-gitaly, and used from
this machine over git:// as the git role would: clones, pushes, the read-only switch (a push
refused with its reason and nothing changed on the pet, reads going on, the switch kept across
a `docker restart`), the checksums a move verifies, `fleet snapshot` of its volume, and fsck
naming a corrupted repository."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FleetCopy, eventually

pytestmark = pytest.mark.lab

DATA = "/var/opt/gitaly"
IDENTITY = ["-c", "user.name=Tester", "-c", "user.email=tester@example.invalid"]
REFUSED = "is read-only: its storage is being moved; reads go on, push again after the move"


def keep_gitaly(copy: FleetCopy) -> None:
    """The copy's fleet.toml with the gitaly role alone."""
    text = copy.file.read_text()
    text = text[:text.index("# ---- cattle")] + text[text.index("[roles.gitaly]"):
                                                      text.index("[roles.postgres]")]
    copy.file.write_text(text)


def on_pet(pet: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", pet, *argv], capture_output=True, text=True,
                          timeout=120)


def sums(pet: str) -> dict[str, Any]:
    done = on_pet(pet, "fleet-gitaly", "checksums")
    assert done.returncode == 0, f"fleet-gitaly checksums: {done.stderr}"
    return dict(json.loads(done.stdout))


def tree(pet: str) -> str:
    """Every file of the pet's storage with its size and modification time."""
    return on_pet(pet, "sh", "-c", f"cd {DATA} && find . -type f -printf '%p %s %T@\\n' "
                                   "| sort").stdout


def git(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *IDENTITY, *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def commit(clone: Path, text: str) -> None:
    (clone / "notes.txt").write_text(text)
    assert git("add", "notes.txt", cwd=clone).returncode == 0
    assert git("commit", "-q", "-m", text, cwd=clone).returncode == 0


def test_gitaly_pet_stores_serves_and_goes_read_only(lab: Any, fleet_copy: FleetCopy,
                                                     tmp_path: Path) -> None:
    assert shutil.which("git"), "the test clones with this machine's git (scripts/setup.sh)"
    fc, name = fleet_copy, fleet_copy.name
    keep_gitaly(fc)
    pet = f"{name}-gitaly-stg-01"
    timings: dict[str, float] = {}

    started = time.monotonic()
    applied = fc.run("apply", "staging", "--yes")
    assert applied.code == 0, f"gitaly baked and staging's pet made: {applied.stderr[-800:]}"
    timings["bake gitaly + apply 1 pet"] = time.monotonic() - started

    step = time.monotonic()
    address = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}"
                              "{{.IPAddress}}{{end}}", pet], capture_output=True, text=True,
                             check=True).stdout.strip()
    url = f"git://{address}:8075"

    def passing() -> bool:
        return any(i.node == pet and i.passing
                   for i in lab.consul().instances("gitaly", f"fleet:{name}"))

    assert eventually(passing, True, timeout=60), "git daemon passes gitaly's tcp check in Consul"
    mounts = on_pet(pet, "sh", "-c", f"grep ' {DATA} ' /proc/mounts").stdout
    assert mounts, f"{DATA} is the pet's volume"
    daemon = on_pet(pet, "ps", "-o", "user=,args=", "-C", "git").stdout
    assert "git daemon" in daemon and all(line.split()[0] == "git"
                                          for line in daemon.splitlines()), \
        f"git daemon serves, as the user git: {daemon}"

    seeded = on_pet(pet, "fleet-gitaly", "seed", "3", "--commits", "3", "--size", "200000")
    assert seeded.returncode == 0 and "seeded 3 repositories" in seeded.stdout, \
        f"three repositories seeded: {seeded.stdout}{seeded.stderr}"
    first = sums(pet)
    assert sorted(first["repositories"]) == [f"group/project-00{i}.git" for i in (1, 2, 3)] \
        and first["fsck"] == {}, f"three sound repositories: {first}"
    assert sums(pet) == first, "checksums are the same when nothing happened"
    timings["seed + checksums"] = time.monotonic() - step

    # served: a clone over git:// from this machine, a push accepted
    step = time.monotonic()
    clone = tmp_path / "clone"
    cloned = git("clone", "-q", f"{url}/group/project-001.git", str(clone))
    assert cloned.returncode == 0, f"clone over git://: {cloned.stderr}"
    log = git("log", "--format=%s", cwd=clone).stdout.splitlines()
    assert log == [f"Part {i} of group/project-001.git" for i in (3, 2, 1)], \
        f"the seeded history: {log}"
    commit(clone, "pushed while writable")
    pushed = git("push", "origin", "main", cwd=clone)
    assert pushed.returncode == 0, f"a push is accepted: {pushed.stderr}"
    second = sums(pet)
    assert second["repositories"]["group/project-001.git"] != \
        first["repositories"]["group/project-001.git"], "the push changed the refs' checksum"
    assert second["repositories"]["group/project-002.git"] == \
        first["repositories"]["group/project-002.git"], "other repositories did not change"

    # read-only: the push is refused with the reason and nothing changes on the pet
    on = on_pet(pet, "fleet-gitaly", "read-only", "on")
    assert on.returncode == 0 and on.stdout.startswith("on since"), f"switched: {on.stdout}"
    files = tree(pet)
    commit(clone, "pushed while read-only")
    refused = git("push", "origin", "main", cwd=clone)
    assert refused.returncode != 0, "a push to the read-only storage fails"
    assert f"{pet} {REFUSED}" in refused.stderr, f"the pusher is told why: {refused.stderr}"
    assert tree(pet) == files, "the refused push left no file on the pet"
    assert sums(pet) == second, "refs and files are as before the refused push"
    again = git("clone", "-q", f"{url}/group/project-002.git", str(tmp_path / "read"))
    assert again.returncode == 0, f"a clone still works: {again.stderr}"
    drained = on_pet(pet, "fleet-gitaly", "drain", "--timeout", "10")
    assert drained.returncode == 0, f"no push in flight: {drained.stderr}"
    timings["clone, push, read-only"] = time.monotonic() - step

    # the switch is on the volume: a rebooted pet comes back read-only
    step = time.monotonic()
    subprocess.run(["docker", "restart", "-t", "10", pet], check=True, capture_output=True)

    def serves() -> bool:
        return git("ls-remote", f"{url}/group/project-001.git").returncode == 0

    assert eventually(serves, True, timeout=60), "git daemon serves again after the restart"
    status = on_pet(pet, "fleet-gitaly", "read-only", "status").stdout
    assert status.startswith("on since"), f"still read-only after the restart: {status}"
    refused = git("push", "origin", "main", cwd=clone)
    assert refused.returncode != 0 and REFUSED in refused.stderr, \
        f"a push is still refused after the restart: {refused.stderr}"
    assert sums(pet) == second, "the restart changed no data"
    timings["restart"] = time.monotonic() - step

    # writable again: the push goes in
    off = on_pet(pet, "fleet-gitaly", "read-only", "off")
    assert off.stdout.startswith("off"), f"switched off: {off.stdout}{off.stderr}"
    accepted = git("push", "origin", "main", cwd=clone)
    assert accepted.returncode == 0, f"the push is accepted again: {accepted.stderr}"
    head = git("rev-parse", "HEAD", cwd=clone).stdout.strip()
    served = git("ls-remote", f"{url}/group/project-001.git", "refs/heads/main").stdout
    assert served.split() == [head, "refs/heads/main"], f"the pet has it: {served}"

    # `fleet snapshot` copies the storage as it does any pet's volume; the pet serves on
    step = time.monotonic()
    now = sums(pet)
    made = fc.run("snapshot", "create", "gitaly-stg-01", "--json")
    assert made.code == 0, f"snapshot of the gitaly pet: {made.stderr}"
    archive = fc.root / ".fleet" / "snapshots" / f"{made.json()['id']}.tar"
    with tarfile.open(archive) as held:
        names = set(held.getnames())
    assert {f"./repositories/group/project-00{i}.git/HEAD" for i in (1, 2, 3)} <= names, \
        f"the repositories are in the snapshot: {sorted(names)[:10]}"
    assert eventually(serves, True, timeout=30), "the pet serves again after its snapshot"
    assert sums(pet) == now, "the snapshot changed nothing on the pet"
    timings["snapshot"] = time.monotonic() - step

    # one corrupted byte in an object file: fsck names that repository, and only it
    corrupted = on_pet(pet, "python3", "-c", (
        "import glob; [p] = glob.glob('" + DATA + "/repositories/group/project-003.git/objects/"
        "pack/*.pack'); d = bytearray(open(p, 'rb').read()); d[len(d) // 2] ^= 0xFF; "
        "open(p, 'wb').write(d)"))
    assert corrupted.returncode == 0, corrupted.stderr
    broken = sums(pet)
    assert list(broken["fsck"]) == ["group/project-003.git"], \
        f"fsck names the corrupted repository: {broken['fsck']}"
    assert "checksum mismatch" in broken["fsck"]["group/project-003.git"] or \
        "error" in broken["fsck"]["group/project-003.git"], broken["fsck"]
    print("timings:", {k: round(v, 1) for k, v in timings.items()})
