"""A bake's files beside its log, in STATE/logs/bake: ROLE-STAMP.log, Packer's whole output,
and while Packer runs ROLE-STAMP-upload/, the role's uploads, which the build container
mounts (bakeinputs.stage_upload).

A bake removes its upload folder when Packer is done, and keeps a failed bake's log for
diagnosis unless the log holds a secret. A bake killed with -9 can do neither, and its Packer
runs on for a while (it cancels and removes its container). So the upload folder is marked in
use by fleet and Packer (services/inuse.py), and the next bake finds the folders that no
process holds any more. Each such folder's log is then scrubbed as a failed bake's would
have been, and the folder is removed. Each role keeps its newest KEEP logs (`prune`): a CI
machine that bakes all day does not fill its disk with them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fleet.errors import FleetError
from fleet.model import secretscan
from fleet.services import inuse

UPLOAD = "-upload"
KEEP = 20  # logs kept per role, the newest


def log_dir(state_dir: Path) -> Path:
    return state_dir / "logs" / "bake"


def new_log(state_dir: Path, role: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
    return log_dir(state_dir) / f"{role}-{stamp}.log"


def upload_folder(log: Path) -> Path:
    return log.with_name(f"{log.stem}{UPLOAD}")


def log_of(folder: Path) -> Path:
    """The log of the bake whose upload_folder this is."""
    return folder.with_name(f"{folder.name.removesuffix(UPLOAD)}.log")


def scrub(log: Path, needles: Callable[[], dict[bytes, str]] | None) -> None:
    """A failed bake's log stays for diagnosis, unless it holds a secret. needles: the lab's
    secret values (None: fleet has no Vault token, and nothing to look for)."""
    if log.exists() and needles is not None:
        try:
            if secretscan.scan(log.name, log.read_bytes(), needles()):
                log.unlink()
        except FleetError:
            log.unlink()  # cannot check it: do not keep it


def sweep(state_dir: Path, scrub_log: Callable[[Path], None]) -> list[Path]:
    """What killed bakes left: their upload folders that no process holds any more go, and
    scrub_log is given each one's log. Returns the folders removed."""
    gone = inuse.abandoned(log_dir(state_dir), f"*{UPLOAD}")
    for folder in gone:
        scrub_log(log_of(folder))
        shutil.rmtree(folder, ignore_errors=True)
    return gone


def prune(state_dir: Path, keep: int = KEEP) -> list[Path]:
    """Remove each role's bake logs but its newest `keep` (their names sort by time: ROLE-STAMP);
    a log whose upload folder is still there (its bake running, or killed and not swept yet)
    stays. Returns the logs removed."""
    by_role: dict[str, list[Path]] = {}
    for log in log_dir(state_dir).glob("*.log"):
        by_role.setdefault(log.stem.rpartition("-")[0], []).append(log)
    gone = []
    for found in by_role.values():
        for log in sorted(found, reverse=True)[keep:]:
            if not upload_folder(log).exists():
                log.unlink(missing_ok=True)
                gone.append(log)
    return gone
