"""fleet-service's placement of new repositories by weight (packer/scripts/lib/fleet-service.py),
on the weights.json that fleet-node renders."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.unit.scripts import load_script


def load() -> Any:
    return load_script("packer/scripts/lib/fleet-service.py", "fleet_service")


def storage(tmp_path: Path, weights: dict[str, int]) -> dict[str, str]:
    path = tmp_path / "weights.json"
    path.write_text(json.dumps({"gitaly": weights, "postgres": {"10.0.0.9:5432": 1}}))
    return {"FLEET_STORAGE_SERVICE": "gitaly", "FLEET_STORAGE_WEIGHTS_FILE": str(path)}


def test_new_repositories_go_by_weight_and_never_to_weight_0(tmp_path: Path) -> None:
    svc = load()
    keys = [f"group/project-{i:04}.git" for i in range(2000)]
    held = storage(tmp_path, {"10.0.0.1:8075": 100, "10.0.0.2:8075": 0})
    assert {svc.place(k, held) for k in keys} == {"10.0.0.1:8075"}, "weight 0 takes none"
    split = storage(tmp_path, {"10.0.0.1:8075": 90, "10.0.0.2:8075": 10})
    counts = Counter(svc.place(k, split) for k in keys)
    assert 150 <= counts["10.0.0.2:8075"] <= 250, f"about 10% on the lighter one: {counts}"
    assert [svc.place(k, split) for k in keys[:50]] == [svc.place(k, split) for k in keys[:50]]
    moved = storage(tmp_path, {"10.0.0.1:8075": 0, "10.0.0.2:8075": 100})
    assert {svc.place(k, moved) for k in keys} == {"10.0.0.2:8075"}, "all on the target"
    assert svc.place("x", storage(tmp_path, {"10.0.0.1:8075": 0})) is None
    assert svc.place("x", storage(tmp_path, {})) is None
    assert svc.place("x", {"FLEET_STORAGE_WEIGHTS_FILE": str(tmp_path / "none")}) is None
    said = svc.placed("x", storage(tmp_path, {}))
    assert said == {"repository": "x", "error": "no passing gitaly instance takes new work"}


def test_the_tcp_service_answers_place_after_its_greeting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = load()
    env = tmp_path / "storage.env"
    env.write_text("\n".join(f"{k}={v}" for k, v in
                             storage(tmp_path, {"10.0.0.1:8075": 1}).items()) + "\n")
    monkeypatch.setattr(svc, "STORAGE_ENV", str(env))
    monkeypatch.setattr(svc, "NAME", "git-ssh", raising=False)
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), svc.Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(server.server_address, timeout=5) as conn:
            reader = conn.makefile("rb")
            assert reader.readline() == b"git-ssh ready\n"
            conn.sendall(b"place group/new.git\n")
            assert json.loads(reader.readline()) == {"repository": "group/new.git",
                                                     "storage": "10.0.0.1:8075"}
        with socket.create_connection(server.server_address, timeout=5) as conn:
            assert conn.makefile("rb").readline() == b"git-ssh ready\n"  # a health check goes
    finally:
        server.shutdown()
        server.server_close()
