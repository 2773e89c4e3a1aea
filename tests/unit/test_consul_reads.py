"""The Consul adapter's reads over the standard library's HTTP (fleet/adapters/http.Http), against
a loopback server answering as Consul does: values decoded, nothing there (404) as None, a
refusal as Denied or one FleetError line, a server down as Unreachable, a kept-alive
connection the server closed read again; and a read command's imports stay free of requests
and py-consul."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from fleet.adapters.consul import Consul, Entry
from fleet.errors import Denied, FleetError, Unreachable

TOKEN = "t0ken"


def kv(key: str, value: bytes | None, index: int, session: str = "") -> dict[str, Any]:
    item: dict[str, Any] = {"Key": key, "ModifyIndex": index,
                            "Value": base64.b64encode(value).decode() if value else None}
    if session:
        item["Session"] = session
    return item


ANSWERS: dict[str, tuple[int, Any]] = {
    "/v1/kv/a/one": (200, [kv("a/one", b"1", 7)]),
    "/v1/kv/a/?recurse=true": (200, [kv("a/one", b"1", 7), kv("a/empty", None, 8, "s1")]),
    "/v1/kv/a/?keys=true": (200, ["a/one", "a/empty"]),
    "/v1/kv/secret": (403, "Permission denied"),
    "/v1/kv/broken": (500, "rpc error"),
    "/v1/status/leader": (200, "172.30.7.1:8300"),
    "/v1/health/service/web?tag=fleet%3Ax": (200, [
        {"Node": {"Node": "n1", "Address": "10.0.0.1"},
         "Service": {"Service": "web", "Address": "", "Meta": {"role": "web"},
                     "Weights": {"Passing": 100, "Warning": 1}},
         "Checks": [{"CheckID": "serfHealth", "Status": "passing"},
                    {"CheckID": "service:web", "Status": "critical"}]},
        {"Node": {"Node": "n2", "Address": "10.0.0.2"},  # not a member: left out
         "Service": {"Service": "web", "Address": "", "Meta": {}, "Weights": {"Passing": 1}},
         "Checks": [{"CheckID": "service:web", "Status": "passing"}]}]),
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str, str | None]]] = []
    close_next = False

    def answer(self, body: Any = None) -> None:
        Handler.seen.append((self.command, self.path, self.headers.get("X-Consul-Token")))
        if Handler.close_next:  # a kept-alive connection the server has dropped
            Handler.close_next = False
            self.close_connection = True
            return
        if self.path == "/v1/txn":
            keys = [op["KV"]["Key"] for op in body]
            status, data = 200, {"Results": [{"KV": kv(k, k.encode(), 1)} for k in keys]}
        else:
            status, data = ANSWERS.get(self.path, (404, ""))
        raw = json.dumps(data).encode() if status == 200 else str(data).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        self.answer()

    def do_PUT(self) -> None:
        self.answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def consul() -> Iterator[Consul]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    Handler.seen.clear()
    yield Consul(f"http://127.0.0.1:{server.server_address[1]}", TOKEN, timeout=2)
    server.shutdown()
    server.server_close()


def test_reads_decode_as_consul_answers(consul: Consul) -> None:
    assert consul.get("a/one") == Entry("a/one", b"1", 7), "one key, its value decoded"
    assert consul.get("a/none") is None, "a key Consul has not: None"
    assert consul.list("a/") == [Entry("a/one", b"1", 7), Entry("a/empty", b"", 8, "s1")], \
        "a tree: empty values as b'', the session holding a key"
    assert consul.list("b/") == [], "an empty tree (404): []"
    assert consul.keys("a/") == ["a/one", "a/empty"], "keys alone"
    assert consul.get_many(["k/1", "k/2"]) == [Entry("k/1", b"k/1", 1), Entry("k/2", b"k/2", 1)], \
        "many keys in one transaction"
    assert consul.leader() == "172.30.7.1:8300", "the leader"
    [web] = consul.instances("web", "fleet:x")
    assert (web.node, web.address, web.passing, web.weight) == ("n1", "10.0.0.1", False, 100), \
        "an instance: its node's address, failing with one check critical; a non-member left out"
    assert {token for _, _, token in Handler.seen} == {TOKEN}, "every read sends the token"
    assert ("PUT", "/v1/txn", TOKEN) in Handler.seen, "the transaction is a PUT"


def test_refusals_are_one_line(consul: Consul) -> None:
    with pytest.raises(Denied, match=r"Consul denied read secret \(403 Permission denied\)"):
        consul.get("secret")
    with pytest.raises(FleetError, match="Consul refused read broken: 500 rpc error"):
        consul.get("broken")


def test_a_dropped_kept_alive_connection_is_read_again(consul: Consul) -> None:
    assert consul.get("a/one") is not None
    Handler.close_next = True
    assert consul.get("a/one") == Entry("a/one", b"1", 7), "read again on a new connection"


def test_a_server_down_is_unreachable() -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Unreachable, match=f"Consul at http://127.0.0.1:{port} is not reachable"):
        Consul(f"http://127.0.0.1:{port}", timeout=1).get("a")


def test_read_commands_do_not_import_requests() -> None:
    code = ("import sys\n"
            "from fleet.cli import main\n"
            "from fleet.workflows import plan, status\n"
            "from fleet.adapters.consul import Consul\n"
            "Consul('http://127.0.0.1:1')\n"
            "print(sorted(m for m in ('requests', 'consul', 'hvac', 'urllib3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"imported at start: {out.stdout.strip()}"
