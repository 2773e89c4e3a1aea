"""The house rules that tools check: ruff on everything, mypy strict on fleet/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_ruff() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "fleet", "tests", "bench"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_terraform_modules_are_formatted_and_the_lab_module_validates(tmp_path: Path) -> None:
    """aws modules can only be format-checked here (no provider can be downloaded); the lab
    modules use built-ins only, so they validate offline too."""
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(tmp_path / "terraformrc"),
           "TF_DATA_DIR": str(tmp_path / "data"), "CHECKPOINT_DISABLE": "1"}
    (tmp_path / "terraformrc").write_text("")
    fmt = subprocess.run(["terraform", "fmt", "-check", "-recursive", "-diff", "terraform"],
                         cwd=ROOT, capture_output=True, text=True, env=env)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    assert (ROOT / "terraform/aws/cattle/main.tf").exists()
    for module in ("cattle", "machines"):
        lab = ["terraform", f"-chdir=terraform/lab/{module}"]
        for argv in ([*lab, "init", "-backend=false", "-input=false", "-no-color"],
                     [*lab, "validate", "-no-color"]):
            result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env)
            assert result.returncode == 0, module + ": " + result.stdout + result.stderr
