"""A throwaway fleet of many synthetic nodes in the lab's Consul, for the read benchmarks
(bench/plan.py, bench/reads.py).

A fleet of its own name (so its own KV prefix and tags) of ROLES cattle roles x 3
environments, NODES nodes in all, is written to a temporary directory with the example
fleet's bases; its channels, desired groups, catalog records and (if asked) history events go
to the lab's Consul KV, and its nodes are registered through the catalog API as synthetic
nodes (one service and a passing check each; no agent, no container), with a bounded pool of
connections to 127.0.0.1 only. Everything is removed when the `with` block ends.

Run it under the lab lock (`flock /tmp/fleet-lab.lock ...`). It needs the base image of
fleet.toml's [bases.bookworm] built for packer/ as it is (`fleet lab up`), or BENCH_PACKER=DIR
naming a packer/ directory whose base image is.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet.model.image import ImageRecord  # noqa: E402  (after the path is set)
from fleet.model.nodes import node_name  # noqa: E402
from fleet.model.promotion import Channel  # noqa: E402
from fleet.model.secret import Secret  # noqa: E402
from fleet.services import topology  # noqa: E402
from fleet.services.bakeinputs import wanted_digests  # noqa: E402
from fleet.services.catalog import Catalog  # noqa: E402
from fleet.services.context import Context, load, token_environ  # noqa: E402
from fleet.services.state import stamp  # noqa: E402

ENVS = ("canary", "staging", "production")
VERSION = "v1"
CONNECTIONS = 8
TXN_OPS = 64


def fleet_toml(name: str, roles: int, counts: list[int]) -> str:
    """The synthetic fleet's definition; its bases are the example fleet's, so that the lab's
    base images serve it."""
    bases = tomllib.loads((ROOT / "fleet.toml").read_text())["bases"]
    lines = [f'[fleet]\nname = "{name}"\nconsul = "http://127.0.0.1:8500"\n'
             'vault = "http://127.0.0.1:8200"\nsecrets_mount = "fleet"\n']
    lines += [f'[[environments]]\nname = "{env}"\n' for env in ENVS]
    lines.append(f'[bases.bookworm]\nsuite = "{bases["bookworm"]["suite"]}"\n'
                 f'packages = {json.dumps(bases["bookworm"]["packages"])}\n')
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


@dataclass
class Synthetic:
    name: str
    ctx: Context               # the synthetic fleet, with the lab's operator tokens
    environ: dict[str, str]    # os.environ with those tokens, for `fleet` commands
    pool: Pool
    nodes: int
    roles: int
    events: int


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


def _history(pool: Pool, prefix: str, roles: list[str], events: int) -> None:
    """EVENTS rollout-step events, one a second back from now, TXN_OPS a transaction."""
    start = time.time() - events
    ops = []
    for i in range(events):
        at = stamp(datetime.fromtimestamp(start + i, UTC))
        event = {"at": at, "event": "step", "env": ENVS[i % len(ENVS)],
                 "roles": [roles[i % len(roles)]], "who": "bench@synthetic",
                 "version": VERSION, "rollout": f"r{i // 10}", "detail": f"step {i % 10}"}
        value = base64.b64encode(json.dumps(event).encode()).decode()
        ops.append({"KV": {"Verb": "set", "Key": f"{prefix}/history/{at}-{i:08x}",
                           "Value": value}})
    for s in range(0, len(ops), TXN_OPS):
        pool.request("PUT", "/v1/txn", ops[s:s + TXN_OPS])


@contextmanager
def synthetic_fleet(nodes: int = 10_000, roles: int = 50, events: int = 0) -> Iterator[Synthetic]:
    """Set the fleet up, yield it, and remove every node and key it made."""
    groups = roles * len(ENVS)
    counts = [nodes // groups + (1 if g < nodes % groups else 0) for g in range(groups)]
    name = f"bench{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    # the packer/ inputs decide the base image plan wants; BENCH_PACKER=DIR takes them from
    # another checkout (one whose base image the lab has built, while packer/ is being edited)
    shutil.copytree(Path(os.environ.get("BENCH_PACKER", ROOT / "packer")), work / "packer")
    (work / "fleet.toml").write_text(fleet_toml(name, roles, counts))
    if (ROOT / ".fleet" / "cache").is_dir():
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
        digests = wanted_digests(ctx)
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
        if events:
            _history(pool, ctx.fleet.kv_prefix, sorted(ctx.fleet.roles), events)
        with ThreadPoolExecutor(CONNECTIONS) as threads:
            registered = list(threads.map(lambda j: register(pool, name, *j), jobs))
        print(f"registered in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        yield Synthetic(name, ctx, environ, pool, len(registered), roles, events)
    finally:
        with ThreadPoolExecutor(CONNECTIONS) as threads:
            list(threads.map(lambda n: pool.request("PUT", "/v1/catalog/deregister",
                                                    {"Node": n}), registered))
        consul.delete_tree(f"{ctx.fleet.kv_prefix}/")
        shutil.rmtree(work, ignore_errors=True)
