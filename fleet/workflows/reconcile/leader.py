"""One active reconciler: a Consul session holding <prefix>/reconcile/leader.

Several reconcilers may run (on several machines); the one whose session holds the key acts,
the others are standbys that only campaign. The lock's value is a `Holder` (services/lock.py):
who, pid, host and session.

Timing, chosen so that a standby takes over within two intervals of the active one dying:
- the session's TTL is half the interval, at least Consul's floor of 10 s; a thread renews it
  every TTL/3. Consul invalidates a session at most 2 x TTL after its last renewal, which is
  the interval (for intervals of 20 s and more; 20 s below that);
- lock delay 0: a standby may take the key the moment the session goes. The active one is kept
  from acting after that on its own: it acts only while its last renewal is less than one
  TTL old (`safe`), and Consul never invalidates a session sooner than that;
- standbys watch the key with a blocking query (watch.py), so the release wakes them at once;
- a holder on this very host whose process is gone (killed with -9) is not waited out: its
  session is destroyed and the key taken at once, as the rollout lock does.
A reconciler stopped with SIGTERM (systemd's stop) releases the key: its standby takes over
at once.
"""

from __future__ import annotations

import contextlib
import threading
import time

from fleet.adapters.consul import Consul
from fleet.errors import FleetError
from fleet.services.lock import Holder

CONSUL_MIN_TTL = 10


def ttl_for(interval: float) -> int:
    """The session's TTL for an interval: half of it, within Consul's 10 s .. 24 h."""
    return int(min(max(interval / 2, CONSUL_MIN_TTL), 86400))


class Leadership:
    def __init__(self, consul: Consul, prefix: str, interval: float) -> None:
        self.consul = consul
        self.key = f"{prefix}/reconcile/leader"
        self.ttl = ttl_for(interval)
        self.session = ""
        self.leading = False
        self.renewed = 0.0      # time.monotonic() when the last renewal that succeeded was sent
        self.holder = ""        # who leads, as last seen
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            session = self.session
            if not session:
                continue
            sent = time.monotonic()
            try:
                if self.consul.renew(session):
                    self.renewed = sent
                else:
                    self.session, self.leading = "", False   # expired: campaign anew
            except FleetError:
                pass  # Consul is away: safe() turns False once the TTL has run

    def _new_session(self) -> None:
        sent = time.monotonic()
        self.session = self.consul.session("fleet reconcile", self.ttl)
        self.renewed = sent
        if self._keeper is None:
            self._keeper = threading.Thread(target=self._renew, daemon=True)
            self._keeper.start()

    def campaign(self) -> bool:
        """Whether this reconciler is the active one now, taking the key if it is free (or its
        holder's process is surely gone)."""
        if not self.session:
            self._new_session()
        entry = self.consul.get(self.key)
        if entry is not None and entry.session == self.session:
            self.leading = True
            self.holder = "this one"
            return True
        self.leading = self.consul.acquire(self.key, Holder.me(self.session).to_json(),
                                           self.session)
        if not self.leading:
            entry = self.consul.get(self.key)
            held = Holder.read(entry.value) if entry is not None and entry.session else None
            if held is not None and held.gone():
                self.consul.end(entry.session if entry else held.session)
                self.leading = self.consul.acquire(self.key, Holder.me(self.session).to_json(),
                                                   self.session)
            self.holder = held.line() if held is not None and not self.leading else ""
        if self.leading:
            self.holder = "this one"
        return self.leading

    def safe(self) -> bool:
        """Whether this reconciler may act now: it leads, and its session surely still holds
        the key (renewed less than one TTL ago)."""
        return self.leading and bool(self.session) and \
            time.monotonic() - self.renewed < self.ttl

    def resign(self) -> None:
        self._stop.set()
        if self.session:
            with contextlib.suppress(FleetError):  # else the TTL frees it
                if self.leading:
                    self.consul.release(self.key, self.session)
                self.consul.end(self.session)
        self.session, self.leading = "", False
