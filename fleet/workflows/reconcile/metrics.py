"""The reconciler's Prometheus metrics, served on 127.0.0.1 (prometheus-client).

    fleet_reconcile_drift{fleet,env,class}            what the last pass found differing
    fleet_reconcile_heals_total{fleet,env,action,outcome}   healed | failed | skipped
    fleet_reconcile_passes_total{fleet,outcome}        ok | failed | unread | standby
    fleet_reconcile_pass_seconds{fleet}                a pass's duration (histogram)
    fleet_reconcile_last_success_timestamp_seconds{fleet}   when a pass last read and acted
    fleet_reconcile_leader{fleet}                      1 while this reconciler is the active one
"""

from __future__ import annotations

from typing import Any

from fleet.errors import FleetError
from fleet.model.reconcile import drift
from fleet.workflows.reconcile.once import PassReport


class Metrics:
    def __init__(self, fleet: str, port: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.fleet = fleet
        self.registry = CollectorRegistry()
        r = self.registry
        self.drift = Gauge("fleet_reconcile_drift", "Findings of the last pass",
                           ["fleet", "env", "class"], registry=r)
        self.heals = Counter("fleet_reconcile_heals", "Heals carried out or tried",
                             ["fleet", "env", "action", "outcome"], registry=r)
        self.passes = Counter("fleet_reconcile_passes", "Passes by outcome", ["fleet", "outcome"],
                              registry=r)
        self.seconds = Histogram("fleet_reconcile_pass_seconds", "A pass's duration", ["fleet"],
                                 registry=r, buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600))
        self.last = Gauge("fleet_reconcile_last_success_timestamp_seconds",
                          "When a pass last succeeded (Unix time)", ["fleet"], registry=r)
        self.leader = Gauge("fleet_reconcile_leader", "1 while this reconciler is the active one",
                            ["fleet"], registry=r)
        self.leader.labels(fleet).set(0)
        self.server: Any = None
        if port:
            from prometheus_client import start_http_server

            try:
                self.server, _ = start_http_server(port, addr="127.0.0.1", registry=r)
            except OSError as exc:
                raise FleetError(f"cannot serve metrics on 127.0.0.1:{port}: {exc.strerror}",
                                 "pick another --metrics-port (0: none)") from exc

    def leading(self, yes: bool) -> None:
        self.leader.labels(self.fleet).set(1 if yes else 0)

    def passed(self, report: PassReport) -> None:
        import time

        self.passes.labels(self.fleet, "failed" if report.error() else "ok").inc()
        self.seconds.labels(self.fleet).observe(report.seconds)
        self.drift.clear()
        for (env, cls), n in drift(report.findings).items():
            self.drift.labels(self.fleet, env, cls).set(n)
        for d in report.done:
            self.heals.labels(self.fleet, d.env, d.action, d.outcome).inc()
        if report.error() is None:
            self.last.labels(self.fleet).set(time.time())

    def outcome(self, outcome: str) -> None:
        self.passes.labels(self.fleet, outcome).inc()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
