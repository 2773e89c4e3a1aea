"""The lab: the real stack on this machine (dockerd, a Consul server, OpenBao, the base image).

Choices, for whoever runs it:
- Consul runs in server mode with its data dir under .fleet/lab/consul (not -dev, which keeps
  nothing). Its HTTP API listens on 127.0.0.1 and on the lab network's gateway, where nodes
  join it; DNS is off. ACLs are on with default deny (fleet/model/acl.py): the lab makes a
  management token and fleet's operator token once, keeps both 0600 in
  .fleet/lab/consul-acl.json, and writes the operator's policy; fleet commands run with the
  operator token unless CONSUL_HTTP_TOKEN names another. A lab Consul found running without
  ACLs (made by an older fleet) is restarted with them.
- OpenBao runs with integrated (raft) storage under .fleet/lab/openbao (its file backend was
  removed in OpenBao 2.7; raft is the supported persistent store), initialised with one key share and
  unsealed by `lab up`; the unseal key and root token sit 0600 in .fleet/lab/openbao-init.json.
  That is a lab convenience, never a production pattern. The root token is for `lab up` alone:
  commands run with fleet's operator token (fleet/model/vault_policy.py, kept 0600 in
  .fleet/lab/openbao-operator.json, renewed by each `lab up`) unless VAULT_TOKEN names
  another, and a file audit device records every request (openbao_server.py).
- dockerd is started only if none answers, and only a dockerd the lab started is stopped by
  `lab down`. Every process is stopped by the PID the lab recorded, never by name.
- `[targets.lab] servers = 3` (or 5) runs that many Consul servers and OpenBao nodes, each a
  raft peer (consul_server.py, openbao_server.py); `lab status` shows each and both raft
  clusters, `lab kill NAME` / `lab start NAME` crash and start one (members.py), and `lab
  snapshot` / `lab restore` save and put back both stores with their keys (backup.py).
- The lab serves every fleet on the machine: `lab down` and `lab reset` where it was made are
  refused while another fleet has nodes on it; elsewhere, `lab reset` removes that fleet alone
  (sharing.py). Pet data volumes go only with `--delete-volumes`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from fleet.adapters import chef, docker, packer, terraform, vagrant
from fleet.services import baseimage, credentials
from fleet.services.context import Context
from fleet.services.topology import Paths, consul_tokens, network, paths, vault_operator
from fleet.workflows.lab import boots, members, processes, sharing
from fleet.workflows.lab.backup import Backup, restore, snapshot
from fleet.workflows.lab.consul_server import consul_up
from fleet.workflows.lab.engine import docker_up, neighbours_up, network_up
from fleet.workflows.lab.members import Fault, kill, start
from fleet.workflows.lab.openbao_server import openbao_up
from fleet.workflows.lab.parts import (
    LabReport,
    Part,
    PartState,
    base_part,
    consul_part,
    docker_part,
    neighbours_part,
    network_part,
    openbao_part,
    tool_part,
)
from fleet.workflows.lab.processes import Progress

__all__ = ["Backup", "Fault", "LabReport", "Part", "PartState", "down", "kill", "reset",
           "reset_scope", "restore", "snapshot", "start", "status", "up"]


def _base_images_up(ctx: Context, p: Paths, progress: Progress) -> list[str]:
    actions = []
    for base in ctx.fleet.bases.values():
        image = baseimage.ensure(base, ctx.root / "packer" / "base", p.build,
                                 ctx.state_dir / "cache", progress)
        if image.built_now:
            actions.append(f"built base image {image.ref}")
    return actions


# ---- the commands -----------------------------------------------------------------------

def up(ctx: Context, progress: Progress) -> LabReport:
    """Bring every part up; idempotent, and quick when all is already up. If dockerd had
    to be started, and with it the lab's nodes, each node that came back without its
    credentials gets them again (fleet.services.credentials.redeliver)."""
    p = paths(ctx)
    with processes.exclusive(p, progress):
        return _up(ctx, p, progress)


def _up(ctx: Context, p: Paths, progress: Progress) -> LabReport:
    p.lab.mkdir(parents=True, exist_ok=True)
    net = network(ctx)
    actions = docker_up(p, progress)
    docker_started = bool(actions)
    actions += network_up(net, progress)
    actions += neighbours_up(progress)
    actions += consul_up(ctx, p, net, progress)
    actions += openbao_up(ctx, p, net, progress)
    actions += _base_images_up(ctx, p, progress)
    if ctx.consul_token is None:  # the first `lab up` made the operator token just now
        ctx = replace(ctx, consul_token=consul_tokens(p).operator)
    operator = vault_operator(p)
    if ctx.vault_token is None and operator is not None:  # minted just now, as Consul's
        ctx = replace(ctx, vault_token=operator[0])
    if docker_started:
        actions += credentials.redeliver(ctx, progress)
    if processes.recorded_pid(p, "boots", boots.EXE) is None:
        processes.start(p, "boots", boots.argv(ctx))
        actions.append("started the reboot watcher")
    return LabReport(_settled(ctx).parts, tuple(actions))


# How long `lab up`'s last look waits for a part that was up a moment ago to answer again
SETTLE_S = 20.0


def _settled(ctx: Context) -> LabReport:
    """The lab's parts once every one is up, or as they stand after SETTLE_S. Every server
    was seen serving before this look, but a Consul server that rejoined a moment ago can
    start an election (no leader for a second or two) and a loaded host can miss a probe's
    2 s: one look would call that server down."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        report = status(ctx, tools=False)
        if report.healthy or time.monotonic() >= deadline:
            return report
        time.sleep(0.5)


