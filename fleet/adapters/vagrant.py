"""Vagrant through its CLI (docker provider)."""

from __future__ import annotations

from fleet.adapters import process


def version() -> str:
    """'2.3.4' from 'Vagrant 2.3.4'."""
    return process.run(["vagrant", "--version"], timeout=60).stdout.split()[1]
