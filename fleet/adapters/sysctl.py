"""Kernel parameters, read and written under /proc/sys as `sysctl` does (net.ipv4.x is
/proc/sys/net/ipv4/x)."""

from __future__ import annotations

from pathlib import Path

from fleet.errors import FleetError

ROOT = Path("/proc/sys")


def _file(name: str) -> Path:
    return ROOT / name.replace(".", "/")


def read_int(name: str) -> int:
    """The value of an integer parameter; FleetError if this kernel has none or hides it."""
    try:
        return int(_file(name).read_text().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise FleetError(f"kernel parameter {name} cannot be read: {exc}",
                         "run fleet on a Linux host where /proc/sys is mounted") from exc


def write_int(name: str, value: int) -> None:
    """Set an integer parameter (root only); FleetError naming the parameter if refused."""
    try:
        _file(name).write_text(f"{value}\n")
    except OSError as exc:
        raise FleetError(f"kernel parameter {name} cannot be set to {value}: {exc.strerror}",
                         f"run as root, or set it yourself: sysctl -w {name}={value}") from exc
