"""fleet apply: carry a plan out, in its order (images, secrets, every environment's pets and
snowflakes, then every environment's cattle, roles in depends_on order), and stop at the first
failure with what was done so far.

- Images: the roles to bake are baked (`fleet bake`), under a version derived from git.
- Secrets: missing Vault policies and AppRoles are synced (`fleet secrets sync`); a missing
  secret value is shown, never invented: `fleet secrets put` stores it.
- Pets and snowflakes: for each environment, Terraform plans again with the images now baked
  (and snowflakes that are not named kept as they are); if that plan does other work than the
  plan shown, apply stops: reality moved. Otherwise it applies that saved plan, then converges
  (over SSH) the instances whose settings or provisioner changed, in place (a pet whose role
  has a newer image is only offered a move: see fleet/model/plan.py). An environment's pets and
  snowflakes are one Terraform state. Every environment's are applied before any cattle: the
  cattle depend on them in the example, and a pets_from borrower's (the canary's) on its
  lender's, whose database their migrations change; a pet that depends on cattle would need
  its own state.
- Cattle go through the promotion machinery (fleet/workflows/promote/): a role that never ran
  gets its current image promoted to the first environment; a group to grow or shrink, or
  nodes at another version, is a promotion of the channel's version (the same red/black steps,
  gated on health); a node that is gone (not in Consul, a failed member of it, or its
  container gone) is replaced: Terraform destroys it, which forces it out of Consul, and
  creates it again.

A saved plan (`--plan FILE`) is refused when a fresh plan would do other work. Every step is
idempotent, so an apply cut short is finished by the next one; a second apply finds nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from fleet.adapters import docker
from fleet.errors import FleetError
from fleet.model.image import current
from fleet.model.nodes import node_name
from fleet.model.plan import Action, Item, Options, Plan, PlanError
from fleet.services.bakeinputs import provision_digest
from fleet.services.catalog import Catalog
from fleet.services.context import Context
from fleet.services.lock import env_lock
from fleet.services.state import FleetState
from fleet.workflows import bake, promote, remote
from fleet.workflows.plan import Reading, plan, plan_machines, planfile, workspace

Say = Callable[[str], None]
MACHINE_ACTIONS = {Action.CREATE: "create", Action.UPDATE: "update", Action.REPLACE: "replace",
                   Action.DESTROY: "delete"}


@dataclass(frozen=True)
class Done:
    env: str
    role: str
    target: str
    action: Action
    detail: str


@dataclass(frozen=True)
class ApplyReport:
    plan: Plan
    done: tuple[Done, ...]
    seconds: float


def stale(saved: Plan, fresh: Plan) -> str:
    """'' when a saved plan still describes the work; else the first difference."""
    if saved.fleet != fresh.fleet:
        return f"it is a plan of fleet {saved.fleet}, not {fresh.fleet}"
    if saved.same_work(fresh):
        return ""
    old = {(i.env, i.target, i.action.value) for i in saved.items}
    new = {(i.env, i.target, i.action.value) for i in fresh.items}
    gone, added = sorted(old - new), sorted(new - old)
    if added:
        return "now also: " + " ".join(added[0]).strip()
    if gone:
        return "no longer: " + " ".join(gone[0]).strip()
    return "what is blocked changed"


def apply(ctx: Context, envs: Iterable[str], options: Options, *, saved: Plan | None,
          confirm: Callable[[Plan], bool], approve: Callable[[str], bool],
          say: Say) -> ApplyReport:
    started = time.monotonic()
    if saved is not None:
        envs, options = saved.envs, saved.options
    reading = plan(ctx, envs, options)
    fresh = reading.plan
    if saved is not None:
        why = stale(saved, fresh)
        if why:
            raise PlanError(f"the saved plan no longer matches reality ({why})",
                            "make a new one: fleet plan --out FILE")
    refused = reading.error()
    if refused is not None:
        raise refused
    if not fresh.changes:
        return ApplyReport(fresh, (), round(time.monotonic() - started, 1))
    if saved is None and not confirm(fresh):
        raise FleetError("apply cancelled: nothing was changed")
    done: list[Done] = []
    work = [i for i in fresh.items if i.change and not i.blocked]
    baked = [i for i in work if i.action is Action.BAKE]
    if baked:
        _bake(ctx, baked, say)
        done += [Done("", i.role, i.target, i.action, "baked") for i in baked]
    if any(i.action is Action.SYNC for i in work):
        from fleet.workflows import secrets

        say(f"syncing Vault policies and AppRoles: {secrets.sync(ctx).changed} change(s)")
        done += [Done(i.env, i.role, i.target, i.action, "synced") for i in work
                 if i.action is Action.SYNC]
    # every environment's pets and snowflakes before any cattle: a pets_from borrower's cattle
    # (the canary's) run against its lender's database, and their migrations need it up
    for env in fresh.envs:
        machines = [i for i in work if i.env == env and i.action in MACHINE_ACTIONS]
        in_place = [i for i in work if i.env == env and i.action in (Action.UPDATE, Action.CONVERGE)]
        if machines:
            done += _machines(ctx, env, fresh, machines, reading, say)
            in_place += _behind(ctx, env, machines)
        if in_place:
            _converge(ctx, env, in_place, say)
            done += [Done(env, i.role, i.target, i.action, "converged") for i in in_place
                     if i.action is Action.CONVERGE]
    for env in fresh.envs:
        done += _cattle(ctx, env, [i for i in work if i.env == env and i.action not in
                                   (Action.SYNC, Action.CONVERGE, *MACHINE_ACTIONS)],
                        reading, approve, say)
    return ApplyReport(fresh, tuple(done), round(time.monotonic() - started, 1))


def _bake(ctx: Context, items: list[Item], say: Say) -> None:
    report = bake.bake(ctx, [i.role for i in items], say=lambda r, m: say(f"[{r}] {m}"))
    failed = [r for r in report.results if r.outcome is bake.Outcome.FAILED]
    if failed:
        raise FleetError(f"bake of {failed[0].role} failed: {failed[0].detail}",
                         "nothing else was applied; fix it and run fleet apply again")


def _machines(ctx: Context, env: str, fresh: Plan, items: list[Item], reading: Reading,
              say: Say) -> list[Done]:
    """Plan the environment's pets and snowflakes again with the baked images, check that it
    is the work shown, apply that saved plan, converge what changed in place."""
    images = {r.name: current(Catalog(ctx.consul(), ctx.fleet.kv_prefix).records(r.name))
              for r in ctx.fleet.roles.values()}
    keep = [i.target for i in fresh.items if i.env == env and i.cls == "snowflake" and i.blocked]
    running = set(docker.lab_containers())
    changes, _ = plan_machines(ctx, env, images, (), fresh.options, running, keep)
    want = sorted((i.target, MACHINE_ACTIONS[i.action]) for i in items)
    got = sorted((c.instance, c.change) for c in changes)
    if want != got:
        raise PlanError(f"{env}: Terraform now plans {got or 'nothing'} for the pets and "
                        f"snowflakes, not {want}: something changed meanwhile",
                        "run fleet plan and fleet apply again")
    say(f"{env}: applying {len(got)} change(s) to pets and snowflakes with Terraform")
    workspace(ctx, env).apply_saved(planfile(ctx, env))
    state = FleetState(ctx.consul(), ctx.fleet.kv_prefix)
    for i in items:  # a new container has its image's provisioner, not the last converge's
        if i.action in (Action.CREATE, Action.REPLACE):
            state.forget_converged(i.target)
    return [Done(env, i.role, i.target, i.action, i.detail) for i in items]


def _behind(ctx: Context, env: str, items: list[Item]) -> list[Item]:
    """The pets just created or replaced whose image was baked with another provisioner than
    the role's now (a pet replaced on the image it kept, after converges changed it): apply
    converges them too, so that the next plan finds nothing."""
    made = [i for i in items if i.cls == "pet" and i.action in (Action.CREATE, Action.REPLACE)]
    if not made:
        return []
    after = workspace(ctx, env).state()
    catalog = Catalog(ctx.consul(), ctx.fleet.kv_prefix)
    behind = []
    for i in made:
        stored = catalog.get(i.role, after[f'terraform_data.pet["{i.target}"]']["input"]["version"])
        baked = stored.record.provision_digest if stored is not None else ""
        if baked and baked != provision_digest(ctx, ctx.fleet.role(i.role)):
            behind.append(replace(i, action=Action.CONVERGE))
    return behind


def _converge(ctx: Context, env: str, items: list[Item], say: Say) -> None:
    """The provisioner in place on the instances whose settings (Terraform recorded them) or
    provisioner changed, one converge per role."""
    by_role: dict[str, list[str]] = {}
    for i in items:
        by_role.setdefault(i.role, []).append(i.target)
    for role, names in by_role.items():
        report = remote.converge(ctx, role, [env], instances=names, say=say)
        if report.failed:
            first = report.failed[0]
            raise FleetError(f"converge of {role} failed on {first.host}: "
                             f"{first.error or first.stderr.strip() or first.exit_code}",
                             "fix the host and run fleet apply again (or fleet converge "
                             f"{role} --env {env})")


def _cattle(ctx: Context, env: str, items: list[Item], reading: Reading,
            approve: Callable[[str], bool], say: Say) -> list[Done]:
    """Promotions, in the items' (depends_on) order: roles new to the first environment go
    together, one rollout per version; a role's other changes are one promotion of it."""
    done: list[Done] = []
    catalog = Catalog(ctx.consul(), ctx.fleet.kv_prefix)
    batches: dict[str, list[Item]] = {}
    for item in items:
        if item.action is Action.PROMOTE:
            image = current(catalog.records(item.role))
            if image is None:
                raise FleetError(f"{item.role} has no image to promote to {env}",
                                 f"fleet bake {item.role}")
            batches.setdefault(image.version, []).append(item)
        elif item.action in (Action.GROW, Action.SHRINK, Action.ROLL):
            version = reading.channels.get((env, item.role)) or _rolling(ctx, env, item.role)
            batches.setdefault(f"{version}\0{item.role}", []).append(item)
    for key, batch in batches.items():
        version = key.split("\0")[0]
        roles = list(dict.fromkeys(i.role for i in batch))
        report = promote.promote(ctx, version, env, roles, say=say, approve=approve)
        done += [Done(env, i.role, i.target, i.action,
                      f"{version}: {report.state.value} in {report.steps} step(s)")
                 for i in batch]
    repairs = [i for i in items if i.action is Action.REPAIR]
    if repairs:
        done += repair(ctx, env, repairs, say)
    return done


