"""What the HTTP API adapters (Consul, Vault) share: a server that does not answer, and a
plain keep-alive client for reads.

Reads go through the standard library's http.client (Http), not requests: a read command
(status, history, plan) would otherwise spend ~75 ms of its start importing requests and
urllib3. The clients' libraries (py-consul, hvac) stay for what they do beyond a read.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from fleet.errors import Unreachable

if TYPE_CHECKING:
    from http.client import HTTPConnection


@contextlib.contextmanager
def answering(service: str, address: str, what: str, env_var: str) -> Iterator[None]:
    """Turn a refused or timed-out request into one Unreachable naming the server."""
    down = (f"{service} at {address} is not reachable ({what})",
            f"start it with `fleet lab up` or set {env_var}")
    slow = (f"{service} at {address} did not answer in time ({what})",
            "check that it is healthy (`fleet lab status`)")
    try:
        yield
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

    def _connection(self) -> HTTPConnection:
        import http.client

        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """(status, body) of one request; OSError when the server does not answer."""
        import http.client

        for attempt in (1, 2):
            conn: HTTPConnection | None = getattr(self._local, "conn", None)
            reused = conn is not None
            if conn is None:
                conn = self._local.conn = self._connection()
            try:
                conn.request(method, path, body, self.headers)
                response = conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                self._local.conn = None
                closed = isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError,
                                          ConnectionResetError))
                if closed and reused and attempt == 1:
                    continue  # the server closed a kept-alive connection: once more, anew
                if isinstance(exc, OSError):
                    raise
                raise ConnectionError(f"bad answer: {exc!r}") from exc
        raise AssertionError("not reached")
