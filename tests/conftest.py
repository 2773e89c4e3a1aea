"""Shared fixtures. The lab is real: brought up once per session through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "fleet.toml"


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def fleet(*args: str, file: Path = EXAMPLE, env: dict[str, str] | None = None,
          timeout: float = 600) -> Run:
    """Run the real `fleet` command line in a subprocess."""
    import os

    proc = subprocess.run([sys.executable, "-m", "fleet", "-f", str(file), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def lab() -> Any:
    """The example fleet's lab, up; yields its Context."""
    from fleet.workflows.context import load

    result = fleet("lab", "up")
    assert result.code == 0, result.stderr
    return load(EXAMPLE)
