"""Checks of chef-solo inputs that run here without Chef Infra Client: ruby syntax of recipes."""

from __future__ import annotations

from fleet.adapters import process


def ruby_version() -> str:
    """'3.1.2p20' from 'ruby 3.1.2p20 (...)'."""
    return process.run(["ruby", "--version"], timeout=30).stdout.split()[1]
