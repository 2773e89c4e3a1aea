"""The lab's Consul servers: server mode with a data dir each, ACLs on with default deny, and
fleet's operator token (see the package's docstring).

One server (the default) is the lab as it always was: `-bootstrap-expect=1`, node lab-server,
HTTP on 127.0.0.1 and on the lab network's gateway. N servers (`[targets.lab] servers`, 3
or 5; fleet/model/servers.py) form a real raft quorum (`-bootstrap-expect=N`): each its own
node name and data dir, bound to the gateway on ports of its own (RPC 8300 + 10k, LAN gossip
8301 + 10k, WAN 8302 + 10k), retry-joining the others, HTTP on its own loopback address
only (127.0.0.k on one port: the gateway cannot hold one port for N servers, and nothing
reaches the servers' HTTP from the network: a node's agent reaches them by RPC and gossip).
A cluster's servers also take
- `performance { raft_multiplier = 1 }`: elections in about a second (Consul's production
  setting; the default 5 is for small cloud machines);
- `rpc_hold_timeout = "3s"`: a request that finds no leader is held that long (default
  7 s) before "No cluster leader": past an election, and a lost quorum is said quickly;
- `autopilot { cleanup_dead_servers = false }`: a killed server stays a (failed) peer until
  it is started again, as a drill wants to see, instead of being pruned from the quorum; a
  server back counts as healthy after 2 s stable (server_stabilization_time, default 10 s).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from fleet.adapters import raft
from fleet.adapters.consul import Consul
from fleet.errors import FleetError
from fleet.model import acl
from fleet.model.servers import LabServer
from fleet.services.context import Context
from fleet.services.topology import (
    DATACENTER,
    ConsulTokens,
    Network,
    Paths,
    consul_servers,
    consul_tokens,
    write_private,
)
from fleet.workflows.lab import processes
from fleet.workflows.lab.processes import Progress

EXE = "consul"


def _consul_ready(consul: Consul) -> bool:
    try:
        return bool(consul.leader())
    except FleetError:
        return False


def _choose_consul_tokens(p: Paths) -> ConsulTokens:
    """The lab's tokens, chosen once (random UUIDs) and kept for every later `lab up`."""
    if not p.consul_acl.exists():
        write_private(p.consul_acl, json.dumps({"management": str(uuid.uuid4()),
                                                 "operator": str(uuid.uuid4())}))
    return consul_tokens(p)


# Gossip for a crowded, slow host: the nodes' agents have the same (packer/base/finish.sh
# says why); Consul's LAN defaults made busy but healthy nodes flap failed.
GOSSIP_LAN = {"gossip_nodes": 3, "gossip_interval": "500ms", "probe_interval": "3s",
              "probe_timeout": "2s", "suspicion_mult": 6, "retransmit_mult": 4}
CLUSTER = {"performance": {"raft_multiplier": 1, "rpc_hold_timeout": "3s"},
           "autopilot": {"cleanup_dead_servers": False, "server_stabilization_time": "2s"}}


def consul_config(tokens: ConsulTokens, n: int) -> str:
    """Every server's configuration file: one server's exactly as the lab always had it."""
    # Consul 1.8 names the bootstrap token `master` (1.11 renamed it initial_management)
    config = {"acl": {
        "enabled": True, "default_policy": "deny", "down_policy": "extend-cache",
        "tokens": {"master": tokens.management.reveal(), "agent": tokens.management.reveal()},
    }, "gossip_lan": GOSSIP_LAN}
    return json.dumps(config if n == 1 else {**config, **CLUSTER})


def consul_argv(p: Paths, server: LabServer, cluster: Sequence[LabServer]) -> list[str]:
    """How the lab starts one of its Consul servers (the same argv every time)."""
    gateway = server.gateway
    host = "127.0.0.1" if server.host == "localhost" else server.host
    if len(cluster) == 1:
        return ["consul", "agent", "-server", "-bootstrap-expect=1", f"-node={server.node}",
                f"-datacenter={DATACENTER}", f"-data-dir={p.consul_data}", f"-bind={gateway}",
                f"-advertise={gateway}", f"-client={host} {gateway}",
                f"-http-port={server.http_port}", "-dns-port=-1", "-log-level=info",
                f"-config-file={p.consul_config}"]
    joins = [f"-retry-join={s.gateway}:{s.port(8301)}" for s in cluster if s != server]
    return ["consul", "agent", "-server", f"-bootstrap-expect={len(cluster)}",
            f"-node={server.node}", f"-datacenter={DATACENTER}", f"-data-dir={p.data(server)}",
            f"-bind={gateway}", f"-advertise={gateway}", f"-client={server.host}",
            f"-http-port={server.http_port}", f"-server-port={server.port(8300)}",
            f"-serf-lan-port={server.port(8301)}", f"-serf-wan-port={server.port(8302)}",
            "-dns-port=-1", "-log-level=info", f"-config-file={p.consul_config}", *joins]