def _rolling(ctx: Context, env: str, role: str) -> str:
    """The version an unfinished rollout of ROLE in ENV takes it to (its nodes run, no channel
    is set yet): promoting it again carries that rollout on."""
    rollout = FleetState(ctx.consul(), ctx.fleet.kv_prefix).rollout(env)
    if rollout is None or role not in rollout.roles:
        raise FleetError(f"{role} has nodes in {env} but neither a channel nor a rollout",
                         f"promote a version: fleet promote VERSION --to {env} --role {role}")
    return rollout.version


def repair(ctx: Context, env: str, items: list[Item], say: Say) -> list[Done]:
    """Nodes Terraform holds but that are gone: replaced by applying the desired groups again
    (the environment's rollout lock held), then waited for until they pass.

    Replaced (Terraform's -replace), not forgotten: the destroy of a dead node forces it out
    of Consul (a failed member would keep its name for 72 h), a container still there (its
    agent died, or left) is removed rather than adopted, and the new node, with the same
    Consul node ID (derived from its name), takes the name back at once. See
    terraform/lab/cattle."""
    p = promote.Promoter(ctx, say, promote.STEP_TIMEOUT)
    with env_lock(p.consul, ctx.fleet.kv_prefix, env, wait=False):
        desired, _ = FleetState(p.consul, ctx.fleet.kv_prefix).desired(env)
        say(f"{env}: replacing {', '.join(i.target for i in items)}")
        p.apply(env, desired, replace=[i.target for i in items])
        for role in sorted({i.role for i in items}):
            for version, count in desired.get(role, {}).items():
                names = {node_name(ctx.fleet.name, role, env, version, n) for n in range(count)}
                if any(i.target in names for i in items):
                    ok, why = p.wait(env, role, version, count)
                    if not ok:
                        raise FleetError(f"repair of {role} in {env}: {why}")
    return [Done(env, i.role, i.target, i.action, "replaced") for i in items]
