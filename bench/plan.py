"""Plan benchmark, in one run: `fleet plan` of a fleet of 10,000 nodes against the raw Consul
HTTP reads that plan needs.

A throwaway fleet (own name, so its own KV prefix and tags) of 50 cattle roles x 3
environments, 10,000 nodes in all, is written to a temporary directory; its channels, desired
groups and catalog records go to the lab's Consul KV, and its nodes are registered through
the catalog API as synthetic nodes (one service and a passing check each; no agent, no
container), with a bounded pool of connections to 127.0.0.1 only. Then, measured:

- the raw reads: one HTTP GET each of the KV trees plan reads (catalog, channels, desired,
  Terraform states) and of /v1/health/state/any filtered on the fleet's tag, bodies read and
  decoded as JSON;
- `fleet plan` in process (the workflow: reads, digests, diff), best of 5;
- `fleet plan --json` as a command (interpreter start-up included), best of 3.

Targets: the command under 1 s, and the in-process plan under 1.5x the raw reads (no request
per node). Everything registered is removed afterwards.

Needs the lab up (`fleet lab up`). Usage: .venv/bin/python bench/plan.py [NODES] [ROLES]
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet.model.image import ImageRecord  # noqa: E402  (after the path is set)
from fleet.model.nodes import node_name  # noqa: E402
from fleet.model.promotion import Channel  # noqa: E402
from fleet.model.secret import Secret  # noqa: E402
from fleet.services import topology  # noqa: E402
from fleet.services.catalog import Catalog  # noqa: E402
from fleet.services.context import load, token_environ  # noqa: E402
from fleet.workflows import plan as workflow  # noqa: E402

ENVS = ("canary", "staging", "production")
VERSION = "v1"
CONNECTIONS = 8


def fleet_toml(name: str, roles: int, counts: list[int]) -> str:
    lines = [f'[fleet]\nname = "{name}"\nconsul = "http://127.0.0.1:8500"\n'
             'vault = "http://127.0.0.1:8200"\nsecrets_mount = "fleet"\n']
    lines += [f'[[environments]]\nname = "{env}"\n' for env in ENVS]
    lines.append('[bases.bookworm]\nsuite = "bookworm"\npackages = ["openssh-server", '
                 '"python3", "ca-certificates", "iproute2", "procps", "curl"]\n')
    lines.append('[targets.lab]\nkind = "lab"\nnetwork = "fleet-lab"\n'
                 'subnet = "172.30.7.0/24"\n')
    for r in range(roles):
        count = ", ".join(f"{env} = {counts[r * len(ENVS) + i]}" for i, env in enumerate(ENVS))
        lines.append(f'[roles.r{r:02d}]\nclass = "cattle"\nbase = "bookworm"\n'
                     'provisioner = { type = "shell", scripts = ["packer/scripts/web.sh"] }\n'
                     f"count = {{ {count} }}\n"
                     f'[roles.r{r:02d}.services.s{r:02d}]\nport = 8080\n'
                     'check = { type = "http", path = "/-/health", interval = "2s" }\n')
    return "\n".join(lines)


class Pool:
    """Keep-alive HTTP connections to the lab's Consul, one per worker thread, with the lab's
    management token: registering nodes through the catalog API is no right of fleet's."""

    def __init__(self, address: str, token: Secret) -> None:
        url = urlparse(address)
        self.host, self.port = str(url.hostname), int(url.port or 8500)
        self.token = token
        assert self.host in ("127.0.0.1", "localhost"), "the benchmark talks to loopback only"
        self.conns: dict[int, http.client.HTTPConnection] = {}

    def request(self, method: str, path: str, body: Any = None) -> bytes:
        import threading

        key = threading.get_ident()
        if key not in self.conns:
            self.conns[key] = http.client.HTTPConnection(self.host, self.port, timeout=30)
        conn = self.conns[key]
        conn.request(method, path, json.dumps(body) if body is not None else None,
                     headers={"X-Consul-Token": self.token.reveal()})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
        return data


