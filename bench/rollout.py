"""Rollout benchmark, in one run, on a throwaway copy of the example fleet (own KV prefix):

Rolls N lab nodes of web from v1 to v2 in batches of B through the real promotion (Terraform
applies, Consul gates) and compares its wall time with the lower bound
ceil(N/B) x (one node's boot-to-passing time), where boot-to-passing is measured in the same
run, from the container's start (docker's State.StartedAt) to the first Consul answer that
has every check of the node passing, on single nodes booted alone.

Target: the rollout within 1.3x of the lower bound, for N = 20, B = 5.

Needs the lab up (`fleet lab up`). Usage: .venv/bin/python bench/rollout.py [N] [B]
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet.adapters import docker  # noqa: E402  (after the path is set)
from fleet.model.nodes import group  # noqa: E402
from fleet.services import cattle  # noqa: E402
from fleet.services.catalog import Catalog  # noqa: E402
from fleet.services.context import Context, load, token_environ  # noqa: E402
from fleet.workflows import bake, promote  # noqa: E402


def started_at(container: str) -> float:
    """When docker started the container, as a time.time() value."""
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", container],
                         capture_output=True, text=True, check=True).stdout.strip()
    stamp = out[:26] + "+00:00" if out.endswith("Z") else out  # ns -> us, Z -> +00:00
    return datetime.fromisoformat(stamp).timestamp()


class Watcher:
    """Polls Consul in a thread and notes when each node of web is first seen passing."""

    def __init__(self, ctx: Context, env: str) -> None:
        self.ctx, self.env = ctx, env
        self.first_passing: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            seen = cattle.health(self.ctx, ["web"], self.env, "web")
            now = time.time()
            for node in seen.passing:
                self.first_passing.setdefault(node, now)
            time.sleep(0.05)

    def __enter__(self) -> Watcher:
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
        samples.append(watch.first_passing[node.name] - started_at(node.name))
        cattle.apply(ctx, "staging", [])
    return samples


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    b = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    lab = load(ROOT / "fleet.toml")
    name = f"bench{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for part in ("packer", "cookbooks", "terraform"):
            shutil.copytree(ROOT / part, root / part)
        text = (ROOT / "fleet.toml").read_text().replace('name = "gitlab"', f'name = "{name}"', 1)
        text = text.replace("count = { canary = 1, staging = 1, production = 2 }\n\n[roles.web.",
                            f"count = {{ canary = {n}, staging = 1, production = 2 }}\n\n"
                            "[roles.web.", 1)
        text = text.replace("batch_size = 1", f"batch_size = {b}", 1)  # canary's
        (root / "fleet.toml").write_text(text)
        ctx = load(root / "fleet.toml", {**os.environ, **token_environ(lab)})
        quiet = lambda *args: None  # noqa: E731  (progress lines are not the benchmark)
        try:
            for version in ("v1", "v2"):  # v2: the same image under a new version, new nodes
                report = bake.bake(ctx, ["web"], version=version, say=quiet)
                if not report.ok:
                    sys.exit(f"bench: bake failed: {report.results[0].detail}")
            image = Catalog(ctx.consul(), ctx.fleet.kv_prefix).get("web", "v1")
            assert image is not None
            boots = single_boots(ctx, image.record.artifact, 3)
            first = promote.promote(ctx, "v1", "canary", ["web"], say=quiet)
            with Watcher(ctx, "canary") as watch:
                start = time.monotonic()
                rolled = promote.promote(ctx, "v2", "canary", ["web"], say=quiet)
                total = time.monotonic() - start
            new_nodes = [node for node in watch.first_passing if "-v2-" in node]
            under_load = [watch.first_passing[node] - started_at(node) for node in new_nodes]
        finally:
            for env in ctx.fleet.env_names():
                cattle.apply(ctx, env, [])
            for tag, _ in docker.images(f"fleet-{name}-web"):
                docker.remove_image(f"fleet-{name}-web:{tag}")
            lab.consul().delete_tree(f"fleet/{name}/")
    boot = statistics.median(boots)
    bound = math.ceil(n / b) * boot
    print(f"nodes N={n}, batch B={b}; first rollout (empty -> v1) {first.seconds:.1f} s")
    print(f"one node's boot-to-passing, alone        median {boot:6.2f} s  "
          f"(samples {', '.join(f'{s:.2f}' for s in boots)})")
    print(f"boot-to-passing during the rollout       median {statistics.median(under_load):6.2f} s"
          f"  (max {max(under_load):.2f}, {len(under_load)} nodes)")
    print(f"lower bound ceil(N/B) x boot              {bound:6.2f} s")
    print(f"per apply (Terraform, docker run, boot, gate)   {total / rolled.steps:6.2f} s")
    print(f"rollout v1 -> v2 ({rolled.steps} applies)           {total:6.2f} s  "
          f"= {total / bound:.2f}x the bound (target <= 1.3x): "
          f"{'ok' if total / bound <= 1.3 else 'OVER TARGET'}")
    print(json.dumps({"n": n, "b": b, "boot": round(boot, 3), "bound": round(bound, 3),
                      "rollout": round(total, 3), "ratio": round(total / bound, 3)}))


if __name__ == "__main__":
    main()
