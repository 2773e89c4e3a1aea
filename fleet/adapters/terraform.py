"""Terraform through its CLI and machine-readable output."""

from __future__ import annotations

import json
from pathlib import Path

from fleet.adapters import process


def cli_env(state_dir: Path) -> dict[str, str]:
    """Point TF_CLI_CONFIG_FILE at an empty file: no provider mirrors, no credentials helpers."""
    config = state_dir / "terraformrc"
    if not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text("")
    return {"TF_CLI_CONFIG_FILE": str(config), "TF_IN_AUTOMATION": "1"}


def version(state_dir: Path) -> str:
    result = process.run(["terraform", "version", "-json"], env=cli_env(state_dir), timeout=30)
    return str(json.loads(result.stdout)["terraform_version"])
