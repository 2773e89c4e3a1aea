"""Read commands at scale: `fleet status` and `fleet history --limit 50` of a fleet of 10,000
registered nodes, each against bare `python -c pass` run side by side with it (one run of
each in turn, both commands in each round, RUNS rounds, 9 by default; medians).

The fleet (50 cattle roles x 3 environments, and 2,000 rollout-step events in its history)
is set up in the lab's Consul by bench/synthetic.py and removed afterwards. The commands are
the console script with the output a user gets (--json, so the terminal's width plays no
part), interpreter start-up and imports included.

What this fleet does not have: the synthetic nodes are registered through the catalog API,
without a serfHealth (the leader reaps a node that has one but is no member of its gossip
pool, within a minute). `fleet status` reads all their 10,000 checks, but counts them as
no members: the read of a real fleet of 10,000 members is twice the size (their serfHealths:
6 MB where this is 3 MB) and each is tallied. Measured by hand on a private Consul 1.8 with
serfHealths added for the minute they last: `fleet status --json` 236 ms where it is 162 ms
without them (medians of 8 and 12, same machine), so ~75 ms more than this bench shows.

Target (issue 19): each within 150 ms of bare Python.

Needs the lab up; run under the lab lock. Usage:
  flock /tmp/fleet-lab.lock .venv/bin/python bench/reads.py [NODES] [RUNS]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import Figure, below, emit, timed_ms
from synthetic import ROOT, Synthetic, synthetic_fleet

EVENTS = 2_000
RUNS = 9  # of each command, each beside a run of bare Python
COMMANDS = {"status": ["status", "--json"], "history --limit 50": ["history", "--limit", "50",
                                                                    "--json"]}


def measure(s: Synthetic, runs: int = RUNS) -> list[Figure]:
    """Both commands in turn in each round, each beside a run of bare Python, after three
    untimed runs of each: the command measured first no longer takes alone what Consul does
    after 10,000 registrations (measured one after the other, status first, it read 169 ms
    over bare where a private Consul's quiet runs gave ~140, and history 76)."""
    print("(the synthetic nodes have no serfHealth: status reads their checks but counts "
          "none as a member; a fleet of members reads twice as much, see bench/reads.py)")
    argvs = {name: [str(ROOT / ".venv/bin/fleet"), "-f", str(s.ctx.file), *args]
             for name, args in COMMANDS.items()}
    for argv in argvs.values():
        timed_ms(argv, 2, s.environ)  # untimed: .pyc files written, Consul settled
    commands: dict[str, list[float]] = {name: [] for name in argvs}
    bares: dict[str, list[float]] = {name: [] for name in argvs}
    for _ in range(runs):
        for name, argv in argvs.items():
            bares[name] += timed_ms([sys.executable, "-c", "pass"], 1, s.environ, warm=False)
            commands[name] += timed_ms(argv, 1, s.environ, warm=False)
    figures = []
    for name in argvs:
        command, bare = statistics.median(commands[name]), statistics.median(bares[name])
        print(f"fleet {name:<20} median {command:7.1f} ms   bare python {bare:6.1f} ms   "
              f"over bare {command - bare:6.1f} ms   ({min(commands[name]):.0f} - "
              f"{max(commands[name]):.0f} ms)")
        figures.append(below(f"{name}, {s.nodes:,} nodes, over bare Python", command - bare,
                             "ms", 150, "<= 150 ms", f"{command:.0f} - {bare:.0f} ms, median of "
                             f"{runs} rounds, both commands side by side with bare Python"))
    return figures


def main() -> None:
    nodes = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else RUNS
    with synthetic_fleet(nodes, 50, EVENTS) as s:
        figures = measure(s, runs)
    emit(figures)


if __name__ == "__main__":
    main()
