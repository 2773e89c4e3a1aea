"""Terraform's human diagnostics become one line each (golden: a real failed apply's stderr)."""

from __future__ import annotations

from fleet.adapters.terraform import diagnostics
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "golden" / "terraform"


def test_a_failed_local_exec_names_the_resource_and_the_commands_own_words() -> None:
    line = diagnostics((GOLDEN / "apply-local-exec-failed.txt").read_text())
    assert "\n" not in line
    assert line.startswith("Error: local-exec provisioner error (terraform_data.x) exit status 125")
    assert "No such image: sha256:0000" in line
    assert "main.tf line 2" not in line  # the source snippet is left out


def test_box_drawn_diagnostics_and_several_errors() -> None:
    stderr = ("╷\n│ Error: Error acquiring the state lock\n│ \n│ Lock Info:\n│   ID: abc\n╵\n"
              "╷\n│ Error: Missing required argument\n│ \n│   on main.tf line 3:\n"
              "│    3: x = 1\n│ \n│ The argument \"y\" is required.\n╵\n")
    assert diagnostics(stderr).splitlines() == [
        "Error: Error acquiring the state lock Lock Info:",
        'Error: Missing required argument The argument "y" is required.']


def test_no_diagnostic_keeps_the_raw_text() -> None:
    assert diagnostics("segfault\n") == "segfault\n"
