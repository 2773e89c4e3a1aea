"""Reaching a node: the one seam over the ways fleet gets onto a host (as pyinfra's connectors).

- `DockerExec`: a lab node's console, through `docker exec` (no network, no key). fleet uses it
  for what must not cross a network: the credential hand-over at boot (a bundle on stdin), and
  reading a node's own SSH host key to trust it.
- `lab_hosts`: the lab's nodes over SSH (Fabric), as root with the lab key on the lab network,
  each connection trusting only the node's own ed25519 host key, read through DockerExec.
- `vagrant_host`: a Vagrant machine over SSH, where `vagrant ssh-config` says it listens.

Every way ends in an `ssh.Host` (for Fabric's per-host results) or a `process.Result`; nothing
else in fleet builds a `docker exec` argv or an ssh.Host.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.adapters import docker, process, ssh, vagrant
from fleet.errors import FleetError
from fleet.services.context import Context
from fleet.services.topology import SSH_USER, key_pair, network

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"  # made at the node's first boot, never baked


@dataclass(frozen=True)
class DockerExec:
    """A lab node's console: commands through `docker exec`."""

    container: str

    def run(self, argv: list[str], *, input_text: str | None = None,
            timeout: float = 120.0) -> process.Result:
        """argv on the node; the result whatever its exit status (the caller judges it)."""
        interactive = ["-i"] if input_text is not None else []
        return process.run(["docker", "exec", *interactive, self.container, *argv], check=False,
                           input_text=input_text, timeout=timeout)

    def read(self, path: str) -> str:
        """A small text file on the node."""
        return docker.read_file(self.container, path)

    def has(self, path: str) -> bool:
        """Whether the node has a non-empty file at path."""
        return docker.has_file(self.container, path)

    def host_key(self) -> ssh.PublicKey:
        """The node's own SSH host key: the only one an SSH connection to it trusts."""
        return ssh.parse_public_key(self.read(HOST_KEY))


def lab_hosts(ctx: Context, names: list[str]) -> tuple[list[ssh.Host], list[ssh.HostResult]]:
    """The lab's nodes among names as SSH hosts, and a failed result for each node that is not
    running or shows no host key: one node down never hides the others."""
    private, _ = key_pair(ctx)
    found = docker.addresses(names, network(ctx).name)
    hosts, down = [], []
    for name in names:
        if name not in found:
            down.append(ssh.HostResult(name, False, None, "", "", "not running"))
            continue
        try:
            key = DockerExec(name).host_key()
        except FleetError as exc:
            down.append(ssh.HostResult(name, False, None, "", "", f"no host key: {exc.what}"))
            continue
        hosts.append(ssh.Host(name, found[name], SSH_USER, private, key))
    return hosts, down


def vagrant_host(project: vagrant.Project, machine: str, container: str) -> ssh.Host:
    """A Vagrant machine (docker provider: its container) where vagrant ssh-config says."""
    target = vagrant.ssh_config(project, machine)
    return ssh.Host(container, target.host, target.user, target.identity_file,
                    DockerExec(container).host_key(), target.port)
