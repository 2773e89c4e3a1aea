"""Folders marked in use for as long as any process that inherited the mark runs.

A bake stages the files Packer uploads in a folder beside its log and removes it when Packer is
done. A fleet killed with -9 cannot, and Packer goes on after it (it cancels and cleans up its
container first), so the folder cannot simply be removed by the next bake either: Packer, or
another bake's Packer, may still read it. The mark is an exclusive flock(2) on FOLDER/.in-use,
taken by fleet and handed to the child it starts (its descriptor is passed on): the lock lives
with the open file, so it stays held until the last process holding it (fleet, Packer, Packer's
plugins) has exited, however each of them ends. A later run may then remove the folder.

The mark holds the pid that took it, written once the lock is held: a mark found empty is being
taken, and a folder with no mark is being staged; both are left alone, unless they have been so
for STALE seconds (a bake killed in between, which no process will finish: staging and marking
take seconds).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

MARK = ".in-use"
STALE = 3600.0  # seconds a folder may stay unmarked, or its mark empty, before it is reclaimed


@contextlib.contextmanager
def marked(folder: Path) -> Iterator[int]:
    """Mark folder in use while the block runs; yields the descriptor to pass to children."""
    fd = os.open(folder / MARK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield fd
    finally:
        os.close(fd)


def abandoned(parent: Path, pattern: str) -> list[Path]:
    """The folders under parent matching pattern that were marked and are held by no process,
    and those left unmarked, or with their mark empty, for over STALE seconds."""
    found = []
    stale = time.time() - STALE
    for folder in sorted(parent.glob(pattern)):
        try:
            fd = os.open(folder / MARK, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # not marked (yet): ours to judge only once it is stale
            with contextlib.suppress(OSError):
                if folder.stat().st_mtime < stale:
                    found.append(folder)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # still held
        else:
            status = os.fstat(fd)
            if status.st_size or status.st_mtime < stale:
                found.append(folder)
        finally:
            os.close(fd)
    return found
