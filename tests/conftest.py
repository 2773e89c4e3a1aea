"""Shared fixtures. The lab is real: brought up once per session through the real CLI."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
EXAMPLE = ROOT / "fleet.toml"


@pytest.fixture(autouse=True)
def _sigterm_as_it_was() -> Iterator[None]:
    """fleet's main() takes SIGTERM as an interrupt (cli.main.Terminated): a test that runs it
    in this process gives the suite its own handling back."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def fleet(*args: str, file: Path = EXAMPLE, env: dict[str, str] | None = None,
          timeout: float = 600) -> Run:
    """Run the real `fleet` command line in a subprocess."""
    import os

    proc = subprocess.run([sys.executable, "-m", "fleet", "-f", str(file), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def eventually(read: Callable[[], T], expected: T, timeout: float = 20) -> T:
    """What read() returns once it equals expected, or its last answer after timeout: for
    what settles after a command returns (a removed node drains, as a cloud instance does)."""
    deadline = time.monotonic() + timeout
    while (seen := read()) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return seen


@pytest.fixture(scope="session")
def lab() -> Any:
    """The example fleet's lab, up; yields its Context."""
    from fleet.services.context import load

    result = fleet("lab", "up")
    assert result.code == 0, result.stderr
    return load(EXAMPLE)


@dataclass(frozen=True)
class FleetCopy:
    """A copy of the example fleet under its own name: its own catalog prefix and image tags,
    on the shared lab."""

    root: Path
    name: str
    env: dict[str, str]

    @property
    def file(self) -> Path:
        return self.root / "fleet.toml"

    def run(self, *args: str) -> Run:
        return fleet(*args, file=self.file, env=self.env)

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.root / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1))

    def put_secret(self, role: str, key: str, env: str, value: str,
                   extra: dict[str, str] | None = None) -> Run:
        """`fleet secrets put ROLE KEY --env ENV`, the value on stdin as a user types it."""
        import os
        import subprocess
        import sys

        proc = subprocess.run([sys.executable, "-m", "fleet", "-f", str(self.file), "secrets",
                               "put", role, key, "--env", env], input=value,
                              capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, **self.env, **(extra or {})}, timeout=60)
        return Run(proc.returncode, proc.stdout, proc.stderr)


def pg_dump(pet: str) -> str:
    """pg_dump of a postgres pet's application database (its schema and every row), through
    the pet, with a fixed \\restrict key so two dumps of the same data are the same text."""
    import subprocess

    done = subprocess.run(["docker", "exec", pet, "runuser", "-u", "postgres", "--",
                           "/usr/lib/postgresql/15/bin/pg_dump", "--restrict-key=fleet", "-h",
                           "/run/postgresql", "gitlab"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def forget_vault(vault_addr: str, root_token: str, name: str) -> None:
    """A fleet copy's policies, AppRoles and kv mount (named after it) out of the lab's Vault."""
    from fleet.adapters.vault import Vault

    admin = Vault(vault_addr, root_token)
    for policy in admin.policies(f"{name}-"):
        admin.delete_policy(policy)
    for approle in admin.approles(f"{name}-", "approle"):
        admin.delete_approle(approle, "approle")
    admin.disable_secrets_engine(name)  # no such mount: nothing to do


@pytest.fixture
def fleet_copy(lab: Any, tmp_path: Path) -> Any:
    """A fresh copy of the example fleet; its nodes, pets' volumes, images and KV are removed
    afterwards."""
    import shutil
    import uuid

    from fleet.adapters import docker

    name = f"t{uuid.uuid4().hex[:8]}"
    root = tmp_path / "fleet"
    root.mkdir()
    for part in ("packer", "cookbooks", "terraform"):
        shutil.copytree(ROOT / part, root / part)
    text = EXAMPLE.read_text().replace('name = "gitlab"', f'name = "{name}"', 1)
    (root / "fleet.toml").write_text(text)
    from fleet.services.context import token_environ

    env = token_environ(lab)  # the lab's Vault root token and fleet's Consul operator token
    yield FleetCopy(root, name, env)
    def leftovers() -> list[str]:
        return [n for n in docker.lab_containers() if n.startswith(f"{name}-")]

    # stopped, not killed: each leaves Consul. A node killed (docker rm -f) stays an alive
    # member until gossip finds it dead, and the next test's container that gets its address
    # meanwhile is pinged under the old name, which held a new pet out of service for ~40 s
    running = [n for n in leftovers() if not n.endswith(".draining")]  # those go by themselves
    if running:
        subprocess.run(["docker", "stop", "--time", "10", *running], capture_output=True)
    for node in leftovers():  # some may be draining away by themselves meanwhile
        docker.remove_container(node)
    assert eventually(leftovers, []) == []
    # and gone from Consul's member list: failed or left members linger for 72 h, and gossip
    # keeps trying their addresses, which the next tests' containers get
    # side by side: forcing out a member Consul still calls alive (a node killed, not
    # stopped) takes ~1 s, 14 s for the whole example fleet one after another; a client of
    # its own each
    def forget(node: str) -> None:
        with contextlib.suppress(Exception):
            lab.consul().forget(node)

    mine = [n for n in lab.consul().members() if n.startswith(f"{name}-")]
    if mine:
        with ThreadPoolExecutor(min(len(mine), 16)) as pool:
            list(pool.map(forget, mine))
    for role in lab.fleet.roles:
        for tag, _ in docker.images(f"fleet-{name}-{role}"):
            docker.remove_image(f"fleet-{name}-{role}:{tag}")
    docker.remove_volumes(docker.volumes(f"fleet.name={name}"))  # its pets' data
    lab.consul().delete_tree(f"fleet/{name}/")  # its catalog, channels, history and states


@contextlib.contextmanager
def throwaway_vault(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """An OpenBao of the test's own on a free loopback port, initialised and so sealed:
    (its address, its unseal key and root token). Stopped afterwards by its own handle."""
    import socket

    from fleet.adapters.vault import Vault
    from fleet.errors import FleetError
    from fleet.workflows.lab.processes import bao_binary

    def answers(address: str) -> bool:
        try:
            Vault(address, timeout=1).health()
        except FleetError:
            return False
        return True

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "bao").mkdir()
    config = tmp_path / "bao.hcl"
    config.write_text(f'storage "raft" {{\n  path = "{tmp_path / "bao"}"\n  node_id = "t"\n'
                      '  performance_multiplier = 1\n}\n'
                      f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = true\n}}\n'
                      f'api_addr = "http://127.0.0.1:{port}"\n'
                      f'cluster_addr = "http://127.0.0.1:{port + 1}"\n')
    server = subprocess.Popen([bao_binary(), "server", f"-config={config}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{port}"
    try:
        assert eventually(lambda: answers(address), True), "the throwaway Vault never answered"
        yield address, Vault(address, timeout=60).initialize()
    finally:
        server.terminate()
        server.wait(timeout=30)


# the cluster lab (three Consul servers, three OpenBao nodes) beside the shared one: a session
# fixture of its own module, offered to every test (tests/integration/cluster.py)
from tests.integration.cluster import cluster_lab  # noqa: E402, F401
