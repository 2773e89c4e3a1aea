"""services/inuse: a folder's mark is held while any process that inherited it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from fleet.services import inuse


def test_a_mark_outlives_its_taker_in_the_child_it_was_passed_to(tmp_path: Path) -> None:
    folder = tmp_path / "web-1-upload"
    folder.mkdir()
    with inuse.marked(folder) as mark:
        assert inuse.abandoned(tmp_path, "*-upload") == [], "a held mark was called abandoned"
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE, pass_fds=[mark])
    assert child.stdin is not None
    try:
        assert inuse.abandoned(tmp_path, "*-upload") == [], \
            "the mark was let go while the child that inherited it still ran"
    finally:
        child.stdin.close()
        child.wait()
    assert inuse.abandoned(tmp_path, "*-upload") == [folder]


def test_folders_not_marked_or_being_marked_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "api-1-upload").mkdir()                 # staged, not marked yet
    (tmp_path / "git-1-upload").mkdir()
    (tmp_path / "git-1-upload" / inuse.MARK).touch()    # the mark made, the lock not yet taken
    done = tmp_path / "web-1-upload"
    done.mkdir()
    with inuse.marked(done):
        pass
    (tmp_path / "web-1.log").write_text("a log, not a folder\n")
    assert inuse.abandoned(tmp_path, "*-upload") == [done]


def test_folders_left_unmarked_or_half_marked_for_long_are_reclaimed(tmp_path: Path) -> None:
    """A bake killed between staging its folder and marking it (or between making the mark and
    taking its lock): no process will ever finish either."""
    unmarked, half = tmp_path / "api-1-upload", tmp_path / "git-1-upload"
    unmarked.mkdir()
    half.mkdir()
    (half / inuse.MARK).touch()
    fresh = tmp_path / "web-2-upload"
    fresh.mkdir()
    long_ago = time.time() - inuse.STALE - 60
    for path in (unmarked, half / inuse.MARK):
        os.utime(path, (long_ago, long_ago))
    assert inuse.abandoned(tmp_path, "*-upload") == [unmarked, half]
