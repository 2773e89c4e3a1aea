"""The command line's contract: help and --json everywhere, exit codes, one line per failure."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from fleet.cli.main import every_command, main
from tests.conftest import EXAMPLE


def invoke(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
           *args: str) -> tuple[int, str, str]:
    """Run main() in-process, as the console script does; return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["fleet", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def all_commands() -> list[list[str]]:
    found = []
    for name, command in every_command().items():
        sub = getattr(command, "commands", None)
        if sub:
            found += [[name, child] for child in sub]
        else:
            found.append([name])
    return found


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_every_command_has_help_and_json(path: list[str], capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = invoke(capsys, monkeypatch, *path, "--help")
    assert code == 0
    assert "--json" in out


def test_validate_example(capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = invoke(capsys, monkeypatch, "-f", str(EXAMPLE), "validate")
    assert code == 0
    assert "9 roles (4 cattle, 3 pet, 2 snowflake)" in out
    assert "canary -> staging -> production" in out


def test_validate_json(capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = invoke(capsys, monkeypatch, "-f", str(EXAMPLE), "validate", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["ok"] is True and data["problems"] == []
    assert data["environments"] == ["canary", "staging", "production"]
    assert data["roles"]["gitaly"] == "pet"


def test_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = invoke(capsys, monkeypatch, "-f", str(tmp_path / "nope.toml"), "validate")
    assert code == 1
    assert out == ""
    assert err.strip().splitlines() == [
        f"fleet: error: {tmp_path / 'nope.toml'} does not exist: run fleet from the fleet's "
        "directory or pass --file PATH"]


def test_missing_script_is_reported_with_its_line(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    text = EXAMPLE.read_text().replace("packer/scripts/web.sh", "packer/scripts/nope.sh")
    (tmp_path / "fleet.toml").write_text(text)
    code, _, err = invoke(capsys, monkeypatch, "-f", str(tmp_path / "fleet.toml"), "validate")
    assert code == 1
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "nope.sh" in t)
    assert (f"fleet.toml:{line}: roles.web.provisioner.scripts[0]: script "
            "packer/scripts/nope.sh does not exist") in err
    assert "Traceback" not in err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = invoke(capsys, monkeypatch, "no-such-command")
    assert code == 2
    assert "No such command" in err


def test_schema_is_json(capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = invoke(capsys, monkeypatch, "schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["title"] == "fleet.toml"
    assert schema["properties"]["roles"]["additionalProperties"]["properties"]["class"]["enum"] \
        == ["cattle", "pet", "snowflake"]


def test_internal_error_has_no_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr("fleet.workflows.validate.validate", boom)
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke(capsys, monkeypatch, "-f", str(EXAMPLE), "validate")
    assert code == 1
    assert "fleet: internal error: RuntimeError: unexpected" in err
    assert "Traceback" not in err
    assert "Traceback" in (tmp_path / ".fleet/log/fleet-internal-error.log").read_text()


def test_lab_reset_without_terminal_needs_yes(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    code, _, err = invoke(capsys, monkeypatch, "-f", str(EXAMPLE), "lab", "reset")
    assert code == 1
    assert "pass --yes" in err


def test_interrupt_exits_130(capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("fleet.workflows.validate.validate", interrupted)
    code, _, err = invoke(capsys, monkeypatch, "-f", str(EXAMPLE), "validate")
    assert code == 130
    assert "interrupted" in err


def test_sigterm_is_an_interrupt_that_exits_143(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`kill`, `timeout` or a cancelled CI job: what runs unwinds as for a Ctrl-C (its
    `finally` blocks run), then one line and exit 143, not a death with nothing cleaned up."""
    unwound: list[bool] = []

    def terminated(*_: object) -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises in here
        finally:
            unwound.append(True)

    monkeypatch.setattr("fleet.workflows.validate.validate", terminated)
    code, _, err = invoke(capsys, monkeypatch, "-f", str(EXAMPLE), "validate")
    assert code == 143, err
    assert err.strip().splitlines()[-1] == "fleet: terminated", err
    assert unwound == [True], "the command's finally did not run"


def test_each_family_registers_the_commands_main_imports_it_for() -> None:
    """fleet/cli/main.py imports a command family's module only when one of its commands runs
    (FAMILIES): each module with a register() is listed there, with exactly its commands."""
    import importlib

    import click

    from fleet.cli.main import FAMILIES

    here = Path(__file__).resolve().parents[2] / "fleet" / "cli"
    modules = {p.stem for p in here.glob("*.py")
               if "\ndef register(group: click.Group)" in p.read_text()}
    assert set(FAMILIES) <= modules, f"no such module: {set(FAMILIES) - modules}"
    for name in sorted(modules):
        group = click.Group()
        importlib.import_module(f"fleet.cli.{name}").register(group)
        if name in FAMILIES:
            assert set(group.commands) == set(FAMILIES[name]), f"{name}: {sorted(group.commands)}"
        else:  # a family of subcommands another family's group takes in (fleet/cli/envdata.py)
            assert not set(group.commands) & set(every_command()), f"{name} is not in FAMILIES"
