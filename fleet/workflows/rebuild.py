"""fleet env rebuild ENV: every node of a fixed environment created again from fleet.toml and
the channels, a clean slate after drift or an incident; pets keep their data.

- **Pets and snowflakes** (one Terraform state per environment): planned with every instance
  in the state named by Terraform's -replace, then that saved plan applied. Each container is
  destroyed and created again from the definition (services, settings) on the image it runs:
  a rebuild never upgrades a pet (that is `fleet apply --allow-replace PET`), and a pet's
  data volume is not a replaced resource (it carries prevent_destroy), so the new container
  mounts the same data. A plan that would do anything else (an instance fleet.toml added or
  removed) is refused: apply fleet.toml first.
- **Cattle**: the nodes of the environment's desired groups, recreated at the versions their
  channels hold, in batches of the environment's batch_size (Terraform's -replace, whose
  destroy provisioner drains a node out of Consul before the new one takes its name), each
  batch waited for until it passes. Nodes at another version than their channel (a rollout
  not finished) are refused: finish or roll it back first.
- Pets first (cattle depend on them in the example), all under ENV's lock (no rollout,
  refresh or restore meanwhile); recorded in the history. An environment that uses another's
  pets rebuilds only its own nodes, never the pets it borrows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fleet.adapters.terraform import Change
from fleet.errors import FleetError
from fleet.model.nodes import node_name
from fleet.model.plan import Options
from fleet.model.snapshot import batches, off_channel
from fleet.services import cattle, topology
from fleet.services.context import Context, who
from fleet.services.lock import env_lock
from fleet.services.state import FleetState
from fleet.workflows import plan, promote

Say = Callable[[str], None]


@dataclass(frozen=True)
class RebuildReport:
    env: str
    machines: tuple[str, ...]   # pets and snowflakes created again (pets on their volumes)
    cattle: tuple[str, ...]     # cattle nodes created again at their channels' versions
    seconds: float


def rebuild(ctx: Context, env_name: str, say: Say) -> RebuildReport:
    """Create every node of ENV again (see the module's doc)."""
    started = time.monotonic()
    env = ctx.fleet.environment(env_name)
    if env.ephemeral:
        raise FleetError(f"{env.name} is ephemeral: a rebuild is for the fixed environments",
                         f"destroy it and create it again: fleet env destroy {env.name}")
    consul = ctx.consul()
    with env_lock(consul, ctx.fleet.kv_prefix, env.name, wait=False):
        nodes = _cattle_nodes(ctx, env.name)
        machines = _machines(ctx, env.name, say)
        replaced = _cattle(ctx, env.name, env.batch_size, nodes, say)
        FleetState(consul, ctx.fleet.kv_prefix).record(
            {"event": "rebuild", "env": env.name, "who": who(), "machines": list(machines),
             "cattle": list(replaced)})
    return RebuildReport(env.name, machines, replaced, round(time.monotonic() - started, 1))


def _machines(ctx: Context, env: str, say: Say) -> tuple[str, ...]:
    """Replace every pet and snowflake in ENV's state, and wait until they pass."""
    ws = plan.workspace(ctx, env)
    ws.init()
    prior = ws.state()
    mine = {plan.address(role, i): (i, role) for i, role in plan.instances(ctx, env).items()
            if plan.address(role, i) in prior}
    if not mine:
        return ()
    variables = plan.machine_vars(ctx, env, prior, {}, (), Options())
    saved = plan.planfile(ctx, env)
    tf_plan = ws.plan(variables, saved, replace=sorted(mine))
    other = [c for c in tf_plan.actionable if c.address not in mine or c.change is not Change.REPLACE]
    if other:
        raise FleetError(f"{env}: Terraform would also {other[0].change.value} {other[0].address}: "
                         "a rebuild only creates again what exists",
                         f"apply fleet.toml first: fleet apply {env}")
    names = sorted(i for i, _ in mine.values())
    say(f"{env}: creating {', '.join(names)} again with Terraform (pets keep their volumes)")
    ws.apply_saved(saved)
    for instance, role in mine.values():
        services = [s.name for s in role.services]
        container = topology.container(ctx, instance)
        if services and not cattle.wait_passing(ctx, services, env, role.name,
                                                _passes(container),
                                                promote.STEP_TIMEOUT)[0]:
            raise FleetError(f"rebuild of {env}: {instance} was created again but does not pass "
                             f"its checks after {promote.STEP_TIMEOUT:.0f}s",
                             f"see docker logs {container}; then fleet env rebuild {env} again")
    return tuple(names)


def _passes(node: str) -> Callable[[cattle.Health], bool]:
    return lambda seen: node in seen.passing


def _cattle_nodes(ctx: Context, env: str) -> list[tuple[str, str, str]]:
    """(role, version, node) of every cattle node ENV's desired groups hold, refused unless
    each is at the version its channel holds."""
    state = FleetState(ctx.consul(), ctx.fleet.kv_prefix)
    desired, _ = state.desired(env)
    channels = {role: found.version for role in desired
                if (found := state.channel(env, role)) is not None}
    wrong = off_channel(desired, channels)
    if wrong:
        raise FleetError(f"{env}: {', '.join(wrong)} has nodes at another version than its "
                         "channel (a rollout not finished?): refused",
                         f"finish it first (fleet promote VERSION --to {env}, or fleet rollback "
                         f"{env}), then rebuild")
    return [(role, version, node_name(ctx.fleet.name, role, env, version, n))
            for role, groups in sorted(desired.items()) for version, count in sorted(groups.items())
            for n in range(count)]


def _cattle(ctx: Context, env: str, batch_size: int, nodes: list[tuple[str, str, str]],
            say: Say) -> tuple[str, ...]:
    """Replace ENV's cattle batch by batch, each batch waited for until it passes."""
    if not nodes:
        return ()
    p = promote.Promoter(ctx, say, promote.STEP_TIMEOUT)
    desired, _ = p.state.desired(env)
    where = {name: (role, version) for role, version, name in nodes}
    done: list[str] = []
    for batch in batches([name for _, _, name in nodes], batch_size):
        say(f"{env}: creating {', '.join(batch)} again")
        p.apply(env, desired, replace=batch)
        for role, version in sorted({where[name] for name in batch}):
            ok, why = p.wait(env, role, version, desired[role][version])
            if not ok:
                raise FleetError(f"rebuild of {env} stopped: {why}",
                                 f"see fleet status {env}; then fleet env rebuild {env} again")
        done += batch
    return tuple(done)
