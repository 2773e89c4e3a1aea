"""Each service of the role: installed for fleet-init, listening, answering its health check,
and reachable from the lab network (where other nodes and Consul reach it)."""

from __future__ import annotations

import socket
from typing import Any


def test_installed_for_fleet_init(node: Any, service: Any) -> None:
    node.expect(f"/etc/fleet/services.d/{service.name}", "755", "regular file")


def test_listening(node: Any, service: Any) -> None:
    listeners = node.sh(f"ss -Hltn 'sport = :{service.port}'")
    assert listeners, f"nothing listens on port {service.port}"


def test_answers_its_check(node: Any, service: Any) -> None:
    if service.check.kind == "http":
        url = f"http://127.0.0.1:{service.port}{service.check.path}"
        code = node.sh(f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 2 {url}")
        assert code.startswith("2"), f"GET {url} answered {code}"
    else:
        node.sh(f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", "
                f"{service.port}), 2).close()'")


def test_reachable_on_lab_network(node: Any, service: Any) -> None:
    address = node.sh("ip -4 -o addr show dev eth0").split()[3].split("/")[0]
    with socket.create_connection((address, service.port), timeout=2):
        pass
