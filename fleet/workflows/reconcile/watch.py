"""`fleet reconcile --watch`: passes in a loop, one active reconciler among several.

A pass runs every interval (with +-10 % jitter, so that reconcilers started together drift
apart), and sooner when Consul says something changed: threads hold blocking queries on the
health of the fleet's nodes (only a change of a check's status wakes the loop, not a new
output) and on the fleet's KV where a pass's input lives (desired groups, channels, rollouts,
locks, ephemeral environments, and the leader key, whose release wakes a standby). A wake is
followed by a short random delay (coalescing a burst of changes), and passes are at least
MIN_GAP apart. A standby only campaigns; it computes no plan (no Terraform run fights the
active one's).
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fleet.adapters.consul import Consul
from fleet.errors import FleetError
from fleet.services.context import Context
from fleet.workflows.reconcile.leader import Leadership
from fleet.workflows.reconcile.metrics import Metrics
from fleet.workflows.reconcile.once import PassReport, Settings, identity, reconcile

WATCHED = ("desired/", "channels/", "rollouts/", "locks/", "environments/", "reconcile/leader")


class Log:
    """Structured lines on stderr: JSON lines (--json-logs) or `fleet reconcile: ...`."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.lock = threading.Lock()

    def __call__(self, event: str, message: str, **fields: Any) -> None:
        with self.lock:
            if self.as_json:
                line = json.dumps({"ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                                   "event": event, "msg": message, **fields}, default=str)
            else:
                line = f"fleet reconcile: {message}"
            print(line, file=sys.stderr, flush=True)

    def say(self, message: str) -> None:
        self("progress", message)


def _watch_kv(consul: Consul, key: str, wake: threading.Event, stop: threading.Event,
              wait: str) -> None:
    """Wake on a change under key: its entries, their indexes and lock sessions. (An empty
    prefix answers with the whole KV store's index, which any write moves: the entries, not
    the index, say whether what a pass reads changed.)"""
    index, seen = 0, None
    while not stop.is_set():
        try:
            found = consul.kv_index(key, index, wait)
            now = frozenset((e.key, e.modify_index, e.session) for e in consul.list(key))
        except FleetError:
            stop.wait(2)
            continue
        if seen is not None and now != seen:
            wake.set()
        index, seen = (found if found >= index else 0), now   # an index going back: again


def _watch_health(consul: Consul, tag: str, wake: threading.Event, stop: threading.Event,
                  wait: str) -> None:
    index, seen = 0, None
    while not stop.is_set():
        try:
            found, checks = consul.checks_index(tag, index, wait)
        except FleetError:
            stop.wait(2)
            continue
        if seen is not None and checks != seen:
            wake.set()
        index, seen = (found if found >= index else 0), checks


def watch(load: Callable[[], Context], settings: Settings, *, metrics_port: int, log: Log,
          stop: threading.Event, report: Callable[[PassReport], None]) -> None:
    """Passes until stop is set; each active pass's report goes to report(). load() gives the
    context afresh for each pass: fleet.toml and the ephemeral environments as they are now."""
    ctx = load()
    prefix = ctx.fleet.kv_prefix
    wait = f"{max(int(settings.interval), 1)}s"
    watcher = ctx.consul(timeout=settings.interval + 15)
    metrics = Metrics(ctx.fleet.name, metrics_port)
    leadership = Leadership(ctx.consul(), prefix, settings.interval)
    wake = threading.Event()
    threads = [threading.Thread(target=_watch_kv, args=(watcher, f"{prefix}/{k}", wake, stop,
                                                        wait), daemon=True) for k in WATCHED]
    threads.append(threading.Thread(target=_watch_health, daemon=True, args=(
        watcher, f"fleet:{ctx.fleet.name}", wake, stop, wait)))
    for t in threads:
        t.start()
    log("start", f"{identity()} watching {ctx.fleet.name} every {settings.interval:g}s"
        + (f", metrics on 127.0.0.1:{metrics_port}" if metrics_port else ""),
        fleet=ctx.fleet.name, interval=settings.interval, metrics_port=metrics_port,
        session_ttl=leadership.ttl)
    min_gap = min(settings.interval / 5, 5.0)
    leading: bool | None = None
    try:
        while not stop.is_set():
            began = time.monotonic()
            wake.clear()
            try:
                now_leading = leadership.campaign()
            except FleetError as exc:
                now_leading = False
                log("error", f"cannot campaign: {exc.line()}", error=exc.line())
            if now_leading != leading:
                metrics.leading(now_leading)
                log("leadership", "this reconciler is the active one" if now_leading else
                    f"standby: {leadership.holder or 'another reconciler'} is active",
                    leader=now_leading, holder=leadership.holder)
                leading = now_leading
            if now_leading:
                _one(load, settings, leadership, metrics, log, report)
            else:
                metrics.outcome("standby")
            if _rest(settings.interval * random.uniform(0.9, 1.1), wake, stop):
                stop.wait(random.uniform(0.2, 1.0))   # coalesce a burst of changes
                rest = min_gap - (time.monotonic() - began)
                if rest > 0:
                    stop.wait(rest)
    finally:
        stop.set()
        leadership.resign()
        metrics.close()
        log("stop", f"{identity()} stopped", fleet=ctx.fleet.name)


def _rest(seconds: float, wake: threading.Event, stop: threading.Event) -> bool:
    """Wait SECONDS, or less when woken (True) or stopped."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        if wake.wait(min(0.5, max(deadline - time.monotonic(), 0))):
            return not stop.is_set()
    return False


def _one(load: Callable[[], Context], settings: Settings, leadership: Leadership,
         metrics: Metrics, log: Log, report: Callable[[PassReport], None]) -> None:
    try:
        done = reconcile(load(), settings, mode="active", say=log.say, safe=leadership.safe)
    except FleetError as exc:
        metrics.outcome("unread")
        log("pass-failed", exc.line(), error=exc.line())
        return
    metrics.passed(done)
    for d in done.done:
        log("heal", f"{d.env}: {d.target} {d.action}: {d.outcome} ({d.detail})", env=d.env,
            role=d.role, target=d.target, action=d.action, outcome=d.outcome, detail=d.detail)
    log("pass", f"pass in {done.seconds}s: {len(done.findings)} finding(s), "
        f"{sum(1 for d in done.done if d.outcome == 'healed')} healed",
        seconds=done.seconds, findings=len(done.findings),
        healed=sum(1 for d in done.done if d.outcome == "healed"))
    report(done)
