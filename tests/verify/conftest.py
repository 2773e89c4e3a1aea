"""Verification suites: pytest over SSH (Fabric) against one node that `fleet verify` booted.

`fleet verify ROLE` runs tests/verify/common (every cattle role) and tests/verify/ROLE (if it
exists) with these in the environment:

  FLEET_FILE             the fleet definition (the role, its services, secrets, base)
  FLEET_VERIFY_ROLE      the role, and FLEET_VERIFY_VERSION the image version under test
  FLEET_VERIFY_NODE      the node's name (container, hostname, Consul node)
  FLEET_VERIFY_HOST, FLEET_VERIFY_PORT, FLEET_VERIFY_USER, FLEET_VERIFY_KEY
                         where its sshd listens (127.0.0.1, a published port) and the lab key
  FLEET_VERIFY_HOST_KEY  the node's own ed25519 host key: the connection trusts only that one

Without FLEET_VERIFY_HOST (the project's own test run) nothing here is collected.
A check's name is its pytest node id, e.g. common/test_services.py::test_listening[web:8080].
"""

from __future__ import annotations

import functools
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if "FLEET_VERIFY_HOST" not in os.environ:
    collect_ignore_glob = ["*"]

# Where fleet-node renders a node's secrets from Vault at boot (0600 root, on the tmpfs).
SECRETS_DIR = "/run/fleet/secrets"


@functools.cache
def context() -> Any:
    from fleet.services.context import load

    return load(Path(os.environ["FLEET_FILE"]))


def role() -> Any:
    return context().fleet.roles[os.environ["FLEET_VERIFY_ROLE"]]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One check per service, base package and secret of the role under test."""
    if "service" in metafunc.fixturenames:
        services = role().services
        metafunc.parametrize("service", services, ids=[f"{s.name}:{s.port}" for s in services])
    if "package" in metafunc.fixturenames:
        metafunc.parametrize("package", context().fleet.bases[role().base].packages)
    if "secret" in metafunc.fixturenames:
        keys = [s.rsplit("/", 1)[-1] for s in role().secrets]
        metafunc.parametrize("secret", keys)


@pytest.fixture(scope="session")
def fleet_role() -> Any:
    return role()


@pytest.fixture(scope="session")
def version() -> str:
    return os.environ["FLEET_VERIFY_VERSION"]


@pytest.fixture(scope="session")
def secrets_dir() -> str:
    return SECRETS_DIR


@pytest.fixture(scope="session")
def secret_needles() -> dict[bytes, str]:
    """The lab's secret values (read from Vault as the bake's scan reads them), by value."""
    from fleet.services.leaks import secret_needles

    return dict(secret_needles(context()))


class Node:
    """The node under test, over one SSH connection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def sh(self, command: str) -> str:
        """Run a command on the node; its stdout, stripped. A failure names the command."""
        result = self.conn.run(command, hide=True, warn=True, in_stream=False)
        assert result.ok, f"`{command}` exited {result.exited}: {result.stderr.strip()}"
        return str(result.stdout).strip()

    def stat(self, path: str) -> tuple[str, str, str] | None:
        """(octal mode, owner, file type) of a path on the node; None if it does not exist."""
        result = self.conn.run(f"stat -c '%a|%U|%F' {shlex.quote(path)}", hide=True, warn=True,
                               in_stream=False)
        if not result.ok:
            return None
        mode, owner, kind = str(result.stdout).strip().split("|")
        return mode, owner, kind

    def expect(self, path: str, mode: str, kind: str, owner: str = "root") -> None:
        """Assert that path is a KIND with MODE owned by OWNER, naming what it is instead."""
        found = self.stat(path)
        what = "missing" if found is None else f"a {found[2]} {found[0]} owned by {found[1]}"
        assert found == (mode, owner, kind), f"{path} is {what}, not a {kind} {mode} owned by {owner}"


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    """The node, reached as `vagrant ssh` does and pinned to the node's own host key."""
    import base64

    from fabric import Connection
    from paramiko import Ed25519Key, RejectPolicy

    host, port = os.environ["FLEET_VERIFY_HOST"], int(os.environ["FLEET_VERIFY_PORT"])
    conn = Connection(host, port=port, user=os.environ["FLEET_VERIFY_USER"],
                      connect_kwargs={"key_filename": os.environ["FLEET_VERIFY_KEY"],
                                      "look_for_keys": False, "allow_agent": False},
                      connect_timeout=10)
    kind, data = os.environ["FLEET_VERIFY_HOST_KEY"].split()[:2]
    conn.client.get_host_keys().add(f"[{host}]:{port}", kind,
                                    Ed25519Key(data=base64.b64decode(data)))
    conn.client.set_missing_host_key_policy(RejectPolicy())
    with conn:
        yield Node(conn)
