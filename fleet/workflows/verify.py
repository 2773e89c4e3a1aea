"""fleet verify: boot a role's exact baked image through Vagrant, wait until Consul has it
registered and passing, run the role's verification suite over SSH, record the verdict in
Consul KV and tear the node down.

Choices, for whoever runs it:
- The Vagrantfile beside fleet.toml does the booting (docker provider, the image by id, the
  lab network, the lab key); fleet hands it the machine list as JSON (`machines`), so the
  Vagrantfile parses no TOML and never decides which image is current.
- A role's current image is its newest catalog record that is not revoked.
- Each verify boots its own node (`FLEET-ROLE-verify-VERSION-N`) with its own Vagrant state
  under .fleet/verify/, so verifies run side by side with each other and with `vagrant up`.
- The node is torn down in every case (`vagrant destroy`, then `docker` for anything left)
  unless keep is asked for.
- The verdict is recorded at <prefix>/verify/<role>/<version> with check-and-set: the latest
  verify of a version is the one that counts (read_verification).
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from fleet.adapters import docker, pytest, vagrant
from fleet.adapters.consul import Consul
from fleet.adapters.consul_checks import Health
from fleet.errors import DependencyDown, FleetError
from fleet.model.definition import Role
from fleet.model.grammar import RoleClass
from fleet.model.image import ImageRecord, current
from fleet.model.nodes import Node
from fleet.model.verification import (
    VAGRANT_ENV,
    VERIFY_ENV,
    CheckResult,
    Outcome,
    Verification,
    container_env,
    container_labels,
    local_node,
)
from fleet.services import cattle, delivery, topology, verdicts
from fleet.services.access import vagrant_host
from fleet.services.catalog import Catalog
from fleet.services.context import Context, who

Say = Callable[[str], None]

SUITES = Path("tests") / "verify"
COMMON_SUITE = "common"
JOIN_TIMEOUT = 60.0      # seconds for the node's agent to join and register its services
PASSING_TIMEOUT = 30.0   # then, by default, for every service check to pass
SUITE_TIMEOUT = 600.0


# ---- the machine list the Vagrantfile reads ------------------------------------------------

@dataclass(frozen=True)
class VagrantMachine:
    """One machine of the Vagrantfile: a role's image as one node."""

    name: str                 # the Vagrant machine name: the role
    ref: str                  # ROLE:VERSION
    image: str                # the docker image id (never a name: nothing is pulled)
    node: str                 # container name, hostname and Consul node name
    ssh_port: int             # sshd published on 127.0.0.1
    env: dict[str, str]       # what fleet-init reads
    labels: dict[str, str]
    deliver: tuple[str, ...]  # argv the Vagrantfile runs once the machine is up: its token


