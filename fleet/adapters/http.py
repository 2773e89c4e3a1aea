"""What the HTTP API adapters (Consul, Vault) share: a server that does not answer, and a
plain keep-alive client for reads.

Reads go through Http, not requests: a read command (status, history, plan) would otherwise
spend ~75 ms of its start importing requests and urllib3; and over plain http through Plain,
not the standard library's http.client (~12 ms more). The clients' libraries (py-consul, hvac)
stay for what they do beyond a read.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol, TypeVar
from urllib.parse import urlparse

from fleet.errors import Unreachable


@contextlib.contextmanager
def answering(service: str, address: str, what: str, env_var: str) -> Iterator[None]:
    """Turn a refused or timed-out request into one Unreachable naming the server."""
    down = (f"{service} at {address} is not reachable ({what})",
            f"start it with `fleet lab up` or set {env_var}")
    slow = (f"{service} at {address} did not answer in time ({what})",
            "check that it is healthy (`fleet lab status`)")
    try:
        yield
    except NoServer as exc:
        raise Unreachable(*_lost(service, exc, what, env_var)) from exc
    except Exception as exc:
        # requests' errors (through py-consul or hvac) are OSErrors too, but not all of them
        # say the server is down; it has been imported if one was raised (lazy: keeps
        # `fleet --help` and the read commands from importing it)
        # (getattr: another thread may be importing it, half-made in sys.modules meanwhile)
        errors = getattr(sys.modules.get("requests"), "exceptions", None)
        if errors is not None and isinstance(exc, errors.RequestException):
            if isinstance(exc, errors.ConnectionError):
                raise Unreachable(*down) from exc
            if isinstance(exc, errors.Timeout):
                raise Unreachable(*slow) from exc
        elif isinstance(exc, TimeoutError):  # http.client's (socket.timeout)
            raise Unreachable(*slow) from exc
        elif isinstance(exc, OSError):  # http.client's: refused, reset, no route
            raise Unreachable(*down) from exc
        raise


def _lost(service: str, exc: NoServer, what: str, env_var: str) -> tuple[str, str]:
    """The line for a cluster that gave no answer: its quorum lost, or every server down."""
    down = [f"{a} ({w})" for a, w in exc.said.items() if w != "no leader"]
    total = len(exc.said)
    if exc.leaderless:
        return (f"{service} has no leader: its quorum is lost ({len(down)} of {total} servers "
                f"do not answer: {', '.join(down)}; {', '.join(exc.leaderless)} answers without "
                f"a leader) ({what})",
                f"start the stopped servers (`fleet lab status` names them, `fleet lab start "
                f"NAME` starts one): {total // 2 + 1} of {total} make a quorum; then run this "
                f"again")
    return (f"no {service} server answers ({', '.join(down)}) ({what})",
            f"start them with `fleet lab up` or set {env_var}")


class Connection(Protocol):
    """What Http asks of a connection: http.client.HTTPConnection's request, getresponse and
    close (Plain, or http.client's own for https and a Unix socket)."""

    def request(self, method: str, url: str, body: bytes | None = ...,
                headers: Mapping[str, str] = ...) -> None: ...
    def getresponse(self) -> Response: ...
    def close(self) -> None: ...


class Response(Protocol):
    @property
    def status(self) -> int: ...
    def read(self) -> bytes: ...
    def getheaders(self) -> list[tuple[str, str]]: ...


class BadAnswer(Exception):
    """What came back is no HTTP/1.1 answer (http.client's HTTPException, for Plain)."""


LINE = 65536  # the longest status or header line Plain reads, as http.client's _MAXLINE


class Plain:
    """HTTP/1.1 over a plain TCP connection, kept alive: the part of http.client that a client
    of Consul's and OpenBao's APIs uses, without importing it (its ssl and email modules are
    ~12 ms of a read command's start, issue 19). Every answer is read whole: Content-Length,
    chunked, or up to the connection's end."""

    def __init__(self, host: str, port: int, timeout: float, unix: str = "") -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.unix = unix  # a Unix socket's path to talk to instead of host:port
        self.sock: socket.socket | None = None
        self.file: BinaryIO | None = None
        self.method = ""

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: Mapping[str, str] = {}) -> None:
        if self.sock is None:
            self.sock = self._connect()
            self.file = self.sock.makefile("rb")
        lines = [f"{method} {url} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 "Accept-Encoding: identity", *(f"{k}: {v}" for k, v in headers.items())]
        if body is not None or method in ("PUT", "POST", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        self.method = method
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))

    def _connect(self) -> socket.socket:
        if self.unix:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(self.unix)
            except OSError:
                sock.close()
                raise
            return sock
        # an ASCII host as bytes: getaddrinfo encodes a str with the idna codec, an import
        host = self.host.encode() if self.host.isascii() else self.host
        return socket.create_connection((host, self.port), self.timeout)  # type: ignore[arg-type]

    def getresponse(self) -> PlainResponse:
        assert self.file is not None
        status, headers = 100, []
        while 100 <= status < 200:  # an interim answer (100 Continue) comes before the answer
            line = self.file.readline(LINE + 1)
            if not line:
                raise ConnectionResetError("the server closed the connection")
            version, _, rest = line.partition(b" ")
            if not version.startswith(b"HTTP/") or not rest[:3].isdigit():
                raise BadAnswer(f"status line {line[:80]!r}")
            status, headers = int(rest[:3]), self._headers()
        said = {k.lower(): v for k, v in headers}
        if self.method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in said.get("transfer-encoding", "").lower():
            body = self._chunks()
        elif "content-length" in said:
            body = self._exactly(int(said["content-length"]))
        else:  # up to the end of the connection
            body = self.file.read()
            said["connection"] = "close"
        if said.get("connection", "").lower() == "close":
            self.close()
        return PlainResponse(status, body, headers)

    def _headers(self) -> list[tuple[str, str]]:
        assert self.file is not None
        found = []
        while (line := self.file.readline(LINE + 1)) not in (b"\r\n", b"\n", b""):
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or len(line) > LINE:
                raise BadAnswer(f"header line {line[:80]!r}")
            found.append((name.strip(), value.strip()))
        return found

    def _exactly(self, size: int) -> bytes:
        assert self.file is not None
        data = self.file.read(size)
        if len(data) < size:
            raise ConnectionResetError(f"the answer ended after {len(data)} of {size} bytes")
        return data

    def _chunks(self) -> bytes:
        assert self.file is not None
        parts: list[bytes] = []
        while True:
            line = self.file.readline(LINE + 1)
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise BadAnswer(f"chunk size {line[:80]!r}") from None
            if size == 0:
                self._headers()  # the trailer, if any, up to the blank line
                return b"".join(parts)
            parts.append(self._exactly(size))
            self._exactly(2)  # the chunk's CRLF

    def close(self) -> None:
        for part in (self.file, self.sock):
            if part is not None:
                part.close()
        self.sock = self.file = None


