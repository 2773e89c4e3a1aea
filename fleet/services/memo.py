"""Facts that are slow to learn and change only with a file (a tool's version, a binary's
digest), remembered under .fleet/cache keyed by the file's path, size and mtime; and a file's
sha256 itself."""

from __future__ import annotations

import hashlib
import json
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
    try:
        known: dict[str, str] = json.loads(cache.read_text())
    except (FileNotFoundError, ValueError):
        known = {}
    if key in known:
        return known[key]
    value = compute()
    known[key] = value
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=cache.parent, suffix=".tmp", delete=False) as out:
        out.write(json.dumps(known, indent=1, sort_keys=True))
    Path(out.name).replace(cache)  # atomic: another process reads the old or the new file
    return value


def file_sha256(path: Path) -> tuple[str, int]:
    """The file's sha256 and size, read in 1 MiB blocks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