def start_consul(p: Paths, server: LabServer, cluster: Sequence[LabServer]) -> None:
    """Start one server (the config file is written already); its PID recorded."""
    p.data(server).mkdir(parents=True, exist_ok=True)
    processes.start(p, server.process, consul_argv(p, server, cluster))


def consul_up(ctx: Context, p: Paths, net: Network, progress: Progress) -> list[str]:
    cluster = consul_servers(ctx)
    for server in cluster:
        processes.local(server.http, "Consul")
    p.lab.mkdir(parents=True, exist_ok=True)
    tokens = _choose_consul_tokens(p)
    clients = {s: Consul(s.http, tokens.management.reveal()) for s in cluster}
    actions = []
    first = clients[cluster[0]]
    if _consul_ready(first) and not first.acl_enabled():
        if processes.recorded_pid(p, "consul", EXE) is None:
            raise FleetError(f"a Consul without ACLs that the lab did not start answers at "
                             f"{ctx.consul_addr}", "stop it, then run `fleet lab up`")
        progress("restarting consul with ACLs on")
        for server in cluster:
            processes.stop(p, server.process, EXE)
        actions.append("restarted consul with ACLs")
    config = consul_config(tokens, len(cluster))
    running = [s for s in cluster if processes.recorded_pid(p, s.process, EXE) is not None]
    if running and p.consul_config.exists() and p.consul_config.read_text() != config:
        # a lab made by an older fleet: its servers take the lab's configuration (gossip)
        progress("restarting consul with the lab's configuration")
        for server in running:
            processes.stop(p, server.process, EXE)
        actions.append("restarted consul with the lab's configuration")
    write_private(p.consul_config, config)
    for server in cluster:
        if (processes.recorded_pid(p, server.process, EXE) is None
                and not (len(cluster) == 1 and _consul_ready(clients[server]))):
            progress(f"starting consul server{'' if len(cluster) == 1 else ' ' + server.name}")
            start_consul(p, server, cluster)
            actions.append("started consul" if len(cluster) == 1 else f"started {server.name}")
    log = p.log("consul")
    started = [s for s in cluster if processes.recorded_pid(p, s.process, EXE) is not None]
    processes.wait("consul (leader election)",
                   lambda: all(_consul_ready(c) for c in clients.values()), 60, log,
                   running=lambda: all(processes.running(p, s.process) for s in started))
    # the ACL system leaves its legacy mode a moment after the leader is elected
    processes.wait("consul (ACLs ready)", lambda: _known(first), 60, log)
    if len(cluster) > 1:
        processes.wait("consul (every server a raft peer)",
                       lambda: _peers(cluster, tokens) == len(cluster), 60, log)
    first.put_policy(acl.OPERATOR_POLICY, acl.operator_rules(),
                     "fleet's own: its KV, locks, reads, and node tokens")
    if not _known(Consul(cluster[0].http, tokens.operator.reveal())):
        first.create_token("fleet operator (lab)", [acl.OPERATOR_POLICY], tokens.operator)
        actions.append("created fleet's Consul operator token")
    return actions


def _peers(cluster: Sequence[LabServer], tokens: ConsulTokens) -> int:
    """How many raft peers every server agrees there are (0 while any cannot say)."""
    def peers(server: LabServer) -> int:
        try:
            return len(raft.consul_raft(server.http, tokens.management.reveal()).peers)
        except FleetError:
            return 0

    with ThreadPoolExecutor(max_workers=len(cluster)) as pool:
        return min(pool.map(peers, cluster))


def _known(consul: Consul) -> bool:
    try:
        return consul.token_known()
    except FleetError:
        return False