@dataclass(frozen=True)
class VagrantPlan:
    """What the Vagrantfile builds: `fleet verify --machines --json` prints it."""

    machines: tuple[VagrantMachine, ...]
    unbaked: tuple[str, ...]  # cattle roles without a usable image: no machine for them
    network: str
    ssh_user: str
    private_key: str
    public_key: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def _free_ports(count: int) -> list[int]:
    """Distinct ports free on 127.0.0.1 right now (Vagrant corrects a collision anyway)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _plan(ctx: Context, nodes: list[tuple[str, ImageRecord, Node]],
          unbaked: tuple[str, ...]) -> VagrantPlan:
    net = topology.network(ctx)
    private, public = topology.key_pair(ctx)
    ports = _free_ports(len(nodes))
    deliver = delivery.deliver_argv(ctx)
    machines = tuple(
        VagrantMachine(name, image.ref, image.artifact, node.name, port,
                       container_env(node, topology.consul_join(ctx), topology.DATACENTER),
                       dict(container_labels(ctx.fleet.name, node)),
                       (*deliver, node.name, node.role, node.env))
        for (name, image, node), port in zip(nodes, ports, strict=True))
    return VagrantPlan(machines, unbaked, net.name, topology.SSH_USER, str(private), str(public))


def _catalog(ctx: Context) -> tuple[Consul, Catalog]:
    consul = ctx.consul()
    return consul, Catalog(consul, ctx.fleet.kv_prefix)


def machines(ctx: Context) -> VagrantPlan:
    """The Vagrantfile's machines: every cattle role's current image, one node each."""
    _, catalog = _catalog(ctx)
    records = catalog.records()
    nodes, unbaked = [], []
    for role in ctx.fleet.roles.values():
        if role.cls is not RoleClass.CATTLE:
            continue
        image = current(r for r in records if r.role == role.name)
        if image is None:
            unbaked.append(role.name)
        else:
            nodes.append((role.name, image, local_node(ctx.fleet.name, role, VAGRANT_ENV,
                                                       image, 0)))
    return _plan(ctx, nodes, tuple(unbaked))


# ---- fleet verify --------------------------------------------------------------------------

@dataclass(frozen=True)
class VerifyReport:
    verification: Verification
    key: str                  # where the verdict is recorded in Consul KV
    kept: str                 # with keep: how to reach the node and remove it; else ''

    @property
    def passed(self) -> bool:
        return self.verification.passed

    def error(self) -> FleetError | None:
        result = self.verification
        if result.passed:
            return None
        failed = result.failed
        if not failed:
            return FleetError(f"verify of {result.ref} ran no check")
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return FleetError(f"verify of {result.ref} failed: {failed[0].name}{more}", failed[0].detail)


def _cattle_role(ctx: Context, name: str) -> Role:
    role = ctx.fleet.role(name)
    if role.cls is not RoleClass.CATTLE:
        raise FleetError(f"{name} is a {role.cls.value}: only cattle roles have baked images "
                         "to verify", "verify a cattle role")
    return role


def _image(catalog: Catalog, role: Role, version: str | None) -> ImageRecord:
    if version is not None:
        return catalog.require(role.name, version).record
    image = current(catalog.records(role.name))
    if image is None:
        raise FleetError(f"{role.name} has no baked image", f"bake it: fleet bake {role.name}")
    return image


def _suites(ctx: Context, role: Role) -> list[Path]:
    root = ctx.root / SUITES
    found = [root / d for d in (COMMON_SUITE, role.name) if (root / d).is_dir()]
    if not found:
        raise FleetError(f"no verification suite for {role.name}: neither {SUITES / COMMON_SUITE}"
                         f" nor {SUITES / role.name} exists beside {ctx.file.name}",
                         "write tests/verify/<role>/test_*.py (see tests/verify/conftest.py)")
    return found


def _check(name: str, ok: bool, seconds: float, detail: str = "") -> CheckResult:
    return CheckResult(name, Outcome.PASSED if ok else Outcome.FAILED, round(seconds, 2),
                       "" if ok else detail)


def _consul_checks(consul: Consul, node: Node, role: Role, passing_timeout: float,
                   say: Say) -> list[CheckResult]:
    """The node joins, registers every service, and every service check passes."""
    say(f"waiting for {node.name} to join Consul and pass its checks")
    started = time.monotonic()
    deadline = started + JOIN_TIMEOUT
    services = [s.name for s in role.services]

    def registered() -> set[str]:
        return {c.service for c in seen if c.service}

    seen = consul.node_checks(node.name)
    while not (seen and registered() >= set(services)) and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = consul.node_checks(node.name)
    joined = _check("consul::joined", bool(seen), time.monotonic() - started,
                    f"{node.name} did not join Consul within {JOIN_TIMEOUT:.0f}s")
    if not seen:
        return [joined]
    deadline = time.monotonic() + passing_timeout
    while (any(c.status is not Health.PASSING for c in seen if c.service in services)
           and time.monotonic() < deadline):
        time.sleep(0.5)
        seen = consul.node_checks(node.name)
    results = [joined]
    for service in role.services:
        mine = [c for c in seen if c.service == service.name]
        failing = [c for c in mine if c.status is not Health.PASSING]
        detail = ("not registered" if not mine else
                  f"{failing[0].status.value} after {passing_timeout:.0f}s: "
                  f"{' '.join(failing[0].output.split())}" if failing else "")
        results.append(_check(f"consul::passing[{service.name}:{service.port}]",
                              bool(mine) and not failing, time.monotonic() - started, detail))
    return results


def _suite_checks(ctx: Context, role: Role, image: ImageRecord, node: Node,
                  project: vagrant.Project, work: Path, logs: Path, say: Say) -> list[CheckResult]:
    target = vagrant_host(project, role.name, node.name)
    say("running the verification suite over SSH")
    cases = pytest.run(_suites(ctx, role), rootdir=ctx.root / SUITES, junit=work / "junit.xml",
                       env={"FLEET_FILE": str(ctx.file), "FLEET_VERIFY_ROLE": role.name,
                            "FLEET_VERIFY_VERSION": image.version, "FLEET_VERIFY_NODE": node.name,
                            "FLEET_VERIFY_HOST": target.address, "FLEET_VERIFY_PORT": str(target.port),
                            "FLEET_VERIFY_USER": target.user,
                            "FLEET_VERIFY_KEY": str(target.key_file),
                            "FLEET_VERIFY_HOST_KEY": target.host_key.line()},
                       log=logs / "pytest.log", timeout=SUITE_TIMEOUT)
    outcome = {pytest.Outcome.PASSED: Outcome.PASSED, pytest.Outcome.SKIPPED: Outcome.SKIPPED,
               pytest.Outcome.FAILED: Outcome.FAILED, pytest.Outcome.ERROR: Outcome.FAILED}
    return [CheckResult(c.name, outcome[c.outcome], round(c.seconds, 2), _reason(c.message))
            for c in cases]


def _reason(message: str) -> str:
    """A failure's first line: 'nothing listens on port 8080' (an assert's own message)."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    return first.removeprefix("AssertionError: ")[:300]


