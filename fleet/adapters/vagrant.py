"""Vagrant through its CLI (docker provider): build argv, run, parse strictly.

`status`, `up` and `destroy` run with `--machine-readable` (the format is in
fleet/adapters/machinereadable.py); `ssh-config` prints OpenSSH client configuration.
A Project says which Vagrantfile runs (VAGRANT_CWD) and where Vagrant keeps the machines' ids
(VAGRANT_DOTFILE_PATH), so two runs on one Vagrantfile never share machines. The process
adapter already sets VAGRANT_CHECKPOINT_DISABLE: Vagrant never phones home.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from fleet.adapters import machinereadable, process
from fleet.errors import CommandFailed, FleetError

COMMA = "%!(VAGRANT_COMMA)"


def version() -> str:
    """'2.3.4' from 'Vagrant 2.3.4'."""
    return process.run(["vagrant", "--version"], timeout=60).stdout.split()[1]


class VagrantOutputError(FleetError):
    """Vagrant printed something outside the format fleet parses."""


class State(StrEnum):
    """A docker-provider machine's state, as `vagrant status --machine-readable` names it."""

    NOT_CREATED = "not_created"
    PREPARING = "preparing"
    RUNNING = "running"
    STOPPED = "stopped"
    HOST_STATE_UNKNOWN = "host_state_unknown"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Machine:
    name: str
    provider: str
    state: State


@dataclass(frozen=True)
class SSHConfig:
    """Where `vagrant ssh` goes: one Host block of `vagrant ssh-config`."""

    host: str
    port: int
    user: str
    identity_file: Path


@dataclass(frozen=True)
class Project:
    """One Vagrantfile and one set of machines; env carries what the Vagrantfile reads."""

    vagrantfile_dir: Path
    dotfile_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)

    def environ(self) -> dict[str, str]:
        return {**self.env, "VAGRANT_CWD": str(self.vagrantfile_dir),
                "VAGRANT_DOTFILE_PATH": str(self.dotfile_dir),
                "VAGRANT_DEFAULT_PROVIDER": "docker"}


def _lines(text: str) -> list[machinereadable.Line]:
    lines = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        line = machinereadable.parse_line(raw, COMMA)
        if line is None:
            raise VagrantOutputError(f"vagrant printed a line outside its machine-readable format: "
                                     f"{raw[:200]!r}")
        lines.append(line)
    return lines


def parse_status(text: str) -> tuple[Machine, ...]:
    """Every machine of `vagrant status --machine-readable`, in Vagrant's order."""
    providers: dict[str, str] = {}
    states: dict[str, State] = {}
    for line in _lines(text):
        if not line.target:
            continue  # the human summary (`ui`) and the like
        if line.kind == "provider-name":
            providers[line.target] = line.data[0]
        elif line.kind == "state":
            try:
                states[line.target] = State(line.data[0])
            except ValueError as exc:
                raise VagrantOutputError(f"vagrant reports an unknown state {line.data[0]!r} "
                                         f"for {line.target}") from exc
    if set(providers) != set(states):
        raise VagrantOutputError("vagrant status named a machine without its provider or state")
    return tuple(Machine(name, providers[name], states[name]) for name in states)


def error_message(text: str) -> str:
    """Why a machine-readable run failed, as one line: the error-exit's first line and the
    command's stderr when Vagrant quotes one. '' if there is no error-exit line."""
    for line in _lines(text):
        if line.kind == "error-exit":
            message = ",".join(line.data[1:])
            first = message.strip().splitlines()[0] if message.strip() else line.data[0]
            quoted = [s.removeprefix("Stderr:").strip() for s in message.splitlines()
                      if s.startswith("Stderr:") and s.removeprefix("Stderr:").strip()]
            said = f"{first} {quoted[0]}" if quoted else first
            return " ".join(said.split())
    return ""


def container_vanished(text: str) -> bool:
    """Did the run fail only because a container vanished while Vagrant looked at it?

    To find the host ports in use, the docker provider lists every container and then runs
    `docker inspect` on each; a container that another rollout removes in between fails the
    whole `vagrant up` before anything is created. Running it again is safe.
    """
    for line in _lines(text):
        if line.kind == "error-exit":
            message = ",".join(line.data[1:])
            return '"docker", "inspect"' in message and "No such object" in message
    return False


def parse_ssh_config(text: str) -> dict[str, SSHConfig]:
    """`vagrant ssh-config`: one Host block per machine."""
    blocks: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        if not raw.strip():
            continue
        key, _, value = raw.strip().partition(" ")
        if key == "Host":
            current = blocks.setdefault(value.strip(), {})
        elif current is None or not value.strip():
            raise VagrantOutputError(f"vagrant ssh-config printed an unexpected line: {raw!r}")
        else:
            current[key] = value.strip()
    try:
        return {name: SSHConfig(b["HostName"], int(b["Port"]), b["User"],
                                Path(b["IdentityFile"].strip('"')))
                for name, b in blocks.items()}
    except (KeyError, ValueError) as exc:
        raise VagrantOutputError(f"vagrant ssh-config lacks or garbles {exc}") from exc


def up_argv(machines: Sequence[str]) -> list[str]:
    return ["vagrant", "up", "--provider", "docker", "--no-provision", "--machine-readable",
            *machines]


def destroy_argv(machines: Sequence[str]) -> list[str]:
    return ["vagrant", "destroy", "--force", "--machine-readable", *machines]


def _run(project: Project, argv: list[str], log: Path, timeout: float, attempts: int = 1) -> None:
    """Run a machine-readable command, its output appended to log; CommandFailed with
    Vagrant's own reason if it fails. A vanished container is worth another attempt."""
    log.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        result = process.run(argv, check=False, env=project.environ(), timeout=timeout)
        with log.open("a") as out:
            out.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}")
        if result.returncode == 0 or not container_vanished(result.stdout) or attempt == attempts:
            break
    if result.returncode != 0:
        reason = error_message(result.stdout) or result.stderr or result.stdout
        raise CommandFailed(argv, result.returncode, reason, f"the whole output is in {log}")


def up(project: Project, machines: Sequence[str], *, log: Path, timeout: float = 300) -> None:
    """Create and start machines and wait until Vagrant can SSH into them."""
    _run(project, up_argv(machines), log, timeout, attempts=3)


def destroy(project: Project, machines: Sequence[str], *, log: Path, timeout: float = 120) -> None:
    _run(project, destroy_argv(machines), log, timeout)


def ssh_config(project: Project, machine: str) -> SSHConfig:
    result = process.run(["vagrant", "ssh-config", machine], env=project.environ(), timeout=120,
                         fix=f"is the machine {machine} up? (vagrant status)")
    configs = parse_ssh_config(result.stdout)
    if machine not in configs:
        raise VagrantOutputError(f"vagrant ssh-config did not describe {machine}")
    return configs[machine]
