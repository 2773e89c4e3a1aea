"""What `lab up` reports: its last look waits for parts that flap (an election), and a part
not up is named with its reason."""

from __future__ import annotations

from typing import cast

import pytest

import fleet.workflows.lab as lab
from fleet.services.context import Context
from fleet.workflows.lab.parts import LabReport, Part, PartState

UP = Part("consul-1", PartState.UP)
ELECTING = Part("consul-3", PartState.DOWN, detail="no leader elected")
NO_CONTEXT = cast(Context, None)  # status is replaced: nothing reads it


def test_a_part_not_up_is_named_with_its_reason_and_the_hint_said_once() -> None:
    report = LabReport((UP, ELECTING, Part("openbao", PartState.DOWN,
                                           detail="not running; run `fleet lab up`"),
                        Part("dockerd", PartState.DOWN)))
    error = report.error()
    assert error is not None
    assert error.what == ("lab part(s) not up: consul-3 (no leader elected); openbao (not running); "
                          "dockerd")
    assert LabReport((UP,)).error() is None


def test_the_last_look_waits_for_a_flapping_part(monkeypatch: pytest.MonkeyPatch) -> None:
    looks = [LabReport((UP, ELECTING)), LabReport((UP, ELECTING)), LabReport((UP,))]
    monkeypatch.setattr(lab, "status", lambda ctx, tools: looks.pop(0))
    monkeypatch.setattr(lab.time, "sleep", lambda s: None)
    assert lab._settled(NO_CONTEXT).healthy and not looks


def test_the_last_look_gives_up_after_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 1000, 5))
    monkeypatch.setattr(lab.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(lab.time, "sleep", lambda s: None)
    monkeypatch.setattr(lab, "status", lambda ctx, tools: LabReport((UP, ELECTING)))
    report = lab._settled(NO_CONTEXT)
    assert not report.healthy and next(clock) <= lab.SETTLE_S + 10