def register(pool: Pool, name: str, role: str, env: str, index: int) -> str:
    node = node_name(name, role, env, VERSION, index)
    service = "s" + role[1:]
    pool.request("PUT", "/v1/catalog/register", {
        "Node": node, "Address": "127.0.0.1", "NodeMeta": {"fleet-bench": name},
        "Service": {"ID": service, "Service": service, "Port": 8080,
                    "Tags": [f"fleet:{name}", f"role:{role}", f"env:{env}",
                             f"version:{VERSION}", "class:cattle"],
                    "Meta": {"fleet": name, "role": role, "env": env, "version": VERSION}},
        "Check": {"CheckID": f"service:{service}", "Name": "synthetic", "Status": "passing",
                  "ServiceID": service},
    })
    return node


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


def main() -> None:
    nodes = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    roles = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    groups = roles * len(ENVS)
    counts = [nodes // groups + (1 if g < nodes % groups else 0) for g in range(groups)]
    name = f"bench{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-plan-"))
    shutil.copytree(ROOT / "packer", work / "packer")
    (work / "fleet.toml").write_text(fleet_toml(name, roles, counts))
    shutil.copytree(ROOT / ".fleet" / "cache", work / ".fleet" / "cache")  # stat-cached digests
    lab = load(ROOT / "fleet.toml")
    environ = {**os.environ, **token_environ(lab)}
    ctx = load(work / "fleet.toml", environ)
    consul = ctx.consul()
    pool = Pool(ctx.consul_addr, topology.management_token(lab))
    registered: list[str] = []
    try:
        print(f"registering {nodes} synthetic nodes of {roles} roles x {len(ENVS)} environments "
              f"as fleet {name}", file=sys.stderr)
        started = time.perf_counter()
        digests = workflow.wanted_digests(ctx)
        catalog = Catalog(consul, ctx.fleet.kv_prefix)
        desired: dict[str, dict[str, dict[str, int]]] = {env: {} for env in ENVS}
        jobs = []
        for r, role in enumerate(sorted(ctx.fleet.roles)):
            catalog.create(ImageRecord(role, VERSION, digests[role], "sha256:synthetic", "lab",
                                       "docker", "synthetic", "synthetic", "0" * 40, False,
                                       "1.6.6", "2026-01-01T00:00:00+00:00", "bench"))
            for e, env in enumerate(ENVS):
                count = counts[r * len(ENVS) + e]
                desired[env][role] = {VERSION: count}
                consul.put(f"{ctx.fleet.kv_prefix}/channels/{env}/{role}",
                           Channel(VERSION, "", "2026-01-01T00:00:00+00:00").to_json(), cas=0)
                jobs += [(role, env, i) for i in range(count)]
        for env in ENVS:
            consul.put(f"{ctx.fleet.kv_prefix}/desired/{env}", json.dumps(desired[env]), cas=0)
        with ThreadPoolExecutor(CONNECTIONS) as threads:
            registered = list(threads.map(lambda j: register(pool, name, *j), jobs))
        print(f"registered in {time.perf_counter() - started:.1f}s", file=sys.stderr)

        raw = min(raw_reads(pool, name) for _ in range(5))
        inproc = []
        for _ in range(5):
            t = time.perf_counter()
            reading = workflow.plan(ctx)
            inproc.append(time.perf_counter() - t)
        assert reading.plan.items == (), [i for i in reading.plan.items][:3]
        command = []
        for _ in range(3):
            t = time.perf_counter()
            result = subprocess.run([str(ROOT / ".venv/bin/fleet"), "-f", str(ctx.file), "plan",
                                     "--json", "--detailed-exitcode"], capture_output=True,
                                    text=True, env=environ)
            command.append(time.perf_counter() - t)
            assert result.returncode == 0, result.stderr
        best = min(inproc)
        print(f"nodes                  {len(registered)} in {roles} roles x {len(ENVS)} envs")
        print(f"raw Consul reads       {raw * 1000:7.1f} ms (5 requests, bodies decoded)")
        print(f"fleet plan in process  {best * 1000:7.1f} ms (best of 5)   "
              f"ratio {best / raw:.2f}x (target < 1.5x)")
        print(f"fleet plan command     {min(command) * 1000:7.1f} ms (best of 3)   "
              f"target < 1000 ms")
    finally:
        with ThreadPoolExecutor(CONNECTIONS) as threads:
            list(threads.map(lambda n: pool.request("PUT", "/v1/catalog/deregister",
                                                    {"Node": n}), registered))
        consul.delete_tree(f"{ctx.fleet.kv_prefix}/")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
