"""The lab's layout and topology: where its files live, its network, its tokens, the SSH key
of its nodes, and how nodes are named. Every use case that touches the lab reads them here."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from fleet.adapters import ssh
from fleet.adapters.consul import Consul
from fleet.errors import FleetError
from fleet.model import servers
from fleet.model.grammar import RoleClass
from fleet.model.secret import Secret
from fleet.model.servers import LabServer
from fleet.services.context import Context

DATACENTER = "lab"  # the Consul datacenter of the lab's servers; nodes are told to join it
SERVER_NODE = servers.SERVER_NODE  # the Consul node name of the lab's (first) server
SSH_USER = "root"   # nodes are reached as root with the lab key


@dataclass(frozen=True)
class Paths:
    """Files the lab keeps under .fleet/lab."""

    lab: Path

    def pid(self, name: str) -> Path:
        return self.lab / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.lab / f"{name}.log"

    def data(self, server: LabServer) -> Path:
        """A lab server's own data directory: .fleet/lab/consul, consul-2, openbao-3, ..."""
        return self.lab / server.process

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
        them is their job) and the lab's 0600 files of bootstrap, root and operator tokens.
        OpenBao's audit log is not among them: it holds HMACs of values, never a value."""
        return (self.consul_data, self.consul_config, self.consul_acl, self.openbao_data,
                self.openbao_init, self.openbao_operator)

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
    def openbao_operator(self) -> Path:
        """fleet's Vault operator token and its accessor (0600)."""
        return self.lab / "openbao-operator.json"

    @property
    def openbao_audit(self) -> Path:
        """OpenBao's file audit device: every request and response, values HMAC'd."""
        return self.lab / "openbao-audit.log"

    @property
    def servers(self) -> tuple[Path, ...]:
        """The data of the lab's shared servers: a directory holding them owns the lab."""
        return (self.consul_data, self.openbao_data)

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


def consul_servers(ctx: Context) -> tuple[LabServer, ...]:
    """The lab's Consul servers (fleet/model/servers.py): one per address fleet knows."""
    return servers.lab_servers("consul", ctx.consul_addrs, network(ctx).gateway)


def openbao_servers(ctx: Context) -> tuple[LabServer, ...]:
    return servers.lab_servers("openbao", ctx.vault_addrs, network(ctx).gateway)


def consul_join(ctx: Context) -> str:
    """What every lab node's agent joins (FLEET_CONSUL_JOIN): each server's LAN address."""
    return servers.consul_join(consul_servers(ctx))


def terraform_consul(ctx: Context) -> str:
    """The Consul server Terraform's consul backend talks to for a run: it takes one address.
    Of several, a follower that answers: a leader election (what losing the leader starts)
    then holds Terraform's requests for a moment instead of breaking them, and the state
    lock's session is not on the server most likely to go. Losing that very follower fails
    the step, and running the command again carries on. In production, point fleet at the
    local agent of the host it runs on, which follows the servers by itself."""
    if len(ctx.consul_addrs) == 1:
        return ctx.consul_addr
    answering = []
    for server in consul_servers(ctx):
        try:
            leader = Consul(server.http, timeout=2).leader()
        except FleetError:
            continue
        if leader and leader != f"{server.gateway}:{server.port(8300)}":
            return server.http
        answering.append(server.http)
    return answering[0] if answering else ctx.consul_addr


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


def management_token(ctx: Context) -> Secret:
    """The lab Consul's management token: for the lab itself and for benchmarks only."""
    return consul_tokens(paths(ctx)).management


def vault_operator(p: Paths) -> tuple[Secret, str] | None:
    """fleet's Vault operator token and its accessor, None before `lab up` minted one."""
    try:
        data = json.loads(p.openbao_operator.read_text())
        return Secret(data["token"]), str(data["accessor"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        raise FleetError(f"{p.openbao_operator} is unreadable", "run `fleet lab up`") from exc


def vault_root_token(ctx: Context) -> Secret:
    """The lab OpenBao's root token: for `lab up` and for tests tidying up as an administrator;
    no fleet command uses it."""
    file = paths(ctx).openbao_init
    try:
        return Secret(json.loads(file.read_text())["root_token"])
    except (OSError, ValueError, KeyError) as exc:
        raise FleetError(f"the lab's OpenBao root token is unreadable ({file})",
                         "run `fleet lab up` here, where the lab was made") from exc


def lab_tokens(ctx: Context) -> list[tuple[str, Secret]]:
    """Every token the lab keeps in its own 0600 files, by what it is, for the leak scan:
    Consul's management token, OpenBao's root token and fleet's Vault operator token."""
    p = paths(ctx)
    found = []
    if p.consul_acl.exists():
        found.append(("the lab's Consul management token", consul_tokens(p).management))
    if p.openbao_init.exists():
        found.append(("the lab's OpenBao root token", vault_root_token(ctx)))
    operator = vault_operator(p)
    if operator is not None:
        found.append(("fleet's Vault operator token", operator[0]))
    return found


def write_private(path: Path, text: str) -> None:
    """Create a 0600 file without a moment of wider permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def key_pair(ctx: Context) -> tuple[Path, Path]:
    """The lab's SSH key for local nodes (.fleet/vagrant/id_ed25519), made once. The public
    half is mounted read-only as root's authorized_keys at boot: no key is ever baked."""
    private = ctx.state_dir / "vagrant" / "id_ed25519"
    public = private.with_suffix(".pub")
    if not (private.exists() and public.exists()):
        private.unlink(missing_ok=True)
        public.unlink(missing_ok=True)
        ssh.keygen(private, f"fleet-lab-{ctx.fleet.name}")
    return private, public


def container(ctx: Context, instance: str) -> str:
    """A pet's or snowflake's container, hostname and Consul node: fleet name + instance."""
    return f"{ctx.fleet.name}-{instance}"


def owns(ctx: Context, node: str, fleet_label: str) -> bool:
    """Whether a lab node is this fleet's: it carries the label fleet.name=<fleet>, which
    Terraform's modules and the Vagrantfile give every node. A node made before nodes carried
    it (fleet_label "") counts by its name, `<fleet>-…`: ambiguous between fleets `a` and
    `a-b`, which is why the label exists."""
    if fleet_label:
        return fleet_label == ctx.fleet.name
    return node.startswith(f"{ctx.fleet.name}-")


def pet_volumes(ctx: Context) -> set[str]:
    """The data volumes this fleet's pets have, by name (`<fleet>-<instance>-data`)."""
    return {f"{container(ctx, i)}-data" for role in ctx.fleet.roles.values()
            if role.cls is RoleClass.PET for names in role.instances.values() for i in names}
