"""The fleet plan: everything that differs between fleet.toml plus the channels and what runs.
Pure: `diff(desired, actual) -> Plan`; the plan workflow reads both sides, the apply workflow
carries a plan out.

A plan is a list of `Item`s, in the order apply takes them: images to bake first (roles in
depends_on order), then environment by environment (in fleet.toml's order), each environment's
roles in depends_on order. `Plan.to_json` is the documented structure of `fleet plan --json`
and of a saved plan (`--out`):

    {"fleet": NAME, "envs": [ENV...], "options": {"allow_replace": [...], "snowflakes": [...]},
     "pets_from": {ENV: LENDER, ...}, "borrowed": {ENV: [the lender's pet instances], ...},
     "items": [{"env": ENV or "" for an image, "role": ROLE, "cls": cattle|pet|snowflake,
                "target": what changes (ROLE, a node, an instance), "action": Action,
                "detail": for people, "drift": true when reality moved away from the state,
                "blocked": why apply leaves it alone ('' when apply carries it out)}, ...],
     "changes": N}

`changes` counts the items apply would carry out; `--detailed-exitcode` exits 2 when any item
is a change (blocked or not), 0 when there is none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from fleet.errors import FleetError
from fleet.model import secrets
from fleet.model.definition import Fleet, Role
from fleet.model.grammar import RoleClass
from fleet.model.nodes import node_name


class Action(StrEnum):
    BAKE = "bake"              # the role's inputs digest has no image in the catalog
    CREATE = "create"
    UPDATE = "update"          # in place (a pet's settings): Terraform records, converge applies
    CONVERGE = "converge"      # a pet's provisioner changed since it last ran there: in place
    MOVE = "move"              # a pet runs an older image than its role's: offered, never done
    REPLACE = "replace"
    DESTROY = "destroy"
    PROMOTE = "promote"        # a cattle role that never ran: its current image to the first env
    GROW = "grow"              # cattle: the channel's group below the role's count
    SHRINK = "shrink"
    ROLL = "roll"              # cattle: nodes at another version than the channel's
    REPAIR = "repair"          # cattle: a node the state holds is gone (drift): replaced
    REVOKED = "revoked"        # nodes run a revoked image
    SECRET = "missing secret"  # a secret the role reads at boot is not in Vault
    SYNC = "sync secrets"      # the role's Vault policy and AppRole are not there yet
    WAIT = "awaits promotion"  # no channel in this environment yet: `fleet promote` decides
    MOVED = "moved"            # a pet fleet.toml names was moved to another instance


INFORMATION = frozenset({Action.WAIT, Action.MOVED})


class PlanError(FleetError):
    """A plan that must not be carried out as it stands."""


@dataclass(frozen=True)
class Item:
    env: str        # '' for an image
    role: str
    cls: str
    target: str
    action: Action
    detail: str = ""
    drift: bool = False
    blocked: str = ""

    @property
    def change(self) -> bool:
        return self.action not in INFORMATION


@dataclass(frozen=True)
class Options:
    """What the person asked apply to do beyond the default."""

    allow_replace: tuple[str, ...] = ()   # pets whose replacement is accepted
    snowflakes: tuple[str, ...] = ()      # snowflakes apply may change


@dataclass(frozen=True)
class Plan:
    fleet: str
    envs: tuple[str, ...]
    items: tuple[Item, ...]
    options: Options = field(default_factory=Options)
    # environments that use another's pets (pets_from): env -> the lender, and the lender's
    # instances env uses; the plan never creates, changes or destroys those from env
    pets_from: Mapping[str, str] = field(default_factory=dict)
    borrowed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # roles with migrations: "ENV/ROLE" -> what a promotion of the role's newest image would
    # run on ENV's database, and that database's point of no return (one line each)
    migrations: Mapping[str, str] = field(default_factory=dict)

    @property
    def changes(self) -> int:
        return sum(1 for i in self.items if i.change and not i.blocked)

    @property
    def pending(self) -> bool:
        """Anything differs at all (--detailed-exitcode's 2)."""
        return any(i.change for i in self.items)

    def to_json(self) -> str:
        data = asdict(self)
        data["changes"] = self.changes
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            data: dict[str, Any] = json.loads(text)
            items = tuple(Item(i["env"], i["role"], i["cls"], i["target"], Action(i["action"]),
                               i["detail"], i["drift"], i["blocked"]) for i in data["items"])
            options = Options(tuple(data["options"]["allow_replace"]),
                              tuple(data["options"]["snowflakes"]))
            return cls(data["fleet"], tuple(data["envs"]), items, options,
                       {str(e): str(v) for e, v in data["pets_from"].items()},
                       {str(e): tuple(v) for e, v in data["borrowed"].items()},
                       {str(k): str(v) for k, v in data.get("migrations", {}).items()})
        except (ValueError, KeyError, TypeError) as exc:
            raise PlanError(f"not a saved fleet plan ({type(exc).__name__}: {exc})",
                            "save one with fleet plan --out FILE") from exc

    def same_work(self, other: Plan) -> bool:
        """The same things would be done (details such as image ids aside)."""
        def work(plan: Plan) -> list[tuple[str, str, str, str, str]]:
            return [(i.env, i.role, i.target, i.action.value, i.blocked) for i in plan.items]
        return work(self) == work(other) and self.options == other.options


# ---- ordering ------------------------------------------------------------------------------

def order(fleet: Fleet) -> list[str]:
    """Roles so that each comes after everything it depends_on; otherwise in file order."""
    done: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        for dep in fleet.roles[name].depends_on:
            visit(dep)
        done.append(name)

    for name in fleet.roles:
        visit(name)  # the validator has ruled out cycles
    return done


# ---- the two sides -------------------------------------------------------------------------

@dataclass(frozen=True)
class MachineChange:
    """What Terraform's plan does to one pet or snowflake instance (its container)."""

    instance: str
    change: str         # create | update | replace | delete (adapters.terraform.Change)
    reason: str = ""    # Terraform's action_reason
    drift: bool = False  # the container was gone: fleet asked Terraform to replace it


@dataclass(frozen=True)
class Desired:
    fleet: Fleet
    digests: Mapping[str, str]                 # role -> the inputs digest it needs (lab-bakeable)
    channels: Mapping[tuple[str, str], str]    # (env, role) -> version
    envs: tuple[str, ...]                      # the environments asked for
    options: Options = field(default_factory=Options)
    provision: Mapping[str, str] = field(default_factory=dict)  # role -> provision digest now
    images: Mapping[str, PetRun] = field(default_factory=dict)  # role -> its current image


@dataclass(frozen=True)
class PetRun:
    """What a running pet has (or a role's current image offers): the image version, the
    provisioner (a pet's last converge's provision digest, else its image's) and what the
    image is made on (its platform digest: base, Packer, template); "" when unknown."""

    version: str
    provisioned: str = ""
    platform: str = ""


@dataclass(frozen=True)
class Actual:
    digests: Mapping[str, frozenset[str]]                      # role -> digests in the catalog
    revoked: frozenset[tuple[str, str]]                        # (role, version)
    groups: Mapping[str, Mapping[str, Mapping[str, int]]]      # env -> role -> version -> nodes
    nodes: Mapping[tuple[str, str], frozenset[str]]            # (env, role) -> nodes in Consul
    machines: Mapping[str, tuple[MachineChange, ...]]          # env -> Terraform's plan
    missing_secrets: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    unsynced: frozenset[tuple[str, str]] = frozenset()         # (env, role) without an AppRole
    stale: frozenset[tuple[str, str]] = frozenset()            # (env, role) whose copies of a
                                                               # lender's secrets differ
    gone: Mapping[str, str] = field(default_factory=dict)      # node Consul lists -> why it is
                                                               # gone all the same (nodes.gone)
    pets: Mapping[str, PetRun] = field(default_factory=dict)   # running pet instance -> what
                                                               # it has (Terraform state, KV)
    moved: Mapping[str, str] = field(default_factory=dict)     # source -> target of a
                                                               # finished move (fleet move)


def diff(desired: Desired, actual: Actual) -> Plan:
    fleet = desired.fleet
    roles = order(fleet)
    items: list[Item] = []
    for name in roles:
        role = fleet.roles[name]
        if name in desired.digests and desired.digests[name] not in actual.digests.get(name, ()):
            items.append(Item("", name, role.cls.value, name, Action.BAKE,
                              f"inputs {desired.digests[name][:12]} have no image"))
    for env in desired.envs:
        by_instance = {m.instance: m for m in actual.machines.get(env, ())}
        for name in roles:
            role = fleet.roles[name]
            if (env, name) in actual.unsynced:
                items.append(Item(env, name, role.cls.value, f"{name}/approle", Action.SYNC,
                                  "its Vault policy and AppRole: fleet secrets sync"))
            if (env, name) in actual.stale:
                lender = fleet.environment(env).pets_env
                items.append(Item(env, name, role.cls.value, f"{name}/borrowed", Action.SYNC,
                                  f"its copies of {lender}'s secrets differ from them: "
                                  "fleet secrets sync"))
            items += [_secret(fleet, env, role, key)
                      for key in actual.missing_secrets.get((env, name), ())]
            if role.cls is RoleClass.CATTLE:
                items += _cattle(desired, actual, env, role)
            else:
                items += [_machine(role, env, by_instance[i], desired.options)
                          for i in role.instances[env] if i in by_instance]
                items += _in_place(desired, actual, env, role, set(by_instance))
                items += [Item(env, name, "pet", i, Action.MOVED,
                               f"moved to {actual.moved[i]}: name {actual.moved[i]} in its "
                               "place in fleet.toml") for i in role.instances[env]
                          if i in actual.moved]
        owned = {i for r in fleet.roles.values() for i in r.instances.get(env, ())}
        items += [_machine(None, env, m, desired.options)
                  for m in actual.machines.get(env, ()) if m.instance not in owned]
    lenders = {e: fleet.environment(e).pets_from for e in desired.envs}
    return Plan(fleet.name, desired.envs, tuple(items), desired.options,
                {e: lender for e, lender in lenders.items() if lender},
                {e: fleet.borrowed_pets(e) for e, lender in lenders.items() if lender})


def _secret(fleet: Fleet, env: str, role: Role, key: str) -> Item:
    """A declared secret Vault lacks, where it must be put: a borrowed one at its lender."""
    where = secrets.source(fleet, role, env, key)
    via = f" ({env} takes it from there: pets_from)" if where != env else ""
    return Item(env, role.name, role.cls.value, f"{role.name}/{key}", Action.SECRET,
                f"not in Vault at {fleet.secrets_mount}/{role.name}/{where}{via}",
                blocked=f"fleet secrets put {role.name} {key} --env {where}")


def _cattle(desired: Desired, actual: Actual, env: str, role: Role) -> list[Item]:
    fleet = desired.fleet
    count = role.count[env]
    groups = actual.groups.get(env, {}).get(role.name, {})
    version = desired.channels.get((env, role.name))

    def item(action: Action, detail: str, target: str = role.name, drift: bool = False,
             blocked: str = "") -> Item:
        return Item(env, role.name, "cattle", target, action, detail, drift, blocked)

    if version is None:
        if any(groups.values()):
            return [item(Action.ROLL, "nodes run but no channel is set: an unfinished rollout")]
        if count == 0:
            return []
        if env == fleet.env_names()[0]:
            return [item(Action.PROMOTE, f"create {count} node(s) from the role's current image")]
        return [item(Action.WAIT, f"{count} node(s) once a version is promoted here")]
    found: list[Item] = []
    have = groups.get(version, 0)
    if have < count:
        found.append(item(Action.GROW, f"{version}: {have} -> {count} node(s)"))
    elif have > count:
        found.append(item(Action.SHRINK, f"{version}: {have} -> {count} node(s)"))
    others = {v: n for v, n in groups.items() if v != version and n > 0}
    if others:
        found.append(item(Action.ROLL, ", ".join(f"{n} node(s) at {v}" for v, n in
                                                 sorted(others.items())) + f", channel {version}"))
    for v, n in sorted(groups.items()):
        if n > 0 and (role.name, v) in actual.revoked:
            found.append(item(Action.REVOKED, f"{n} node(s) run revoked {role.name}:{v}",
                              blocked="promote another version or roll back"))
    if role.services and (env, role.name) in actual.nodes:  # without services Consul sees none
        seen = actual.nodes[(env, role.name)]
        for v, n in sorted(groups.items()):
            stem = node_name(fleet.name, role.name, env, v, 0)[:-1]  # names differ by index
            # (sorted once found: at 10,000 nodes sorting every name was a tenth of the plan)
            names = (f"{stem}{i}" for i in range(n))
            for node in sorted(m for m in names if m not in seen or m in actual.gone):
                why = ("is in the state but not in Consul" if node not in seen
                       else f"is gone: {actual.gone[node]}")
                found.append(item(Action.REPAIR, f"{node} {why}: replaced", node, drift=True))
    return found


def _in_place(desired: Desired, actual: Actual, env: str, role: Role,
              changing: set[str]) -> list[Item]:
    """A running pet whose Terraform plan is empty: converge it when its role's provisioner
    changed since it last ran there (settings changes are Terraform's update, which converges
    too); offer a move when its role's image is made on another platform than the one it runs
    (a newer image that differs only in its provisioner is what a converge gives it; a pet is
    never replaced for that unasked: its container holds a live service)."""
    if role.cls is not RoleClass.PET:
        return []
    found = []
    now, image = desired.provision.get(role.name, ""), desired.images.get(role.name)
    for instance in role.instances[env]:
        run = actual.pets.get(instance)
        if run is None or instance in changing:
            continue
        if now and run.provisioned and run.provisioned != now:
            found.append(Item(env, role.name, "pet", instance, Action.CONVERGE,
                              f"its provisioner changed since it last ran there "
                              f"({run.provisioned[:12]} -> {now[:12]}): converged in place"))
        if image and run.platform and image.platform and run.platform != image.platform:
            found.append(Item(env, role.name, "pet", instance, Action.MOVE,
                              f"runs {role.name}:{run.version}; {role.name}:{image.version} "
                              "is made on another base, Packer or template, which no converge "
                              "brings", blocked=f"fleet move {instance} --to NEW moves its data "
                                                "to a new instance of it (or --allow-replace "
                                                f"{instance}: a new container on its volume)"))
    return found


_DATA_PATH = re.compile(r"(/[\w./-]+)")


def data_path(role: Role) -> str:
    """Where a pet's volume is mounted: the first absolute path its `data` names."""
    found = _DATA_PATH.search(role.data)
    return found.group(1).rstrip("/.") if found else "/srv/fleet-data"


def _machine(role: Role | None, env: str, change: MachineChange, options: Options) -> Item:
    action = {"create": Action.CREATE, "update": Action.UPDATE, "replace": Action.REPLACE,
              "delete": Action.DESTROY}[change.change]
    cls = role.cls.value if role else "pet or snowflake"
    name = role.name if role else "(removed)"
    detail = {Action.CREATE: "new instance", Action.UPDATE: "settings changed: in place",
              Action.REPLACE: f"replaced ({change.reason or 'its image or services changed'})",
              Action.DESTROY: "no longer in fleet.toml"}[action]
    blocked = ""
    if change.drift:
        detail = "its container is gone: created again"
    if role is not None and role.cls is RoleClass.PET and action is Action.REPLACE \
            and not change.drift and change.instance not in options.allow_replace:
        blocked = (f"a pet holds {role.data or 'data'}: its volume stays; "
                   f"--allow-replace {change.instance} to replace its container")
    if role is not None and role.cls is RoleClass.SNOWFLAKE and action is not Action.CREATE \
            and not change.drift and change.instance not in options.snowflakes:
        blocked = f"a snowflake changes only when named: --snowflake {change.instance}"
    return Item(env, name, cls, change.instance, action, detail, change.drift, blocked)


def refusals(plan: Plan) -> list[str]:
    """Blocked pet changes: a plan holding one is refused as a whole."""
    return [f"{i.target} ({i.env}): {i.action.value} refused: {i.blocked}"
            for i in plan.items if i.cls == RoleClass.PET.value and i.blocked
            and i.action in (Action.REPLACE, Action.DESTROY)]
