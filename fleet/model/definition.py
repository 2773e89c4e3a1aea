"""The fleet definition (fleet.toml): its spec, every check on it, and the typed model it becomes."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fleet.errors import ConfigError
from fleet.model.locate import locate
from fleet.model.spec import (
    NAME,
    Array,
    Bool,
    Duration,
    Int,
    Node,
    Problem,
    Str,
    Table,
    Union,
    did_you_mean,
    join,
    show,
)


class RoleClass(StrEnum):
    """Cattle are replaced from images; pets are changed in place; snowflakes only when named."""

    CATTLE = "cattle"
    PET = "pet"
    SNOWFLAKE = "snowflake"


@dataclass(frozen=True)
class Scalar(Node):
    """A free setting: string, integer, float or boolean."""

    doc: str = ""

    def check(self, value: object, path: str) -> list[Problem]:
        if isinstance(value, str | int | float | bool):
            return []
        return [(path, f"expected a string, number or boolean, got {show(value)}")]

    def schema(self) -> dict[str, Any]:
        return self._with_doc({"type": ["string", "number", "boolean"]})


SETTING = r"[a-z][a-z0-9_]*"
# The environment of nodes fleet boots outside the fleet's own environments: `fleet verify`'s
# and the Vagrantfile's (fleet/model/verification.py). No environment of a fleet may take one.
LOCAL_ENVS = ("verify", "vagrant")
NAME_DOC = "a name of lower-case letters, digits and '-'"
URL = Str(pattern=r"https?://[A-Za-z0-9.\-]+(:\d+)?", pattern_doc="an http(s)://host:port address")

CHECK = Table(
    fields={
        "type": Str(choices=("http", "tcp"), doc="http: GET path must answer 2xx; tcp: port accepts"),
        "path": Str(pattern=r"/\S*", pattern_doc="a path starting with /"),
        "interval": Duration(doc="how often Consul runs the check"),
        "timeout": Duration(doc="how long one run may take"),
    },
    required=("type",),
    doc="the Consul health check of the service",
)
SERVICE = Table(
    fields={"port": Int(minimum=1, maximum=65535), "check": CHECK},
    required=("port", "check"),
)
PROVISIONER = Union(
    tag="type",
    variants={
        "shell": Table(
            fields={
                "type": Str(choices=("shell",)),
                "scripts": Array(Str(), min_items=1, doc="paths relative to fleet.toml"),
            },
            required=("type", "scripts"),
        ),
        "chef-solo": Table(
            fields={
                "type": Str(choices=("chef-solo",)),
                "run_list": Array(
                    Str(pattern=r"recipe\[[a-z0-9_-]+(::[a-z0-9_-]+)?\]",
                        pattern_doc='"recipe[cookbook]" or "recipe[cookbook::recipe]"'),
                    min_items=1,
                    unique=True,
                ),
                "attributes": Table(values=Scalar(), key_pattern=SETTING,
                                    doc="node attributes (JSON) for chef-solo"),
            },
            required=("type", "run_list"),
        ),
    },
    doc="how the role's image is provisioned (cattle) or converged in place (pets)",
)
ROLE = Table(
    fields={
        "class": Str(choices=tuple(c.value for c in RoleClass)),
        "base": Str(pattern=NAME, pattern_doc=NAME_DOC, doc="a key of [bases]"),
        "description": Str(),
        "provisioner": PROVISIONER,
        "services": Table(values=SERVICE, doc="service name -> port and health check"),
        "secrets": Array(
            Str(pattern=r"[A-Za-z0-9_/{}\-]+", pattern_doc="a key, or a kv path ending in a key"),
            unique=True,
            doc="keys read from Vault at boot: KEY lives at MOUNT/ROLE/ENV; or MOUNT/PATH/KEY",
        ),
        "count": Table(values=Int(minimum=0), doc="cattle: nodes per environment"),
        "instances": Table(
            values=Array(Str(pattern=NAME, pattern_doc=NAME_DOC), unique=True),
            doc="pets and snowflakes: named instances per environment",
        ),
        "depends_on": Array(Str(pattern=NAME, pattern_doc=NAME_DOC), unique=True),
        "data": Str(doc="pets: what data lives on the instance (shown before a replace)"),
        "settings": Table(values=Scalar(), key_pattern=SETTING,
                          doc="free role settings, passed to provisioners"),
    },
    required=("class", "base", "provisioner"),
)
ENVIRONMENT = Table(
    fields={
        "name": Str(pattern=NAME, pattern_doc=NAME_DOC),
        "soak": Duration(doc="how long a version must pass here before the next environment"),
        "canary_weight": Int(minimum=0, maximum=100, doc="percent of traffic to the new version"),
        "min_healthy_percent": Int(minimum=0, maximum=100),
        "batch_size": Int(minimum=1),
        "manual_approval": Bool(),
        "require_verify": Bool(doc="a version enters only after its exact image passed "
                                   "`fleet verify` (its latest verify)"),
    },
    required=("name",),
)
TARGET = Union(
    tag="kind",
    variants={
        "lab": Table(
            fields={
                "kind": Str(choices=("lab",)),
                "network": Str(pattern=NAME, pattern_doc=NAME_DOC),
                "subnet": Str(pattern=r"\d+\.\d+\.\d+\.0/24", pattern_doc="an IPv4 /24 such as "
                              '"172.30.7.0/24"'),
            },
            required=("kind", "network", "subnet"),
        ),
        "aws": Table(
            fields={
                "kind": Str(choices=("aws",)),
                "region": Str(pattern=r"[a-z]{2}-[a-z]+-\d", pattern_doc="an AWS region"),
                "instance_type": Str(),
                "source_ami_owner": Str(),
                "source_ami_name": Str(),
                "ssh_username": Str(),
            },
            required=("kind", "region", "instance_type"),
        ),
    },
)
BASE = Table(
    fields={
        "suite": Str(choices=("bookworm",)),
        "packages": Array(Str(pattern=r"[a-z0-9][a-z0-9+.\-]*", pattern_doc="a Debian package"),
                          unique=True),
    },
    required=("suite",),
)
SPEC = Table(
    fields={
        "fleet": Table(
            fields={
                "name": Str(pattern=NAME, pattern_doc=NAME_DOC),
                "consul": URL,
                "vault": URL,
                "secrets_mount": Str(pattern=NAME, pattern_doc=NAME_DOC, doc="Vault kv-v2 mount"),
            },
            required=("name", "consul", "vault", "secrets_mount"),
        ),
        "environments": Array(ENVIRONMENT, min_items=1, doc="in promotion order"),
        "bases": Table(values=BASE, min_keys=1),
        "targets": Table(values=TARGET, min_keys=1),
        "roles": Table(values=ROLE, min_keys=1),
    },
    required=("fleet", "environments", "bases", "targets", "roles"),
    doc="fleet.toml: the fleet definition",
)


@dataclass(frozen=True)
class Environment:
    name: str
    soak_seconds: int
    canary_weight: int
    min_healthy_percent: int
    batch_size: int
    manual_approval: bool
    require_verify: bool = False


@dataclass(frozen=True)
class Check:
    kind: str
    path: str
    interval: str
    timeout: str


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    check: Check


@dataclass(frozen=True)
class Provisioner:
    kind: str
    scripts: tuple[str, ...]
    run_list: tuple[str, ...]
    attributes: Mapping[str, Any]


@dataclass(frozen=True)
class Role:
    name: str
    cls: RoleClass
    base: str
    provisioner: Provisioner
    services: tuple[Service, ...]
    secrets: tuple[str, ...]
    count: Mapping[str, int]
    instances: Mapping[str, tuple[str, ...]]
    depends_on: tuple[str, ...]
    data: str
    settings: Mapping[str, Any]


@dataclass(frozen=True)
class Base:
    name: str
    suite: str
    packages: tuple[str, ...]


@dataclass(frozen=True)
class Target:
    name: str
    kind: str
    settings: Mapping[str, str]


@dataclass(frozen=True)
class Fleet:
    name: str
    consul: str
    vault: str
    secrets_mount: str
    environments: tuple[Environment, ...]
    bases: Mapping[str, Base]
    targets: Mapping[str, Target]
    roles: Mapping[str, Role]

    @property
    def kv_prefix(self) -> str:
        """Where the fleet's catalog, channels and history live in Consul KV."""
        return f"fleet/{self.name}"

    def env_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.environments)

    def lab_target(self) -> Target:
        for target in self.targets.values():
            if target.kind == "lab":
                return target
        raise ConfigError("fleet.toml has no target of kind \"lab\"",
                          fix='add [targets.lab] with kind = "lab", network and subnet')


