"""fleet's Consul client over a cluster of servers (fleet/adapters/http.Servers), against
loopback servers answering as Consul's do: a server gone (refused) or without a leader is
left for the next, a check-and-set write whose server vanished after taking it is found
written (not written twice), a write that may have landed is not sent again unless it may
be, and a cluster without a quorum is one line naming it."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fleet.adapters import http
from fleet.adapters.consul import Consul
from fleet.errors import Unreachable


class Server:
    """One loopback 'Consul server': leader (answers), leaderless (500 No cluster leader),
    or vanishing (reads the request, applies a KV write, then drops the connection)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.seen: list[str] = []
        self.store: dict[str, tuple[bytes, int]] = {}  # key -> (value, index)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle_one(self, body: bytes) -> None:
                outer.seen.append(f"{self.command} {self.path}")
                if outer.mode == "leaderless":
                    return self.send(500, b"No cluster leader")
                if outer.mode == "commit-failed":  # OpenBao's raft storage under load
                    return self.send(500, json.dumps({"errors": [
                        "1 error occurred:\n\t* transaction commit failed\n\n"]}).encode())
                if outer.mode == "vault":  # an OpenBao node that answers
                    return self.send(200, json.dumps({"data": {"role_id": "r-1"}}).encode())
                if outer.mode == "forwarding":  # a follower still sending to the dead leader
                    return self.send(500, b"rpc error getting client: failed to get conn: "
                                          b"dial tcp 10.0.0.1:8310: connect: connection refused")
                key = self.path.split("?")[0].removeprefix("/v1/kv/")
                store = outer.store  # at request time: a test may share one between servers
                if self.command == "PUT":
                    cas = int(self.path.split("cas=")[1]) if "cas=" in self.path else None
                    held = store.get(key, (b"", 0))[1]
                    ok = cas is None or cas == held
                    if ok:
                        store[key] = (body, held + 10)
                    if outer.mode == "vanishing":
                        self.close_connection = True
                        return None  # written, never answered
                    if outer.mode == "cut":  # the follower's forward cut as the leader died
                        return self.send(500, b"rpc error making call: write tcp 10.0.0.2:5->"
                                              b"10.0.0.1:8310: write: broken pipe")
                    if outer.mode == "refusing":  # the leader's own refusal, same words first
                        return self.send(500, b"rpc error making call: invalid session")
                    return self.send(200, json.dumps(ok).encode())
                if key in store:
                    value, index = store[key]
                    import base64
                    item = {"Key": key, "Value": base64.b64encode(value).decode(),
                            "ModifyIndex": index}
                    return self.send(200, json.dumps([item]).encode())
                return self.send(404, b"")

            def send(self, status: int, raw: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self.handle_one(b"")

            def do_PUT(self) -> None:
                self.handle_one(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False  # kept-alive connections end with the test
        self.address = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


def refused_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"  # closed again: refused


@pytest.fixture
def servers() -> Iterator[dict[str, Server]]:
    made = {m: Server(m) for m in ("leader", "leaderless", "vanishing", "forwarding", "cut",
                                   "refusing", "commit-failed", "vault")}
    yield made
    for s in made.values():  # shut down first: serve_forever on a closed socket spins, and
        s.httpd.shutdown()   # the spinning threads held the GIL for the rest of the session
        s.httpd.server_close()


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "FAILOVER_SECONDS", 0.5)


def test_a_read_moves_past_a_server_gone_and_one_without_leader(servers: dict[str, Server]) -> None:
    leader = servers["leader"]
    leader.store["k"] = (b"v", 5)
    consul = Consul((refused_address(), servers["leaderless"].address,
                     servers["forwarding"].address, leader.address))
    entry = consul.get("k")
    assert entry is not None and entry.value == b"v", "the read is answered by the live leader"
    assert consul.address == leader.address, "the client stays with the server that answered"
    assert servers["leaderless"].seen == ["GET /v1/kv/k"], "the leaderless server was asked once"
    assert servers["forwarding"].seen == ["GET /v1/kv/k"], "so was the one forwarding to the dead"
    consul.get("k")
    assert servers["leaderless"].seen == ["GET /v1/kv/k"], "and not again once one answered"


def test_a_cas_write_taken_by_a_vanished_server_is_not_written_twice(servers: dict[str, Server]) -> None:
    vanishing, leader = servers["vanishing"], servers["leader"]
    # one store behind both, as a cluster's servers share their raft log
    leader.store = vanishing.store
    consul = Consul((vanishing.address, leader.address))
    assert consul.put("history", b"event 1", cas=0) is True, \
        "the write the vanished server applied is found written"
    assert vanishing.store["history"][0] == b"event 1"
    assert leader.seen == ["PUT /v1/kv/history?cas=0", "GET /v1/kv/history"], \
        "sent again once, its check-and-set failed, then it was read back"
    assert consul.put("history", b"event 2", cas=0) is False, "a real conflict stays one"


def test_a_forward_cut_as_the_leader_died_is_sent_on_and_not_written_twice(
        servers: dict[str, Server]) -> None:
    cut, leader = servers["cut"], servers["leader"]
    leader.store = cut.store  # the dead leader had applied it: the new one has it
    consul = Consul((cut.address, leader.address))
    assert consul.put("history", b"event 1", cas=0) is True, "found written, not an error"
    assert leader.seen == ["PUT /v1/kv/history?cas=0", "GET /v1/kv/history"], \
        "sent on once, its check-and-set failed, then it was read back"
    refusing = Consul((servers["refusing"].address, leader.address))
    with pytest.raises(Exception, match="invalid session"):
        refusing.put("history", b"event 2", cas=0)
    assert servers["refusing"].seen == ["PUT /v1/kv/history?cas=0"], \
        "the leader's own refusal is an answer, not a lost leader: not sent on"


def test_a_cluster_without_quorum_is_one_line(servers: dict[str, Server]) -> None:
    consul = Consul((refused_address(), refused_address(), servers["leaderless"].address))
    with pytest.raises(Unreachable) as caught:
        consul.get("k")
    line = caught.value.line()
    assert "Consul has no leader: its quorum is lost" in line, line
    assert "2 of 3 servers do not answer" in line, line
    assert "fleet lab start" in line and "\n" not in line, line


def test_no_server_answering_is_one_line() -> None:
    consul = Consul((refused_address(), refused_address()))
    with pytest.raises(Unreachable) as caught:
        consul.get("k")
    assert caught.value.line().startswith("no Consul server answers ("), caught.value.line()


def test_one_address_is_exactly_one_server(servers: dict[str, Server]) -> None:
    """One server: no retries, its own answer (a leaderless 500 is Consul's refusal)."""
    consul = Consul(servers["leaderless"].address)
    with pytest.raises(Exception) as caught:
        consul.get("k")
    assert "No cluster leader" in str(caught.value)
    assert len(servers["leaderless"].seen) == 1


def test_a_write_that_may_not_be_repeated_is_not(servers: dict[str, Server]) -> None:
    vanishing, leader = servers["vanishing"], servers["leader"]
    pool = http.Servers((vanishing.address, leader.address), 2, {}, lambda s, b: False)
    with pytest.raises(OSError):
        pool.request("PUT", "/v1/kv/once", b"x", resend=False)
    assert leader.seen == [], "never sent to a second server"


def test_an_openbao_node_that_failed_to_commit_is_passed_over(servers: dict[str, Server]) -> None:
    """A read OpenBao's raft storage could not commit (it may write through a read) goes to
    the next node; one node alone says it in one line."""
    from fleet.adapters.vault import Vault
    from fleet.errors import FleetError

    failing, node = servers["commit-failed"], servers["vault"]
    assert Vault([failing.address, node.address], "t").role_id("web", "approle") == "r-1"
    assert failing.seen == ["GET /v1/auth/approle/role/web/role-id"], failing.seen
    with pytest.raises(FleetError) as alone:
        Vault(failing.address, "t").role_id("web", "approle")
    assert "transaction commit failed" in alone.value.line(), alone.value.line()
