"""In-place work over SSH (Fabric): `fleet converge` runs a pet's or snowflake's provisioner on
its running instances; `fleet run` runs an ad-hoc command on a role's nodes.

Nodes are reached on the lab network as root with the lab key (the one `fleet verify` makes,
mounted read-only as root's authorized_keys when a node starts, never baked), and each
connection trusts only the node's own ed25519 host key, read through `docker exec`. Results
are per host: a host that is down or fails is reported beside the others, never instead of
them.

Cattle carry the key too, for diagnostics (`fleet run web -- cat /etc/hostname`, as Fabric and
Kamal users expect), but read-mostly: their entry is `restrict`ed (a command runs; no port,
agent or X11 forwarding, no pty: see services.cattle.cattle_keys), nothing is uploaded to them,
and `fleet converge` refuses them. A command is not kept from writing (it runs as root), but
cattle are never changed in place: a change made by hand dies with the node at its next
replacement, and the way to change cattle is a new image.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fleet.adapters import docker, ssh
from fleet.errors import FleetError
from fleet.model.definition import Role
from fleet.model.grammar import RoleClass
from fleet.services import topology
from fleet.services.access import lab_hosts
from fleet.services.bakeinputs import UPLOADED, provision_digest, script_environment, script_uploads
from fleet.services.context import Context, who
from fleet.services.state import FleetState
from fleet.services.topology import container

Say = Callable[[str], None]
LIMIT = 5   # hosts worked on at once


@dataclass(frozen=True)
class RemoteReport:
    role: str
    command: str
    results: tuple[ssh.HostResult, ...]

    @property
    def failed(self) -> tuple[ssh.HostResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    def error(self, what: str) -> FleetError | None:
        """Hosts that failed; WHAT names the work (`converge of web`, the command in backticks)."""
        if not self.failed:
            return None
        names = ", ".join(r.host for r in self.failed)
        return FleetError(f"{what} failed on {len(self.failed)} of {len(self.results)} "
                          f"host(s): {names}", "each host's result is above")


def _env_names(ctx: Context, envs: Iterable[str]) -> list[str]:
    return [e.name for e in ctx.fleet.chosen_envs(envs)]


def nodes(ctx: Context, role: Role, envs: Iterable[str]) -> list[str]:
    """The role's node names: its instances (pets, snowflakes), or its cattle containers."""
    chosen = _env_names(ctx, envs)
    if role.cls is RoleClass.PET:  # an environment's own: never the pets it borrows
        owned = {i for env in chosen for i in ctx.fleet.owned_pets(env)}
        return [container(ctx, i) for env in chosen for i in role.instances[env] if i in owned]
    if role.cls is not RoleClass.CATTLE:
        return [container(ctx, i) for env in chosen for i in role.instances[env]]
    return sorted(n.name for n in docker.lab_nodes()
                  if n.role == role.name and n.env in chosen
                  and topology.owns(ctx, n.name, n.fleet) and not n.name.endswith(".draining"))


def _nothing_in(ctx: Context, role: Role, envs: Iterable[str], what: str) -> FleetError:
    """No node of role in envs; a pet's environment that borrows its pets says whose."""
    chosen = _env_names(ctx, envs)
    lenders = sorted({ctx.fleet.environment(e).pets_from for e in chosen} - {""})
    if role.cls is RoleClass.PET and lenders:
        return FleetError(f"{role.name} has no {what} in {', '.join(chosen)}: "
                          f"{', '.join(lenders)}'s pets serve it (pets_from)",
                          f"name the lender: --env {lenders[0]}")
    return FleetError(f"{role.name} has no {what} in {', '.join(chosen)}",
                      "fleet plan shows what is missing; fleet apply creates it")


def run(ctx: Context, role_name: str, envs: Iterable[str], command: str, *,
        limit: int = LIMIT) -> RemoteReport:
    """COMMAND on every node of ROLE (in ENVs), at most `limit` at once: a pet's or
    snowflake's instances, or the cattle nodes running now (one draining away is not)."""
    role = ctx.fleet.role(role_name)
    names = nodes(ctx, role, envs)
    if not names:
        raise _nothing_in(ctx, role, envs, "node")
    hosts, down = lab_hosts(ctx, names)
    results = {r.host: r for r in [*down, *ssh.run_group(hosts, command, limit=limit)]}
    return RemoteReport(role.name, command, tuple(results[n] for n in names))


def converge(ctx: Context, role_name: str, envs: Iterable[str], *, instances: Iterable[str] = (),
             limit: int = LIMIT, say: Say) -> RemoteReport:
    """The role's provisioner, with its current settings, on each running instance in place."""
    role = ctx.fleet.role(role_name)
    if role.cls is RoleClass.CATTLE:
        raise FleetError(f"{role.name} is cattle: never changed in place",
                         f"bake a new image and promote it (fleet bake {role.name})")
    if role.provisioner.kind != "shell":
        raise FleetError(f"{role.name} is provisioned by {role.provisioner.kind}, which cannot "
                         "run in the lab (no Chef Infra Client here)",
                         "converge it with chef-solo in a real account")
    wanted = {container(ctx, i) for i in instances}
    names = [n for n in nodes(ctx, role, envs) if not wanted or n in wanted]
    if not names:
        raise _nothing_in(ctx, role, envs, "instance")
    say(f"converging {role.name} on {', '.join(names)} over SSH")
    lib, role_scripts = script_uploads(ctx, role)
    env = " ".join(shlex.quote(pair) for pair in script_environment(role))
    # each script run by its shebang, as a bake runs it (packer/lab-shell.pkr.hcl): the same
    # script does the same thing baked or converged
    paths = [shlex.quote(remote) for _, remote in role_scripts]
    scripts = " && ".join(f"env {env} {path}" for path in paths)
    command = f"chmod 0755 {' '.join(paths)} && {scripts}; code=$?; rm -rf {UPLOADED}; exit $code"
    hosts, down = lab_hosts(ctx, names)
    prepared = ssh.run_group(hosts, f"mkdir -p {UPLOADED}", limit=limit)
    ready = [h for h, r in zip(hosts, prepared, strict=True) if r.ok]
    done = ssh.run_group(ready, command, uploads=lib + role_scripts, limit=limit)
    results = {r.host: r for r in [*down, *prepared, *done]}
    _record(ctx, role, [r.host for r in done if r.ok])
    return RemoteReport(role.name, "converge", tuple(results[n] for n in names))


def _record(ctx: Context, role: Role, hosts: Iterable[str]) -> None:
    """What each converged instance now has, for `fleet plan` (its converge action)."""
    digest = provision_digest(ctx, role)
    state = FleetState(ctx.consul(), ctx.fleet.kv_prefix)
    try:
        for host in hosts:   # a host is its container, named fleet + instance
            state.set_converged(host.removeprefix(f"{ctx.fleet.name}-"), digest, who())
    except FleetError as exc:
        raise FleetError(f"{role.name} converged, but Consul did not record it: {exc.what}",
                         f"rerun fleet converge {role.name} (it is idempotent)") from exc
