"""web: the Rails front end stand-in serves this exact version, with its directories."""

from __future__ import annotations

import json
from typing import Any


def test_serves_this_role_and_version(node: Any, fleet_role: Any, version: str) -> None:
    port = next(s.port for s in fleet_role.services if s.name == "web")
    body = json.loads(node.sh(f"curl -fsS --max-time 2 http://127.0.0.1:{port}/"))
    assert (body["role"], body["version"]) == ("web", version)


def test_unknown_path_is_not_found(node: Any, fleet_role: Any) -> None:
    port = next(s.port for s in fleet_role.services if s.name == "web")
    code = node.sh(f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 2 "
                   f"http://127.0.0.1:{port}/no-such-page")
    assert code == "404", f"GET /no-such-page answered {code}"


def test_public_directory(node: Any) -> None:
    node.expect("/srv/gitlab/public", "755", "directory")


def test_config_directory_closed_to_others(node: Any) -> None:
    node.expect("/etc/gitlab", "750", "directory")
