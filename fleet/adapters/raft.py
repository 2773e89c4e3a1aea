"""The operator side of Consul's and OpenBao's raft clusters, over their HTTP APIs: who the
peers are, which leads, how many may fail, and snapshots of the whole store. One server at a
time (the lab asks each of its servers in turn); its dicts stop here.

- Consul: /v1/operator/raft/configuration (the peers), /v1/operator/autopilot/health
  (failure tolerance; it needs `operator = "read"`), /v1/snapshot (GET saves, PUT restores;
  a management token). Consul 1.8.7's API docs: developer.hashicorp.com/consul/api-docs.
- OpenBao: sys/storage/raft/autopilot/state (peers, leader, failure tolerance),
  sys/storage/raft/snapshot (GET saves) and snapshot-force (POST restores a snapshot of
  another cluster, whose own unseal key is needed afterwards), with a token allowed to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fleet.adapters.http import Http, answering
from fleet.errors import Denied, FleetError

# a snapshot of a small store is quick; a restore replaces the store and waits for the FSM
SNAPSHOT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Peer:
    """One member of a raft cluster as its leader sees it."""

    name: str        # Consul's node name; OpenBao's node id
    address: str     # its raft (server RPC / cluster) address
    leader: bool
    voter: bool
    healthy: bool


@dataclass(frozen=True)
class Raft:
    """A raft cluster's membership and how many of its voters may fail."""

    peers: tuple[Peer, ...]
    failure_tolerance: int

    @property
    def leader(self) -> str:
        return next((p.name for p in self.peers if p.leader), "")


class _Server:
    def __init__(self, service: str, env_var: str, address: str, headers: dict[str, str],
                 timeout: float) -> None:
        self.service, self.env_var, self.address = service, env_var, address
        self.http = Http(address, timeout, headers)

    def call(self, method: str, path: str, what: str, body: bytes | None = None,
             ok: tuple[int, ...] = ()) -> bytes:
        with answering(self.service, self.address, what, self.env_var):
            status, data = self.http.request(method, path, body)
        if status in (401, 403):
            raise Denied(f"{self.service} at {self.address} denied {what}",
                         "use a token allowed to (the lab's own, `fleet lab` commands do)")
        if status >= 300 and status not in ok:
            text = data.decode(errors="replace").strip()[:200]
            raise FleetError(f"{self.service} at {self.address} refused {what}: {status} {text}")
        return data

    def json(self, path: str, what: str, ok: tuple[int, ...] = ()) -> Any:
        return json.loads(self.call("GET", path, what, ok=ok))


def consul_raft(address: str, token: str, timeout: float = 2.0) -> Raft:
    """The Consul cluster's raft peers (as the server at address sees them) and the
    failure tolerance autopilot reckons."""
    server = _Server("Consul", "CONSUL_HTTP_ADDR", address, {"X-Consul-Token": token}, timeout)
    config = server.json("/v1/operator/raft/configuration", "operator/raft/configuration")
    # 429: the cluster is not healthy (a server down); the body says how it stands
    health = server.json("/v1/operator/autopilot/health", "operator/autopilot/health", ok=(429,))
    return parse_consul(config, health)


def parse_consul(config: Any, health: Any) -> Raft:
    """Consul's raft configuration and autopilot health, as one Raft."""
    healthy = {s["Name"]: bool(s["Healthy"]) for s in health["Servers"] or ()}
    peers = tuple(Peer(s["Node"], s["Address"], bool(s["Leader"]), bool(s["Voter"]),
                       healthy.get(s["Node"], False))
                  for s in sorted(config["Servers"], key=lambda s: str(s["Node"])))
    return Raft(peers, int(health["FailureTolerance"]))


def openbao_raft(address: str, token: str, timeout: float = 2.0) -> Raft:
    """OpenBao's raft peers, leader and failure tolerance (autopilot's state)."""
    server = _Server("OpenBao", "VAULT_ADDR", address, {"X-Vault-Token": token}, timeout)
    data = server.json("/v1/sys/storage/raft/autopilot/state", "sys/storage/raft/autopilot/state")
    return parse_openbao(data)


def parse_openbao(data: Any) -> Raft:
    """OpenBao's autopilot state (the response of sys/storage/raft/autopilot/state)."""
    state = data["data"]
    peers = tuple(Peer(s["id"], s["address"], s["status"] == "leader",
                       s["status"] in ("leader", "voter"), bool(s["healthy"]))
                  for s in sorted(state["servers"].values(), key=lambda s: str(s["id"])))
    return Raft(peers, int(state["failure_tolerance"]))


def openbao_autopilot(address: str, token: str, settings: dict[str, object]) -> None:
    """Set OpenBao's autopilot configuration (sys/storage/raft/autopilot/configuration)."""
    server = _Server("OpenBao", "VAULT_ADDR", address, {"X-Vault-Token": token}, 10.0)
    server.call("POST", "/v1/sys/storage/raft/autopilot/configuration",
                "sys/storage/raft/autopilot/configuration", json.dumps(settings).encode())


def consul_snapshot(address: str, token: str) -> bytes:
    """A snapshot of the whole Consul store (KV, catalog, sessions, ACLs): a gzipped tar."""
    server = _Server("Consul", "CONSUL_HTTP_ADDR", address, {"X-Consul-Token": token},
                     SNAPSHOT_TIMEOUT)
    return server.call("GET", "/v1/snapshot", "snapshot save")


def consul_restore(address: str, token: str, snapshot: bytes) -> None:
    """Replace the Consul store with a snapshot (its ACL tokens come back with it)."""
    server = _Server("Consul", "CONSUL_HTTP_ADDR", address, {"X-Consul-Token": token},
                     SNAPSHOT_TIMEOUT)
    server.call("PUT", "/v1/snapshot", "snapshot restore", snapshot)


def openbao_snapshot(address: str, token: str) -> bytes:
    """A snapshot of OpenBao's raft store (encrypted by its barrier: its keys stay apart)."""
    server = _Server("OpenBao", "VAULT_ADDR", address, {"X-Vault-Token": token},
                     SNAPSHOT_TIMEOUT)
    return server.call("GET", "/v1/sys/storage/raft/snapshot", "sys/storage/raft/snapshot")


def openbao_restore(address: str, token: str, snapshot: bytes) -> None:
    """Replace OpenBao's store with a snapshot, of this cluster or another (snapshot-force):
    afterwards the cluster is sealed with the snapshot's own keys."""
    server = _Server("OpenBao", "VAULT_ADDR", address, {"X-Vault-Token": token},
                     SNAPSHOT_TIMEOUT)
    server.call("POST", "/v1/sys/storage/raft/snapshot-force",
                "sys/storage/raft/snapshot-force", snapshot)
