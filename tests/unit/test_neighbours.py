"""The lab sizes the host's neighbour table for a crowded lab (fleet/workflows/lab/engine.py),
here on a stand-in for /proc/sys: which limits are short, and that raising them writes the
largest first and never lowers one."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.adapters import sysctl
from fleet.errors import FleetError
from fleet.workflows.lab import engine


@pytest.fixture
def proc_sys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sysctl, "ROOT", tmp_path)
    folder = tmp_path / "net" / "ipv4" / "neigh" / "default"
    folder.mkdir(parents=True)
    for name, value in (("gc_thresh1", 128), ("gc_thresh2", 512), ("gc_thresh3", 65536)):
        (folder / name).write_text(f"{value}\n")
    return folder


def test_short_limits_are_raised_largest_first_and_none_lowered(proc_sys: Path) -> None:
    short = engine.neighbours_short()
    assert [n for n, _, _ in short] == ["net.ipv4.neigh.default.gc_thresh2",
                                        "net.ipv4.neigh.default.gc_thresh1"], short
    said: list[str] = []
    done = engine.neighbours_up(said.append)
    assert done == ["set net.ipv4.neigh.default.gc_thresh2=16384",
                    "set net.ipv4.neigh.default.gc_thresh1=8192"]
    assert (proc_sys / "gc_thresh3").read_text().strip() == "65536", "a higher limit was lowered"
    assert engine.neighbours_short() == [], "a second lab up would raise them again"
    assert engine.neighbours_up(said.append) == []


def test_an_unreadable_limit_is_one_clear_error(proc_sys: Path) -> None:
    (proc_sys / "gc_thresh2").unlink()
    with pytest.raises(FleetError, match="gc_thresh2 cannot be read"):
        engine.neighbours_short()
