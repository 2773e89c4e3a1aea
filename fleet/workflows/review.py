"""fleet review up / down: a review app per branch, for CI and for people.

`up` names the environment after the branch (review-<slug>, the slug as GitLab's
CI_COMMIT_REF_SLUG makes it: fleet.model.ephemeral), bakes the roles that environment runs from
the current checkout (a role whose inputs did not change comes from the cache), makes the
environment the first time (fleet.workflows.environments.create) or rolls its cattle to the new
version after that, resets its expiry (every deploy does, as GitLab's auto_stop_in), and says
where each service answers. BRANCH names the review app and defaults to the checked-out branch;
the images always come from the checkout, as a CI job's do.

Composes: bake (the images) and environments (create, deploy, destroy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fleet.adapters import git
from fleet.errors import FleetError
from fleet.model import ephemeral
from fleet.model.ephemeral import Record
from fleet.model.grammar import RoleClass
from fleet.services.context import Context
from fleet.services.environments import live, registry
from fleet.workflows import bake, environments

Say = Callable[[str], None]


@dataclass(frozen=True)
class Endpoint:
    role: str
    service: str
    node: str
    url: str
    passing: bool


@dataclass(frozen=True)
class ReviewApp:
    env: str
    branch: str
    commit: str
    version: str
    created: bool                 # made now (False: an existing one was updated)
    record: Record
    endpoints: tuple[Endpoint, ...]
    steps: tuple[str, ...]


def which_branch(ctx: Context, branch: str | None) -> tuple[str, str]:
    """The branch (named, or checked out) and its commit; one clear error without one."""
    name = branch or git.branch(ctx.root)
    if not name:
        raise FleetError(f"{ctx.root} has no branch checked out (a detached HEAD, or not a git "
                         "repository)", "name the branch: fleet review up BRANCH")
    commit = git.commit(ctx.root, name)
    if commit is None:
        raise FleetError(f'branch "{name}" has no commits', "commit something first, then rerun")
    return name, commit


def up(ctx: Context, branch: str | None, *, say: Say) -> ReviewApp:
    name_of_branch, commit = which_branch(ctx, branch)
    template = ephemeral.require_template(ctx.fleet)
    env = ephemeral.review_name(name_of_branch)
    ephemeral.check_name(ctx.fleet, env)
    wanted = _roles(ctx, template.like)
    say(f"{env}: baking {', '.join(wanted)} from the checkout")
    version = _bake(ctx, wanted, say)
    found, _ = registry(ctx).get(env)
    steps: list[str] = []
    if found is None or found.state == "creating":
        made = environments.create(ctx, env, version=version, branch=name_of_branch,
                                   commit=commit, say=say)
        record, steps = made.record, list(made.steps)
    else:
        if found.state == "destroying":
            raise FleetError(f"{env} is being destroyed", f"finish that first: fleet review "
                             f"down {name_of_branch}, then rerun")
        steps.append(environments.deploy(ctx, env, version, say))
        record = environments.touch(ctx, env, commit=commit)
    return ReviewApp(env, name_of_branch, commit, version, found is None, record,
                     tuple(endpoints(ctx, env)), tuple(steps))


def _roles(ctx: Context, like: str) -> list[str]:
    """The bakeable roles a review environment runs: cattle with nodes in it and its pets."""
    template = ctx.fleet.review
    assert template is not None
    like_env = ctx.fleet.environment(like)
    names = [r.name for r in ctx.fleet.roles.values() if
             (r.cls is RoleClass.CATTLE and template.count.get(r.name, 0) and r.count.get(like, 0))
             or (r.cls is RoleClass.PET and not like_env.pets_from and r.instances.get(like))]
    if not names:
        raise FleetError(f"a review environment like {like} would run no role",
                         "give [review] count a cattle role that runs in it")
    return names


def _bake(ctx: Context, roles: list[str], say: Say) -> str:
    """Bake the roles at the checkout's version (cached where nothing changed): the first
    role's version names them all."""
    def quiet(role: str, line: str) -> None:
        say(f"{role}: {line}")

    first = bake.bake(ctx, roles[:1], say=quiet)
    failed = first.error()
    if failed is not None:
        raise failed
    version = first.results[0].version
    if not version:
        raise FleetError(f"the bake of {roles[0]} gave no version", "see fleet bake's output")
    rest = bake.bake(ctx, roles[1:], version=version, say=quiet) if roles[1:] else first
    failed = rest.error()
    if failed is not None:
        raise failed
    return version


def endpoints(ctx: Context, env: str) -> list[Endpoint]:
    """Where each cattle service of the environment answers (from Consul's catalog)."""
    ctx = live(ctx)
    consul = ctx.consul()
    found = []
    for role in ctx.fleet.roles.values():
        if role.cls is not RoleClass.CATTLE or not role.count.get(env, 0):
            continue
        for service in role.services:
            scheme = "http" if service.check.kind == "http" else "tcp"
            for i in consul.instances(service.name, f"env:{env}"):
                if i.meta.get("fleet") == ctx.fleet.name:
                    found.append(Endpoint(role.name, service.name, i.node,
                                          f"{scheme}://{i.address}:{service.port}", i.passing))
    return sorted(found, key=lambda e: (e.role, e.service, e.node))


def down(ctx: Context, branch: str | None, *, keep_data: bool = False,
         say: Say) -> environments.Destroyed:
    """Destroy the branch's review app."""
    name = branch or git.branch(ctx.root)
    if not name:
        raise FleetError("no branch checked out", "name the branch: fleet review down BRANCH")
    return environments.destroy(ctx, ephemeral.review_name(name), keep_data=keep_data, say=say)