@dataclass(frozen=True)
class PlainResponse:
    status: int
    body: bytes
    headers: list[tuple[str, str]]

    def read(self) -> bytes:
        return self.body

    def getheaders(self) -> list[tuple[str, str]]:
        return self.headers


class Http:
    """Keep-alive HTTP/1.1 to one server (one connection per thread) with fixed headers.
    request() may send a request twice when a kept-alive connection turns out closed: use it
    for reads only."""

    def __init__(self, address: str, timeout: float, headers: Mapping[str, str]) -> None:
        url = urlparse(address)
        self.https = url.scheme == "https"
        self.host, self.port = str(url.hostname), url.port
        self.timeout = timeout
        self.headers = dict(headers)
        self._local = threading.local()

    def _connection(self) -> Connection:
        """Plain for http, http.client for https."""
        if not self.https:
            return Plain(self.host, self.port or 80, self.timeout)
        import http.client

        return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """(status, body) of one request; OSError when the server does not answer."""
        status, data, _ = self.exchange(method, path, body)
        return status, data

    def exchange(self, method: str, path: str,
                 body: bytes | None = None) -> tuple[int, bytes, Mapping[str, str]]:
        """(status, body, headers) of one request; OSError when the server does not answer."""
        for attempt in (1, 2):
            conn: Connection | None = getattr(self._local, "conn", None)
            reused = conn is not None
            if conn is None:
                conn = self._local.conn = self._connection()
            client = sys.modules.get("http.client")  # imported only if a connection is its
            bad = (BadAnswer, getattr(client, "HTTPException", BadAnswer))
            try:
                conn.request(method, path, body, self.headers)
                response = conn.getresponse()
                return response.status, response.read(), dict(response.getheaders())
            except (*bad, OSError) as exc:
                conn.close()
                self._local.conn = None
                # (http.client's RemoteDisconnected is a ConnectionResetError)
                closed = isinstance(exc, (BrokenPipeError, ConnectionResetError))
                if closed and reused and attempt == 1:
                    continue  # the server closed a kept-alive connection: once more, anew
                if isinstance(exc, OSError):
                    raise
                raise ConnectionError(f"bad answer: {exc!r}") from exc
        raise AssertionError("not reached")


