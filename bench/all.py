"""Every figure of issue 19 (performance), each with its target and ok / OVER TARGET, in one
table:

- `fleet --help` start-up over bare Python (bench/startup.py);
- `fleet status` and `fleet history --limit 50` at 10,000 registered nodes over bare Python,
  run side by side (bench/reads.py), and `fleet plan --json` at 10,000 nodes as a command and
  in process against the raw reads (bench/plan.py), on one synthetic fleet (bench/synthetic.py);
- a cached re-bake as a command over bare Python, and the four cattle roles baked together
  with --parallel 2 against their serial sum (bench/bake.py);
- the rollout of N=20 nodes in batches of 5 against its lower bound (bench/rollout.py 20 5), and
  the same with --max-surge 10 (the option: two batches booting at once):
  on an empty lab, or, when the example fleet is deployed, with it deployed;
- `fleet plan --json` at 100,000 nodes (bench/plan.py 100000), last (see main()).

Each script also runs alone and prints its own detail. This one needs the lab up and the lab
lock for its whole run (it registers nodes in Consul, bakes and rolls):

  flock /tmp/fleet-lab.lock .venv/bin/python bench/all.py [--quick] [--skip NAME,...]

--quick: fewer repeats, no 100,000-node plan; --skip: any of startup, reads, plan100k, bake,
rollout. A part that fails or is skipped is listed as not measured, with why.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from figures import Figure, as_installed, parse, table  # noqa: E402

ROLLOUT_TIMEOUT = 1200  # seconds: a rollout that does not finish is said, not waited for


def script(name: str, *args: str, timeout: float = 1800) -> tuple[list[Figure], str]:
    """Run bench/NAME.py; its figures and the whole of its stdout ('' figures: it failed)."""
    started = time.monotonic()
    print(f"--- bench/{name}.py {' '.join(args)}", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *args],
                              capture_output=True, text=True, timeout=timeout,
                              env=as_installed())
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout:.0f} s"
    print(proc.stdout, file=sys.stderr, end="")
    print(f"    ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    if proc.returncode != 0:
        return [], f"failed: {(proc.stderr.strip().splitlines() or ['?'])[-1][:160]}"
    return parse(proc.stdout), proc.stdout


def missing(names: list[str], target: str, why: str) -> list[Figure]:
    return [Figure(name, None, "", target, None, why) for name in names]


def startup(quick: bool) -> list[Figure]:
    found, said = script("startup", "10" if quick else "30")
    return found or missing(["fleet --help start-up, over bare Python"], "<= 150 ms", said)


def reads(quick: bool) -> list[Figure]:
    """status, history and plan at 10,000 nodes, on one synthetic fleet."""
    import plan
    import reads as read_bench
    from synthetic import synthetic_fleet

    names = ["status, 10,000 nodes, over bare Python",
             "history --limit 50, 10,000 nodes, over bare Python",
             "plan --json command, 10,000 nodes", "plan in process / raw reads, 10,000 nodes"]
    print("--- status, history and plan at 10,000 nodes", file=sys.stderr, flush=True)
    try:
        with synthetic_fleet(10_000, 50, read_bench.EVENTS) as s:
            return (read_bench.measure(s, 5 if quick else read_bench.RUNS)
                    + plan.measure(s, 5 if quick else plan.PAIRS))
    except Exception as exc:  # one part failing leaves the others' figures
        return missing(names, "", f"failed: {type(exc).__name__}: {exc}"[:160])


def plan_100k() -> list[Figure]:
    found, said = script("plan", "100000")
    return [f for f in found if "command" in f.name] or missing(
        ["plan --json command, 100,000 nodes"], "<= 2000 ms", said)


def bake(quick: bool) -> list[Figure]:
    found, said = script("bake", "1" if quick else "3")
    return found or (missing(["cached re-bake command, over bare Python"], "<= 150 ms", said)
                     + missing(["bake web api git sidekiq --parallel 2 vs serial sum"],
                               ">= 1.6x", said))


def example_deployed() -> bool:
    """Whether the example fleet (fleet.toml beside bench/) has nodes in the lab's Consul."""
    sys.path.insert(0, str(HERE.parent))
    from fleet.errors import FleetError
    from fleet.services.context import load

    try:
        ctx = load(HERE.parent / "fleet.toml")
        return bool(ctx.consul().nodes_by_tags(f"fleet:{ctx.fleet.name}").by_tags)
    except FleetError:
        return False


def rollout() -> list[Figure]:
    """bench/rollout.py 20 5 as it is, and with --max-surge 10 (two batches booting at once);
    their ratios go to the rows of the lab they ran on."""
    rows = {False: ("rollout N=20 B=5 / bound, empty lab", 1.3),
            True: ("rollout N=20 B=5 / bound, example fleet deployed", 1.6)}
    deployed = example_deployed()
    (name, limit), (other, other_limit) = rows[deployed], rows[not deployed]
    not_here = missing([other], f"<= {other_limit}x",
                       "the example fleet is " + ("deployed" if deployed else "not deployed"))
    figures = []
    for row, options in ((name, ()), (f"{name}, --max-surge 10 (option)", ("--max-surge", "10"))):
        _, said = script("rollout", "20", "5", *options, timeout=ROLLOUT_TIMEOUT)
        result = next((json.loads(line) for line in said.splitlines() if line.startswith("{")),
                      None)
        if not result or not result.get("passed"):
            why = said if result is None else (f"{result['passed']} of {result['runs']} "
                                               "rollouts passed")
            figures += missing([row], f"<= {limit}x", why.strip().splitlines()[-1][:160])
            continue
        seconds = statistics.median(result["rollouts"])
        ratio = seconds / result["bound"]
        cores = os.cpu_count() or 1
        cpu = (f"; host CPU {result['cpu_busy'] / seconds / cores:.0%} busy, every core busy "
               f"{result['cpu_busy'] / cores / result['bound']:.2f}x" if result.get("cpu_busy")
               else "")
        if result.get("cpu_outside"):  # what Docker, the kernel and Consul spent of it
            cpu += (f", of which Docker, kernel, Consul "
                    f"{result['cpu_outside'] / cores / result['bound']:.2f}x")
        figures.append(Figure(row, round(ratio, 3), "x", f"<= {limit}x", ratio <= limit,
                              f"{seconds:.1f} s / bound {result['bound']:.1f} s{cpu}"))
    return [*figures, *not_here]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no 100k plan")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out")
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.quick:
        skip.add("plan100k")
    # the 100,000-node plan last: the lab's Consul server keeps ~3 GB and ~10 % of a core
    # busy for a while after it (measured), which the bakes and rollouts measured after it paid
    parts = {"startup": lambda: startup(args.quick), "reads": lambda: reads(args.quick),
             "bake": lambda: bake(args.quick), "rollout": rollout, "plan100k": plan_100k}
    unknown = skip - set(parts)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}: choose from "
                     f"{', '.join(parts)}")
    figures: list[Figure] = []
    for name, run in parts.items():
        if name in skip:
            figures.append(Figure(f"({name})", None, "", "", None, "skipped"))
            continue
        figures += run()
    print(table(figures))
    over = [f.name for f in figures if f.ok is False]
    print(f"ok {sum(f.ok is True for f in figures)}, OVER TARGET {len(over)}, not measured "
          f"{sum(f.ok is None for f in figures)}" + (f": over: {'; '.join(over)}" if over else ""))


if __name__ == "__main__":
    main()
