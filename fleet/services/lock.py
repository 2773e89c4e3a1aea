"""One rollout per environment at a time: a Consul session lock on <prefix>/locks/<env>.

The session has a TTL renewed by a thread while the holder works; a holder killed with -9
stops renewing, the session expires (TTL, lock delay 0) and the lock is free for the next
operator. A second promote waits for the lock (--wait) or fails naming the holder.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from fleet.adapters.consul import Consul
from fleet.errors import FleetError
from fleet.services.context import who

TTL = 10  # seconds; Consul's minimum. The thread renews every TTL/3.


class LockHeld(FleetError):
    """Someone else is rolling this environment."""


def holder() -> dict[str, object]:
    return {"who": who(), "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds")}


@contextlib.contextmanager
def env_lock(consul: Consul, prefix: str, env: str, *, wait: bool,
             timeout: float = 3600) -> Iterator[None]:
    key = f"{prefix}/locks/{env}"
    session = consul.session(f"fleet rollout {env}", TTL)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(TTL / 3):
            with contextlib.suppress(FleetError):  # the next renewal tries again
                consul.renew(session)

    keeper = threading.Thread(target=renew, daemon=True)
    keeper.start()
    try:
        deadline = time.monotonic() + timeout
        while not consul.acquire(key, json.dumps(holder()), session):
            if not wait or time.monotonic() > deadline:
                entry = consul.get(key)
                who = json.loads(entry.value) if entry and entry.value else {}
                raise LockHeld(
                    f"{env} is being rolled by {who.get('who', 'someone')} "  # holder is free text
                    f"(pid {who.get('pid', '?')}, since {who.get('since', '?')})",
                    "wait for it, or pass --wait to queue behind it")
            time.sleep(0.5)
        yield
    finally:
        stop.set()
        try:
            consul.release(key, session)
            consul.end(session)
        except FleetError:
            pass  # the session's TTL frees the lock anyway
