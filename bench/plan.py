"""Plan benchmark, in one run: `fleet plan` of a fleet of 10,000 nodes against the raw Consul
HTTP reads that plan needs.

A throwaway fleet of 50 cattle roles x 3 environments, 10,000 nodes in all, is set up in the
lab's Consul by bench/synthetic.py (and removed afterwards). Then, measured:

- the raw reads: one HTTP GET each of the KV trees plan reads (catalog, channels, desired,
  Terraform states) and of /v1/health/state/any filtered on the fleet's tag, bodies read and
  decoded as JSON;
- `fleet plan` in process (the workflow: reads, digests, diff), best of 5;
- `fleet plan --json` as a command (interpreter start-up included), best of 3.

Targets (issue 19): at 10,000 nodes the command within 250 ms and the in-process plan within
1.2x the raw reads (no request per node); at 100,000 nodes the command within 2 s.

Needs the lab up; run under the lab lock. Usage:
  flock /tmp/fleet-lab.lock .venv/bin/python bench/plan.py [NODES] [ROLES]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import Figure, below, emit, timed_ms
from synthetic import ROOT, Pool, Synthetic, synthetic_fleet

from fleet.workflows import plan as workflow


def raw_reads(pool: Pool, name: str) -> float:
    """The reads fleet plan makes, straight over HTTP, bodies decoded."""
    prefix = f"fleet/{name}"
    started = time.perf_counter()
    for tree in ("catalog", "channels", "desired", "terraform/machines"):
        try:
            json.loads(pool.request("GET", f"/v1/kv/{prefix}/{tree}/?recurse=true"))
        except RuntimeError as exc:  # 404: an empty tree
            assert "404" in str(exc)
    expr = quote(f'"fleet:{name}" in ServiceTags')
    json.loads(pool.request("GET", f"/v1/health/state/any?filter={expr}"))
    return time.perf_counter() - started


def measure(s: Synthetic) -> list[Figure]:
    raw = min(raw_reads(s.pool, s.name) for _ in range(5))
    inproc = []
    for _ in range(5):
        t = time.perf_counter()
        reading = workflow.plan(s.ctx)
        inproc.append(time.perf_counter() - t)
    assert reading.plan.items == (), list(reading.plan.items)[:3]
    argv = [str(ROOT / ".venv/bin/fleet"), "-f", str(s.ctx.file), "plan", "--json",
            "--detailed-exitcode"]
    command = min(timed_ms(argv, 3, s.environ)) / 1000
    best = min(inproc)
    print(f"nodes                  {s.nodes} in {s.roles} roles x 3 envs")
    print(f"raw Consul reads       {raw * 1000:7.1f} ms (5 requests, bodies decoded)")
    print(f"fleet plan in process  {best * 1000:7.1f} ms (best of 5)   ratio {best / raw:.2f}x")
    print(f"fleet plan command     {command * 1000:7.1f} ms (best of 3)")
    at = f"{s.nodes:,} nodes"
    limit = 250 if s.nodes <= 10_000 else 2000
    return [below(f"plan --json command, {at}", command * 1000, "ms", limit,
                  f"<= {limit} ms", "best of 3"),
            below(f"plan in process / raw reads, {at}", best / raw, "x", 1.2, "<= 1.2x",
                  f"{best * 1000:.0f} ms / {raw * 1000:.0f} ms, best of 5 each")]


def main() -> None:
    nodes = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    roles = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    with synthetic_fleet(nodes, roles) as s:
        figures = measure(s)
    emit(figures)


if __name__ == "__main__":
    main()
