"""Tables show cells as written: brackets in check names and run_lists are text, not markup."""

from __future__ import annotations

import pytest

from fleet.cli import render


def test_cells_are_text_and_only_colour_cells_are_styled(capsys: pytest.CaptureFixture[str]) -> None:
    render.table("verify web:v1 [lab]", ["check", "result"], [
        ["consul::passing[web:8080]", render.colour("passed", "green")],
        ["recipe[monitoring]", render.colour("[red]not markup[/red]", "red")],
    ])
    out = capsys.readouterr().out
    assert "verify web:v1 [lab]" in out
    assert "consul::passing[web:8080]" in out and "recipe[monitoring]" in out
    assert "passed" in out and "[green]" not in out
    assert "[red]not markup[/red]" in out  # a colour cell's own text is escaped too
