"""pytest as a subprocess, for the verification suites: build argv, run, parse its JUnit XML.

pytest writes one <testcase classname=... name=...> per test, with a <failure>, <error> or
<skipped> child when it did not pass (https://docs.pytest.org/en/stable/how-to/output.html,
JUnit's xunit2 flavour). A suite that cannot even be collected yields <error> cases too.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from fleet.adapters import process
from fleet.errors import CommandFailed, FleetError

# pytest's exit codes (pytest.ExitCode): 0 all passed, 1 some failed; anything else means the
# run itself went wrong (interrupted, internal error, usage, nothing collected).
TESTS_RAN = (0, 1)


class JUnitError(FleetError):
    """pytest's JUnit XML is missing or not what fleet parses."""


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Case:
    name: str          # the pytest node id below the suites' directory
    outcome: Outcome
    seconds: float
    message: str       # the failure, error or skip message; '' when it passed


def argv(paths: Sequence[Path], *, rootdir: Path, junit: Path) -> list[str]:
    """The suites' own pytest run: this interpreter, no cache in the fleet's tree, and no
    conftest above rootdir (the project's own tests stay out)."""
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rN",
            "--rootdir", str(rootdir), "--confcutdir", str(rootdir),
            "--junitxml", str(junit), "-o", "junit_family=xunit2", *map(str, paths)]


def _node_id(classname: str, name: str) -> str:
    """'common.test_node' + 'test_x[a]' -> 'common/test_node.py::test_x[a]'."""
    module = classname.replace(".", "/") + ".py" if classname else ""
    return f"{module}::{name}" if module else name


def parse_junit(text: str) -> tuple[Case, ...]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise JUnitError(f"pytest's JUnit XML is not XML: {exc}") from exc
    suites = [root] if root.tag == "testsuite" else list(root)
    cases = []
    for suite in suites:
        if suite.tag != "testsuite":
            raise JUnitError(f"unexpected <{suite.tag}> in pytest's JUnit XML")
        for case in suite.iter("testcase"):
            outcome, message = Outcome.PASSED, ""
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = {"failure": Outcome.FAILED, "error": Outcome.ERROR,
                               "skipped": Outcome.SKIPPED}[child.tag]
                    message = child.attrib["message"]
            cases.append(Case(_node_id(case.attrib["classname"], case.attrib["name"]), outcome,
                              float(case.attrib["time"]), message))
    return tuple(cases)


def run(paths: Sequence[Path], *, rootdir: Path, junit: Path, env: Mapping[str, str], log: Path,
        timeout: float) -> tuple[Case, ...]:
    """Run the suites; every test's outcome. CommandFailed if pytest could not run them."""
    command = argv(paths, rootdir=rootdir, junit=junit)
    junit.unlink(missing_ok=True)
    result = process.run(command, check=False, env=env, cwd=rootdir, timeout=timeout)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(result.stdout + result.stderr)
    if result.returncode not in TESTS_RAN and not junit.exists():
        raise CommandFailed(command, result.returncode, result.stdout + result.stderr,
                            f"the whole output is in {log}")
    cases = parse_junit(junit.read_text())
    if not cases:
        raise CommandFailed(command, result.returncode, "no test was collected",
                            f"add tests under {rootdir}; the output is in {log}")
    return cases
