"""`fleet verify`'s command line: usage errors exit 2, bad input is one line and exit 1."""

from __future__ import annotations

import pytest

from tests.conftest import EXAMPLE
from tests.unit.test_cli import invoke


@pytest.mark.parametrize("args", [[], ["web", "--machines"], ["--machines", "--keep"]])
def test_usage_errors(args: list[str], capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, _ = invoke(capsys, monkeypatch, "-f", str(EXAMPLE), "verify", *args)
    assert code == 2


@pytest.mark.parametrize(("role", "message"), [
    ("wbe", 'fleet: error: unknown role "wbe" (did you mean "web"?)'),
    ("postgres", "fleet: error: postgres is a pet: only cattle roles have baked images to verify"),
])
def test_roles_that_cannot_be_verified(role: str, message: str,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = invoke(capsys, monkeypatch, "-f", str(EXAMPLE), "verify", role)
    assert code == 1 and out == ""
    assert err.startswith(message) and err.count("\n") == 1
