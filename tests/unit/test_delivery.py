"""The delivery desk (fleet.services.delivery) and its client, as a lab module's create
provisioner runs it: the desk's answers, its socket's mode, and the client running the whole
command where no desk answers. The delivery itself is faked here (it needs the lab; the
integration tests create nodes through the desk)."""

from __future__ import annotations

import shlex
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from fleet.services import delivery


def run(command: str, *request: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*shlex.split(command), *request], capture_output=True, text=True,
                          timeout=30)


@pytest.fixture
def ctx(tmp_path: Path) -> SimpleNamespace:
    return SimpleNamespace(state_dir=tmp_path / ".fleet", file=tmp_path / "fleet.toml")


def test_the_desk_answers_and_goes_away(ctx: SimpleNamespace,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def answer(_ctx: object, request: str) -> dict[str, str | bool]:
        asked.append(request)
        if request.startswith("bad"):
            return {"ok": False, "error": "node bad could not log in: see fleet secrets check"}
        return {"ok": True, "said": f"{request.split()[0]}: consul agent has its token"}

    monkeypatch.setattr(delivery, "answer", answer)
    with delivery.desk(ctx) as command:  # type: ignore[arg-type]
        sockets = list((ctx.state_dir / "run").glob("deliver-*.sock"))
        assert len(sockets) == 1, f"one socket under .fleet/run, found {sockets}"
        assert stat.S_IMODE(sockets[0].stat().st_mode) == 0o600, "only its user may ask"
        assert stat.S_IMODE(sockets[0].parent.stat().st_mode) == 0o700
        good = run(command, "n1", "web", "canary")
        bad = run(command, "bad", "web", "canary")
    assert good.returncode == 0 and good.stdout == "n1: consul agent has its token\n", good
    assert bad.returncode == 1, bad
    assert bad.stderr.strip() == ("fleet: error: node bad could not log in: see fleet secrets "
                                  "check"), bad.stderr
    assert asked == ["n1 web canary", "bad web canary"], "one request line per node"
    assert not sockets[0].exists(), "the socket goes with the desk"


def test_without_a_desk_the_client_runs_the_whole_command(tmp_path: Path) -> None:
    """fleet killed mid-apply: Terraform goes on, and each node still gets its delivery."""
    gone = tmp_path / "deliver-1.sock"
    command = shlex.join([sys.executable, "-I", "-S", str(delivery.CLIENT), str(gone),
                          "echo", "secrets", "deliver"])
    done = run(command, "n1", "web", "canary")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "secrets deliver n1 web canary\n", "the whole command, NODE ROLE ENV"


def test_a_bad_request_is_one_line(ctx: SimpleNamespace) -> None:
    said = delivery.answer(ctx, "only-a-node")  # type: ignore[arg-type]
    assert said == {"ok": False, "error": "a delivery takes NODE ROLE ENV, not 'only-a-node'"}


def test_a_path_too_long_for_a_socket_gets_the_whole_command(tmp_path: Path) -> None:
    deep = SimpleNamespace(state_dir=tmp_path / ("d" * 120) / ".fleet", file=tmp_path / "f")
    with delivery.desk(deep) as command:  # type: ignore[arg-type]
        assert command == delivery.deliver_command(deep)  # type: ignore[arg-type]
