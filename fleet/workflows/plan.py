"""fleet plan: read what runs, and diff it against fleet.toml and the channels (model.plan).

What is read, in as few requests as the benchmark wants (none per node):
- Consul KV, one recursive read each: the catalog, the channels, the desired cattle groups,
  and which environments have a Terraform state for their pets and snowflakes;
- Consul health, one request: every service check tagged with the fleet, and every member's
  serfHealth (/v1/health/state, filtered);
- Vault, as `fleet secrets check` reads it: which declared secrets and AppRoles are missing;
- each role's inputs digest, as a bake computes it (files digested by stat-cached reads);
- Docker, one `docker ps`: which lab containers exist (drift of a pet or snowflake removed by
  hand, and of a cattle node whose container is gone though Consul has not noticed yet; only
  when there are pets or snowflakes, or members of the cluster among the fleet's nodes), and
  per environment with pets or snowflakes, Terraform: `terraform show -json` of the
  state and a `terraform plan -out` with the instances fleet.toml wants (environments in
  parallel; the consul backend locks each state while its plan runs).

A pet or snowflake keeps the image it was created with: a new image of its role reaches it
only when `--allow-replace PET` or `--snowflake NAME` names it. The plan offers a pet a `move`
when its role's newest image is made on another base, Packer or template than the one it
runs (platform_digest). Settings change in place, and so does a changed provisioner
(`converge`: its scripts, the lib files and their environment, as provision_digest digests
them, differ from what its last converge ran there, or from what its image was baked with
when it was never converged; KV <prefix>/converged/INSTANCE).

A cattle node that is gone is drift (a `repair`, which apply carries out by replacing it):
one the state holds that Consul does not list, and one Consul still lists that is dead all
the same: a failed member (its agent died without leaving, as when a host dies or its
container is removed with `docker rm -f`), or a member whose container is gone
(model.nodes.gone).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet.adapters import docker
from fleet.adapters.consul import Consul
from fleet.adapters.consul_checks import TaggedNodes
from fleet.errors import FleetError
from fleet.model.cutover import NO_NEW_WORK
from fleet.model.definition import Role
from fleet.model.grammar import RoleClass
from fleet.model.image import ImageRecord, current
from fleet.model.move import Step
from fleet.model.moved import held_back
from fleet.model.nodes import gone, services_json
from fleet.model.plan import (
    Actual,
    Desired,
    MachineChange,
    Options,
    PetRun,
    Plan,
    PlanError,
    data_path,
    refusals,
)
from fleet.model.plan import diff as plan_diff
from fleet.model.spec import did_you_mean
from fleet.services import bulk, topology
from fleet.services.bakeinputs import bakeable, base_image, provision_digest, wanted_digests
from fleet.services.catalog import Catalog
from fleet.services.context import Context
from fleet.services.moves import Moves
from fleet.services.state import FleetState

if TYPE_CHECKING:  # Terraform, the delivery desk and the database service are imported where
    from fleet.adapters import terraform  # used: a cattle fleet's plan saves ~20 ms (issue 19)

TO_BAKE = "to-be-baked"   # a new instance's image while its role still has to be baked
BASE = "base"             # the version of an instance the lab runs on the base image


@dataclass(frozen=True)
class Reading:
    """A plan and what apply needs of what was read for it."""

    plan: Plan
    channels: Mapping[tuple[str, str], str]         # (env, role) -> version

    def error(self) -> PlanError | None:
        """A plan that holds a blocked pet change is refused as a whole."""
        refused = refusals(self.plan)
        if not refused:
            return None
        return PlanError(f"refused: {refused[0]}"
                         + (f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""))


def workspace(ctx: Context, env: str) -> terraform.Workspace:
    """The environment's pets and snowflakes: one Terraform state in the consul backend."""
    from fleet.services import cattle

    return cattle.lab_workspace(ctx, "machines", env)


def check_names(ctx: Context, options: Options) -> None:
    """--allow-replace names pets and --snowflake names snowflakes of fleet.toml."""
    for names, cls, flag in ((options.allow_replace, RoleClass.PET, "--allow-replace"),
                             (options.snowflakes, RoleClass.SNOWFLAKE, "--snowflake")):
        known = [i for r in ctx.fleet.roles.values() if r.cls is cls
                 for per_env in r.instances.values() for i in per_env]
        for name in names:
            if name not in known:
                raise FleetError(f'{flag} {name}: no {cls.value} instance "{name}"'
                                 f"{did_you_mean(name, known)}",
                                 f"{cls.value} instances: {', '.join(known) or 'none'}")


# ---- Consul --------------------------------------------------------------------------------

def _channels(consul: Consul, prefix: str) -> dict[tuple[str, str], str]:
    return {k: c.version for k, c in FleetState(consul, prefix).channels().items()}