def _teardown(project: vagrant.Project, consul: Consul, machine: str, node: str, work: Path,
              logs: Path, say: Say) -> None:
    """vagrant destroy; then docker for whatever it left; then Consul, if the node's own
    leave did not reach it: nothing of the node stays."""
    say(f"destroying {node}")
    try:
        vagrant.destroy(project, [machine], log=logs / "vagrant.log")
    except FleetError as exc:
        say(f"vagrant destroy failed ({exc.line()}); removing the container with docker")
    if docker.container_exists(node):
        docker.stop_and_remove(node)
    if docker.container_exists(node):
        raise FleetError(f"container {node} is still there after the verify",
                         f"remove it: docker rm -f {node}")
    try:
        cattle.out_of_consul(consul, node)
    except FleetError as exc:  # what the verify found still counts
        say(f"{exc.line()}; it goes once Consul finds it gone")
    shutil.rmtree(work, ignore_errors=True)


def _new_node(ctx: Context, role: Role, image: ImageRecord) -> Node:
    """A verify node with a run number no container has (a kept node keeps its own)."""
    while True:
        node = local_node(ctx.fleet.name, role, VERIFY_ENV, image, random.randrange(1000, 10000))
        if not docker.container_exists(node.name):
            return node


def verify(ctx: Context, role_name: str, version: str | None, *, keep: bool, say: Say,
           passing_timeout: float = PASSING_TIMEOUT) -> VerifyReport:
    """Boot ROLE's image (VERSION, or its current one), check it, record the verdict."""
    role = _cattle_role(ctx, role_name)
    consul, catalog = _catalog(ctx)
    image = _image(catalog, role, version)
    _suites(ctx, role)
    vagrantfile = ctx.root / "Vagrantfile"
    if not vagrantfile.is_file():
        raise FleetError(f"no Vagrantfile beside {ctx.file.name} ({vagrantfile})",
                         "fleet verify boots nodes through the fleet's Vagrantfile")
    vagrant.version()  # DependencyDown, one line, if vagrant is not installed
    docker.require_daemon()
    net = topology.network(ctx)
    if docker.network_gateway(net.name) is None:
        raise DependencyDown(f"the lab network {net.name} does not exist", "run `fleet lab up`")
    if docker.image(image.artifact) is None:
        raise FleetError(f"{image.ref}'s image {image.artifact[7:19]} is not in Docker",
                         f"it was removed: bake a new version (fleet bake {role.name})")

    node = _new_node(ctx, role, image)
    work = ctx.state_dir / "verify" / node.name
    logs = ctx.state_dir / "logs" / "verify" / node.name
    work.mkdir(parents=True, exist_ok=True)
    machines_file = work / "machines.json"
    machines_file.write_text(_plan(ctx, [(role.name, image, node)], ()).to_json())
    project = vagrant.Project(ctx.root, work / "vagrant", {
        "FLEET_FILE": str(ctx.file), "FLEET_VAGRANT_MACHINES": str(machines_file)})
    started = time.monotonic()
    checks: list[CheckResult] = []
    try:
        say(f"booting {image.ref} ({image.artifact[7:19]}) as {node.name} through Vagrant")
        try:
            vagrant.up(project, [role.name], log=logs / "vagrant.log")
            checks.append(_check("vagrant::up", True, time.monotonic() - started))
        except FleetError as exc:
            checks.append(_check("vagrant::up", False, time.monotonic() - started, exc.line()))
        if checks[-1].outcome is Outcome.PASSED:
            checks += _consul_checks(consul, node, role, passing_timeout, say)
            checks += _suite_checks(ctx, role, image, node, project, work, logs, say)
    finally:
        if not keep:
            _teardown(project, consul, role.name, node.name, work, logs, say)
    store = verdicts.Verifications(consul, ctx.fleet.kv_prefix)
    verification = store.record(Verification(
        role.name, image.version, image.artifact, node.name, tuple(checks),
        datetime.now(UTC).isoformat(timespec="seconds"), who(),
        round(time.monotonic() - started, 1)))
    kept = ""
    if keep:
        kept = (f"kept {node.name}: in {ctx.root}, with VAGRANT_DOTFILE_PATH={project.dotfile_dir}"
                f" and FLEET_VAGRANT_MACHINES={machines_file} set, `vagrant ssh {role.name}` "
                "reaches it and `vagrant destroy -f` removes it")
    return VerifyReport(verification, store.key(role.name, image.version), kept)
