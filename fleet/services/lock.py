"""One rollout per environment at a time: a Consul session lock on <prefix>/locks/<env>.

The session has a TTL renewed by a thread while the holder works; a holder killed with -9
stops renewing, the session expires (TTL, lock delay 0) and the lock is free for the next
operator. A second promote waits for the lock (--wait) or fails naming the holder.

The lock's value says who holds it (`Holder`): user@host, pid, since, and, to tell a dead
holder from a live one, where that pid means a process (hostname, boot id and pid namespace)
with its start time, and the holder's session. A holder whose process is gone from this very
host (no such pid, a zombie, or the pid reused by a later process) is not waited out for the
TTL: its session is destroyed, which frees the lock at once, and the lock is taken over; the
command says so. Whatever fleet cannot judge still blocks until the TTL: a holder on another
host (or in another pid namespace, or from another boot), a live pid, a value written before
holders recorded all this. Taking over is no less safe than the TTL running out: the dead
holder renews nothing any more, and a Terraform apply it left running (one that outlives
fleet, see adapters/process.py) still holds Terraform's own state lock, which the next apply
waits for (`-lock-timeout`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from fleet.adapters.consul import Consul
from fleet.errors import FleetError
from fleet.services.context import who

TTL = 10  # seconds; Consul's minimum. The thread renews every TTL/3.


class LockHeld(FleetError):
    """Someone else is rolling this environment."""


def this_host() -> str:
    """Where a pid names one process: hostname, boot id and pid namespace ('' if /proc cannot
    tell, and then no holder is judged dead)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return f"{socket.gethostname()} {boot} {namespace}"


def _process(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks after boot) of a process of this host; None if there
    is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return fields[0], int(fields[19])  # proc(5): field 3 is the state, field 22 the start time


@dataclass(frozen=True)
class Holder:
    """Who holds an environment's lock, as the lock's value records it."""

    who: str
    pid: int
    since: str
    host: str = ""      # this_host() of the holder
    started: int = 0    # the holder process's start time (/proc/PID/stat)
    session: str = ""   # the Consul session that holds the lock

    @classmethod
    def me(cls, session: str) -> Holder:
        own = _process(os.getpid())
        return cls(who(), os.getpid(), datetime.now(UTC).isoformat(timespec="seconds"),
                   this_host(), own[1] if own else 0, session)

    @classmethod
    def read(cls, value: bytes) -> Holder | None:
        """The holder a lock value names; None if the value is not one (a released lock)."""
        try:
            data = json.loads(value)
            # holders written before this one record only who, pid and since: the rest is
            # left empty, so they are never judged dead
            return cls(str(data["who"]), int(data["pid"]), str(data["since"]),
                       str(data.get("host", "")), int(data.get("started", 0)),
                       str(data.get("session", "")))
        except (ValueError, KeyError, TypeError):
            return None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def gone(self) -> bool:
        """True only when the holder's process surely no longer runs: it ran on this host (same
        hostname, boot and pid namespace) and its pid is free, a zombie, or another process."""
        if not self.host or not self.started or not self.session or self.host != this_host():
            return False
        try:
            found = _process(self.pid)
        except (OSError, ValueError, IndexError):
            return False  # cannot tell: it may live
        return found is None or found[0] in ("Z", "X") or found[1] != self.started

    def line(self) -> str:
        return f"{self.who} (pid {self.pid}, since {self.since})"


@contextlib.contextmanager
def env_lock(consul: Consul, prefix: str, env: str, *, wait: bool, timeout: float = 3600,
             say: Callable[[str], None] | None = None) -> Iterator[Holder | None]:
    """Hold ENV's rollout lock; yields the dead holder it was taken over from, if any."""
    key = f"{prefix}/locks/{env}"
    session = consul.session(f"fleet rollout {env}", TTL)
    mine = Holder.me(session).to_json()
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(TTL / 3):
            with contextlib.suppress(FleetError):  # the next renewal tries again
                consul.renew(session)

    keeper = threading.Thread(target=renew, daemon=True)
    keeper.start()
    try:
        deadline = time.monotonic() + timeout
        ended: set[str] = set()
        taken: Holder | None = None
        released = 0
        while not consul.acquire(key, mine, session):
            entry = consul.get(key)
            held = Holder.read(entry.value) if entry and entry.value else None
            if held is None and released < 3:  # released between our two requests: again
                released += 1
                continue
            if held is not None and held.session not in ended and held.gone():
                ended.add(held.session)
                consul.end(held.session)  # behavior release, lock delay 0: free at once
                if say is not None:
                    say(f"{env}: the lock's holder {held.line()} is gone (no such process on "
                        "this host any more): taking the lock over")
                taken = held
                continue
            taken = None  # someone alive got it first
            if not wait or time.monotonic() > deadline:
                raise LockHeld(
                    f"{env} is being rolled by "
                    + (held.line() if held else "someone (the lock names no holder)"),
                    "wait for it, or pass --wait to queue behind it")
            time.sleep(0.5)
        yield taken
    finally:
        stop.set()
        try:
            consul.release(key, session)
            consul.end(session)
        except FleetError:
            pass  # the session's TTL frees the lock anyway
