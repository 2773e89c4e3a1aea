"""Who may read which secret: the per-role Vault policies, the AppRoles, what a sync changes and
which declared secrets are missing. Pure: the workflow reads Vault and carries the plan out.

A role's KEY lives in the kv-v2 mount at MOUNT/ROLE/ENV. Each role has one policy template in
secrets-policy/ROLE.hcl; fleet renders it once per environment ({{mount}}, {{env}}) and refuses
one that grants more than reading MOUNT/data/ROLE/ENV. Each (role, environment) gets an AppRole
bound to that policy alone, whose SecretIDs are single-use.

Shared backends. An environment that uses another's pets (pets_from: canary runs against
production's databases) needs the lender's credentials for them: a secret a role declares
that a pet role it depends on declares too (web's and postgres's db_password) is *borrowed*,
and its one true value is the lender's, at MOUNT/ROLE/LENDER. fleet copies it into the
borrower's own path (MOUNT/ROLE/BORROWER) at `secrets sync`, at every `put` of the lender's
value, before a borrower's node gets its credentials and at a `rotate`; a copy whose lender
has no value any more is removed. The least-privilege choice: every AppRole still reads its
own path and nothing else (the policy check below stays exact), so a canary node reads
production's db_password and never production's secret_key_base or any other of its
secrets, which a policy granting MOUNT/data/ROLE/LENDER would expose (kv-v2 policies stop
at paths, not keys). `secrets check` demands a borrowed secret at the lender, never at the
borrower, and names a copy that drifted from it; `secrets put` of a borrowed secret in the
borrower is refused, naming the lender.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from fleet.errors import ConfigError
from fleet.model.definition import Fleet, Role
from fleet.model.grammar import RoleClass

# A SecretID is unwrapped and used within seconds of delivery: 2 minutes of wrap TTL (the issue
# allows at most 5) covers a slow boot; the SecretID itself dies after one login or 10 minutes.
WRAP_TTL = "120s"
APPROLE_SETTINGS: Mapping[str, str] = {
    "secret_id_num_uses": "1",
    "secret_id_ttl": "600",      # seconds
    "token_ttl": "3600",
    "token_max_ttl": "86400",
    "token_type": "service",
}
APPROLE_MOUNT = "approle"
_PATH = re.compile(r'^\s*path\s+"([^"]+)"\s*\{(.*?)\}', re.MULTILINE | re.DOTALL)
_CAPS = re.compile(r'capabilities\s*=\s*\[([^\]]*)\]')


def name(fleet: str, role: str, env: str) -> str:
    """The policy's and the AppRole's name: fleet-role-env."""
    return f"{fleet}-{role}-{env}"


def kv_path(role: str, env: str) -> str:
    """Where a role's secrets for one environment live, inside the mount."""
    return f"{role}/{env}"


def roles_with_secrets(fleet: Fleet) -> list[Role]:
    return [r for r in fleet.roles.values() if r.secrets]


def runs_in(role: Role, env: str) -> bool:
    """Whether the role has nodes in env: a count above zero, or named instances."""
    if role.cls is RoleClass.CATTLE:
        return role.count.get(env, 0) > 0
    return bool(role.instances.get(env))


def render_policy(template: str, mount: str, env: str) -> str:
    return template.replace("{{mount}}", mount).replace("{{env}}", env)


def grants(policy: str) -> list[tuple[str, tuple[str, ...]]]:
    """Each `path "P" { capabilities = [...] }` of an HCL policy: (P, capabilities)."""
    found = []
    for path, body in _PATH.findall(policy):
        caps = _CAPS.search(body)
        listed = caps.group(1) if caps else ""
        found.append((path, tuple(c.strip().strip('"') for c in listed.split(",") if c.strip())))
    return found


def excess(policy: str, mount: str, role: str, env: str) -> list[str]:
    """What a rendered policy grants beyond reading the role's own secrets: [] when least
    privilege holds."""
    own = f"{mount}/data/{kv_path(role, env)}"
    found = grants(policy)
    if not found:
        return ["it grants no path at all"]
    problems = []
    for path, caps in found:
        if path != own:
            problems.append(f'path "{path}" is not {own}')
        extra = sorted(set(caps) - {"read"})
        if extra:
            problems.append(f'path "{path}" grants {", ".join(extra)} (only read is allowed)')
    if re.search(r"\{\{\w+\}\}", policy):
        problems.append("an unknown {{placeholder}} is left (only {{mount}} and {{env}} exist)")
    return problems


