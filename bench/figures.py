"""One benchmark figure with its target, and the table bench/all.py prints.

A bench script's main() prints its own lines and, last, `figures: [...]` (JSON, one object
per figure), which bench/all.py reads back when it runs the script as a command.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PREFIX = "figures: "


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | None     # None: not measured (see note)
    unit: str               # "ms", "s", "x"
    target: str             # as the issue words it, e.g. "<= 150 ms over bare Python"
    ok: bool | None         # None: not measured
    note: str = ""          # how it was measured, or why it was not

    @property
    def verdict(self) -> str:
        return "not measured" if self.ok is None else "ok" if self.ok else "OVER TARGET"


def below(name: str, value: float, unit: str, limit: float, target: str, note: str = "",
          at_least: bool = False) -> Figure:
    """A figure whose target is `value <= limit` (or >= with at_least)."""
    ok = value >= limit if at_least else value <= limit
    return Figure(name, round(value, 3), unit, target, ok, note)


def emit(figures: list[Figure]) -> None:
    """The last line of a bench script's output: its figures for bench/all.py."""
    print(PREFIX + json.dumps([asdict(f) for f in figures]), flush=True)


def parse(output: str) -> list[Figure]:
    for line in reversed(output.splitlines()):
        if line.startswith(PREFIX):
            return [Figure(**f) for f in json.loads(line[len(PREFIX):])]
    return []


def as_installed(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a command is timed in: env (default os.environ) without
    PYTHONDONTWRITEBYTECODE, so that the interpreter loads compiled modules as it does from an
    installed package (with it, every module edited since its last .pyc is compiled at each
    start, ~30 ms in a checkout being worked on)."""
    return {k: v for k, v in (os.environ if env is None else env).items()
            if k != "PYTHONDONTWRITEBYTECODE"}


def timed_ms(argv: list[str], runs: int, env: Mapping[str, str] | None = None,
             cwd: str | None = None, warm: bool = True) -> list[float]:
    """Wall times of `runs` runs of a command (with warm, after one unmeasured run, which
    writes the .pyc files), in ms; a failed run stops the benchmark."""
    env = as_installed(env)
    samples = []
    for i in range(runs + 1 if warm else runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd)
        if i or not warm:
            samples.append((time.perf_counter() - start) * 1000)
        if proc.returncode not in (0, 2):  # 2: plan --detailed-exitcode with changes
            raise SystemExit(f"bench: {' '.join(argv)} failed: {proc.stderr.strip()[-300:]}")
    return samples


def side_by_side(argv: list[str], runs: int, env: Mapping[str, str] | None = None,
                 cwd: str | None = None) -> tuple[float, float]:
    """Median ms of a command and of bare `python -c pass`, one run of each in turn, so that
    both see the same machine load. argv[0] is the interpreter or the console script."""
    bare, command = [], []
    timed_ms(argv, 0, env, cwd)  # the warm-up run
    for _ in range(runs):
        bare += timed_ms([sys.executable, "-c", "pass"], 1, env, cwd, warm=False)
        command += timed_ms(argv, 1, env, cwd, warm=False)
    return statistics.median(command), statistics.median(bare)


def table(figures: list[Figure]) -> str:
    rows = [("figure", "value", "target", "verdict", "note")]
    for f in figures:
        value = "-" if f.value is None else f"{f.value:.2f} {f.unit}" if f.unit == "x" \
            else f"{f.value:.0f} {f.unit}" if f.unit == "ms" else f"{f.value:.2f} {f.unit}"
        rows.append((f.name, value, f.target, f.verdict, f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True))
                     + (f"  {r[4]}" if r[4] else "") for r in rows)


def example_copy(root: Path, name: str) -> str:
    """The example fleet's packer, cookbooks and terraform copied under root, and its
    fleet.toml's text under the fleet name given (own KV prefix and image tags), for the
    caller to edit and write to root / "fleet.toml"."""
    import shutil

    repo = Path(__file__).resolve().parents[1]
    for part in ("packer", "cookbooks", "terraform"):
        shutil.copytree(repo / part, root / part)
    return (repo / "fleet.toml").read_text().replace('name = "gitlab"', f'name = "{name}"', 1)


def remove_copy(ctx: Any, lab: Any, name: str) -> None:
    """What example_copy's fleet (ctx) left on the lab: its nodes, web images and KV. The
    images go once the nodes have drained away (an apply returns while they drain, as cloud
    instances terminate): an image a container still uses is only untagged by `docker image
    rm --force`, and stays behind, nameless, when the container goes."""
    from fleet.adapters import docker
    from fleet.services import cattle

    for env in ctx.fleet.env_names():
        cattle.apply(ctx, env, [])
    deadline = time.monotonic() + 120
    while (time.monotonic() < deadline
           and any(n.startswith(f"{name}-") for n in docker.lab_containers())):
        time.sleep(0.5)
    for tag, _ in docker.images(f"fleet-{name}-web"):
        docker.remove_image(f"fleet-{name}-web:{tag}")
    lab.consul().delete_tree(f"fleet/{name}/")
