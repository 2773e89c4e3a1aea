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


def branch(root: Path) -> str | None:
    """The checked-out branch; None on a detached HEAD or outside a repository."""
    found = process.run(["git", "-C", str(root), "symbolic-ref", "--quiet", "--short", "HEAD"],
                        check=False, timeout=30)
    return found.stdout.strip() or None if found.returncode == 0 else None


def commit(root: Path, ref: str) -> str | None:
    """The commit ref names; None when it names none (a branch with no commits yet)."""
    found = process.run(["git", "-C", str(root), "rev-parse", "--verify", "--quiet",
                         f"{ref}^{{commit}}"], check=False, timeout=30)
    return found.stdout.strip() or None if found.returncode == 0 else None
