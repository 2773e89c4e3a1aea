"""Where a control plane's servers are: every address of Consul's and OpenBao's clusters, and
the lab's layout of N servers on one machine (pure).

A fleet names its servers by address: `consul` and `vault` in fleet.toml, or CONSUL_HTTP_ADDR
and VAULT_ADDR, take one address or several separated by commas, as a real cluster's clients
list every server. The lab runs 1, 3 or 5 of each (`[targets.lab] servers`, a raft quorum);
with more than one and a single address given, server k (0-based) answers on that address's
host with its last octet + k, on the same port (127.0.0.1, 127.0.0.2, ...: all of
127.0.0.0/8 is the loopback), so fleet's clients know every one and move to a live one.

On the lab's network every server shares the gateway's address and takes ports of its own,
10 apart (Consul's own test clusters run on one address the same way): server k's Consul RPC
at 8300 + 10k and LAN gossip at 8301 + 10k, its OpenBao listener for nodes at the vault port
+ 10k. Server 0 keeps Consul's default ports and the node name the single-server lab has
always had, so a one-server lab is what it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from fleet.errors import ConfigError

SIZES = (1, 3, 5)  # raft quorums: 3 survives the loss of one server, 5 of two
PORT_STEP = 10
SERVER_NODE = "lab-server"  # the Consul node name of the lab's (first) server


def addresses(value: str) -> tuple[str, ...]:
    """One address or several, comma-separated; a bare host:port gets http:// as the consul
    and vault CLIs allow."""
    found = tuple(("http://" + a if "//" not in a else a) for a in
                  (part.strip() for part in value.split(",")) if a)
    if not found:
        raise ConfigError(f"no address in {value!r}", fix="give http://HOST:PORT")
    return found


def lab_count(targets: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
    """How many servers of each the lab runs, from fleet.toml's targets as (kind, settings):
    the lab target's `servers`, 1 without one."""
    return next((int(settings.get("servers", 1)) for kind, settings in targets if kind == "lab"),
                1)


def spread(address: str, n: int) -> tuple[str, ...]:
    """n addresses: the given one, then its host's last octet + 1, + 2, ... on its port."""
    url = urlparse(address)
    parts = (url.hostname or "").split(".")
    if n == 1:
        return (address,)
    if len(parts) != 4 or not all(p.isdigit() for p in parts) or int(parts[3]) + n - 1 > 254:
        raise ConfigError(f"the lab's {n} servers need an IPv4 address to count up from, "
                          f"not {address}", fix="set it to an address such as http://127.0.0.1:8500")
    head = ".".join(parts[:3])
    return tuple(f"{url.scheme}://{head}.{int(parts[3]) + k}:{url.port}" for k in range(n))


@dataclass(frozen=True)
class LabServer:
    """Server k of the lab's Consul (or OpenBao): its names and addresses."""

    kind: str      # "consul" or "openbao"
    index: int     # 0-based
    http: str      # where fleet reaches its API
    gateway: str   # the lab network's gateway address, which every server binds

    @property
    def name(self) -> str:
        """What a user calls it: consul-1, openbao-3."""
        return f"{self.kind}-{self.index + 1}"

    @property
    def process(self) -> str:
        """The name of its PID and log files: the first server's as the one-server lab's."""
        return self.kind if self.index == 0 else self.name

    @property
    def node(self) -> str:
        """Its Consul node name (Consul), its raft node id (OpenBao)."""
        if self.kind == "consul":
            return SERVER_NODE if self.index == 0 else f"{SERVER_NODE}-{self.index + 1}"
        return "lab" if self.index == 0 else f"lab-{self.index + 1}"

    def port(self, base: int) -> int:
        return base + PORT_STEP * self.index

    @property
    def host(self) -> str:
        return str(urlparse(self.http).hostname)

    @property
    def http_port(self) -> int:
        return int(urlparse(self.http).port or 0)


def lab_servers(kind: str, http: tuple[str, ...], gateway: str) -> tuple[LabServer, ...]:
    return tuple(LabServer(kind, k, address, gateway) for k, address in enumerate(http))


def consul_join(servers: tuple[LabServer, ...]) -> str:
    """What a node's agent is told to join: the gateway alone for one server (as always),
    else every server's LAN gossip address, space-separated (fleet-init makes each a
    -retry-join)."""
    if len(servers) == 1:
        return servers[0].gateway
    return " ".join(f"{s.gateway}:{s.port(8301)}" for s in servers)
