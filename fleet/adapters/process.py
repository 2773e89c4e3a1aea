"""The one place that spawns processes: argv lists only, frozen results, CommandFailed on error."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fleet.errors import CommandFailed, DependencyDown

# No tool phones home: Packer, Terraform and Consul check HashiCorp's checkpoint service for
# updates unless told not to, Vagrant likewise. Every child we spawn gets these.
QUIET = {"CHECKPOINT_DISABLE": "1", "VAGRANT_CHECKPOINT_DISABLE": "1"}


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment, the QUIET settings and the caller's extras."""
    return {**os.environ, **QUIET, **(extra or {})}


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
    outlive: Path | None = None,
) -> Result:
    """Run argv to completion; raise CommandFailed on a non-zero exit when check is set.

    With `outlive` (a directory), the child writes its output to files there instead of pipes
    to us, so it finishes its work even if we are killed (a pipe whose reader died would kill
    it with SIGPIPE at its next line, half-way through, say, a Terraform apply). Nor is it
    killed when we are interrupted (Ctrl-C, or SIGTERM: see cli.main), as subprocess.run
    would kill it a quarter of a second after the interrupt: we wait for it to end, then the
    interrupt goes on (`_outlived`).
    """
    full_env = child_env(env)
    try:
        if outlive is not None:
            assert input_text is None, "a child that outlives us reads no input from us"
            proc = _outlived(argv, full_env, cwd, timeout, outlive)
        else:
            proc = subprocess.run(list(argv), text=True, env=full_env, cwd=cwd, timeout=timeout,
                                  input=input_text, check=False, capture_output=True)
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


def _outlived(argv: Sequence[str], env: Mapping[str, str], cwd: Path | None,
              timeout: float | None, outlive: Path) -> subprocess.CompletedProcess[str]:
    """Run argv with its output in files under `outlive`; what subprocess.run returns.

    Interrupted while it runs, we wait for it to end before the interrupt goes on: it
    finishes what it does, or cancels cleanly if the interrupt reached it too (a terminal's
    Ctrl-C goes to the whole process group: Terraform then stops at a safe point and writes
    its state). Killed, Terraform would leave its state unwritten and its lock held until its
    session's TTL. A second interrupt stops the wait and leaves the child to go on alone, as
    when fleet is killed. A timeout kills it, as subprocess.run does."""
    outlive.mkdir(parents=True, exist_ok=True)
    names = ("stdout", "stderr")
    with contextlib.ExitStack() as files:
        sinks = [files.enter_context((outlive / f"{name}.log").open("w+")) for name in names]
        proc = subprocess.Popen(list(argv), text=True, env=env, cwd=cwd, stdout=sinks[0],
                                stderr=sinks[1], stdin=subprocess.DEVNULL)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        except BaseException:
            with contextlib.suppress(BaseException):  # a second interrupt: leave it running
                proc.wait()
            raise
    out, err = ((outlive / f"{name}.log").read_text() for name in names)
    return subprocess.CompletedProcess(list(argv), code, out, err)


def stream(
    argv: Sequence[str],
    *,
    on_line: Callable[[str], None],
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    poll: float = 0.02,
    pass_fds: Sequence[int] = (),
    stop: threading.Event | None = None,
) -> Result:
    """Run argv, appending its output to log and handing each line to on_line as it comes.

    stderr is merged into stdout (Packer's -machine-readable stream carries its errors in-band);
    the result's stdout holds the whole stream. Never raises on a non-zero exit: the caller
    parses the stream for the real reason. pass_fds: descriptors the child inherits (a mark
    it holds for as long as it runs, services/inuse.py). stop: once set, the child is sent
    SIGTERM (once) and followed until it exits, so that it cancels and cleans up as it does
    on a Ctrl-C that reached it.

    The child writes to the log file itself and we follow the file, rather than reading a pipe:
    a pipe dies with us, and a Go program (Packer) that writes to a dead pipe on stdout is killed
    by SIGPIPE, so a fleet killed with -9 took Packer down in the middle of its clean-up. With a
    file, the child finishes what it is doing (cancelling, removing its container) on its own.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = child_env(env)
    lines: list[str] = []
    with log.open("ab") as sink, log.open("rb") as follow:
        follow.seek(0, os.SEEK_END)
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=sink,
                                    stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                                    pass_fds=tuple(pass_fds))
        except FileNotFoundError as exc:
            raise DependencyDown(
                f"{argv[0]} is not installed", "run scripts/setup.sh to install the lab's tools"
            ) from exc
        def text(raw: bytes) -> str:
            return raw.decode("utf-8", "replace").removesuffix("\r")  # CRLF ends a line too

        pending, stopped = b"", False
        while True:
            exited = proc.poll() is not None  # before the read: what it wrote last is read
            if stop is not None and stop.is_set() and not exited and not stopped:
                proc.terminate()
                stopped = True
            chunk = follow.read()
            if not chunk:
                if exited:
                    break
                time.sleep(poll)
                continue
            *complete, pending = (pending + chunk).split(b"\n")
            for line in map(text, complete):
                lines.append(line + "\n")
                on_line(line)
        if pending:
            lines.append(text(pending))
            on_line(lines[-1])
    return Result(tuple(argv), proc.returncode, "".join(lines), "")


@contextlib.contextmanager
def reading(argv: Sequence[str], *, fix: str = "") -> Iterator[IO[bytes]]:
    """Run argv and yield its stdout as a binary stream (e.g. `docker export`).

    CommandFailed if it exits non-zero once the stream was read (or abandoned).
    """
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=child_env())
    except FileNotFoundError as exc:
        raise DependencyDown(
            f"{argv[0]} is not installed", "run scripts/setup.sh to install the lab's tools"
        ) from exc
    assert proc.stdout is not None and proc.stderr is not None  # PIPEs were asked for
    abandoned = False
    try:
        yield proc.stdout
    except BaseException:
        abandoned = True
        raise
    finally:
        if abandoned:
            proc.kill()
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        code = proc.wait()
    if code != 0:
        raise CommandFailed(list(argv), code, err, fix)


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
                env=child_env(),
                start_new_session=True,  # survives the CLI; Ctrl-C on fleet does not kill the lab
            )
        except FileNotFoundError as exc:
            raise DependencyDown(
                f"{argv[0]} is not installed", "run scripts/setup.sh to install the lab's tools"
            ) from exc
    return proc.pid


def alive(pid: int, exe_name: str) -> bool:
    """True if pid runs a program named exe_name, as called or as the file it runs (guards
    against a recycled PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if ") Z " in stat:  # a zombie has exited; only its parent's wait is missing
        return False
    first = cmdline.split(b"\0", 1)[0].decode(errors="replace")
    if os.path.basename(first) == exe_name:
        return True
    try:  # the program itself, however it was called (python, python3: the same interpreter)
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")) == exe_name
    except OSError:
        return False


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
