"""Plan benchmark, in one run: `fleet plan` of a fleet of 10,000 nodes against the raw Consul
HTTP reads that plan needs.

A throwaway fleet of 50 cattle roles x 3 environments, 10,000 nodes in all, is set up in the
lab's Consul by bench/synthetic.py (and removed afterwards). Then, measured:

- the raw reads: one HTTP GET each of the KV trees plan reads (catalog, channels, desired,
  Terraform states) and of /v1/health/state/any filtered on the fleet's tag, bodies read and
  decoded as JSON;
- `fleet plan` in process (the workflow: reads, digests, diff), each run right after a run of
  the raw reads: the ratio is the median of the 9 pairs' ratios;
- `fleet plan --json` as a command (interpreter start-up included), median of 5.

Targets (issue 19): at 10,000 nodes the command within 250 ms and the in-process plan within
1.2x the raw reads (no request per node); at 100,000 nodes the command within 2 s.

Needs the lab up; run under the lab lock. Usage:
  flock /tmp/fleet-lab.lock .venv/bin/python bench/plan.py [NODES] [ROLES]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import Figure, below, emit, timed_ms
from synthetic import ROOT, Pool, Synthetic, synthetic_fleet

from fleet.workflows import plan as workflow

PAIRS = 9      # in-process plan and raw reads, one after the other
COMMANDS = 5   # `fleet plan --json` as a command, after one warm-up run


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


def measure(s: Synthetic, runs: int = PAIRS) -> list[Figure]:
    """The in-process plan and the raw reads one after the other, `runs` times: the ratio is
    the median of the pairs' ratios, each pair seeing the same load of a shared machine (the
    best of each, taken minutes apart, moved 1.08x - 1.23x from one run to the next)."""
    raw_reads(s.pool, s.name)  # warm: the connection, Consul's caches
    raws, inproc, ratios = [], [], []
    for _ in range(runs):
        raws.append(raw_reads(s.pool, s.name))
        t = time.perf_counter()
        reading = workflow.plan(s.ctx)
        inproc.append(time.perf_counter() - t)
        ratios.append(inproc[-1] / raws[-1])
    assert reading.plan.items == (), list(reading.plan.items)[:3]
    argv = [str(ROOT / ".venv/bin/fleet"), "-f", str(s.ctx.file), "plan", "--json",
            "--detailed-exitcode"]
    commands = timed_ms(argv, COMMANDS, s.environ)
    command = statistics.median(commands) / 1000
    raw, planned, ratio = (statistics.median(x) for x in (raws, inproc, ratios))
    print(f"nodes                  {s.nodes} in {s.roles} roles x 3 envs")
    print(f"raw Consul reads       {raw * 1000:7.1f} ms (5 requests, bodies decoded; median of "
          f"{runs})")
    print(f"fleet plan in process  {planned * 1000:7.1f} ms (median of {runs})   ratio {ratio:.2f}x "
          f"(median of {runs} side by side, {min(ratios):.2f} - {max(ratios):.2f})")
    print(f"fleet plan command     {command * 1000:7.1f} ms (median of {COMMANDS}, "
          f"{min(commands):.0f} - {max(commands):.0f})")
    at = f"{s.nodes:,} nodes"
    limit = 250 if s.nodes <= 10_000 else 2000
    return [below(f"plan --json command, {at}", command * 1000, "ms", limit,
                  f"<= {limit} ms", f"median of {COMMANDS}"),
            below(f"plan in process / raw reads, {at}", ratio, "x", 1.2, "<= 1.2x",
                  f"{planned * 1000:.0f} ms / {raw * 1000:.0f} ms, median of {runs} side by side "
                  f"({min(ratios):.2f} - {max(ratios):.2f})")]


def main() -> None:
    nodes = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    roles = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    with synthetic_fleet(nodes, roles) as s:
        figures = measure(s)
    emit(figures)


if __name__ == "__main__":
    main()
