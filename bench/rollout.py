"""Rollout benchmark, in one run, on a throwaway copy of the example fleet (own KV prefix):

Rolls N lab nodes of web from v1 to v2 in batches of B through the real promotion (Terraform
applies, Consul gates) and compares its wall time with the lower bound
ceil(N/B) x (one node's boot-to-passing time), where boot-to-passing is measured in the same
run, from the container's start (docker's State.StartedAt) to the first Consul answer that
has every check of the node passing, on single nodes booted alone (the median of seven).

Target: the rollout within 1.3x of the lower bound, for N = 20, B = 5.

It also prints the host's CPU-seconds spent during the rollout (/proc/stat: every process,
the lab's servers and other nodes included) and the time they take with every core busy: a
floor that no rollout doing the same work reaches on this host, whatever it overlaps.
Of those, it prints what the parts fleet does not write spent: Docker (dockerd, containerd,
the shims, and with process accounting, as root, dockerd's re-execs and runc), the kernel's
threads and Consul (servers and agents): by itself a floor under any rollout of these nodes here.

--max-surge M rolls with fleet promote --max-surge M (2 x B: the next batch boots while the one
before is gated; the bound is the same).

--crowd K boots K more nodes of the same image first (in production), as the example fleet
and a review environment stand beside a rollout, and --repeats R rolls R times (v1 -> v2 ->
v1 ...); it then also prints how many rollouts passed, the most nodes alive at once, and the
flaps: nodes Consul's gossip marked failed while they ran (a node that was never destroyed).

Needs the lab up (`fleet lab up`).
Usage: .venv/bin/python bench/rollout.py [N] [B] [--crowd K] [--repeats R] [--max-surge M]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
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

from figures import example_copy, remove_copy  # noqa: E402  (bench/ is the script's dir)
from node_cpu import Accounting, outside, outside_spent  # noqa: E402
from node_cpu import busy as busy_seconds  # noqa: E402  (the host's busy CPU-s so far)

from fleet.adapters import docker  # noqa: E402  (after the path is set)
from fleet.errors import FleetError  # noqa: E402
from fleet.model.nodes import group  # noqa: E402
from fleet.services import cattle, topology  # noqa: E402
from fleet.services.catalog import Catalog  # noqa: E402
from fleet.services.context import Context, load, token_environ  # noqa: E402
from fleet.workflows import bake, promote  # noqa: E402

BOOTS = 7  # single boots measured for the bound (their median)


class Watcher:
    """Notes, in a thread, when each node of web is first seen passing: a blocking query on
    web's health answers as soon as it changes (a poll every 50 ms asked Consul ~20 times a
    second through the rollout it measured, which cost the host ~1 CPU-s of it)."""

    def __init__(self, ctx: Context, env: str) -> None:
        self.ctx, self.env = ctx, env
        self.first_passing: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        client = self.ctx.consul(timeout=15)
        index = 0
        while not self._stop.is_set():
            found, instances = client.instances_index("web", f"fleet:{self.ctx.fleet.name}",
                                                      index, "1s")  # 1 s: stop is heard
            now = time.time()
            for node in cattle.health_of(instances, self.env, "web").passing:
                self.first_passing.setdefault(node, now)
            index = found if found >= index else 0
            if not index:
                time.sleep(0.05)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Members:
    """Polls Consul's members in a thread: the most lab nodes alive at once (every fleet's, the
    example fleet's beside the benchmark's included; not the server), and the flaps: nodes seen
    failed (status 4) that docker still runs (not destroyed, not draining)."""

    def __init__(self, lab: Context) -> None:
        from fleet.adapters.consul import Consul

        self.consul = Consul(lab.consul_addr, topology.management_token(lab).reveal())
        self.most_alive = 0
        self.flapped: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                members = self.consul.members()
            except FleetError:
                time.sleep(0.5)
                continue
            nodes = {n: s for n, s in members.items() if n != topology.SERVER_NODE}
            self.most_alive = max(self.most_alive, sum(1 for s in nodes.values() if s == 1))
            failed = {n for n, s in nodes.items() if s == 4}
            if failed:
                running = set(docker.lab_containers())
                self.flapped |= {n for n in failed if n in running}
            time.sleep(0.5)

    def __enter__(self) -> Members:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def single_boots(ctx: Context, image: str, repeats: int) -> list[float]:
    """Boot one node alone (in staging), repeatedly: container start -> every check passing."""
    web = ctx.fleet.roles["web"]
    samples = []
    for i in range(repeats):
        (node,) = group(ctx.fleet.name, web, "staging", f"boot{i}", image, 1, 100)
        with Watcher(ctx, "staging") as watch:
            cattle.apply(ctx, "staging", [node])
            while node.name not in watch.first_passing:
                time.sleep(0.05)
        times = docker.times(node.name)
        assert times is not None, f"{node.name} is gone"
        samples.append(watch.first_passing[node.name] - times[1])
        cattle.apply(ctx, "staging", [])
    return samples


def diagnose(ctx: Context) -> None:
    """Why canary's nodes that do not pass do not: their checks in Consul and their logs."""
    health = cattle.health(ctx, ["web"], "canary", "web")
    running = [n for n in docker.lab_containers() if n.startswith(f"{ctx.fleet.name}-web-canary-")]
    stuck = [n for n in running if n not in health.passing][:3]
    for node in stuck:
        checks = ctx.consul().node_checks(node)
        print(f"--- {node}: checks {[(c.name, c.status.value, c.output[:80]) for c in checks]}")
        logs = subprocess.run(["docker", "exec", node, "sh", "-c", "tail -8 /var/log/consul.log; "
                               "tail -3 /var/log/fleet-node.log; ls -l /run/fleet/consul"],
                              capture_output=True, text=True)
        print(logs.stdout + logs.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=20, help="nodes rolled")
    parser.add_argument("b", type=int, nargs="?", default=5, help="batch size")
    parser.add_argument("--crowd", type=int, default=0, help="other nodes running meanwhile")
    parser.add_argument("--repeats", type=int, default=1, help="rollouts measured")
    parser.add_argument("--max-surge", type=int, default=None,
                        help="fleet promote --max-surge for the rollouts measured (default: the "
                             "environment's, one batch)")
    parser.add_argument("--steps", action="store_true",
                        help="print the rollouts' progress lines, timed, on stderr")
    args = parser.parse_args()
    n, b = args.n, args.b
    lab = load(ROOT / "fleet.toml")
    name = f"bench{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        text = example_copy(root, name)
        text = text.replace("count = { canary = 1, staging = 1, production = 2 }\n\n[roles.web.",
                            f"count = {{ canary = {n}, staging = 1, production = 2 }}\n\n"
                            "[roles.web.", 1)
        text = text.replace("batch_size = 1", f"batch_size = {b}", 1)  # canary's
        (root / "fleet.toml").write_text(text)
        ctx = load(root / "fleet.toml", {**os.environ, **token_environ(lab)})
        t0 = time.monotonic()

        def quiet(*line: str) -> None:  # progress lines are not the benchmark, unless asked
            if args.steps:
                print(f"{time.monotonic() - t0:7.1f}s", *line, file=sys.stderr, flush=True)

        rollouts: list[tuple[bool, float, int]] = []   # (passed, seconds, applies)
        under_load: list[float] = []
        busy: list[float] = []  # the host's CPU-seconds busy during each rollout measured
        theirs: list[collections.Counter[str]] = []  # of those, the parts fleet does not write
        try:
            for version in ("v1", "v2"):  # v2: the same image under a new version, new nodes
                report = bake.bake(ctx, ["web"], version=version, say=quiet)
                if not report.ok:
                    sys.exit(f"bench: bake failed: {report.results[0].detail}")
            image = Catalog(ctx.consul(), ctx.fleet.kv_prefix).get("web", "v1")
            assert image is not None
            # seven, not three: Consul runs a new check first after a random pause of up to
            # its interval, so one boot alone ranges over ~1-3.4 s and a median of three moved
            # the bound by 2x between runs of the same code
            boots = single_boots(ctx, image.record.artifact, BOOTS)
            with Members(lab) as members:
                if args.crowd:
                    crowd = group(name, ctx.fleet.roles["web"], "production", "crowd",
                                  image.record.artifact, args.crowd, 100)
                    cattle.apply(ctx, "production", crowd)
                try:
                    first = promote.promote(ctx, "v1", "canary", ["web"], say=quiet)
                except FleetError as exc:
                    print(f"the first rollout failed: {exc.line()}")
                    diagnose(ctx)
                    raise
                current = "v1"
                for i in range(args.repeats):
                    version = "v2" if current == "v1" else "v1"  # a failed rollout rolled back
                    acct = root / "acct" if os.geteuid() == 0 else None  # acct needs root
                    with Watcher(ctx, "canary") as watch, \
                            Accounting(acct) if acct else contextlib.nullcontext():
                        start, cpu, theirs0 = time.monotonic(), busy_seconds(), outside()
                        try:
                            rolled = promote.promote(ctx, version, "canary", ["web"], say=quiet,
                                                     max_surge=args.max_surge)
                            rollouts.append((True, time.monotonic() - start, rolled.steps))
                            busy.append(busy_seconds() - cpu)
                            theirs.append(outside_spent(theirs0, acct))
                            current = version
                        except FleetError as exc:
                            print(f"rollout {i + 1} failed: {exc.line()}")
                            diagnose(ctx)
                            rollouts.append((False, time.monotonic() - start, 0))
                    new_nodes = [x for x in watch.first_passing if f"-{version}-" in x]
                    began = {x: docker.times(x) for x in new_nodes}  # a node of an earlier run is gone
                    under_load += [watch.first_passing[x] - t[1] for x, t in began.items() if t]
        finally:
            remove_copy(ctx, lab, name)
    boot = statistics.median(boots)
    bound = math.ceil(n / b) * boot
    passed = [(s, k) for ok, s, k in rollouts if ok]
    print(f"nodes N={n}, batch B={b}, crowd {args.crowd}, max surge "
          f"{args.max_surge if args.max_surge is not None else b}; first rollout (empty -> v1) "
          f"{first.seconds:.1f} s")
    print(f"one node's boot-to-passing, alone        median {boot:6.2f} s  "
          f"(samples {', '.join(f'{s:.2f}' for s in boots)})")
    if under_load:
        print(f"boot-to-passing during the rollouts      median "
              f"{statistics.median(under_load):6.2f} s  (max {max(under_load):.2f}, "
              f"{len(under_load)} nodes)")
    print(f"lower bound ceil(N/B) x boot              {bound:6.2f} s")
    print(f"rollouts passed                           {len(passed)} of {len(rollouts)}")
    print(f"nodes alive at once (most)                {members.most_alive}")
    cores = os.cpu_count() or 1
    if busy:
        spent = statistics.median(busy)
        print(f"host CPU busy during the rollouts         "
              f"{spent / statistics.median(s for s, _ in passed) / cores:.0%}"
              f" of {cores} cores ({spent:.1f} CPU-s; {spent / n:.2f} per node replaced)")
        floor = spent / cores
        print(f"those CPU-s with every core busy          {floor:6.2f} s  = {floor / bound:.2f}x "
              f"the bound (no rollout spending them is faster on this host)")
        middle = sorted(range(len(busy)), key=busy.__getitem__)[len(busy) // 2]
        parts = theirs[middle] if theirs else collections.Counter()  # the median rollout's
        other = sum(parts.values()) / cores
        print(f"of those, Docker, the kernel and Consul   {other:6.2f} s  = {other / bound:.2f}x "
              f"the bound ({', '.join(f'{k} {v:.1f}' for k, v in parts.most_common())} CPU-s"
              f"{'' if os.geteuid() == 0 else '; without acct, not root: Docker short of its re-execs'})")
    print(f"flaps (running nodes marked failed)       {len(members.flapped)}"
          + (f": {', '.join(sorted(members.flapped)[:5])}" if members.flapped else ""))
    if passed:
        total = statistics.median(s for s, _ in passed)
        applies = passed[0][1]
        print(f"per apply (Terraform, docker run, boot, gate)   {total / applies:6.2f} s")
        print(f"rollout ({applies} applies), median            {total:6.2f} s  "
              f"= {total / bound:.2f}x the bound (target <= 1.3x): "
              f"{'ok' if total / bound <= 1.3 else 'OVER TARGET'}")
    print(json.dumps({"n": n, "b": b, "crowd": args.crowd, "max_surge": args.max_surge,
                      "boot": round(boot, 3),
                      "bound": round(bound, 3), "passed": len(passed), "runs": len(rollouts),
                      "most_alive": members.most_alive,
                      "cpu_busy": round(statistics.median(busy), 2) if busy else None,
                      "cpu_outside": round(sum(parts.values()), 2) if busy else None,
                      "flaps": len(members.flapped),
                      "rollouts": [round(s, 3) for _, s, _ in rollouts]}))


if __name__ == "__main__":
    main()
