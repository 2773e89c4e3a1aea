"""A pet's files changed by hand, for the roles with `heal = "converge"`.

A provisioner says nothing of the files it writes, so the reconciler's converge finds out:
it marks the time on the pet, converges it (fleet converge's own code, workflows/remote), then
takes the sha256 of every regular file under TREES written since the mark (the provisioner's
files) and records them in KV, <prefix>/reconcile/files/<instance>. Each pass checks them
on the pet (`sha256sum --check`, one SSH command per pet): a file whose sum differs, or that
is gone, is drift, and a converge puts it back. Files that the node itself rewrites (its
Consul watch's upstreams, its agent's configuration) are IGNORED. A pet with no record yet is
converged once to take one; a pet that cannot be reached is left to the plan, which reports it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable

from fleet.adapters import ssh
from fleet.errors import FleetError
from fleet.services.access import lab_hosts
from fleet.services.context import Context
from fleet.services.topology import container
from fleet.workflows import remote

MARK = "/run/fleet-reconcile.mark"
TREES = ("/etc", "/usr/local", "/opt")
IGNORED = ("/etc/fleet/upstreams.json", "/etc/consul.d/", "/etc/hostname", "/etc/hosts",
           "/etc/resolv.conf", "/etc/mtab")
NO_RECORD = "no record of its files since a converge: converged once to take one"
Say = Callable[[str], None]
Pet = tuple[str, str, str]   # (env, role, instance)


def _root(ctx: Context) -> str:
    return f"{ctx.fleet.kv_prefix}/reconcile/files/"


def probe(ctx: Context, pets: Iterable[Pet]) -> dict[Pet, str]:
    """(env, role, instance) -> which of its files differ from its last converge's, '' for
    none (or when it cannot be reached)."""
    pets = list(pets)
    if not pets:
        return {}
    records = {e.key[len(_root(ctx)):]: json.loads(e.value)
               for e in ctx.consul().list(_root(ctx)) if e.value}
    found: dict[Pet, str] = {}
    known = {container(ctx, p[2]): p for p in pets}
    hosts, _ = lab_hosts(ctx, sorted(known))   # one that is down: the plan reports it
    for host in hosts:
        pet = known[host.name]
        if pet[2] not in records:
            found[pet] = NO_RECORD
            continue
        lines = [f"{digest}  {path}" for path, digest in sorted(records[pet[2]].items())]
        command = ("printf '%s\\n' " + " ".join(shlex.quote(line) for line in lines)
                   + " | sha256sum --check --quiet 2>&1; true")
        [result] = ssh.run_group([host], command, limit=1, timeout=60)
        # "PATH: FAILED", "PATH: FAILED open or read" (gone); "sha256sum: ..." name no file
        changed = sorted({line.rsplit(": FAILED", 1)[0] for line in result.stdout.splitlines()
                          if ": FAILED" in line and not line.startswith("sha256sum:")})
        found[pet] = ("changed since its last converge: " + ", ".join(changed)
                      if changed and result.ok else "")
    for p in pets:
        found.setdefault(p, "")
    return found


def converge(ctx: Context, env: str, role: str, instances: list[str],
             say: Say) -> remote.RemoteReport:
    """fleet converge of ROLE on INSTANCES, and the record of the files it wrote."""
    names = [container(ctx, i) for i in instances]
    hosts, down = lab_hosts(ctx, names)
    if down:
        raise FleetError(f"cannot reach {down[0].host}: {down[0].error}")
    ssh.run_group(hosts, f"touch {MARK}", limit=5, timeout=60)
    report = remote.converge(ctx, role, [env], instances=instances, say=say)
    prune = " -o ".join(f"-path {shlex.quote(p.rstrip('/'))}" for p in IGNORED)
    command = (f"find {' '.join(TREES)} -xdev \\( {prune} \\) -prune -o -type f -newer {MARK} "
               "-print0 | xargs -0 -r sha256sum")
    done = {r.host for r in report.results if r.ok}
    for result in ssh.run_group([h for h in hosts if h.name in done], command, limit=5,
                                timeout=120):
        if not result.ok:
            continue
        sums = {}
        for line in result.stdout.splitlines():
            digest, _, path = line.partition("  ")
            if path:
                sums[path] = digest
        instance = result.host.removeprefix(f"{ctx.fleet.name}-")
        ctx.consul().put(_root(ctx) + instance, json.dumps(sums, sort_keys=True),
                         cas=_index(ctx, instance))
    return report


def _index(ctx: Context, instance: str) -> int:
    entry = ctx.consul().get(_root(ctx) + instance)
    return entry.modify_index if entry else 0


def forget(ctx: Context, instance: str) -> None:
    ctx.consul().delete(_root(ctx) + instance)
