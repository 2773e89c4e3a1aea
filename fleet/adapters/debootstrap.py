"""debootstrap: a minimal Debian root filesystem for the lab's base image."""

from __future__ import annotations

from pathlib import Path

from fleet.adapters import process

MIRROR = "http://deb.debian.org/debian"


def argv(suite: str, packages: tuple[str, ...], target: Path) -> list[str]:
    """minbase plus the packages every node needs."""
    out = ["debootstrap", "--variant=minbase"]
    if packages:
        out.append("--include=" + ",".join(packages))
    return [*out, suite, str(target), MIRROR]


def bootstrap(suite: str, packages: tuple[str, ...], target: Path) -> None:
    process.run(argv(suite, packages, target), timeout=1800,
                fix="check that Debian's mirror is reachable and the package names exist")
