"""Docker's Engine API on the local daemon's Unix socket, for the reads that are on a hot path
(adapters/docker.image: `fleet plan` and every bake inspect images).

The same daemon answers what the CLI would ask it (`docker image inspect` prints the API's
own answer), without starting a CLI process: ~1 ms where the process takes ~15 ms of wall
time and a CPU the other reads of the same command are using. Only when the CLI itself would
talk to that socket: DOCKER_HOST unset or a unix:// address, and no other context chosen
(DOCKER_CONTEXT, or the CLI config's currentContext). Otherwise, or when the socket does not
answer as expected, NoAnswer: the caller asks the CLI, which says what is wrong its way.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fleet.adapters.http import Http, Plain

DEFAULT_SOCKET = "/var/run/docker.sock"
TIMEOUT = 10.0  # seconds, as the CLI's inspect is given


class NoAnswer(Exception):
    """The Engine API cannot be asked here, or did not answer as expected: ask the CLI."""


def local_socket(environ: dict[str, str] | None = None) -> str | None:
    """The socket the CLI would talk to, None when it would talk to anything else."""
    env = os.environ if environ is None else environ
    if env.get("DOCKER_CONTEXT", "default") != "default":
        return None
    host = env.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return None
    config = Path(env.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        chosen = json.loads(config.read_text()).get("currentContext") or "default"
    except (OSError, ValueError, AttributeError):  # no config: the default context
        chosen = "default"
    if chosen != "default" and not host:  # DOCKER_HOST wins over the config's context
        return None
    return host[len("unix://"):] if host else DEFAULT_SOCKET


class UnixHttp(Http):
    """Http over a Unix socket (one keep-alive connection per thread), through http.Plain: not
    http.client, whose import (its ssl and email modules) is ~13 ms of a bake's and a plan's
    start by -X importtime."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("http://localhost", timeout, {})
        self.path = path

    def _connection(self) -> Plain:
        return Plain("localhost", 80, self.timeout, unix=self.path)


@cache
def _engine(path: str) -> UnixHttp:
    return UnixHttp(path, TIMEOUT)


def image(ref: str) -> dict[str, Any] | None:
    """GET /images/REF/json: what `docker image inspect REF` prints (its one element), None
    when there is no such image; NoAnswer when the API cannot tell."""
    path = local_socket()
    if path is None:
        raise NoAnswer("docker talks to another daemon than the local socket's")
    try:
        status, body = _engine(path).request("GET", f"/images/{quote(ref, safe='/:@')}/json")
    except OSError as exc:  # no socket, refused, no permission, no answer in time
        raise NoAnswer(str(exc)) from exc
    if status == 404:
        return None
    if status != 200:
        raise NoAnswer(f"the Engine API answered {status}")
    found: dict[str, Any] = json.loads(body)
    return found


def layers(driver: dict[str, Any]) -> tuple[Path, ...]:
    """Every layer directory of an overlay2 GraphDriver (of an image's or a container's
    inspection), UpperDir first; () for another driver. LowerDir is absent for an image of a
    single layer."""
    if driver["Name"] != "overlay2":
        return ()
    data = driver["Data"]
    lower = data.get("LowerDir") or ""  # omitted for a single-layer image
    return (Path(data["UpperDir"]), *(Path(d) for d in lower.split(":") if d))
