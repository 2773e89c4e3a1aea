"""Checks of chef-solo inputs that run here without Chef Infra Client: ruby syntax of recipes."""

from __future__ import annotations

from pathlib import Path

from fleet.adapters import process


def ruby_version() -> str:
    """'3.1.2p20' from 'ruby 3.1.2p20 (...)'."""
    return process.run(["ruby", "--version"], timeout=30).stdout.split()[1]


def syntax_error(recipe: Path) -> str | None:
    """`ruby -c`: None if the file parses, else ruby's first complaint."""
    result = process.run(["ruby", "-c", str(recipe)], check=False, timeout=60)
    if result.returncode == 0:
        return None
    lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return lines[0] if lines else f"ruby -c exited {result.returncode}"
