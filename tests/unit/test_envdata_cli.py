"""fleet env refresh / rebuild on the command line (fleet/cli/envdata.py): registered here on
the `fleet env` group for the test, as fleet/cli/env.py is to do with envdata.register.
Refusals: one line, exit 1. They read the lab's Consul (an ephemeral environment recorded
there could bear the name given), so that test takes the lab."""

from __future__ import annotations

import sys

import click
import pytest

from fleet.cli import envdata
from fleet.cli.main import cli, every_command, main
from tests.conftest import EXAMPLE


@pytest.fixture
def env_group(monkeypatch: pytest.MonkeyPatch) -> click.Group:
    """`fleet env` with refresh and rebuild added (a bare group while there is none yet),
    undone after the test."""
    group = every_command().get("env") or click.Group(name="env")
    assert isinstance(group, click.Group)
    monkeypatch.setitem(cli.commands, "env", group)
    monkeypatch.setattr(group, "commands", dict(group.commands))
    envdata.register(group)
    return group


def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["fleet", "-f", str(EXAMPLE), *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0), capsys.readouterr().err


def test_register_adds_refresh_and_rebuild(env_group: click.Group) -> None:
    assert {"refresh", "rebuild"} <= set(env_group.commands)


@pytest.mark.parametrize(("args", "says"), [
    (("env", "refresh", "production", "--from", "staging"), "only from a later environment"),
    (("env", "refresh", "staging", "--from", "staging"), "cannot be refreshed from itself"),
    (("env", "refresh", "staging", "--from", "prod"), 'unknown environment "prod"'),
    (("env", "rebuild", "nowhere"), 'unknown environment "nowhere"'),
])
@pytest.mark.lab
@pytest.mark.usefixtures("lab")
def test_refusals_are_one_line(env_group: click.Group, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...],
                               says: str) -> None:
    code, err = run(capsys, monkeypatch, *args)
    assert code == 1, err
    assert says in err and len(err.strip().splitlines()) == 1, err
