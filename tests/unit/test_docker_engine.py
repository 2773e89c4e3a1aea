"""Docker's Engine API on the local socket (adapters/docker_engine): which socket the CLI would
use, and image inspection's answers: an image, none, or NoAnswer (then the CLI is asked).
A small HTTP server on a Unix socket in tmp_path plays the daemon."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from fleet.adapters import docker_engine

IMAGE = {"Id": "sha256:abc", "RepoTags": ["fleet-base-bookworm:1"], "Created": "2026",
         "Config": {"Labels": None},
         "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": "/u", "LowerDir": "/l1:/l2"}}}


def test_the_socket_is_the_one_the_cli_would_use(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "cfg")}
    assert docker_engine.local_socket(home) == docker_engine.DEFAULT_SOCKET, "the default"
    assert docker_engine.local_socket({**home, "DOCKER_HOST": "unix:///run/d.sock"}) \
        == "/run/d.sock", "DOCKER_HOST on a Unix socket"
    assert docker_engine.local_socket({**home, "DOCKER_HOST": "tcp://10.0.0.1:2376"}) is None, \
        "a remote daemon: the CLI"
    assert docker_engine.local_socket({**home, "DOCKER_CONTEXT": "remote"}) is None, \
        "another context: the CLI"
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg/config.json").write_text(json.dumps({"currentContext": "remote"}))
    assert docker_engine.local_socket(home) is None, "the config's context: the CLI"
    assert docker_engine.local_socket({**home, "DOCKER_HOST": "unix:///run/d.sock"}) \
        == "/run/d.sock", "DOCKER_HOST wins over the config's context"
    (tmp_path / "cfg/config.json").write_text("{not json")
    assert docker_engine.local_socket(home) == docker_engine.DEFAULT_SOCKET, \
        "an unreadable config: the default context, as the CLI"


class Daemon(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            asked.append(self.path)
            status, body = {"/images/fleet-base-bookworm:1/json": (200, IMAGE),
                            "/images/broken/json": (500, {"message": "oops"})}.get(
                self.path, (404, {"message": "No such image"}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    path = str(tmp_path / "docker.sock")
    server = Daemon(path, Handler)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    try:
        yield asked
    finally:
        server.shutdown()
        server.server_close()


def test_an_image_is_read_from_the_socket_and_a_missing_one_is_none(daemon: list[str]) -> None:
    assert docker_engine.image("fleet-base-bookworm:1") == IMAGE, "the daemon's answer"
    assert docker_engine.image("nope:1") is None, "404: no such image"
    with pytest.raises(docker_engine.NoAnswer):
        docker_engine.image("broken")  # any other status: the CLI is asked
    assert daemon == ["/images/fleet-base-bookworm:1/json", "/images/nope:1/json",
                      "/images/broken/json"], "one request each, on one kept-alive connection"
    assert docker_engine.layers(IMAGE["GraphDriver"]) == (  # type: ignore[arg-type]
        Path("/u"), Path("/l1"), Path("/l2")), "overlay2 layers, newest first"


def test_no_socket_is_no_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")
    with pytest.raises(docker_engine.NoAnswer):
        docker_engine.image("fleet-base-bookworm:1")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    with pytest.raises(docker_engine.NoAnswer):
        docker_engine.image("fleet-base-bookworm:1")
