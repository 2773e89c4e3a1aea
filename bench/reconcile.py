"""Reconcile benchmark: one pass of `fleet reconcile` at 10,000 nodes against `fleet plan` on
the same data (issue 17's target: within 1.2x).

The synthetic fleet of bench/synthetic.py (ROLES cattle roles x 3 environments, NODES nodes
registered in the lab's Consul, no container) is set up once; then, in process, best of 5
each, alternating: the plan workflow, and one reconcile pass (the plan, the expired
environments, the rollout locks, the reconciler's memory read and written, the policy), as
the active reconciler with nothing to heal.

Needs the lab up; run under the lab lock. Usage:
  flock /tmp/fleet-lab.lock .venv/bin/python bench/reconcile.py [NODES] [ROLES]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import Figure, below, emit
from synthetic import Synthetic, synthetic_fleet

from fleet.workflows import plan as workflow
from fleet.workflows.reconcile import Settings, reconcile


def measure(s: Synthetic) -> list[Figure]:
    plans, passes = [], []
    for _ in range(5):
        t = time.perf_counter()
        reading = workflow.plan(s.ctx)
        plans.append(time.perf_counter() - t)
        t = time.perf_counter()
        report = reconcile(s.ctx, Settings(), mode="active", say=lambda _: None)
        passes.append(time.perf_counter() - t)
    assert reading.plan.items == () and not report.findings, report.findings[:3]
    plan, one = min(plans), min(passes)
    print(f"nodes                   {s.nodes} in {s.roles} roles x 3 envs")
    print(f"fleet plan in process   {plan * 1000:7.1f} ms (best of 5)")
    print(f"one reconcile pass      {one * 1000:7.1f} ms (best of 5)   ratio {one / plan:.2f}x")
    return [below(f"reconcile pass / plan, {s.nodes:,} nodes", one / plan, "x", 1.2, "<= 1.2x",
                  f"{one * 1000:.0f} ms / {plan * 1000:.0f} ms, best of 5 each")]


if __name__ == "__main__":
    with synthetic_fleet(*(int(a) for a in sys.argv[1:3])) as fleet:  # 10,000 nodes, 50 roles
        emit(measure(fleet))
