"""The one place that spawns processes: argv lists only, frozen results, CommandFailed on error."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleet.errors import CommandFailed, DependencyDown


@dataclass(frozen=True)
class Result:
    """What a finished command returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    input_text: str | None = None,
    fix: str = "",
) -> Result:
    """Run argv to completion; raise CommandFailed on a non-zero exit when check is set."""
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd,
            timeout=timeout,
            input=input_text,
            check=False,
        )
    except FileNotFoundError as exc:
        raise DependencyDown(
            f"{argv[0]} is not installed", "run scripts/setup.sh to install the lab's tools"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(list(argv), -1, f"timed out after {timeout}s", fix) from exc
    result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise CommandFailed(list(argv), proc.returncode, proc.stderr or proc.stdout, fix)
    return result


def spawn(argv: Sequence[str], *, log: Path, cwd: Path | None = None) -> int:
    """Start a long-running server detached from our session, output to log; return its PID."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,  # survives the CLI; Ctrl-C on fleet does not kill the lab
            )
        except FileNotFoundError as exc:
            raise DependencyDown(
                f"{argv[0]} is not installed", "run scripts/setup.sh to install the lab's tools"
            ) from exc
    return proc.pid


def alive(pid: int, exe_name: str) -> bool:
    """True if pid runs a program named exe_name (guards against a recycled PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if ") Z " in stat:  # a zombie has exited; only its parent's wait is missing
        return False
    first = cmdline.split(b"\0", 1)[0].decode(errors="replace")
    return os.path.basename(first) == exe_name


def stop(pid: int, exe_name: str, *, grace: float = 15.0) -> bool:
    """Stop one process we started, by PID: SIGTERM, then SIGKILL after grace. True if it ran."""
    if not alive(pid, exe_name):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid, exe_name):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    while alive(pid, exe_name):
        time.sleep(0.05)
    return True
