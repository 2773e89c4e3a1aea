"""Cattle from birth to death against the real lab (issue 13, items 2, 5 and 11): reachable
over SSH for `fleet run`, seen as gone by `fleet plan` when they die without leaving (their
container removed, or their agent killed), replaced by `fleet apply`, and never left behind
in Consul once Terraform destroys them."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from typing import Any

import pytest

from fleet.adapters.consul import Consul
from fleet.model import acl
from fleet.services import cattle
from fleet.services.context import load
from tests.conftest import FleetCopy, Run, eventually

pytestmark = pytest.mark.lab

ROLE = """
# ---- one cattle role, two canary nodes: nothing else for plan and apply to do --------------

[roles.web]
class = "cattle"
base = "bookworm"
description = "Rails front end (Puma)"
provisioner = { type = "shell", scripts = ["packer/scripts/web.sh"] }
count = { canary = 2, staging = 0, production = 0 }

[roles.web.services.web]
port = 8080
check = { type = "http", path = "/-/health", interval = "2s", timeout = "1s" }
"""
ALIVE, LEAVING, LEFT = 1, 2, 3  # serf's statuses of a member (Consul.members)


def one_role(copy: FleetCopy) -> None:
    """The copy's fleet.toml with the example's settings and a single cattle role."""
    text = copy.file.read_text()
    copy.file.write_text(text[:text.index("# ---- cattle")] + ROLE)


def plan(copy: FleetCopy) -> tuple[Run, dict[str, Any]]:
    run = copy.run("plan", "canary", "--json", "--detailed-exitcode")
    assert run.code in (0, 2), run.stderr
    return run, json.loads(run.stdout)


def repairs(data: dict[str, Any]) -> dict[str, str]:
    return {i["target"]: i["detail"] for i in data["items"]
            if i["action"] == "repair" and i["drift"] and not i["blocked"]}


def members(consul: Consul, prefix: str) -> dict[str, int]:
    """The fleet's nodes Consul's server lists as members, in any state (left included)."""
    return {n: s for n, s in consul.members().items() if n.startswith(prefix)}


def in_catalog(consul: Consul, fleet: str, prefix: str) -> set[str]:
    """The fleet's nodes the catalog holds: with a service check, or a serfHealth."""
    tagged = consul.nodes_by_tags(f"fleet:{fleet}")
    return {n for names in tagged.by_tags.values() for n in names} | {
        n for n in tagged.members if n.startswith(prefix)}


def container_id(name: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.Id}}", name], capture_output=True,
                          text=True).stdout.strip()


def registered_id(copy: FleetCopy, node: str) -> str:
    """The node ID the catalog holds under the node's name (`consul catalog nodes`)."""
    out = subprocess.run(["consul", "catalog", "nodes", "-detailed", "-filter",
                          f'Node == "{node}"'], capture_output=True, text=True,
                         env={**os.environ, **copy.env}).stdout.splitlines()
    return out[1].split()[1] if len(out) > 1 else ""


def service_created(ctx: Any, node: str) -> int:
    """The raft index at which the catalog registered the node's web service (0: none)."""
    request = urllib.request.Request(f"{ctx.consul_addrs[0]}/v1/catalog/node/{node}",
                                     headers={"X-Consul-Token": ctx.consul_token.reveal()})
    with urllib.request.urlopen(request, timeout=10) as response:
        services = (json.load(response) or {}).get("Services") or {}
    return max((s["CreateIndex"] for s in services.values() if s["Service"] == "web"), default=0)


def node_id(node: str) -> str:
    """The node ID Terraform gives a node's agent: derived from its name (uuidv5, URL
    namespace), so that a node created again under its name is the same node to Consul."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fleet-node:{node}"))


def kill_agent(node: str) -> None:
    """Kill the node's Consul agent (by its PID), as an OOM kill would: it cannot leave."""
    subprocess.run(["docker", "exec", node, "sh", "-c", "kill -9 $(pgrep -x consul)"],
                   check=True, capture_output=True)