@dataclass(frozen=True)
class DesiredAccess:
    """One role in one environment: its policy text and its AppRole's settings."""

    role: str
    env: str
    name: str
    policy: str
    approle: Mapping[str, str]


def desired(fleet: Fleet, templates: Mapping[str, str]) -> list[DesiredAccess]:
    """Every (role, environment) of the roles that declare secrets; refuses a missing template
    or one that grants more than least privilege, naming each problem."""
    problems: list[str] = []
    found = []
    for role in roles_with_secrets(fleet):
        if role.name not in templates:
            problems.append(f"secrets-policy/{role.name}.hcl is missing")
            continue
        for env in fleet.env_names():
            policy = render_policy(templates[role.name], fleet.secrets_mount, env)
            problems += [f"secrets-policy/{role.name}.hcl ({env}): {p}"
                         for p in excess(policy, fleet.secrets_mount, role.name, env)]
            access_name = name(fleet.name, role.name, env)
            found.append(DesiredAccess(role.name, env, access_name, policy,
                                       {**APPROLE_SETTINGS, "token_policies": access_name}))
    problems += [f"secrets-policy/{r}.hcl names no role that declares secrets"
                 for r in sorted(set(templates) - {r.name for r in roles_with_secrets(fleet)})]
    if problems:
        raise ConfigError(f"secrets-policy/ has {len(problems)} problem(s): {problems[0]}",
                          problems, fix="one policy per role that reads only its own path")
    return found


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Change:
    """One thing a sync writes (or leaves): a policy or an AppRole."""

    kind: str        # "policy" | "approle"
    name: str
    action: Action


def diff(want: Iterable[DesiredAccess], policies: Mapping[str, str],
         approles: Mapping[str, Mapping[str, str]]) -> list[Change]:
    """What a sync must do, given the policies and AppRoles Vault has now (by name)."""
    changes = []
    for access in want:
        policy = policies.get(access.name)  # absent: to create
        changes.append(Change("policy", access.name, _action(
            policy is not None, policy is not None and policy.strip() == access.policy.strip())))
        role = approles.get(access.name)  # absent: to create
        changes.append(Change("approle", access.name, _action(
            role is not None, role is not None and all(
                role.get(k) == v for k, v in access.approle.items()))))  # Vault adds more keys
    return changes


def _action(exists: bool, same: bool) -> Action:
    if not exists:
        return Action.CREATE
    return Action.UNCHANGED if same else Action.UPDATE


@dataclass(frozen=True)
class Missing:
    """A secret a role declares that is not in Vault for an environment the role runs in.
    env is where it must be put; borrowers, the environments that take it from there too
    (pets_from), whether or not the role runs in env itself."""

    role: str
    env: str
    key: str
    borrowers: tuple[str, ...] = ()

    def __str__(self) -> str:
        also = f" (used by {', '.join(self.borrowers)} too)" if self.borrowers else ""
        return f"{self.role}/{self.env}: {self.key}{also}"

    def needed_in(self, env: str) -> bool:
        return env == self.env or env in self.borrowers

    def shown_in(self, envs: Iterable[str]) -> str | None:
        """The environment among envs to name it under: its own, else a borrower's."""
        chosen = set(envs)
        return next((e for e in (self.env, *self.borrowers) if e in chosen), None)


def missing(fleet: Fleet, stored: Mapping[tuple[str, str], Iterable[str]]) -> list[Missing]:
    """Declared secrets absent from Vault; stored maps (role, env) to the keys present. A
    borrowed secret is looked for at the lender's path (source), once for all who need it."""
    found: dict[tuple[str, str, str], list[str]] = {}
    for role in roles_with_secrets(fleet):
        for env in fleet.env_names():
            if not runs_in(role, env):
                continue
            for key in role.secrets:
                where = source(fleet, role, env, key)
                if key in set(stored.get((role.name, where), ())):
                    continue
                borrowers = found.setdefault((role.name, where, key), [])
                if where != env:
                    borrowers.append(env)
    return [Missing(r, e, k, tuple(b)) for (r, e, k), b in found.items()]