def _groups(consul: Consul, prefix: str) -> dict[str, dict[str, dict[str, int]]]:
    return FleetState(consul, prefix).every_desired()


def _nodes(tagged: TaggedNodes) -> tuple[dict[tuple[str, str], set[str]], dict[str, bool]]:
    """(env, role) -> the nodes Consul has a service check of, and node -> whether its
    serfHealth passes (for the fleet's nodes that are members), from one request."""
    found: dict[tuple[str, str], set[str]] = {}
    for tags, names in tagged.by_tags.items():
        found_tags = dict(t.split(":", 1) for t in tags if ":" in t)
        if "env" in found_tags and "role" in found_tags:
            found.setdefault((found_tags["env"], found_tags["role"]), set()).update(names)
    mine = set().union(*found.values()) if found else set()
    return found, {n: ok for n, ok in tagged.members.items() if n in mine}


# ---- pets and snowflakes on Terraform ---------------------------------------------------------

def instances(ctx: Context, env: str) -> dict[str, Role]:
    """Instance name -> its role, for the pets and snowflakes of one environment: the pets
    it owns (Fleet.owned_pets), never those it uses through pets_from, so its Terraform
    state can neither create nor destroy a lender's."""
    owned = set(ctx.fleet.owned_pets(env))
    return {i: r for r in ctx.fleet.roles.values() if r.cls is not RoleClass.CATTLE
            for i in r.instances[env] if r.cls is not RoleClass.PET or i in owned}


def address(role: Role, instance: str) -> str:
    kind = "pet" if role.cls is RoleClass.PET else "snowflake"
    return f'terraform_data.{kind}["{instance}"]'


def machine_vars(ctx: Context, env: str, prior: Mapping[str, Any],
                 images: Mapping[str, ImageRecord | None], to_bake: Iterable[str],
                 options: Options, keep: Iterable[str] = ()) -> dict[str, Any]:
    """The machines module's variables for one environment.

    An instance in the state keeps its image unless named by options; one in `keep` keeps
    everything it has (a snowflake apply may not change). Pet moves add their targets and
    take out the sources they decommissioned (fleet/model/moved.py). A target registers held
    back (Passing 1, Warning 0, NO_NEW_WORK) until its move finishes: it takes no traffic
    but what the cut-over gives it, and gets that back after a reboot mid-move; finishing
    registers it as declared, in a new container on its volume."""
    fleet = ctx.fleet
    net = topology.network(ctx)
    _, public = topology.key_pair(ctx)
    pets: dict[str, Any] = {}
    snowflakes: dict[str, Any] = {}
    named = set(options.allow_replace) | set(options.snowflakes)
    moved = Moves(ctx.consul(), fleet.kv_prefix).placement(env)
    held = {i: r for i, r in instances(ctx, env).items() if i not in moved.decommissioned}
    held.update({t: fleet.role(m.role) for t, m in moved.targets.items()})
    for instance, role in held.items():
        before = prior.get(address(role, instance))
        if before is not None and instance in keep:
            value = {k: before["input"][k] for k in
                     ("image", "role", "env", "version", "services", "settings")}
            value["container"] = before["input"]["name"]
            snowflakes[instance] = value
            continue
        if before is not None and instance not in named:
            image, version = before["input"]["image"], before["input"]["version"]
        elif instance in moved.targets:  # the version the move named
            version = moved.targets[instance].version
            image = Catalog(ctx.consul(), fleet.kv_prefix).require(role.name, version).record.artifact
        elif not bakeable(role):
            image, version = base_image(ctx, role.base), BASE
        elif role.name in to_bake or images.get(role.name) is None:
            image, version = TO_BAKE, TO_BAKE
        else:
            record = images[role.name]
            assert record is not None
            image, version = record.artifact, record.version
        hold = instance in moved.targets and held_back(moved.targets[instance])
        value = {"container": topology.container(ctx, instance), "image": image, "role": role.name,
                 "env": env, "version": version,
                 "services": services_json(fleet.name, role, env, version, *(
                     (1, 0, (NO_NEW_WORK,)) if hold else (1,))),
                 "settings": json.dumps(dict(role.settings), sort_keys=True)}
        if role.cls is RoleClass.PET:
            pets[instance] = {**value, "volume": f"{topology.container(ctx, instance)}-data",
                              "data_path": data_path(role)}
        else:
            snowflakes[instance] = value
    from fleet.services import delivery

    return {"fleet": fleet.name, "network": net.name, "consul_join": topology.consul_join(ctx),
            "authorized_keys": str(public),
            "deliver": delivery.deliver_command(ctx), "pets": pets, "snowflakes": snowflakes}


