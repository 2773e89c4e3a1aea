"""`lab up`, `down` and `reset` in one directory take turns (processes.exclusive)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from fleet.services.topology import Paths
from fleet.workflows.lab.processes import exclusive


def test_a_second_lab_command_waits_for_the_first_and_says_so(tmp_path: Path) -> None:
    p = Paths(tmp_path / ".fleet" / "lab")
    said: list[str] = []
    entered: list[float] = []

    def second() -> None:
        with exclusive(p, said.append):
            entered.append(time.monotonic())

    with exclusive(p, lambda line: None):
        other = threading.Thread(target=second)
        other.start()
        time.sleep(0.3)
        assert not entered, "the second command ran while the first held the lab"
        released = time.monotonic()
    other.join(5)
    assert entered and entered[0] >= released, "the second command ran once the first ended"
    assert said == ["waiting for another `fleet lab` command in this directory to finish"]
    assert (tmp_path / ".fleet" / "lab.lock").exists() and not p.lab.exists()


def test_an_uncontended_lab_command_says_nothing(tmp_path: Path) -> None:
    said: list[str] = []
    with exclusive(Paths(tmp_path / "lab"), said.append):
        pass
    assert said == []
