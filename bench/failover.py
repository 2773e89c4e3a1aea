"""How long fleet stalls when Consul's leader dies, against how long Consul takes to elect a
new one (issue 18's target: a stall under the election time plus 2 s).

    bench/failover.py [--fleet FILE] [--rounds 3]

On a lab of three Consul servers (`[targets.lab] servers = 3`): --fleet names a fleet.toml
whose lab is up; without it, a copy of the example fleet with servers = 3 is made in a
temporary directory (its own addresses 127.0.4.1-3, its own network), its lab brought up, and
wiped at the end (`fleet lab reset`). Each round, in the same run:

- **baseline**: a loop of fleet's own check-and-set writes and reads (what a promotion
  records its steps with), through fleet's Consul client, for 2 s: its median operation;
  and a whole command (`fleet history canary --limit 5`), timed;
- **the leader killed** (`fleet lab kill consul-N`, SIGKILL) while the loop runs and, at once,
  the same command again;
- **election**: from the kill until a surviving server names a new leader (polled every 20 ms);
- **stall**: the longest gap between two operations of the loop completing, across the kill;
  and the command's time after the kill less its time before;
- then the server is started again (`fleet lab start`) and the next round kills the new leader.

Every figure is printed with the target and ok / OVER TARGET. Operations that failed outright
are counted (a failover that works fails none).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet.adapters.consul import Consul  # noqa: E402  (after the path is set)
from fleet.errors import FleetError  # noqa: E402
from fleet.services import topology  # noqa: E402
from fleet.services.context import Context, load  # noqa: E402

FLEET = [sys.executable, "-m", "fleet"]
SLACK = 2.0  # seconds over the election time the target allows


def run(file: Path, *args: str, check: bool = True) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run([*FLEET, "-f", str(file), *args], capture_output=True, text=True,
                          cwd=ROOT, env={k: v for k, v in os.environ.items()
                                         if not k.startswith(("CONSUL_", "VAULT_"))})
    if check and proc.returncode != 0:
        raise SystemExit(f"`fleet {' '.join(args)}` failed: {proc.stderr.strip()[-400:]}")
    return time.monotonic() - started, proc.stderr


def make_cluster(tmp: Path) -> Path:
    """A copy of the example fleet on a three-server lab of its own."""
    for part in ("packer", "cookbooks", "terraform"):
        shutil.copytree(ROOT / part, tmp / part)
    text = (ROOT / "fleet.toml").read_text()
    for old, new in (('name = "gitlab"', f'name = "bench{uuid.uuid4().hex[:6]}"'),
                     ("http://127.0.0.1:8500", "http://127.0.4.1:8500"),
                     ("http://127.0.0.1:8200", "http://127.0.4.1:8200"),
                     ('network = "fleet-lab"', 'network = "fleet-bench-ha"'),
                     ('subnet = "172.30.7.0/24"', 'subnet = "172.30.11.0/24"\nservers = 3')):
        assert old in text, old
        text = text.replace(old, new, 1)
    (tmp / "fleet.toml").write_text(text)
    return tmp / "fleet.toml"


def leader(ctx: Context, skip: str = "") -> str:
    """The name (consul-N) of the server that leads, as any live server other than skip says;
    '' while none does."""
    servers = topology.consul_servers(ctx)
    raft = {f"{s.gateway}:{s.port(8300)}": s.name for s in servers}
    for server in servers:
        if server.name == skip:
            continue
        try:
            said = Consul(server.http, timeout=1).leader()
        except FleetError:
            continue
        if said and raft.get(said, "") != skip:
            return raft.get(said, "")
    return ""


class Loop:
    """fleet's check-and-set writes and reads, one after another, in a thread: when each
    completed, and how many failed."""

    def __init__(self, ctx: Context) -> None:
        self.consul = ctx.consul()
        self.key = f"{ctx.fleet.kv_prefix}/bench/failover"
        self.done: list[tuple[float, float]] = []  # (started, ended) of each operation
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                entry = self.consul.get(self.key)
                self.consul.put(self.key, str(started), cas=entry.modify_index if entry else 0)
            except FleetError as exc:
                self.failed.append(exc.line())
                continue
            self.done.append((started, time.monotonic()))

    def __enter__(self) -> Loop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def median(self) -> float:
        return statistics.median(end - start for start, end in self.done)

    def stall(self, since: float) -> float:
        """The longest wait for an operation to complete, from `since` on."""
        ends = [since, *sorted(end for _, end in self.done if end > since)]
        return max(b - a for a, b in itertools.pairwise(ends)) if len(ends) > 1 else 0.0


def one_round(file: Path, ctx: Context) -> dict[str, float]:
    with Loop(ctx) as base:
        time.sleep(2)
    before, _ = run(file, "history", "canary", "--limit", "5")
    killed = leader(ctx)
    assert killed, "no leader to kill"
    with Loop(ctx) as loop:
        time.sleep(1)
        run(file, "lab", "kill", killed)
        killed_at = time.monotonic()
        elected = 0.0
        timed: list[float] = []
        command = threading.Thread(target=lambda: timed.append(
            run(file, "history", "canary", "--limit", "5")[0]))
        command.start()
        while not elected and time.monotonic() - killed_at < 30:
            if leader(ctx, skip=killed):
                elected = time.monotonic() - killed_at
            time.sleep(0.02)
        command.join()
        time.sleep(3)
    run(file, "lab", "start", killed)
    for line in loop.failed:
        print(f"  failed while {killed} was down: {line}", flush=True)
    return {"election": elected, "stall": loop.stall(killed_at), "median": base.median(),
            "command": timed[0] - before, "failed": float(len(loop.failed)),
            "killed": float(killed.rsplit("-", 1)[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fleet", type=Path, help="a fleet.toml whose 3-server lab is up")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fleet-failover-"))
    file = args.fleet or make_cluster(tmp)
    try:
        if args.fleet is None:
            took, _ = run(file, "lab", "up")
            print(f"a three-server lab of its own, up in {took:.1f} s", file=sys.stderr)
        ctx = load(file)
        if len(ctx.consul_addrs) < 3:
            raise SystemExit(f"{file} runs {len(ctx.consul_addrs)} Consul server(s): "
                             "set [targets.lab] servers = 3")
        rounds = [one_round(file, ctx) for _ in range(args.rounds)]
    finally:
        if args.fleet is None:
            run(file, "lab", "reset", "--yes", check=False)
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'round':>5} {'killed':>8} {'election':>9} {'loop stall':>11} {'command +':>10} "
          f"{'target':>7} {'failed ops':>10}  verdict")
    for i, r in enumerate(rounds, 1):
        stall = max(r["stall"], r["command"])
        target = r["election"] + SLACK
        print(f"{i:>5} consul-{int(r['killed']):<1} {r['election']:>8.2f}s {r['stall']:>10.2f}s "
              f"{r['command']:>9.2f}s {target:>6.2f}s {int(r['failed']):>10}  "
              f"{'ok' if stall <= target and not r['failed'] else 'OVER TARGET'}")
    median = statistics.median(r["median"] for r in rounds) * 1000
    print(f"baseline: one check-and-set write and read {median:.1f} ms (median); "
          f"target: stall <= election + {SLACK:.0f} s")


if __name__ == "__main__":
    main()