def plan_machines(ctx: Context, env: str, images: Mapping[str, ImageRecord | None],
                  to_bake: Iterable[str], options: Options, running: set[str],
                  keep: Iterable[str] = ()) -> tuple[tuple[MachineChange, ...],
                                                   dict[str, tuple[str, str]]]:
    """Terraform's plan for the environment's pets and snowflakes, saved for apply, and the
    (role, version) each pet in the state runs; an instance whose container is gone (removed
    by hand) is planned to be replaced: drift."""
    ws = workspace(ctx, env)
    ws.init()
    prior = ws.state()
    gone = [a for a, values in prior.items()
            if a.startswith(("terraform_data.pet[", "terraform_data.snowflake["))
            and values["input"]["name"] not in running]
    variables = machine_vars(ctx, env, prior, images, to_bake, options, keep)
    from fleet.adapters import terraform

    try:
        tf_plan = ws.plan(variables, planfile(ctx, env), replace=gone)
    except terraform.DestroyPrevented as exc:
        pets = [a.split('"')[1] for a in exc.addresses]
        roles = {p: prior[f'terraform_data.pet["{p}"]']["input"]["role"] for p in pets}
        held = "; ".join(f"{p} holds {_data(ctx, roles[p])}" for p in pets)
        raise PlanError(f"the plan would destroy pet(s) {', '.join(pets)} in {env} ({held}): "
                        "refused; Terraform's prevent_destroy guards their data volumes",
                        "put them back in fleet.toml; retiring a pet is a deliberate manual "
                        "step (back up, then remove its volume and state by hand)") from exc
    changes = []
    for change in tf_plan.actionable:
        if change.type != "terraform_data" or change.name not in ("pet", "snowflake"):
            continue
        changes.append(MachineChange(str(change.key), change.change.value, change.reason,
                                     drift=change.address in gone))
    runs = {a.split('"')[1]: (str(v["input"]["role"]), str(v["input"]["version"]))
            for a, v in prior.items() if a.startswith("terraform_data.pet[")}
    return tuple(changes), runs


def _data(ctx: Context, role: str) -> str:
    """What a pet of ROLE holds, as fleet.toml says (the role may be gone from it)."""
    found = ctx.fleet.roles.get(role)  # a role removed from fleet.toml has no description
    return found.data if found is not None and found.data else f"the data of a {role}"


def planfile(ctx: Context, env: str) -> Path:
    return ctx.state_dir / "plans" / f"machines-{env}.tfplan"


# ---- secrets -------------------------------------------------------------------------------

Pairs = frozenset[tuple[str, str]]


def secrets_state(ctx: Context, envs: Iterable[str]) -> tuple[
        dict[tuple[str, str], tuple[str, ...]], Pairs, Pairs]:
    """(env, role) -> the declared secrets missing in Vault, the (env, role)s whose AppRole is
    not synced, and those whose copies of a lender's secrets (pets_from) differ from them
    (`fleet secrets check`; key names only, never a value)."""
    from fleet.model import secrets as model
    from fleet.workflows import secrets

    chosen = set(envs)
    if not any(model.roles_with_secrets(ctx.fleet)):
        return {}, frozenset(), frozenset()
    report = secrets.check(ctx)
    missing: dict[tuple[str, str], tuple[str, ...]] = {}
    for m in report.missing:  # a borrowed one under its lender, or else its borrower
        env = m.shown_in(chosen)
        if env is not None:
            missing[(env, m.role)] = (*missing.get((env, m.role), ()), m.key)
    unsynced = frozenset((e, r.name) for r in model.roles_with_secrets(ctx.fleet)
                         for e in chosen if model.runs_in(r, e)
                         and model.name(ctx.fleet.name, r.name, e) in report.unsynced)
    stale = frozenset((s.env, s.role) for s in report.stale if s.env in chosen)
    return missing, unsynced, stale


# ---- the plan ------------------------------------------------------------------------------