# How long a request keeps moving between a cluster's servers before it gives up: past a
# leader election (about a second with raft_multiplier = 1, and a follower holds a request
# through it), short enough that a cluster without a quorum is said at once.
FAILOVER_SECONDS = 5.0


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]
    doubtful: bool  # an earlier attempt may have reached a server that then went away


class NoServer(ConnectionError):
    """No server of a cluster answered with a leader within FAILOVER_SECONDS."""

    def __init__(self, said: Mapping[str, str]) -> None:
        self.said = dict(said)  # address -> what it did: "refused", "no answer", "no leader"
        super().__init__("; ".join(f"{a}: {w}" for a, w in said.items()))

    @property
    def leaderless(self) -> list[str]:
        """The servers that answered, without a leader."""
        return [a for a, w in self.said.items() if w == "no leader"]


class Leaderless(Exception):
    """A server answered that its cluster has no leader (no write or consistent read now);
    maybe_applied: it lost its leadership while committing the request, which may stand."""

    def __init__(self, said: str, maybe_applied: bool = False) -> None:
        super().__init__(said)
        self.maybe_applied = maybe_applied


T = TypeVar("T")


class Servers:
    """A cluster's HTTP APIs (Consul's servers, OpenBao's nodes): keep-alive to each, the one
    in use first. With several addresses, a request that finds its server gone (refused, or
    no answer) or without a leader moves to the next, round after round, for
    FAILOVER_SECONDS, then raises NoServer. One address: exactly Http.

    A request that may have reached a server before it went away (the connection reset or
    timed out after sending) is sent again elsewhere only when resend is True: reads,
    check-and-set writes and idempotent ones. The answer says when that happened (doubtful),
    so that a check-and-set write that now fails can look whether its first attempt landed.
    """

    def __init__(self, addresses: Sequence[str], timeout: float, headers: Mapping[str, str],
                 leaderless: Callable[[int, bytes], bool],
                 uncertain: Callable[[bytes], bool] = lambda body: False) -> None:
        self.addresses = tuple(addresses)
        self._http = [Http(a, timeout, headers) for a in self.addresses]
        self._leaderless = leaderless
        self._uncertain = uncertain  # a leaderless answer after which the request may stand
        self.at = 0  # the server in use: the last that answered

    @property
    def address(self) -> str:
        return self.addresses[self.at]

    def request(self, method: str, path: str, body: bytes | None = None, *,
                resend: bool) -> Answer:
        def send(at: int) -> tuple[int, bytes, Mapping[str, str]]:
            status, data, headers = self._http[at].exchange(method, path, body)
            if len(self._http) > 1 and self._leaderless(status, data):
                raise Leaderless(data.decode(errors="replace"), self._uncertain(data))
            return status, data, headers

        (status, data, headers), doubtful = self.each(send, resend=resend)
        return Answer(status, data, headers, doubtful)

    def each(self, call: Callable[[int], T], *, resend: bool) -> tuple[T, bool]:
        """call(server index) on the server in use, then on the next while it raises OSError
        (the server is gone) or Leaderless; (its result, doubtful)."""
        said: dict[str, str] = {}
        doubtful = False
        deadline = time.monotonic() + FAILOVER_SECONDS
        for attempt in itertools.count(1):
            at = self.at
            try:
                return call(at), doubtful
            except OSError as exc:
                refused = isinstance(exc, ConnectionRefusedError)
                if len(self._http) == 1 or not (refused or resend):
                    raise
                said[self.addresses[at]] = "refused" if refused else "no answer"
                doubtful = doubtful or not refused
            except Leaderless as exc:
                if exc.maybe_applied and not resend:
                    raise ConnectionError(f"{self.addresses[at]} lost its leadership while "
                                          f"taking the request: {exc}") from exc
                said[self.addresses[at]] = "no leader"
                doubtful = doubtful or exc.maybe_applied
            self.at = (at + 1) % len(self._http)
            if attempt % len(self._http) == 0:  # a whole round without an answer
                if time.monotonic() >= deadline:
                    raise NoServer(said)
                time.sleep(0.3)
        raise AssertionError("not reached")
