"""git: what commit the fleet's files are at, for an image's provenance and derived versions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleet.adapters import process


@dataclass(frozen=True)
class Revision:
    commit: str      # full sha, or "unknown" outside a repository
    dirty: bool      # uncommitted changes to tracked files
    describe: str    # `git describe --tags --always`: v1.2-3-gabc1234, or a short sha


def revision(root: Path) -> Revision:
    head = process.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=False, timeout=30)
    if head.returncode != 0:
        return Revision("unknown", True, "untagged")
    status = process.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                         timeout=30)
    describe = process.run(["git", "-C", str(root), "describe", "--tags", "--always"], timeout=30)
    return Revision(head.stdout.strip(), bool(status.stdout.strip()), describe.stdout.strip())
