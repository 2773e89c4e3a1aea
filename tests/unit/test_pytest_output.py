"""The pytest adapter's parsing, on real JUnit XML of verification suites (golden files)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fleet.adapters import pytest as suite

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "pytest"


def parsed(name: str) -> tuple[suite.Case, ...]:
    return suite.parse_junit((GOLDEN / name).read_text())


def test_every_case_passes_on_a_good_image() -> None:
    cases = parsed("verify-web-passed.xml")
    assert len(cases) == 21
    assert {c.outcome for c in cases} == {suite.Outcome.PASSED}
    assert cases[1].name == "common/test_node.py::test_base_package_installed[openssh-server]"
    assert all(c.message == "" for c in cases)


def test_a_role_that_does_not_listen_fails_named_checks() -> None:
    failed = {c.name: c.message for c in parsed("verify-web-broken.xml")
              if c.outcome is suite.Outcome.FAILED}
    assert failed["common/test_services.py::test_listening[web:8080]"].startswith(
        "AssertionError: nothing listens on port 8080")
    assert "web/test_web.py::test_serves_this_role_and_version" in failed
    assert len(failed) == 6


def test_outcomes_and_bad_xml() -> None:
    text = ('<testsuites><testsuite name="pytest">'
            '<testcase classname="common.test_a" name="test_x" time="0.1">'
            '<skipped message="no secrets" /></testcase>'
            '<testcase classname="" name="common" time="0">'
            '<error message="collection failure">boom</error></testcase>'
            '</testsuite></testsuites>')
    assert suite.parse_junit(text) == (
        suite.Case("common/test_a.py::test_x", suite.Outcome.SKIPPED, 0.1, "no secrets"),
        suite.Case("common", suite.Outcome.ERROR, 0.0, "collection failure"))
    with pytest.raises(suite.JUnitError):
        suite.parse_junit("<testsuites><testsuite>")
    with pytest.raises(KeyError):
        suite.parse_junit('<testsuite><testcase name="t" time="0" /></testsuite>')


def test_argv_runs_this_interpreter_without_the_project_conftest(tmp_path: Path) -> None:
    argv = suite.argv([tmp_path / "common"], rootdir=tmp_path, junit=tmp_path / "j.xml")
    assert argv[:3] == [sys.executable, "-m", "pytest"]
    assert argv[argv.index("--confcutdir") + 1] == str(tmp_path)
    assert argv[-1] == str(tmp_path / "common")