def plan(ctx: Context, envs: Iterable[str] = (), options: Options | None = None,
         nodes: bulk.Early[TaggedNodes] | None = None) -> Reading:
    """The whole plan of the environments (all by default); nodes: the fleet's health read, if
    begun already (bulk.declared_read)."""
    reading_nodes = bulk.on(ctx, nodes, bulk.FLEET_NODES)
    options = options or Options()
    chosen = tuple(e.name for e in ctx.fleet.chosen_envs(envs))
    check_names(ctx, options)
    fleet = ctx.fleet
    prefix = fleet.kv_prefix

    def kv() -> tuple[dict[tuple[str, str], str], dict[str, dict[str, dict[str, int]]], set[str],
                      dict[str, str], dict[str, str]]:
        consul = ctx.consul()
        states = {e.key.rsplit("/", 1)[-1] for e in consul.list(f"{prefix}/terraform/machines/")
                  if "/.lock" not in e.key and e.value}
        converged = FleetState(consul, prefix).converged()
        moved = {m.source: m.target for m in Moves(consul, prefix).all() if m.step is Step.FINISHED}
        return _channels(consul, prefix), _groups(consul, prefix), states, converged, moved

    # independent reads side by side: the health of every node (begun first), KV, the catalog,
    # the digests, the secrets
    with ThreadPoolExecutor(max_workers=4) as pool:
        reading_records = pool.submit(lambda: Catalog(ctx.consul(), prefix).records())
        reading_kv = pool.submit(kv)
        reading_digests = pool.submit(wanted_digests, ctx)
        reading_secrets = pool.submit(secrets_state, ctx, chosen)
        records, (by_env, members) = reading_records.result(), _nodes(reading_nodes.result())
        (channels, groups, states, converged, moved), digests = (reading_kv.result(),
                                                                 reading_digests.result())
        missing, unsynced, stale = reading_secrets.result()
    images = {r: current(x for x in records if x.role == r) for r in fleet.roles}
    have: dict[str, set[str]] = {}
    for record in records:
        if not record.pruned:  # a pruned record is history: its image is gone
            have.setdefault(record.role, set()).add(record.digest)
    to_bake = {r for r, d in digests.items() if d not in have.get(r, set())}
    machine_envs = [e for e in chosen if instances(ctx, e) or e in states]
    machines: dict[str, tuple[MachineChange, ...]] = {}
    runs: dict[str, tuple[str, str]] = {}
    # one `docker ps` serves both: pets' and snowflakes' drift, and members' containers (a
    # cattle node whose container is there but not running is gone: model.nodes.gone)
    listed = docker.lab_nodes() if machine_envs or members else None
    containers = {n.name for n in listed} if listed is not None else None
    started = {n.name for n in listed if n.running} if listed is not None else None
    if machine_envs:
        running = containers or set()
        topology.key_pair(ctx)  # made once, before the environments are planned side by side
        with ThreadPoolExecutor(max_workers=len(machine_envs)) as pool:
            planned = list(pool.map(
                lambda e: plan_machines(ctx, e, images, to_bake, options, running), machine_envs))
        machines = dict(zip(machine_envs, (changes for changes, _ in planned), strict=True))
        runs = {i: v for _, versions in planned for i, v in versions.items()}
    desired = Desired(fleet, digests, channels, chosen, options,
                      provision={r.name: provision_digest(ctx, r) for r in fleet.roles.values()
                                 if r.cls is RoleClass.PET and bakeable(r)},
                      images={r: PetRun(i.version, i.provision_digest, i.platform_digest)
                              for r, i in images.items() if i is not None})
    actual = Actual(
        digests={r: frozenset(d) for r, d in have.items()},
        revoked=frozenset((r.role, r.version) for r in records if r.revoked),
        groups=groups,
        nodes={(e, r.name): frozenset(by_env.get((e, r.name), ())) for e in chosen
               for r in fleet.roles.values() if r.cls is RoleClass.CATTLE},
        machines=machines,
        missing_secrets=missing,
        unsynced=unsynced,
        stale=stale,
        # members: the listed nodes with a serfHealth (_nodes); gone() passes the others
        gone=gone(members, members, started),
        pets=_pets(runs, converged, records),
        moved=moved,
    )
    said = schemas(ctx, chosen, images, started)
    return Reading(replace(plan_diff(desired, actual), migrations=said), channels)


def _pets(runs: Mapping[str, tuple[str, str]], converged: Mapping[str, str],
          records: Iterable[ImageRecord]) -> dict[str, PetRun]:
    """What each running pet has: its version, and the provisioner its last converge ran, or
    the one its image was baked with (unknown for an image recorded before records said)."""
    baked = {(r.role, r.version): r for r in records}
    found = {}
    for instance, (role, version) in runs.items():
        record = baked.get((role, version))
        found[instance] = PetRun(version, converged.get(instance) or (
            record.provision_digest if record else ""), record.platform_digest if record else "")
    return found


def schemas(ctx: Context, envs: Iterable[str], images: Mapping[str, ImageRecord | None],
            running: Collection[str] | None = None) -> dict[str, str]:
    """For each role whose newest image carries migrations, in each environment: what its
    promotion would run there and the database's point of no return (services.database);
    running: the lab's running containers, if listed."""
    said: dict[str, str] = {}
    for role in ctx.fleet.roles.values():
        image = images.get(role.name)
        if role.migrations is None or image is None or not image.migrations:
            continue
        from fleet.services import database

        for env in envs:
            s = database.schema(ctx, role, env, image, running)
            said[f"{env}/{role.name}"] = (
                f"cannot read {database.database_env(ctx, env)}'s database: {s.error}" if s.error
                else f"{image.version} would run {', '.join(s.pending) or 'no migration'}; point "
                     f"of no return {s.point_of_no_return or 'none'}")
    return said
