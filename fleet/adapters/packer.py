"""Packer through `packer build -machine-readable` and friends."""

from __future__ import annotations

from fleet.adapters import process


def version() -> str:
    """'1.6.6' from 'Packer v1.6.6'."""
    out = process.run(["packer", "version"], timeout=30).stdout.split()
    return out[1].lstrip("v")
