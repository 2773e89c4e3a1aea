"""What every fleet node promises, whatever its role: fleet-init, sshd, the base, Consul."""

from __future__ import annotations

from typing import Any


def test_fleet_init_is_pid_1(node: Any) -> None:
    assert node.sh("tr '\\0' ' ' < /proc/1/cmdline").startswith("/bin/sh /usr/local/sbin/fleet-init")


def test_base_package_installed(node: Any, package: str) -> None:
    status = node.sh(f"dpkg-query -W -f '${{Status}}' {package}")
    assert status == "install ok installed", f"{package}: {status}"


def test_ssh_host_key_made_at_boot_and_private(node: Any) -> None:
    # no host key is baked (the bake's scan would find it): fleet-init makes them at boot
    node.expect("/etc/ssh/ssh_host_ed25519_key", "600", "regular file")


def test_root_ssh_dir_private(node: Any) -> None:
    node.expect("/root/.ssh", "700", "directory")


def test_consul_agent_joined_the_lab(node: Any) -> None:
    members = node.sh("consul members -status=alive")
    hostname = node.sh("hostname")
    assert any(line.split()[0] == hostname for line in members.splitlines()[1:]), members
    assert any(" server " in line for line in members.splitlines()), "no server among " + members
