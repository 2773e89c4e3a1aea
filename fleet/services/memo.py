"""Facts that are slow to learn and change only with a file (a tool's version, a binary's
digest), remembered under .fleet/cache keyed by the file's path, size and mtime; a file's
sha256 itself; and facts true of the whole machine, remembered for every fleet directory on
it (machine_dir: e.g. a base image scanned clean, fleet.services.leaks)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

_LOCK = threading.Lock()  # concurrent bakes in one process share the file


def by_stat(cache_dir: Path, subject: Path, compute: Callable[[], str]) -> str:
    stat = subject.stat()
    key = f"{subject.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    with _LOCK:
        return _lookup(cache_dir / "by-stat.json", key, compute)


def _lookup(cache: Path, key: str, compute: Callable[[], str]) -> str:
    known = _read(cache)
    if key in known:
        return known[key]
    value = compute()
    known[key] = value
    _write(cache, known)
    return value


def machine_dir() -> Path:
    """Where facts true of the whole machine are kept, shared by every fleet directory on it
    (two fleets on one lab share its Docker images): $XDG_CACHE_HOME/fleet, ~/.cache/fleet."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fleet"


def known(cache: Path, key: str) -> bool:
    """Whether key was remembered in cache (a JSON file of key -> value)."""
    return key in _read(cache)


def remember(cache: Path, key: str, value: str = "") -> None:
    """Add key to cache, merged into what another process may have written meanwhile. The
    cache only saves work: a file that cannot be written is let be (the work is done again
    next time), and two processes writing at once may lose one key, which is learnt again."""
    with contextlib.suppress(OSError):
        _write(cache, {**_read(cache), key: value})


def _read(cache: Path) -> dict[str, str]:
    try:
        found = json.loads(cache.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: nothing known
        return {}
    return found if isinstance(found, dict) else {}


def _write(cache: Path, known: dict[str, str]) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=cache.parent, suffix=".tmp", delete=False) as out:
        out.write(json.dumps(known, indent=1, sort_keys=True))
    Path(out.name).replace(cache)  # atomic: another process reads the old or the new file


def file_sha256(path: Path) -> tuple[str, int]:
    """The file's sha256 and size, read in 1 MiB blocks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
