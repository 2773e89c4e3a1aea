"""process.stream: lines as they come, the whole stream in the log, and a child that outlives us;
process.run's child that outlives us is waited for, not killed, when we are interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fleet.adapters import process
from fleet.errors import DependencyDown


def test_lines_come_while_the_child_runs_and_all_land_in_the_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "build.log"
    log.parent.mkdir()
    log.write_text("an earlier run\n")
    seen: list[tuple[str, bool]] = []
    marker = tmp_path / "go-on"
    script = (f"echo first; while [ ! -e {marker} ]; do sleep 0.01; done; "
              "printf 'second\\r\\n' >&2; printf last")

    def on_line(line: str) -> None:
        seen.append((line, marker.exists()))
        marker.touch()

    result = process.stream(["sh", "-c", script], on_line=on_line, log=log)
    assert result.returncode == 0
    assert seen == [("first", False), ("second", True), ("last", True)], \
        "the first line was not handed over while the child was still running"
    assert result.stdout == "first\nsecond\nlast"
    assert log.read_bytes() == b"an earlier run\nfirst\nsecond\r\nlast", "the log is not verbatim"


def test_a_child_outlives_a_reader_killed_with_9(tmp_path: Path) -> None:
    """Killed mid-stream, we leave the child writing to the log, not to a dead pipe (SIGPIPE)."""
    log, flag = tmp_path / "build.log", tmp_path / "reader-gone"
    child = (f"echo started; while [ ! -e {flag} ]; do sleep 0.01; done; "
             "i=0; while [ $i -lt 200 ]; do echo after $i; i=$((i+1)); done")
    reader = ("import sys; from pathlib import Path; from fleet.adapters import process; "
              f"process.stream(['sh', '-c', {child!r}], log=Path({str(log)!r}), "
              "on_line=lambda line: print(line, flush=True))")
    proc = subprocess.Popen([sys.executable, "-c", reader], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parents[2])
    assert proc.stdout is not None
    assert proc.stdout.readline() == "started\n"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    flag.touch()
    deadline = time.monotonic() + 10
    while "after 199" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_text().endswith("after 199\n"), "the child died with its reader"


def test_a_missing_program_is_a_dependency_down(tmp_path: Path) -> None:
    try:
        process.stream(["no-such-program-here"], on_line=print, log=tmp_path / "x.log")
    except DependencyDown as exc:
        assert "no-such-program-here is not installed" in str(exc)
    else:
        raise AssertionError("no DependencyDown")


def test_a_stop_sends_the_child_term_once_and_follows_it_to_its_end(tmp_path: Path) -> None:
    import threading

    stop = threading.Event()
    child = ("trap 'kill $!; echo cancelling; sleep 0.2; echo cancelled; exit 3' TERM; echo started; "
             "sleep 30 & wait")
    result = process.stream(["sh", "-c", child], log=tmp_path / "x.log", stop=stop,
                            on_line=lambda line: stop.set() if line == "started" else None)
    assert result.returncode == 3, "the child was not sent TERM"
    assert result.stdout.splitlines() == ["started", "cancelling", "cancelled"], \
        "what the child wrote while it cancelled was not followed to its end"


def _interrupted_runner(tmp_path: Path, child: str) -> subprocess.Popen[str]:
    """A Python process that runs `child` through process.run with `outlive` (as Terraform is
    run) and says what it saw when interrupted; started once the child has begun."""
    runner = ("import signal, sys; from pathlib import Path; from fleet.adapters import process\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"  # CI may ignore it
              "try:\n"
              f"    process.run(['sh', '-c', {child!r}], outlive=Path({str(tmp_path / 'out')!r}))\n"
              "except KeyboardInterrupt:\n"
              f"    print('interrupted; the child wrote:', Path({str(tmp_path / 'f')!r}).read_text()"
              ".split(), flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", runner], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parents[2])
    deadline = time.monotonic() + 10
    while not (tmp_path / "f").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


def test_an_interrupted_run_waits_for_its_child_that_outlives_us(tmp_path: Path) -> None:
    """SIGINT to fleet alone: the child (a Terraform apply) finishes before the interrupt goes
    on; subprocess.run would have killed it a quarter of a second in."""
    proc = _interrupted_runner(tmp_path, f"echo started > {tmp_path / 'f'}; sleep 1; "
                                         f"echo done >> {tmp_path / 'f'}")
    time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert out.strip() == "interrupted; the child wrote: ['started', 'done']", \
        f"the child was not waited for, or was killed: {out!r}"


def test_a_second_interrupt_leaves_the_child_running_alone(tmp_path: Path) -> None:
    proc = _interrupted_runner(tmp_path, f"echo started > {tmp_path / 'f'}; sleep 2; "
                                         f"echo done >> {tmp_path / 'f'}")
    for _ in range(2):
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert out.strip() == "interrupted; the child wrote: ['started']", \
        f"the second interrupt did not end the wait: {out!r}"
    deadline = time.monotonic() + 10
    while "done" not in (tmp_path / "f").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "f").read_text().split() == ["started", "done"], "the child was killed"