# ---- shared backends (pets_from) ------------------------------------------------------------

def borrowed_keys(fleet: Fleet, role: Role, env: str) -> tuple[str, ...]:
    """The secrets of role that env takes from the environment whose pets it uses: those a
    pet role it depends on declares too (web's db_password, which postgres declares). None
    where env has pets of its own."""
    lender = next((e.pets_from for e in fleet.environments if e.name == env), "")
    if not lender:
        return ()
    pets = {k for dep in role.depends_on if fleet.roles[dep].cls is RoleClass.PET
            for k in fleet.roles[dep].secrets}
    return tuple(k for k in role.secrets if k in pets)


def source(fleet: Fleet, role: Role, env: str, key: str) -> str:
    """The environment whose path holds the value of role's key in env: the lender's for a
    borrowed secret, env's own otherwise."""
    if key in borrowed_keys(fleet, role, env):
        return fleet.environment(env).pets_env
    return env


@dataclass(frozen=True)
class Stale:
    """A borrower's copy of its lender's secret that is not the lender's value (or absent)."""

    role: str
    env: str
    key: str
    lender: str

    def __str__(self) -> str:
        return f"{self.role}/{self.env}: {self.key} (not {self.lender}'s value)"


@dataclass(frozen=True)
class Mirror:
    """What makes a borrower's copies of its lender's secrets equal to the lender's: keys to
    write (with the lender's value) and keys to drop (the lender has none)."""

    write: Mapping[str, str]
    drop: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.write or self.drop)


def mirror(keys: Iterable[str], lender: Mapping[str, str] | None,
         borrower: Mapping[str, str] | None) -> Mirror:
    """The copy of `keys` from the lender's values into the borrower's, given both paths'
    values now (None: no secret there yet)."""
    lender, borrower = lender or {}, borrower or {}
    write = {k: lender[k] for k in keys if k in lender and borrower.get(k) != lender[k]}
    drop = tuple(k for k in keys if k not in lender and k in borrower)
    return Mirror(write, drop)


# ---- one database, one password ---------------------------------------------------------------
# A secret a cattle role shares with a pet it depends on is one credential: postgres sets its
# application role's password from its db_password, and web, api and sidekiq log in with
# theirs. Each role still reads only its own path, so the value is kept at each; fleet keeps
# them equal: `secrets put` of the pet's value writes it at its sharers' paths too (and their
# pets_from borrowers' copies follow), and `secrets check` names a sharer whose value is not
# the pet's.

def shared_with(fleet: Fleet, role: Role) -> dict[str, str]:
    """key -> the pet role (of those role depends on, by name) whose value role's key must
    be: web's db_password is postgres's. Empty for a pet or snowflake."""
    if role.cls is not RoleClass.CATTLE:
        return {}
    found: dict[str, str] = {}
    for dep in sorted(role.depends_on):
        if fleet.roles[dep].cls is RoleClass.PET:
            for key in fleet.roles[dep].secrets:
                if key in role.secrets:
                    found.setdefault(key, dep)
    return found


def sharers(fleet: Fleet, pet: Role, key: str) -> list[Role]:
    """The cattle roles whose key is pet's value (shared_with), by name."""
    return [r for _, r in sorted(fleet.roles.items()) if shared_with(fleet, r).get(key) == pet.name]


def unlike(fleet: Fleet, role: Role, env: str, key: str, mine: Mapping[str, str],
           pets: Mapping[str, str]) -> Stale | None:
    """role's key in env (its values: mine) against the pet's whose value it must be, in the
    environment whose pets env uses (their values: pets): a Stale naming PET/ENV when both are
    there and differ (an absent one is `missing`'s to name)."""
    pet = shared_with(fleet, role).get(key)
    if pet is None or key not in mine or key not in pets or mine[key] == pets[key]:
        return None
    return Stale(role.name, env, key, f"{pet}/{fleet.environment(env).pets_env}")
