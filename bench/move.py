"""Move benchmark: `fleet move` of a gitaly pet holding a generated storage, against a plain
`rsync -a` of the same data, in one run.

A copy of the example fleet cut down to its gitaly role (fleet name `benchmove`, staging's
gitaly-stg-01, a cut-over of one step held 1 s) is applied in the lab and seeded by the pet's
own `fleet-gitaly seed` with REPOS repositories of about SIZE bytes each (200 x 5 MB: ~1 GB).
Then:

- **plain rsync**: `rsync -a` of the pet's data over SSH (the lab key) to a scratch directory
  on this machine: moving the bytes once, through the same SSH;
- **fleet move**: `fleet move gitaly-stg-01 --to gitaly-stg-02` then `--finish`, the whole
  thing: the target made by Terraform, the source read-only, rsync over SSH to the target,
  both sides checksummed (refs and fsck per repository), the cut-over, the target replaced as
  declared, the source decommissioned;
- from the move's own record: each step's time, and the **read-only window** (from the source
  going read-only until the target takes writes).

Target: the move's copy <= 1.3 x plain rsync, the rest of the move (verification, Terraform,
cut-over) printed beside it.

Needs the lab up (`fleet lab up`). Usage: .venv/bin/python bench/move.py [--repos 200]
[--size 5000000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet.adapters import docker  # noqa: E402  (after the path is set)
from fleet.services import topology  # noqa: E402
from fleet.services.context import load, token_environ  # noqa: E402

NAME = "benchmove"
MOVE = '\n[roles.gitaly.move]\ncutover = [100]\nsoak = "1s"\n'


def fleet(work: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "fleet", "-f", str(work / "fleet.toml"), *args],
                          cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"fleet {' '.join(args)} failed: {done.stderr.strip()[-800:]}")
    return done.stdout


def copy_of_example(work: Path) -> None:
    for part in ("packer", "cookbooks", "terraform"):
        shutil.copytree(ROOT / part, work / part)
    text = (ROOT / "fleet.toml").read_text().replace('name = "gitlab"', f'name = "{NAME}"', 1)
    text = text[:text.index("# ---- cattle")] + text[text.index("[roles.gitaly]"):
                                                      text.index("[roles.postgres]")]
    (work / "fleet.toml").write_text(text + MOVE)


def cleanup(lab_consul: object) -> None:
    names = [n for n in docker.lab_containers() if n.startswith(f"{NAME}-")]
    docker.remove_containers(names)
    docker.remove_volumes(docker.volumes(f"fleet.name={NAME}"))
    lab_consul.delete_tree(f"fleet/{NAME}/")  # type: ignore[attr-defined]


def plain_rsync(ctx: object, source: str, scratch: Path) -> float:
    key, _ = topology.key_pair(ctx)  # type: ignore[arg-type]
    address = docker.addresses([source], topology.network(ctx).name)[source]  # type: ignore[arg-type]
    ssh = (f"ssh -i {key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
           "-o LogLevel=ERROR")
    began = time.monotonic()
    subprocess.run(["rsync", "-a", "-e", ssh, f"root@{address}:/var/opt/gitaly/", f"{scratch}/"],
                   check=True)
    return time.monotonic() - began


def steps(record: dict[str, object]) -> dict[str, float]:
    """Seconds each step took, from the move's own history; and the read-only window."""
    history = record["history"]
    assert isinstance(history, list)
    at = [(e["step"], e["outcome"], datetime.fromisoformat(e["at"])) for e in history]
    found: dict[str, float] = {}
    for (step, outcome, when), (_, _, then) in itertools.pairwise(at):
        if outcome == "started":
            found[step] = found.get(step, 0.0) + (then - when).total_seconds()
    read_only = next(w for s, o, w in at if s == "read-only" and o == "started")
    writable = next(w for s, o, w in at if s == "finishing" and o == "done")
    found["read-only window"] = (writable - read_only).total_seconds()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--size", type=int, default=5_000_000, help="bytes per repository")
    parser.add_argument("--keep", action="store_true", help="leave the bench fleet in the lab")
    args = parser.parse_args()
    lab = load(ROOT / "fleet.toml")
    env = token_environ(lab)
    cleanup(lab.consul())
    tmp = Path(tempfile.mkdtemp(prefix="fleet-bench-move-"))
    work, scratch = tmp / "fleet", tmp / "plain"
    work.mkdir()
    scratch.mkdir()
    copy_of_example(work)
    ctx = load(work / "fleet.toml", env)
    source = f"{NAME}-gitaly-stg-01"
    try:
        fleet(work, env, "apply", "staging", "--yes")
        began = time.monotonic()
        subprocess.run(["docker", "exec", source, "fleet-gitaly", "seed", str(args.repos),
                        "--commits", "3", "--size", str(args.size)], check=True)
        size = int(subprocess.run(["docker", "exec", source, "du", "-sb", "/var/opt/gitaly"],
                                  capture_output=True, text=True, check=True
                                  ).stdout.split()[0])
        print(f"storage: {args.repos} repositories, {size / 1e9:.2f} GB, seeded in "
              f"{time.monotonic() - began:.1f}s")
        plain = plain_rsync(ctx, source, scratch)
        began = time.monotonic()
        fleet(work, env, "move", "gitaly-stg-01", "--to", "gitaly-stg-02")
        fleet(work, env, "move", "gitaly-stg-01", "--finish")
        whole = time.monotonic() - began
        record = json.loads(fleet(work, env, "move", "--status", "--json"))[0]
        took = steps(record)
        print(f"plain rsync -a over SSH: {plain:.1f}s")
        print(f"fleet move, whole (to --finish done): {whole:.1f}s")
        for step, seconds in took.items():
            print(f"  {step}: {seconds:.1f}s")
        ratio = took["copy"] / plain
        print(f"move's copy / plain rsync: {ratio:.2f}x (target <= 1.3x); verification "
              f"{took['verify']:.1f}s; read-only window {took['read-only window']:.1f}s")
    finally:
        if args.keep:
            print(f"kept: the bench fleet {work / 'fleet.toml'}", file=sys.stderr)
        else:
            cleanup(lab.consul())
            for tag, _ in docker.images(f"fleet-{NAME}-gitaly"):
                docker.remove_image(f"fleet-{NAME}-gitaly:{tag}")
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