def test_cattle_are_reachable_seen_dead_replaced_and_leave_no_trace(
        lab: Any, fleet_copy: FleetCopy) -> None:
    fc, name = fleet_copy, fleet_copy.name
    one_role(fc)
    ctx = load(fc.file, fc.env)
    consul = ctx.consul()
    prefix = f"{name}-web-canary-v1-"
    node0, node1 = f"{prefix}0", f"{prefix}1"
    timings: dict[str, float] = {}
    try:
        started = time.monotonic()
        baked = fc.run("bake", "web", "--version", "v1")
        assert baked.code == 0, baked.stderr
        promoted = fc.run("promote", "v1", "--to", "canary", "--role", "web")
        assert promoted.code == 0, promoted.stderr
        run, data = plan(fc)
        assert run.code == 0, f"a fleet that runs as planned has changes: {data['items']}"
        tagged = consul.nodes_by_tags(f"fleet:{name}")
        assert {n: tagged.members.get(n) for n in (node0, node1)} == {node0: True, node1: True}, \
            "the plan's one health read does not see the nodes' serfHealth"
        timings["bake + promote 2 nodes"] = time.monotonic() - started

        # item 5: cattle carry the lab key (read-only, restricted): fleet run reaches them
        step = time.monotonic()
        shown = fc.run("run", "web", "--env", "canary", "--", "cat /etc/hostname && "
                       "cut -d' ' -f1 /root/.ssh/authorized_keys && "
                       "! touch /root/.ssh/authorized_keys 2>/dev/null && echo read-only")
        assert shown.code == 0, f"fleet run failed on cattle: {shown.stdout}{shown.stderr}"
        for node in (node0, node1):
            assert f"== {node}: ok (exit 0)\n{node}\nrestrict\nread-only" in shown.stdout, \
                f"{node} did not run the command with a restricted, read-only key: {shown.stdout}"
        timings["fleet run on cattle"] = time.monotonic() - step

        # item 11: a host dies (its container removed): Consul still lists it, passing, for
        # minutes, but the plan sees it gone, and apply replaces it under its name
        step = time.monotonic()
        dead = service_created(ctx, node0)
        subprocess.run(["docker", "rm", "-f", node0], check=True, capture_output=True)
        run, data = plan(fc)
        assert run.code == 2, "a node whose container is gone is no change to the plan"
        assert set(repairs(data)) == {node0}, f"the plan does not replace {node0}: {data['items']}"
        assert "container is gone" in repairs(data)[node0], repairs(data)

        applied = fc.run("apply", "--yes", "canary", "--json")
        assert applied.code == 0, applied.stderr
        done = [(d["target"], d["action"], d["detail"]) for d in json.loads(applied.stdout)["done"]]
        assert done == [(node0, "repair", "replaced")], done
        both = {node0: ALIVE, node1: ALIVE}
        assert eventually(lambda: members(consul, prefix), both) == both, \
            f"the replacement did not take {node0}'s name back: {members(consul, prefix)}"
        assert registered_id(fc, node0) == node_id(node0), \
            f"{node0}'s replacement is not the same node to Consul: {registered_id(fc, node0)}"
        # the dead node's registration is gone before apply waits: the new agent registered
        # the service again (the same one, it would only have updated its checks)
        assert service_created(ctx, node0) > dead > 0, \
            f"apply waited on the dead {node0}'s registration, still passing in the catalog"
        passing = cattle.health(ctx, ["web"], "canary", "web").passing
        assert passing == {node0: "v1", node1: "v1"}, f"the replacement does not pass: {passing}"
        run, data = plan(fc)
        assert run.code == 0, f"a second plan still has work: {data['items']}"
        timings["rm -f -> plan -> apply replaces"] = time.monotonic() - step

        # item 2: destroyed nodes do not linger. node1's agent is killed first, so it cannot
        # leave. Terraform's drain prunes a node Consul calls left or failed, and marks one
        # it still calls alive leaving (Consul calls it left, never failed, when it notices):
        # none alive, none failed, and neither in the catalog
        step = time.monotonic()
        kill_agent(node1)
        cattle.apply(ctx, "canary", [])

        def out() -> bool:
            return (set(members(consul, prefix).values()) <= {LEAVING, LEFT}
                    and not in_catalog(consul, name, prefix))

        assert eventually(out, True, timeout=60), "destroyed nodes linger in Consul: " \
            f"{members(consul, prefix)}, catalog {in_catalog(consul, name, prefix)}"
        timings["destroy -> out of Consul"] = time.monotonic() - step
    finally:
        cattle.apply(ctx, "canary", [])
        for token in consul.tokens():  # the nodes' own tokens and policies
            if (acl.node_of(token.description) or "").startswith(f"{name}-"):
                consul.delete_token(token.accessor)
        for policy, pid in consul.policies().items():
            if (acl.policy_node(policy) or "").startswith(f"{name}-"):
                consul.delete_policy(pid)
        consul.delete_tree(f"fleet/{name}/")
        print(timings)
