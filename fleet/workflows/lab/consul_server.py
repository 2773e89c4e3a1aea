"""The lab's Consul server: server mode with a data dir, ACLs on with default deny, and fleet's
operator token (see the package's docstring)."""

from __future__ import annotations

import json
import uuid

from fleet.adapters.consul import Consul
from fleet.errors import FleetError
from fleet.model import acl
from fleet.services.context import Context
from fleet.services.topology import (
    DATACENTER,
    SERVER_NODE,
    ConsulTokens,
    Network,
    Paths,
    consul_tokens,
    write_private,
)
from fleet.workflows.lab import processes
from fleet.workflows.lab.processes import Progress


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


def _consul_config(tokens: ConsulTokens) -> str:
    # Consul 1.8 names the bootstrap token `master` (1.11 renamed it initial_management)
    return json.dumps({"acl": {
        "enabled": True, "default_policy": "deny", "down_policy": "extend-cache",
        "tokens": {"master": tokens.management.reveal(), "agent": tokens.management.reveal()},
    }, "gossip_lan": GOSSIP_LAN})


def consul_up(ctx: Context, p: Paths, net: Network, progress: Progress) -> list[str]:
    processes.local(ctx.consul_addr, "Consul")
    p.lab.mkdir(parents=True, exist_ok=True)
    tokens = _choose_consul_tokens(p)
    consul = Consul(ctx.consul_addr, tokens.management.reveal())
    actions = []
    if _consul_ready(consul) and not consul.acl_enabled():
        if processes.recorded_pid(p, "consul", "consul") is None:
            raise FleetError(f"a Consul without ACLs that the lab did not start answers at "
                             f"{ctx.consul_addr}", "stop it, then run `fleet lab up`")
        progress("restarting consul with ACLs on")
        processes.stop(p, "consul", "consul")
        actions.append("restarted consul with ACLs")
    config = _consul_config(tokens)
    if (processes.recorded_pid(p, "consul", "consul") is not None and p.consul_config.exists()
            and p.consul_config.read_text() != config):
        # a lab made by an older fleet: its server takes the lab's configuration (gossip)
        progress("restarting consul with the lab's configuration")
        processes.stop(p, "consul", "consul")
        actions.append("restarted consul with the lab's configuration")
    if not _consul_ready(consul):
        write_private(p.consul_config, config)
        if processes.recorded_pid(p, "consul", "consul") is None:
            progress("starting consul server")
            p.consul_data.mkdir(parents=True, exist_ok=True)
            processes.start(p, "consul", [
                "consul", "agent", "-server", "-bootstrap-expect=1", f"-node={SERVER_NODE}",
                f"-datacenter={DATACENTER}", f"-data-dir={p.consul_data}", f"-bind={net.gateway}",
                f"-advertise={net.gateway}", f"-client=127.0.0.1 {net.gateway}",
                f"-http-port={processes.port(ctx.consul_addr)}", "-dns-port=-1", "-log-level=info",
                f"-config-file={p.consul_config}",
            ])
            actions.append("started consul")
        processes.wait("consul (leader election)", lambda: _consul_ready(consul), 60, p.log("consul"))
    # the ACL system leaves its legacy mode a moment after the leader is elected
    processes.wait("consul (ACLs ready)", lambda: _known(consul), 60, p.log("consul"))
    consul.put_policy(acl.OPERATOR_POLICY, acl.operator_rules(),
                      "fleet's own: its KV, locks, reads, and node tokens")
    if not _known(Consul(ctx.consul_addr, tokens.operator.reveal())):
        consul.create_token("fleet operator (lab)", [acl.OPERATOR_POLICY], tokens.operator)
        actions.append("created fleet's Consul operator token")
    return actions


def _known(consul: Consul) -> bool:
    try:
        return consul.token_known()
    except FleetError:
        return False
