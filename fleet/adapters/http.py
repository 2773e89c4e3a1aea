"""What the HTTP API adapters (Consul, Vault) share: a server that does not answer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from fleet.errors import Unreachable


@contextlib.contextmanager
def answering(service: str, address: str, what: str, env_var: str) -> Iterator[None]:
    """Turn a refused or timed-out request into one Unreachable naming the server."""
    import requests  # lazy: keeps `fleet --help` fast

    try:
        yield
    except requests.exceptions.ConnectionError as exc:
        raise Unreachable(f"{service} at {address} is not reachable ({what})",
                          f"start it with `fleet lab up` or set {env_var}") from exc
    except requests.exceptions.Timeout as exc:
        raise Unreachable(f"{service} at {address} did not answer in time ({what})",
                          "check that it is healthy (`fleet lab status`)") from exc