def seconds(duration: str) -> int:
    """'1h30m' -> 5400."""
    total, number = 0, ""
    for char in duration:
        if char.isdigit():
            number += char
        else:
            total += int(number) * {"h": 3600, "m": 60, "s": 1}[char]
            number = ""
    return total


def problems(data: Mapping[str, Any]) -> list[Problem]:
    """Every problem in a parsed fleet.toml: shape first, then cross-references."""
    found = SPEC.check(dict(data), "")
    if found:
        return found  # cross-checks on a malformed shape would only repeat the same mistakes
    return _cross_checks(data)


def _cross_checks(data: Mapping[str, Any]) -> list[Problem]:
    found: list[Problem] = []
    envs = [e["name"] for e in data["environments"]]
    seen_env: dict[str, int] = {}
    for i, name in enumerate(envs):
        if name in LOCAL_ENVS:
            found.append((f"environments[{i}].name",
                          f'"{name}" is reserved for the nodes of fleet verify and the Vagrantfile'))
        if name in seen_env:
            found.append((f"environments[{i}].name",
                          f'duplicate environment "{name}" (also environments[{seen_env[name]}])'))
        seen_env.setdefault(name, i)
    roles: Mapping[str, Any] = data["roles"]
    mount = data["fleet"]["secrets_mount"]
    instance_owner: dict[str, str] = {}
    for rname, role in roles.items():
        path = f"roles.{rname}"
        if role["base"] not in data["bases"]:
            found.append((f"{path}.base", f'unknown base "{role["base"]}"'
                          f"{did_you_mean(role['base'], data['bases'])}"))
        cattle = role["class"] == RoleClass.CATTLE
        per_env, other = ("count", "instances") if cattle else ("instances", "count")
        if other in role:
            found.append((f"{path}.{other}", f"a {role['class']} role takes {per_env}, not {other}"))
        if per_env not in role:
            found.append((f"{path}.{per_env}", "missing required key"))
        else:
            table = role[per_env]
            for env in table:
                if env not in seen_env:
                    found.append((f"{path}.{per_env}.{env}",
                                  f"unknown environment{did_you_mean(env, envs)}"))
            for env in envs:
                if env not in table:
                    found.append((f"{path}.{per_env}.{env}", f'environment "{env}" is missing'))
            if not cattle:
                for env, names in table.items():
                    for j, inst in enumerate(names):
                        where = join(f"{path}.instances.{env}", j)
                        if inst in instance_owner:
                            found.append((where, f'duplicate instance "{inst}" (also in '
                                                 f"{instance_owner[inst]})"))
                        instance_owner.setdefault(inst, f"roles.{rname}")
        for j, dep in enumerate(role.get("depends_on", [])):  # optional key
            where = join(f"{path}.depends_on", j)
            if dep == rname:
                found.append((where, "a role cannot depend on itself"))
            elif dep not in roles:
                found.append((where, f'unknown role "{dep}"{did_you_mean(dep, roles)}'))
        for j, secret in enumerate(role.get("secrets", [])):  # optional key
            if "/" in secret and secret.split("/", 1)[0] != mount:
                found.append((join(f"{path}.secrets", j),
                              f'secret path "{secret}" is outside the fleet\'s mount "{mount}/"'))
        ports: dict[int, str] = {}
        for sname, svc in role.get("services", {}).items():  # optional key
            if svc["port"] in ports:
                found.append((f"{path}.services.{sname}.port",
                              f"port {svc['port']} is already used by service {ports[svc['port']]}"))
            ports.setdefault(svc["port"], sname)
            if svc["check"]["type"] == "http" and "path" not in svc["check"]:
                found.append((f"{path}.services.{sname}.check.path",
                              "an http check needs a path"))
    if not found:
        found += _cycles(roles)
    return found


