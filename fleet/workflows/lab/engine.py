"""dockerd, the lab's Docker network, and the host's neighbour table sized for the lab:
dockerd is started only if none answers."""

from __future__ import annotations

import shutil

from fleet.adapters import docker, sysctl
from fleet.errors import DependencyDown, FleetError
from fleet.services.topology import Network, Paths
from fleet.workflows.lab import processes
from fleet.workflows.lab.processes import Progress


def docker_up(p: Paths, progress: Progress) -> list[str]:
    if docker.server_version() is not None:
        return []
    if shutil.which("dockerd") is None:
        raise DependencyDown("dockerd is not installed", "run scripts/setup.sh")
    progress("starting dockerd")
    processes.start(p, "dockerd", ["dockerd", "--host", "unix:///var/run/docker.sock"])
    processes.wait("dockerd", lambda: docker.server_version() is not None, 60, p.log("dockerd"))
    return ["started dockerd"]


def network_up(net: Network, progress: Progress) -> list[str]:
    gateway = docker.network_gateway(net.name)
    if gateway == net.gateway:
        return []
    if gateway is not None:
        raise FleetError(f"docker network {net.name} exists with gateway {gateway}, "
                         f"not {net.gateway}", "run `fleet lab reset` or change targets.lab")
    progress(f"creating docker network {net.name} ({net.subnet})")
    docker.create_network(net.name, net.subnet, net.gateway, net.bridge)
    return [f"created network {net.name}"]


# The kernel's IPv4 neighbour (ARP) table is one for the whole host: every container's network
# namespace counts against the same limits. Each node gossips with every other, so a lab of N
# nodes holds about N x N entries, and past Linux's default hard limit (gc_thresh3 = 1024, about
# 30 nodes) the kernel cannot create an entry: packets to that peer are dropped before they
# leave the node (IpOutDiscards and UdpSndbufErrors count them; the drop reason is
# NEIGH_CREATEFAIL). Gossip probes then go unanswered and healthy nodes are marked failed --
# what made a 20-node rollout beside the example fleet fail. Sized, as Kubernetes hosts raise
# them, for about 180 nodes (180 x 180 < 32768); raised only, never lowered.
NEIGHBOUR_TABLE = (("net.ipv4.neigh.default.gc_thresh3", 32768),
                   ("net.ipv4.neigh.default.gc_thresh2", 16384),
                   ("net.ipv4.neigh.default.gc_thresh1", 8192))


def neighbours_short() -> list[tuple[str, int, int]]:
    """The neighbour-table limits below what the lab needs: (parameter, now, wanted)."""
    found = ((name, sysctl.read_int(name), wanted) for name, wanted in NEIGHBOUR_TABLE)
    return [(name, now, wanted) for name, now, wanted in found if now < wanted]


def neighbours_up(progress: Progress) -> list[str]:
    """Raise the host's neighbour-table limits for a crowded lab (largest first, so that the
    three stay ordered while they change)."""
    short = neighbours_short()
    for name, now, wanted in short:
        progress(f"raising {name} from {now} to {wanted}")
        sysctl.write_int(name, wanted)
    return [f"set {name}={wanted}" for name, _, wanted in short]
