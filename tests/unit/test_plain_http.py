"""adapters/http.Plain, the HTTP/1.1 client of plain http reads (Consul's, OpenBao's), against
a socket server that answers each request with the bytes a test scripts: Content-Length,
chunked (as Consul sends its large answers), up to the connection's end, and no HTTP at all."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator

import pytest

from fleet.adapters.http import Http

ANSWERS = {
    b"/length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Consul-Index: 7\r\n\r\nhello",
    b"/chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"4\r\n[1, \r\n3;ext=1\r\n2]\n\r\n0\r\nTrailer: x\r\n\r\n"),
    b"/interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"/to-the-end": b"HTTP/1.0 404 Not Found\r\n\r\nno such key",
    b"/garbage": b"SSH-2.0-OpenSSH\r\n\r\n",
}


@pytest.fixture
def server() -> Iterator[tuple[int, list[bytes]]]:
    """(port, the request lines it saw); each connection answers its requests in turn, and
    the to-the-end and garbage ones then close it."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as file:
            while line := file.readline():
                seen.append(line.strip())
                length = 0
                while (header := file.readline()) not in (b"\r\n", b""):
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":")[1])
                file.read(length)
                path = line.split()[1]
                conn.sendall(ANSWERS[path])
                if path in (b"/to-the-end", b"/garbage"):
                    return

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], seen
    listener.close()


def test_answers_are_read_whole_on_one_kept_alive_connection(
        server: tuple[int, list[bytes]]) -> None:
    port, seen = server
    http = Http(f"http://127.0.0.1:{port}", 2, {"X-Consul-Token": "t"})
    status, body, headers = http.exchange("GET", "/length")
    assert (status, body, headers["X-Consul-Index"]) == (200, b"hello", "7"), "Content-Length"
    assert http.request("GET", "/chunked") == (200, b"[1, 2]\n"), "chunks, an extension, a trailer"
    assert http.request("PUT", "/interim", b"{}") == (204, b""), "100 Continue passed over"
    assert http.request("GET", "/to-the-end") == (404, b"no such key"), \
        "no length: up to the connection's end"
    assert http.request("GET", "/length") == (200, b"hello"), "then on a new connection"
    assert seen == [b"GET /length HTTP/1.1", b"GET /chunked HTTP/1.1", b"PUT /interim HTTP/1.1",
                    b"GET /to-the-end HTTP/1.1", b"GET /length HTTP/1.1"], seen


def test_no_http_answer_is_a_connection_error(server: tuple[int, list[bytes]]) -> None:
    port, _ = server
    with pytest.raises(ConnectionError, match=r"bad answer: .*status line"):
        Http(f"http://127.0.0.1:{port}", 2, {}).request("GET", "/garbage")


def test_read_commands_do_not_import_http_client() -> None:
    """The read path of a status over plain http imports neither http.client nor ssl."""
    import subprocess

    code = ("import sys\n"
            "from fleet.adapters.http import Http\n"
            "try:\n"
            "    Http('http://127.0.0.1:9', 1, {}).request('GET', '/')\n"
            "except OSError:\n"
            "    pass\n"
            "print(sorted(m for m in ('http.client', 'ssl', 'email') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
