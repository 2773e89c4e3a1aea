"""Ephemeral environments: create, list, extend, pin, destroy, and the sweep of what expired.

An ephemeral environment is made from fleet.toml's [review] template (fleet.model.ephemeral)
and recorded in Consul KV (fleet.services.environments); from then on every command that works
on environments sees it beside the fixed ones: its own nodes (Terraform states of its own),
its own Consul registrations (its env tag), its own Vault policies and AppRoles per role, and
secrets copied from the template environment (a random lab value where that one has none).

Each step is recorded before it is taken and each is idempotent, so a command killed half-way
finishes when run again: a record in state "creating" is carried on by `fleet env create`
(or `fleet review up`), one in state "destroying" by `fleet env destroy` (or `fleet env gc`).

Destroy leaves nothing behind -- containers, the pets' volumes (unless --keep-data), Consul's
members, node tokens and KV (channels, desired groups, rollout, lock, Terraform states), Vault's
secrets, policies and AppRoles of the environment -- and the history keeps a record of its life.
A fixed environment is never destroyed or expired by these commands.

Composes: secrets (sync the environment's policies and AppRoles), apply (its pets), refresh
(with [review] pets = "copy": a scrubbed copy of the template environment's pet data in them),
promote (its cattle at a version).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from fleet.adapters import docker
from fleet.errors import ConfigError, FleetError
from fleet.model import ephemeral
from fleet.model import secrets as secrets_model
from fleet.model.ephemeral import Record
from fleet.model.grammar import RoleClass
from fleet.model.plan import Options
from fleet.model.secret import Secret
from fleet.services import cattle, credentials, topology
from fleet.services.context import Context, who
from fleet.services.environments import live, registry
from fleet.services.state import FleetState
from fleet.workflows import apply, promote, refresh, secrets

Say = Callable[[str], None]


@dataclass(frozen=True)
class EnvLine:
    """One environment as `fleet env list` shows it."""

    name: str
    kind: str                    # fixed | ephemeral
    versions: dict[str, str]     # cattle role -> version its channel holds
    nodes: int                   # containers of the environment, running
    like: str = ""
    created_by: str = ""
    branch: str = ""
    expires_in: str = ""         # 3h12m, expired, pinned ("" for a fixed one)
    state: str = ""


def listing(ctx: Context) -> list[EnvLine]:
    """Every environment, fixed (in promotion order) then ephemeral."""
    found = registry(ctx).all()
    records = {r.name: r for r in found}
    ctx = live(ctx, found)
    state = FleetState(ctx.consul(), ctx.fleet.kv_prefix)
    running: dict[str, int] = {}
    for node in docker.lab_nodes():
        if node.running and node.fleet == ctx.fleet.name:
            running[node.env] = running.get(node.env, 0) + 1
    now = time.time()
    lines = []
    for env in ctx.fleet.environments:
        versions = {}
        for role in ctx.fleet.roles.values():
            if role.cls is RoleClass.CATTLE and role.count.get(env.name, 0):
                channel = state.channel(env.name, role.name)
                versions[role.name] = channel.version if channel else ""
        record = records.get(env.name)
        if record is None:
            lines.append(EnvLine(env.name, "fixed", versions, running.get(env.name, 0)))
        else:
            lines.append(EnvLine(env.name, "ephemeral", versions, running.get(env.name, 0),
                                 record.like, record.created_by, record.branch,
                                 ephemeral.expires_in(record, now), record.state))
    return lines


@dataclass(frozen=True)
class Created:
    record: Record
    resumed: bool
    steps: tuple[str, ...]


def create(ctx: Context, name: str, *, like: str | None = None, ttl: str | None = None,
           version: str | None = None, branch: str = "", commit: str = "",
           say: Say) -> Created:
    """Make an ephemeral environment (or finish making one a killed command left), with its
    cattle at VERSION when one is given."""
    fleet = ctx.fleet
    template = ephemeral.require_template(fleet)
    ephemeral.check_name(fleet, name)
    seconds = ephemeral.ttl(fleet, ttl)
    like_env = fleet.environment(like or template.like)
    if like_env.ephemeral:
        raise ConfigError(f"{like_env.name} is ephemeral", fix="make it like a fixed environment")
    reg = registry(ctx)
    found, index = reg.get(name)
    resumed = found is not None
    if found is not None and found.state == "destroying":
        raise FleetError(f"environment {name} is being destroyed",
                         f"finish that first: fleet env destroy {name}")
    if found is not None and found.state == "ready":
        raise FleetError(f"environment {name} already exists",
                         f"deploy to it (fleet review up, fleet promote V --to {name}) or "
                         f"destroy it first (fleet env destroy {name})")
    if found is None:
        others = [r for r in reg.all() if r.name != name]
        if len(others) >= template.max:
            raise FleetError(f"{len(others)} ephemeral environments exist, the most [review] "
                             f"max allows", "destroy one (fleet env destroy NAME, fleet env gc)")
        now = time.time()
        found = Record(name, like_env.name, now, who(), seconds, now + seconds,
                       branch=branch, commit=commit)
        FleetState(ctx.consul(), fleet.kv_prefix).record(
            {"event": "environment-created", "env": name, "like": like_env.name,
             "by": found.created_by, "branch": branch, "commit": commit, "ttl": seconds})
        reg.put(found, 0)
        found, index = reg.get(name)
        assert found is not None
    say(f"{name}: {'carrying on making' if resumed else 'making'} an environment like "
        f"{found.like}")
    steps = _build(live(ctx), found, version, say)
    done = replace(found, state="ready").deployed(time.time())
    reg.put(done, index)
    return Created(done, resumed, tuple(steps))


def _build(ctx: Context, record: Record, version: str | None, say: Say) -> list[str]:
    steps = [f"Vault: {secrets.sync(ctx).changed} policy/AppRole change(s)"]
    steps += _copy_secrets(ctx, record)
    result = apply.apply(ctx, [record.name], Options(), saved=None, confirm=lambda plan: True,
                         approve=lambda env: True, say=say)
    steps += [f"{d.target}: {d.detail}" for d in result.done if d.env == record.name]
    template = ephemeral.require_template(ctx.fleet)
    if template.pets == "copy" and ctx.fleet.owned_pets(record.name):
        copied = refresh.refresh(ctx, record.name, record.like, say)  # scrubbed on the way
        steps += [f"{p.target}: a copy of {p.source}'s data"
                  + (f", scrubbed by {p.scrub}" if p.scrub else "") for p in copied.pets]
    if version:
        steps.append(deploy(ctx, record.name, version, say))
    return steps


def _copy_secrets(ctx: Context, record: Record) -> list[str]:
    """Each role's secrets of the template environment, copied to the new one's own path
    (a random lab value where the template has none); a value never leaves Vault otherwise."""
    client = credentials.vault(ctx)
    mount = ctx.fleet.secrets_mount
    steps = []
    for role in secrets_model.roles_with_secrets(ctx.fleet):
        if not secrets_model.runs_in(role, record.name):
            continue
        borrowed = secrets_model.borrowed_keys(ctx.fleet, role, record.name)
        steps += [f"Vault: {role.name} {key} copied from the pets' lender (pets_from)"
                  for key in credentials.mirror(ctx, client, role, record.name)]
        # a MOUNT/PATH/KEY is shared already; a borrowed key is the lender's (just above)
        keys = [k for k in role.secrets if "/" not in k and k not in borrowed]
        have = client.kv_get(mount, secrets_model.kv_path(role.name, record.name)) or {}
        source = client.kv_get(mount, secrets_model.kv_path(role.name, record.like)) or {}
        for key in keys:
            if key in have:
                continue
            value = source.get(key) or base64.b64encode(os.urandom(18)).decode()
            client.kv_set(mount, secrets_model.kv_path(role.name, record.name), key,
                          Secret(value))
            steps.append(f"Vault: {role.name} {key} "
                         f"{'copied from ' + record.like if key in source else 'generated'}")
    return steps


def deploy(ctx: Context, name: str, version: str, say: Say,
           roles: Iterable[str] = ()) -> str:
    """Roll the environment's cattle to VERSION (no gate: it is outside the chain). ctx is a
    live context (fleet.services.environments.live) that holds the environment."""
    fleet = ctx.fleet
    chosen = list(roles) or [r.name for r in fleet.roles.values()
                             if r.cls is RoleClass.CATTLE and r.count.get(name, 0)]
    report = promote.promote(ctx, version, name, chosen, say=say)
    failed = report.error()
    if failed is not None:
        raise failed
    return f"cattle: {', '.join(report.roles)} at {version} ({report.steps} step(s))"


def touch(ctx: Context, name: str, *, commit: str = "") -> Record:
    """After a deploy: the environment expires ttl from now again."""
    reg = registry(ctx)
    found, index = reg.get(name)
    if found is None:
        raise FleetError(f"no ephemeral environment {name}", "fleet env list shows them")
    done = replace(found.deployed(time.time()), commit=commit or found.commit)
    reg.put(done, index)
    return done


def _ephemeral(ctx: Context, name: str) -> tuple[Record, int]:
    if name in (e.name for e in ctx.fleet.chain):
        raise FleetError(f"{name} is a fixed environment of fleet.toml",
                         "fixed environments are never destroyed, extended or expired by fleet env")
    found, index = registry(ctx).get(name)
    if found is None:
        raise FleetError(f"no ephemeral environment {name}", "fleet env list shows them")
    return found, index


def extend(ctx: Context, name: str, ttl: str) -> Record:
    found, index = _ephemeral(ctx, name)
    done = found.extended(time.time(), ephemeral.ttl(ctx.fleet, ttl))
    registry(ctx).put(done, index)
    return done


def pin(ctx: Context, name: str, pinned: bool) -> Record:
    found, index = _ephemeral(ctx, name)
    done = replace(found, pinned=pinned)
    registry(ctx).put(done, index)
    return done


@dataclass(frozen=True)
class Destroyed:
    name: str
    steps: tuple[str, ...]


def destroy(ctx: Context, name: str, *, keep_data: bool = False, say: Say) -> Destroyed:
    """Take the environment down and leave nothing of it, the history's record excepted."""
    found, index = _ephemeral(ctx, name)
    reg = registry(ctx)
    if found.state != "destroying":
        FleetState(ctx.consul(), ctx.fleet.kv_prefix).record(
            {"event": "environment-destroyed", "env": name, "like": found.like,
             "by": who(), "created_by": found.created_by, "branch": found.branch,
             "lived_seconds": round(time.time() - found.created)})
        reg.put(replace(found, state="destroying"), index)
        _, index = reg.get(name)
    say(f"{name}: destroying")
    ctx = live(ctx)
    steps = _teardown(ctx, name, keep_data, say)
    reg.delete(name, index)
    return Destroyed(name, tuple(steps))


