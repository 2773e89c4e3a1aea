"""The fleet definition (fleet.toml): every check on it, and the typed model it becomes; its
grammar (the spec tables) is fleet/model/grammar.py."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fleet.errors import ConfigError
from fleet.model import cutover, migrations, review, servers
from fleet.model.cutover import MoveSettings
from fleet.model.grammar import LOCAL_ENVS, SPEC, RoleClass
from fleet.model.heal import heal_problem
from fleet.model.locate import locate
from fleet.model.migrations import Migrations
from fleet.model.review import Review
from fleet.model.spec import (
    Problem,
    did_you_mean,
    join,
    seconds,
)


@dataclass(frozen=True)
class Environment:
    name: str
    soak_seconds: int
    canary_weight: int
    min_healthy_percent: int
    batch_size: int
    manual_approval: bool
    max_surge: int = 0         # nodes above count during a rollout (0: one batch; steps())
    require_verify: bool = False
    pets_from: str = ""        # another environment whose pets this one uses ("" = its own)
    ephemeral: bool = False    # made by `fleet env create` / `fleet review up`, outside the chain
    require_rehearsal: bool = False   # pending migrations enter only after a passing rehearsal
    rehearsal_max_age_seconds: int = migrations.DEFAULT_MAX_AGE_SECONDS   # ... this fresh

    @property
    def pets_env(self) -> str:
        """The environment whose pets serve this one."""
        return self.pets_from or self.name


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
    scrub: str = ""   # pets: the script run against a copy of the data (fleet env refresh)
    migrations: Migrations | None = None   # cattle: the schema migrations its image carries
    move: MoveSettings | None = None   # pets: [move], how fleet move copies and cuts over
    heal: str = "report"   # what fleet reconcile does about its drift (fleet/model/heal.py)


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
    review: Review | None = None   # the template of ephemeral environments

    @property
    def kv_prefix(self) -> str:
        """Where the fleet's catalog, channels and history live in Consul KV."""
        return f"fleet/{self.name}"

    def env_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.environments)

    @property
    def chain(self) -> tuple[Environment, ...]:
        """The fixed environments, in promotion order: ephemeral ones are never in it."""
        return tuple(e for e in self.environments if not e.ephemeral)

    def environment(self, name: str) -> Environment:
        """The environment called name; one ConfigError, with did-you-mean, if there is none."""
        for env in self.environments:
            if env.name == name:
                return env
        names = self.env_names()
        raise ConfigError(f'unknown environment "{name}"{did_you_mean(name, names)}',
                          fix=f"environments: {', '.join(names)}")

    def role(self, name: str) -> Role:
        """The role called name; one ConfigError, with did-you-mean, if there is none."""
        if name not in self.roles:
            raise ConfigError(f'unknown role "{name}"{did_you_mean(name, self.roles)}',
                              fix=f"roles: {', '.join(self.roles)}")
        return self.roles[name]

    def chosen_envs(self, names: Iterable[str] = ()) -> tuple[Environment, ...]:
        """The environments named (every one when none is), each resolved, in promotion order."""
        chosen = {self.environment(n).name for n in names}
        return tuple(e for e in self.environments if not chosen or e.name in chosen)

    def owned_pets(self, env: str) -> tuple[str, ...]:
        """The pet instances env owns: its own, never those it uses through pets_from. This
        is all that destroying, refreshing, replacing or converging env's pets may touch."""
        found = next((e for e in self.environments if e.name == env), None)
        if found is not None and found.pets_from:
            return ()  # a borrower has none (the validator says so); never the lender's
        return tuple(i for r in self.roles.values() if r.cls is RoleClass.PET
                     for i in r.instances.get(env, ()))

    def borrowed_pets(self, env: str) -> tuple[str, ...]:
        """The pet instances env uses without owning them: its lender's (pets_from)."""
        lender = self.environment(env).pets_from
        return self.owned_pets(lender) if lender else ()

    def borrowers(self, env: str) -> tuple[str, ...]:
        """The environments whose nodes use env's pets (pets_from = env)."""
        return tuple(e.name for e in self.environments if e.pets_from == env)

    def previous(self, env: Environment) -> Environment | None:
        """The environment before env in the chain (None for the first, and for an ephemeral
        environment, which no version has to pass anything to enter)."""
        if env.ephemeral:
            return None
        index = self.chain.index(env)
        return self.chain[index - 1] if index else None

    @property
    def lab_servers(self) -> int:
        """How many Consul servers and OpenBao nodes the lab runs (1 without a lab target)."""
        return servers.lab_count((t.kind, t.settings) for t in self.targets.values())

    def lab_target(self) -> Target:
        for target in self.targets.values():
            if target.kind == "lab":
                return target
        raise ConfigError("fleet.toml has no target of kind \"lab\"",
                          fix='add [targets.lab] with kind = "lab", network and subnet')


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
    for tname, target in data["targets"].items():
        if target.get("servers", 1) not in servers.SIZES:
            found.append((f"targets.{tname}.servers", f"expected 1, 3 or 5 (an odd raft quorum), "
                          f"got {target['servers']}"))
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
        if "heal" in role and (why := heal_problem(RoleClass(role["class"]), role["heal"])):
            found.append((f"{path}.heal", why))
        if "scrub" in role and role["class"] != RoleClass.PET:
            found.append((f"{path}.scrub", "only a pet role has data to scrub"))
    found += review.problems(data, seen_env)
    found += migrations.problems(data)
    found += cutover.problems(data)
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
            max_surge=e.get("max_surge", 0),
            manual_approval=e.get("manual_approval", False),
            require_verify=e.get("require_verify", False),
            pets_from=e.get("pets_from", ""),
            require_rehearsal=e.get("require_rehearsal", False),
            rehearsal_max_age_seconds=migrations.max_age_seconds(e),
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
                 roles, review.template(data))


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
        scrub=r.get("scrub", ""),
        migrations=migrations.declared(r),
        move=cutover.declared(r),
        heal=r.get("heal", "report"),
    )