def _cycles(roles: Mapping[str, Any]) -> list[Problem]:
    """depends_on must be acyclic: report each cycle once, as a->b->a."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    found: list[Problem] = []

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for dep in roles[name].get("depends_on", []):  # optional key
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep):], dep]
                found.append((f"roles.{name}.depends_on",
                              f"depends_on cycle: {' -> '.join(cycle)}"))
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[name] = 2

    for name in roles:
        if name not in state:
            visit(name, [name])
    return found


def parse(text: str, source: str = "fleet.toml") -> Fleet:
    """Parse and validate fleet.toml text; ConfigError lists every problem with its line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}",
                          [f"{source}: {exc}"], fix="fix the syntax and run fleet validate") from exc
    found = problems(data)
    if found:
        lines = [render(source, text, path, msg) for path, msg in found]
        raise ConfigError(f"{source} has {len(lines)} problem(s)", lines,
                          fix="fix them and run fleet validate")
    return build(data)


def render(source: str, text: str, path: str, message: str) -> str:
    """fleet.toml:LINE: path: message."""
    return f"{source}:{locate(text, path)}: {path}: {message}"


def build(data: Mapping[str, Any]) -> Fleet:
    """Turn a validated document into the typed model, filling documented defaults."""
    envs = tuple(
        Environment(
            name=e["name"],
            soak_seconds=seconds(e.get("soak", "0s")),
            canary_weight=e.get("canary_weight", 0),
            min_healthy_percent=e.get("min_healthy_percent", 100),
            batch_size=e.get("batch_size", 1),
            manual_approval=e.get("manual_approval", False),
            require_verify=e.get("require_verify", False),
        )
        for e in data["environments"]
    )
    roles = {name: _role(name, r) for name, r in data["roles"].items()}
    bases = {
        name: Base(name, b["suite"], tuple(b.get("packages", ())))
        for name, b in data["bases"].items()
    }
    targets = {
        name: Target(name, t["kind"], {k: v for k, v in t.items() if k != "kind"})
        for name, t in data["targets"].items()
    }
    f = data["fleet"]
    return Fleet(f["name"], f["consul"], f["vault"], f["secrets_mount"], envs, bases, targets,
                 roles)


def _role(name: str, r: Mapping[str, Any]) -> Role:
    # .get() below reads optional keys of an already validated document, with documented defaults
    p = r["provisioner"]
    services = tuple(
        Service(sname, s["port"], Check(s["check"]["type"], s["check"].get("path", ""),
                                        s["check"].get("interval", "5s"),
                                        s["check"].get("timeout", "2s")))
        for sname, s in r.get("services", {}).items()
    )
    return Role(
        name=name,
        cls=RoleClass(r["class"]),
        base=r["base"],
        provisioner=Provisioner(p["type"], tuple(p.get("scripts", ())),
                                tuple(p.get("run_list", ())), dict(p.get("attributes", {}))),
        services=services,
        secrets=tuple(r.get("secrets", ())),
        count=dict(r.get("count", {})),
        instances={env: tuple(names) for env, names in r.get("instances", {}).items()},
        depends_on=tuple(r.get("depends_on", ())),
        data=r.get("data", ""),
        settings=dict(r.get("settings", {})),
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of fleet.toml, generated from the same spec that validates it."""
    schema = SPEC.schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "fleet.toml"
    return schema
