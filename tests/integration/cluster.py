"""The cluster lab: a second lab beside the shared one, with three Consul servers and three
OpenBao nodes (`[targets.lab] servers = 3`), for the tests of issue 18.

It lives in a directory of its own (a copy of the example fleet, its own fleet name), on
other addresses (127.0.3.1-3, ports 8500 and 8200), its own Docker network (fleet-ha,
172.30.9.0/24) and its own servers, so the shared lab (127.0.0.1, fleet-lab) is never
touched: `lab reset` there takes only what is on its own network. Brought up once per
session by `cluster_lab` (tests/conftest.py makes it every test's fixture), taken down
completely afterwards: its nodes, `lab reset --yes --delete-volumes` there (its servers,
network and data), its images.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # tests/conftest.py imports this module: no import of it at load time
    from tests.conftest import Run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "fleet.toml"

CONSUL = "http://127.0.3.1:8500"
VAULT = "http://127.0.3.1:8200"
NETWORK = "fleet-ha"
SUBNET = "172.30.9.0/24"
SERVERS = 3
# the shared lab's variables would point a command of the cluster lab at the other lab
FOREIGN = ("CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "VAULT_ADDR", "VAULT_TOKEN")


@dataclass(frozen=True)
class ClusterLab:
    """The cluster lab's fleet: where it is, how to run fleet there, its Context."""

    root: Path
    name: str
    started: float  # seconds `lab up` took

    @property
    def file(self) -> Path:
        return self.root / "fleet.toml"

    @property
    def ctx(self) -> Any:
        """Its Context, read afresh (tokens change with `lab reset` / `lab restore`)."""
        from fleet.services.context import load

        return load(self.file, self.environ())

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
        return {**env, **(extra or {})}

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Run:
        """The real `fleet` command line in the cluster lab's directory."""
        from tests.conftest import Run

        proc = subprocess.run([sys.executable, "-m", "fleet", "-f", str(self.file), *args],
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env=self.environ(env), stdin=subprocess.DEVNULL)
        return Run(proc.returncode, proc.stdout, proc.stderr)


def make_copy(root: Path, name: str) -> None:
    """A copy of the example fleet under name, on the cluster lab's addresses and network."""
    root.mkdir(parents=True)
    for part in ("packer", "cookbooks", "terraform", "secrets-policy"):
        shutil.copytree(ROOT / part, root / part)
    text = EXAMPLE.read_text()
    for old, new in (('name = "gitlab"', f'name = "{name}"'),
                     ('consul = "http://127.0.0.1:8500"', f'consul = "{CONSUL}"'),
                     ('vault = "http://127.0.0.1:8200"', f'vault = "{VAULT}"'),
                     ('network = "fleet-lab"', f'network = "{NETWORK}"\nservers = {SERVERS}'),
                     ('subnet = "172.30.7.0/24"', f'subnet = "{SUBNET}"')):
        assert old in text, f"{old!r} not in the example's fleet.toml"
        text = text.replace(old, new, 1)
    (root / "fleet.toml").write_text(text)


def take_down(lab: ClusterLab) -> None:
    """Everything of the cluster lab: its nodes, servers, network, data and images."""
    from fleet.adapters import docker

    roles = list(lab.ctx.fleet.roles)
    nodes = docker.lab_containers(NETWORK)
    if nodes:
        subprocess.run(["docker", "rm", "-f", *nodes], capture_output=True)
    reset = lab.run("lab", "reset", "--yes", "--delete-volumes")
    assert reset.code == 0, f"the cluster lab's reset failed: {reset.stderr}"
    for role in roles:  # what a test baked
        for tag, _ in docker.images(f"fleet-{lab.name}-{role}"):
            docker.remove_image(f"fleet-{lab.name}-{role}:{tag}")
    with contextlib.suppress(Exception):
        subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True)


@pytest.fixture(scope="session")
def cluster_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterLab]:
    """A lab of three Consul servers and three OpenBao nodes beside the shared one; yields
    a ClusterLab (root, run(), ctx)."""
    name = f"ha{uuid.uuid4().hex[:6]}"
    root = tmp_path_factory.mktemp("cluster") / "fleet"
    make_copy(root, name)
    started = time.monotonic()
    lab = ClusterLab(root, name, 0.0)
    up = lab.run("lab", "up")
    lab = ClusterLab(root, name, time.monotonic() - started)
    try:
        assert up.code == 0, f"the cluster lab did not come up: {up.stderr}"
        yield lab
    finally:
        take_down(lab)
