"""dockerd and the lab's Docker network: dockerd is started only if none answers."""

from __future__ import annotations

import shutil

from fleet.adapters import docker
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