def down(ctx: Context, progress: Progress) -> LabReport:
    """Stop what the lab started here, by PID; data stays for the next `lab up`. Refused,
    before anything stops, while another fleet has nodes on servers this directory owns
    (fleet/workflows/lab/sharing.py)."""
    p = paths(ctx)
    with processes.exclusive(p, progress):
        sharing.require_alone(ctx, p, "down", progress)
        if not sharing.owns_servers(p):
            progress("the lab's servers were not started from here: they keep running")
        actions = _stop(p, progress)
    return LabReport(status(ctx, tools=False).parts, tuple(actions))


def _stop(p: Paths, progress: Progress) -> list[str]:
    actions = []
    for name, exe in (("boots", boots.EXE), *sharing.servers(p)):
        if processes.recorded_pid(p, name, exe) is not None:
            progress(f"stopping {name}")
            if processes.stop(p, name, exe):
                actions.append(f"stopped {name}")
    return actions


def reset(ctx: Context, progress: Progress, *, delete_volumes: bool = False) -> LabReport:
    """Where the lab's servers were made: remove every lab container, the network and the
    lab's state (Consul data, OpenBao data and keys), refused while another fleet has nodes
    on it. Elsewhere: remove this fleet alone (its nodes, its Consul tokens and KV, its
    .fleet/lab), the shared lab staying up. Pet data volumes only with delete_volumes."""
    p = paths(ctx)
    with processes.exclusive(p, progress):
        return _reset(ctx, p, progress, delete_volumes)


def _reset(ctx: Context, p: Paths, progress: Progress, delete_volumes: bool) -> LabReport:
    sharing.require_alone(ctx, p, "reset", progress)
    if not sharing.owns_servers(p):
        actions = sharing.reset_own(ctx, p, progress)
        actions += (sharing.delete_volumes(ctx, progress) if delete_volumes
                    else sharing.kept_volumes(ctx))
        return LabReport(status(ctx, tools=False).parts, tuple(actions))
    actions = []
    if docker.server_version() is not None:
        names = docker.lab_containers(network(ctx).name)  # this lab's: another has its own
        if names:
            progress(f"removing {len(names)} lab container(s)")
            docker.remove_containers(names)
            actions.append(f"removed {len(names)} container(s)")
        actions += (sharing.delete_volumes(ctx, progress) if delete_volumes
                    else sharing.kept_volumes(ctx))
        net = network(ctx)
        if docker.network_gateway(net.name) is not None:
            docker.remove_network(net.name)
            actions.append(f"removed network {net.name}")
    actions += _stop(p, progress)
    if p.lab.exists():
        shutil.rmtree(p.lab)
        actions.append(f"removed {p.lab}")
    return LabReport(status(ctx, tools=False).parts, tuple(actions))


def reset_scope(ctx: Context, delete_volumes: bool) -> str:
    """What `lab reset` here would remove, as its confirmation asks."""
    volumes = "and its pets' data volumes" if delete_volumes else "(pet data volumes stay)"
    if sharing.owns_servers(paths(ctx)):
        return (f"Wipe the whole lab: every lab container, the network, Consul's and OpenBao's "
                f"data under {paths(ctx).lab} {volumes}?")
    return (f"Remove fleet {ctx.fleet.name} from the shared lab: its nodes, its Consul KV "
            f"{ctx.fleet.kv_prefix}/ and {paths(ctx).lab} {volumes}?")


def status(ctx: Context, *, tools: bool = True) -> LabReport:
    """Each part's state, version, address; tool versions too unless tools=False."""
    p = paths(ctx)
    net = network(ctx)
    checks: list[Callable[[], Part]] = [
        lambda: docker_part(p),
        lambda: network_part(net),
        neighbours_part,
        *([lambda: consul_part(ctx, p), lambda: openbao_part(ctx, p)]
          if ctx.fleet.lab_servers == 1 else members.checks(ctx, p)),
        lambda: boots.part(p),
        *[(lambda b=b: base_part(ctx, b)) for b in ctx.fleet.bases],
    ]
    if tools:
        checks += [
            lambda: tool_part("terraform", lambda: terraform.version(ctx.state_dir)),
            lambda: tool_part("packer", packer.version),
            lambda: tool_part("vagrant", vagrant.version),
            lambda: tool_part("ruby", chef.ruby_version),
        ]
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        parts = tuple(pool.map(lambda check: check(), checks))
    return LabReport(parts)