def _teardown(ctx: Context, name: str, keep_data: bool, say: Say) -> list[str]:
    fleet = ctx.fleet
    steps = []
    cattle.apply(ctx, name, [])
    steps.append("cattle: destroyed")
    pets = list(fleet.owned_pets(name))  # never the pets it borrows (pets_from)
    machines = cattle.lab_workspace(ctx, "machines", name)
    machines.init()
    held = [a for a in machines.state() if a.startswith("terraform_data.pet_data[")]
    if held:  # the volumes' guard (prevent_destroy) is for fixed environments
        machines.forget(held)
    net = topology.network(ctx)
    _, public = topology.key_pair(ctx)
    machines.apply({"fleet": fleet.name, "network": net.name, "consul_join": topology.consul_join(ctx),
                    "authorized_keys": str(public), "deliver": "", "pets": {},
                    "snowflakes": {}}, refresh=False)
    steps.append(f"pets: {', '.join(pets) or 'none'} destroyed")
    volumes = [f"{topology.container(ctx, p)}-data" for p in pets]
    if keep_data:
        steps.append(f"volumes kept: {', '.join(volumes) or 'none'}")
    else:
        present = set(docker.volumes(f"fleet.name={fleet.name}"))
        docker.remove_volumes([v for v in volumes if v in present])
        steps.append(f"volumes removed: {', '.join(volumes) or 'none'}")
    steps.append(f"Consul: {credentials.sweep(ctx)} node token(s) of gone nodes removed")
    consul, prefix = ctx.consul(), fleet.kv_prefix
    for key in (f"channels/{name}", f"desired/{name}", f"rollouts/{name}", f"locks/{name}",
                f"terraform/cattle/{name}", f"terraform/machines/{name}"):
        consul.delete(f"{prefix}/{key}")
        consul.delete_tree(f"{prefix}/{key}/")
    steps.append("Consul KV: channels, desired groups, rollout, lock, Terraform states removed")
    client = credentials.vault(ctx)
    for role in fleet.roles.values():
        if role.secrets and secrets_model.runs_in(role, name):
            client.kv_destroy(fleet.secrets_mount, secrets_model.kv_path(role.name, name))
    mine = {secrets_model.name(fleet.name, role, name) for role in fleet.roles}
    for policy in set(client.policies(f"{fleet.name}-")) & mine:
        client.delete_policy(policy)
    for approle in set(client.approles(f"{fleet.name}-", secrets_model.APPROLE_MOUNT)) & mine:
        client.delete_approle(approle, secrets_model.APPROLE_MOUNT)
    steps.append("Vault: secrets, policies and AppRoles removed")
    say(f"{name}: destroyed")
    return steps


@dataclass(frozen=True)
class Sweep:
    expired: tuple[str, ...]
    destroyed: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    dry_run: bool

    def error(self) -> FleetError | None:
        if not self.failed:
            return None
        name, why = self.failed[0]
        return FleetError(f"{len(self.failed)} expired environment(s) not destroyed, first "
                          f"{name}: {why}", "rerun fleet env gc")


def gc(ctx: Context, *, dry_run: bool, say: Say) -> Sweep:
    """Destroy every ephemeral environment whose time is up and that is not pinned (one
    failure does not keep the others)."""
    now = time.time()
    expired = [r.name for r in registry(ctx).all() if r.expired(now) or r.state == "destroying"]
    if dry_run:
        return Sweep(tuple(expired), (), (), True)
    destroyed, failed = [], []
    for name in expired:
        try:
            destroy(ctx, name, say=say)
            destroyed.append(name)
        except FleetError as exc:
            failed.append((name, exc.line()))
    return Sweep(tuple(expired), tuple(destroyed), tuple(failed), False)
