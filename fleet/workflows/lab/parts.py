"""What `fleet lab status` shows: each part of the lab, probed side by side."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from fleet.adapters import docker
from fleet.adapters.vault import SealState, Vault
from fleet.errors import DependencyDown, FleetError
from fleet.services import baseimage
from fleet.services.context import Context
from fleet.services.topology import Network, Paths
from fleet.workflows.lab import engine, processes


class PartState(StrEnum):
    UP = "up"
    DOWN = "down"
    MISSING = "missing"


@dataclass(frozen=True)
class Part:
    """One piece of the lab as `lab status` shows it."""

    name: str
    state: PartState
    version: str = ""
    address: str = ""
    detail: str = ""


@dataclass(frozen=True)
class LabReport:
    parts: tuple[Part, ...]
    actions: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return all(p.state is PartState.UP for p in self.parts)

    def error(self) -> FleetError | None:
        """Parts not up (`lab up` and `lab status` fail with it; `lab down` does not)."""
        hint = "; run `fleet lab up`"  # said once, below
        down = [f"{p.name} ({p.detail.removesuffix(hint)})" if p.detail else p.name
                for p in self.parts if p.state is not PartState.UP]
        if not down:
            return None
        return FleetError(f"lab part(s) not up: {'; '.join(down)}",
                          "run `fleet lab up` (or scripts/setup.sh for a missing tool)")


def _why_down(p: Paths, name: str) -> str:
    if p.pid(name).exists():
        return f"exited; see {p.log(name)}"
    return "not running; run `fleet lab up`"


def docker_part(p: Paths) -> Part:
    version = docker.server_version()
    if version is None:
        return Part("dockerd", PartState.DOWN, detail=_why_down(p, "dockerd"))
    owner = "started by the lab" if processes.recorded_pid(p, "dockerd", "dockerd") else "already running"
    return Part("dockerd", PartState.UP, version, "unix:///var/run/docker.sock", owner)


def network_part(net: Network) -> Part:
    try:
        gateway = docker.network_gateway(net.name)
    except DependencyDown:
        gateway = None
    if gateway is None:
        return Part(f"network {net.name}", PartState.DOWN, detail="missing; run `fleet lab up`")
    return Part(f"network {net.name}", PartState.UP, address=net.subnet, detail=f"gateway {gateway}")


def neighbours_part() -> Part:
    """The host's neighbour table, sized for a crowded lab (engine.NEIGHBOUR_TABLE)."""
    name = "neighbour table"
    try:
        short = engine.neighbours_short()
    except FleetError as exc:
        return Part(name, PartState.DOWN, detail=exc.line())
    if short:
        return Part(name, PartState.DOWN, detail=", ".join(f"{n}={now} (< {w})" for n, now, w in short)
                    + "; run `fleet lab up`")
    limit = engine.NEIGHBOUR_TABLE[0]
    return Part(name, PartState.UP, detail=f"{limit[0]} >= {limit[1]}")


def consul_part(ctx: Context, p: Paths) -> Part:
    consul = ctx.consul(timeout=2)
    try:
        leader = consul.leader()
    except FleetError:
        return Part("consul", PartState.DOWN, address=ctx.consul_addr,
                    detail=_why_down(p, "consul"))
    try:
        version = consul.version()
    except FleetError as exc:  # it answers, but not to this token
        return Part("consul", PartState.DOWN, address=ctx.consul_addr, detail=exc.what)
    if not leader:
        return Part("consul", PartState.DOWN, version, ctx.consul_addr, "no leader elected")
    return Part("consul", PartState.UP, version, ctx.consul_addr, f"server, leader {leader}")


def openbao_part(ctx: Context, p: Paths) -> Part:
    try:
        health = Vault(ctx.vault_addr, timeout=2).health()
    except DependencyDown:
        return Part("openbao", PartState.DOWN, address=ctx.vault_addr,
                    detail=_why_down(p, "openbao"))
    if health.state is not SealState.UNSEALED:
        return Part("openbao", PartState.DOWN, health.version, ctx.vault_addr,
                    f"{health.state}; run `fleet lab up`")
    return Part("openbao", PartState.UP, health.version, ctx.vault_addr, "unsealed, raft storage")


def base_part(ctx: Context, name: str) -> Part:
    base = ctx.fleet.bases[name]
    label = f"base image {name}"
    try:
        ref, image = baseimage.current(base, ctx.root / "packer" / "base", ctx.state_dir / "cache")
    except OSError as exc:
        return Part(label, PartState.MISSING, detail=f"inputs unreadable: {exc}")
    except DependencyDown:
        return Part(label, PartState.DOWN, detail="dockerd is down")
    if image is None:
        return Part(label, PartState.DOWN, address=ref, detail="not built; run `fleet lab up`")
    return Part(label, PartState.UP, address=ref, detail=f"built {image.created[:19]}")


def tool_part(name: str, version: Callable[[], str]) -> Part:
    try:
        return Part(name, PartState.UP, version(), detail=shutil.which(name) or "")
    except FleetError as exc:
        return Part(name, PartState.MISSING, detail=exc.line())
