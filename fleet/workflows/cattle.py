"""Cattle on Terraform: apply a set of nodes for one environment, then read their health.

fleet never starts or stops a node itself: it computes the nodes an environment should have and
Terraform (terraform/lab/cattle, state in the consul backend, one state per environment)
makes it so. Health comes from Consul, where each node's agent registers its services.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlparse

from fleet.adapters import terraform
from fleet.adapters.consul import Consul
from fleet.model.nodes import Node
from fleet.workflows import lab
from fleet.workflows.context import Context


def workspace(ctx: Context, env: str) -> terraform.Workspace:
    url = urlparse(ctx.consul_addr)
    return terraform.Workspace(
        module=ctx.root / "terraform" / "lab" / "cattle",
        data_dir=ctx.state_dir / "terraform" / "cattle" / env,
        consul_address=f"{url.hostname}:{url.port}",
        state_path=f"{ctx.fleet.kv_prefix}/terraform/cattle/{env}",
        state_dir=ctx.state_dir,
    )


def apply(ctx: Context, env: str, nodes: Iterable[Node]) -> dict[str, str]:
    """Make the environment's cattle exactly these nodes; return node -> version."""
    net = lab.network(ctx)
    outputs = workspace(ctx, env).apply({
        "network": net.name,
        "consul_join": net.gateway,
        "nodes": {n.name: n.tfvar() for n in nodes},
    }, refresh=False)  # terraform_data only: a refresh would read nothing, at a cost per step
    return {str(k): str(v) for k, v in outputs["nodes"].items()}


def consul(ctx: Context) -> Consul:
    return Consul(ctx.consul_addr, ctx.consul_token.reveal() if ctx.consul_token else None)


@dataclass(frozen=True)
class Health:
    """What Consul says of one role's nodes in one environment."""

    passing: dict[str, str]    # node -> version, every check passing
    failing: dict[str, str]    # node -> version, some check not passing

    def passing_of(self, version: str) -> int:
        return sum(1 for v in self.passing.values() if v == version)


def health(ctx: Context, role_services: list[str], env: str, role: str) -> Health:
    """A node passes only if every service of its role passes on it."""
    client = consul(ctx)
    tag = f"fleet:{ctx.fleet.name}"
    per_node: dict[str, tuple[str, bool]] = {}
    for service in role_services:
        for inst in client.instances(service, tag):
            if inst.meta.get("env") != env or inst.meta.get("role") != role:  # other tenants
                continue
            _, ok = per_node.get(inst.node, ("", True))
            per_node[inst.node] = (inst.meta["version"], ok and inst.passing)
    return Health({n: v for n, (v, ok) in per_node.items() if ok},
                  {n: v for n, (v, ok) in per_node.items() if not ok})


def wait_passing(ctx: Context, services: list[str], env: str, role: str,
                 want: Callable[[Health], bool], timeout: float) -> tuple[bool, Health]:
    """Poll Consul until want(health) or timeout; (met, last health)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = health(ctx, services, env, role)
        if want(seen):
            return True, seen
        if time.monotonic() > deadline:
            return False, seen
        time.sleep(0.2)


