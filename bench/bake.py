"""Bake benchmarks, in one run, on a throwaway copy of the example fleet (own catalog prefix):

1. a cached re-bake of web against a real Packer rebuild of the same role (--rebake), measured
   as the bake operation in this process (digest, catalog read, image check) and as whole
   `fleet bake` commands (which add the interpreter's start and imports, ~0.3 s);
   target: cached at least 20x faster;
2. the four cattle roles baked together (`fleet bake web api git sidekiq --parallel 2`) against
   the sum of their single bakes, in REPEATS rounds (singles, then together), the median
   round's ratio reported: one round's swings by +-0.15x on this 2-core lab.

Issue 19's targets, printed last as figures for bench/all.py: the cached re-bake as a command
within 150 ms of bare `python -c pass` (run side by side with it), and the roles baked
together at least 1.6x faster than the sum of their single bakes.

Needs the lab up (`fleet lab up`); run under the lab lock.
Usage: .venv/bin/python bench/bake.py [REPEATS]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from figures import as_installed, below, emit, side_by_side  # noqa: E402

from fleet.adapters import docker  # noqa: E402  (after the path is set)
from fleet.services.context import Context, load, token_environ  # noqa: E402
from fleet.workflows import bake  # noqa: E402


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def in_process(ctx: Context, roles: list[str], **options: object) -> None:
    report = bake.bake(ctx, roles, say=lambda role, message: None, **options)  # type: ignore[arg-type]
    if not report.ok:
        sys.exit(f"bench: bake failed: {[r.detail for r in report.results if r.detail]}")


def bake_argv(file: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "fleet", "-f", str(file), "bake", *args, "--json"]


def command(file: Path, env: dict[str, str], *args: str) -> None:
    proc = subprocess.run(bake_argv(file, *args), capture_output=True, text=True, cwd=ROOT,
                          env=as_installed(env))
    if proc.returncode != 0:
        sys.exit(f"bench: fleet bake {' '.join(args)} failed: {proc.stderr.strip()[-300:]}")


def report(name: str, samples: list[float]) -> float:
    median = statistics.median(samples)
    print(f"{name:<44} median {median:7.3f} s  (min {min(samples):.3f}, max {max(samples):.3f})")
    return median


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    lab = load(ROOT / "fleet.toml")
    env = {**os.environ, **token_environ(lab)}
    name = f"bench{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for part in ("packer", "cookbooks"):
            shutil.copytree(ROOT / part, root / part)
        text = (ROOT / "fleet.toml").read_text().replace('name = "gitlab"', f'name = "{name}"', 1)
        (root / "fleet.toml").write_text(text)
        ctx = load(root / "fleet.toml", env)
        try:
            in_process(ctx, ["web"], version="b0")
            rebuild = [timed(lambda i=i: in_process(ctx, ["web"], version=f"r{i}", rebake=True))
                       for i in range(repeats)]
            cached = [timed(lambda: in_process(ctx, ["web"], version="b0"))
                      for _ in range(repeats)]
            rebuild_cmd = [timed(lambda i=i: command(root / "fleet.toml", env, "web", "--rebake",
                                                     "--version", f"c{i}"))
                           for i in range(repeats)]
            cached_cmd = [timed(lambda: command(root / "fleet.toml", env, "web", "--version", "b0"))
                          for _ in range(repeats)]
            over_bare = side_by_side(bake_argv(root / "fleet.toml", "web", "--version", "b0"),
                                     max(repeats, 5), env, str(ROOT))
            roles = ["web", "api", "git", "sidekiq"]
            rounds = []  # (sum of the single bakes, the four together), in turn
            for i in range(repeats):
                singles = [timed(lambda r=r, v=f"s{i}": in_process(ctx, [r], version=v,
                                                                    rebake=True))
                           for r in roles]
                rounds.append((sum(singles), timed(lambda v=f"a{i}": in_process(
                    ctx, roles, version=v, rebake=True, parallel=2))))
        finally:
            for role in ctx.fleet.roles:
                for tag, _ in docker.images(f"fleet-{name}-{role}"):
                    docker.remove_image(f"fleet-{name}-{role}:{tag}")
            lab.consul().delete_tree(f"fleet/{name}/")
    print(f"repeats: {repeats}")
    r, c = report("real rebuild of web (bake operation)", rebuild), report(
        "cached re-bake of web (bake operation)", cached)
    print(f"  cached is {r / c:.0f}x faster (target >= 20x): {'ok' if r / c >= 20 else 'UNDER TARGET'}")
    r, c = report("real rebuild of web (`fleet bake` command)", rebuild_cmd), report(
        "cached re-bake of web (`fleet bake` command)", cached_cmd)
    print(f"  cached is {r / c:.0f}x faster end to end, interpreter start included")
    for serial, together in rounds:
        print(f"single bakes of {', '.join(roles):<28} sum    {serial:7.3f} s; "
              f"together, --parallel 2 {together:7.3f} s ({serial / together:.2f}x)")
    ranked = sorted(rounds, key=lambda r: r[0] / r[1])
    serial, together = ranked[len(ranked) // 2]  # the median round (the upper one of two)
    ratios = [serial_ / together_ for serial_, together_ in ranked]
    cmd_ms, bare_ms = over_bare
    print(f"cached re-bake command {cmd_ms:.0f} ms, bare python {bare_ms:.0f} ms (side by side)")
    emit([below("cached re-bake command, over bare Python", cmd_ms - bare_ms, "ms", 150,
                "<= 150 ms", f"{cmd_ms:.0f} - {bare_ms:.0f} ms, median of {max(repeats, 5)} "
                "side by side"),
          below(f"bake {' '.join(roles)} --parallel 2 vs serial sum", serial / together,
                "x", 1.6, ">= 1.6x", f"{serial:.1f} s / {together:.1f} s, the median of "
                f"{len(rounds)} rounds ({ratios[0]:.2f}-{ratios[-1]:.2f}x)", at_least=True)])


if __name__ == "__main__":
    main()
