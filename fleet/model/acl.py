"""Who may do what in Consul: the ACL policies of fleet's operator token and of each node's
token. Pure: the lab and the delivery workflow write them.

The lab's Consul runs with ACLs on and default deny. Three kinds of token:
- the management token (the lab's bootstrap, kept 0600 under .fleet/lab): only `fleet lab up`
  uses it, to write the two policies below; benchmarks use it to register synthetic nodes;
- fleet's operator token: the fleet's own KV (catalog, channels, rollouts, history, verdicts,
  Terraform states) and sessions for locks, reads of the catalog and health, `acl = "write"`
  because it mints each node's token when Terraform creates the node (Consul 1.8 has no
  narrower right to create tokens; a production fleet would hand this to Vault's Consul
  secrets engine), and what forces out of Consul a node Terraform destroyed that could not
  leave by itself (killed, without its token, or its leave lost; see
  terraform/lab/cattle): `operator = "write"` for `consul force-leave` (Consul 1.8 allows it
  on nothing narrower; it also reaches Raft peers, the keyring and autopilot), and write on
  nodes to deregister from the catalog one that Consul still calls alive or leaving (it
  notices a dead agent only after minutes; a failed member is force-left instead, as the
  leader would register it again). With `acl = "write"` the operator could mint itself both
  rights anyway; a production fleet would give the reaping to a token of its own;
- one token per node, minted at delivery and removed once its node is gone: the node may
  register itself and its role's own services, run its agent (reload, leave), and read the
  health of the services its role depends on. It can write no KV at all: not the catalog,
  the channels nor the history.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

OPERATOR_POLICY = "fleet-operator"
KV_ROOT = "fleet/"  # every fleet's prefix lives below it (Fleet.kv_prefix)
NODE_TOKEN = "fleet node "  # a node token's description: this, then the node's name


Rules = dict[str, Any]  # Consul's rule language in its JSON form (the API takes either)


def _grant(**rules: dict[str, str] | str) -> Rules:
    return {kind: ({name: {"policy": p} for name, p in grants.items()}
                   if isinstance(grants, dict) else grants)
            for kind, grants in rules.items() if grants}


def operator_rules() -> Rules:
    return _grant(
        key_prefix={KV_ROOT: "write"},
        session_prefix={"": "write"},   # locks: rollouts, Terraform's state lock
        node_prefix={"": "write"},      # deregister a destroyed node Consul calls alive
        service_prefix={"": "read"},
        agent_prefix={"": "read"},      # the server's version for `lab status`
        acl="write",                    # to mint and remove node tokens
        operator="write",               # force-leave a destroyed node that did not leave
    )


def node_policy(node: str) -> str:
    """The name of a node's own policy."""
    return f"fleet-node-{node}"


def policy_node(policy: str) -> str | None:
    """The node a policy was written for, None for any other policy."""
    prefix = node_policy("")
    return policy.removeprefix(prefix) if policy.startswith(prefix) else None


def node_description(node: str) -> str:
    return f"{NODE_TOKEN}{node}"


def node_of(description: str) -> str | None:
    """The node a token was minted for, None for any other token."""
    return description.removeprefix(NODE_TOKEN) if description.startswith(NODE_TOKEN) else None


def node_rules(node: str, services: Iterable[str], upstreams: Iterable[str]) -> Rules:
    """Register this node and its role's services, run its own agent, read what it watches."""
    service = {s: "read" for s in upstreams} | {s: "write" for s in services}
    return _grant(
        node={node: "write"},
        agent={node: "write"},          # consul reload, consul leave
        node_prefix={"": "read"},       # health of the watched instances
        service=dict(sorted(service.items())),
    )


def gone(token_nodes: Iterable[str], containers: Iterable[str]) -> set[str]:
    """The nodes whose tokens can go: no container of that name, nor one draining away
    (a draining node's agent still needs its token to leave the cluster)."""
    present = set(containers)
    return {n for n in token_nodes if n not in present and f"{n}.draining" not in present}
