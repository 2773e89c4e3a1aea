"""fleet reconcile: keep the fleet as declared, continuously. One pass (`once`) reads the plan
and acts by policy (fleet/model/reconcile.py); `--watch` (`watch`) runs passes in a loop as
one of several reconcilers of which exactly one acts (`leader`), with Prometheus metrics
(`metrics`); a pet's files changed by hand are found and converged back by `files`.

Composes: plan (the plan it reads), apply (a cattle node replaced as apply repairs one),
remote (a pet converged in place), environments (expired ephemeral environments destroyed)."""

from fleet.workflows.reconcile.once import (
    PassReport,
    Settings,
    Unread,
    identity,
    reconcile,
    single,
)
from fleet.workflows.reconcile.watch import Log, watch

__all__ = ["Log", "PassReport", "Settings", "Unread", "identity", "reconcile", "single", "watch"]
