"""The history: --since parsing, reading only what --since/--limit need, one line per event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fleet.adapters.consul import TXN_OPS, Entry
from fleet.errors import FleetError
from fleet.model.history import since
from fleet.services.state import FleetState, stamp

NOW = datetime(2026, 5, 14, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("30m", NOW - timedelta(minutes=30)),
    ("1h30m", NOW - timedelta(minutes=90)),
    ("2d", NOW - timedelta(days=2)),
    ("45s", NOW - timedelta(seconds=45)),
    ("2026-05-14T10:00", datetime(2026, 5, 14, 10, tzinfo=UTC)),   # no offset: UTC
    ("2026-05-14", datetime(2026, 5, 14, tzinfo=UTC)),
    ("2026-05-14T12:00+02:00", datetime(2026, 5, 14, 10, tzinfo=UTC)),
    ("2026-05-14T10:00:00Z", datetime(2026, 5, 14, 10, tzinfo=UTC)),
])
def test_since_takes_a_duration_or_a_time(text: str, expected: datetime) -> None:
    assert since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "1x", "h1", "-1h", ""])
def test_since_refuses_anything_else_in_one_line(text: str) -> None:
    with pytest.raises(FleetError, match="is neither a duration nor a time") as err:
        since(text, NOW)
    assert "30m, 1h, 2d" in err.value.line()


class CountingKV:
    """A KV store that counts what is read: keys listed, values fetched, requests."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.data = {f"p/history/{e['at']}-{i:08x}": json.dumps(e).encode()
                     for i, e in enumerate(events)}
        self.requests = 0
        self.values = 0

    def get(self, key: str) -> Entry | None:
        raise AssertionError("history is never read key by key")

    def list(self, prefix: str) -> list[Entry]:
        self.requests += 1
        found = [Entry(k, v, 1) for k, v in self.data.items() if k.startswith(prefix)]
        self.values += len(found)
        return found

    def keys(self, prefix: str) -> list[str]:
        self.requests += 1
        return [k for k in self.data if k.startswith(prefix)]

    def get_many(self, keys: list[str]) -> list[Entry]:
        assert len(keys) <= TXN_OPS
        self.requests += 1
        self.values += len(keys)
        return [Entry(k, self.data[k], 1) for k in keys]

    def put(self, key: str, value: bytes | str, *, cas: int) -> bool:
        raise AssertionError("reading writes nothing")


def history(count: int) -> list[dict[str, Any]]:
    """COUNT events a minute apart, ending at NOW, alternately in canary and staging."""
    return [{"at": stamp(NOW - timedelta(minutes=count - 1 - i)), "event": "step",
             "env": ("canary", "staging")[i % 2], "n": i} for i in range(count)]


def test_limit_and_since_read_only_what_they_need() -> None:
    kv = CountingKV(history(1000))
    state = FleetState(kv, "p")
    newest = state.history(limit=3)
    assert [e["n"] for e in newest] == [997, 998, 999], "the newest 3, oldest first"
    assert kv.requests == 2 and kv.values <= TXN_OPS, (kv.requests, kv.values)

    kv.requests = kv.values = 0
    hour = state.history(since=NOW - timedelta(minutes=59, seconds=30))
    assert [e["n"] for e in hour] == list(range(940, 1000)), "the last hour's 60 events"
    assert kv.requests == 2 and kv.values == 60, (kv.requests, kv.values)

    kv.requests = kv.values = 0
    staging = state.history(limit=100, keep=lambda e: e["env"] == "staging")
    assert len(staging) == 100 and all(e["env"] == "staging" for e in staging)
    assert staging[-1]["n"] == 999 and staging[0]["n"] == 801
    assert kv.values <= 4 * TXN_OPS, "filtered: read newest first until 100 are kept"

    kv.requests = kv.values = 0
    assert len(state.history()) == 1000 and kv.requests == 1, "everything: one request"
    assert state.history(since=NOW + timedelta(seconds=1)) == []


def test_each_event_is_one_readable_line() -> None:
    from fleet.cli.views import _event  # the view under test

    at = "2026-05-14T10:00:00.123456+00:00"
    base = {"at": at, "env": "canary", "who": "root@vm", "rollout": "abc123", "roles": ["web"]}
    lines = {
        "promote": {"version": "v3", "previous": {"web": "v2", "api": ""}, "forced": False,
                    "reason": "", "skipped_gates": [], "approved": True, "verified": {}},
        "step": {"step": 1, "of": 2, "groups": {"web": {"v2": 1, "v3": 1}}},
        "gate": {"step": 1, "passed": False, "detail": "web:v3 in canary: 0 of 1 passing"},
        "rolled-back": {"version": "v3", "to": {"web": "v2"}, "reason": "superseded"},
        "something-new": {"count": {"a": "b"}, "list": ["x", "y"]},
    }
    said = {kind: _event({**base, "event": kind, **fields}) for kind, fields in lines.items()}
    assert said["promote"] == ("2026-05-14 10:00:00  canary  promote: web to v3; before: web "
                               "v2, api nothing; approved: yes  (root@vm, rollout abc123)")
    assert "step: 1 of 2: web v2=1 v3=1" in said["step"]
    assert "step 1 failed: web:v3 in canary: 0 of 1 passing" in said["gate"]
    assert "v3 rolled back to web v2: superseded" in said["rolled-back"]
    assert "count: a b; list: x, y" in said["something-new"]
    for line in said.values():
        assert "\n" not in line and "{" not in line and "'" not in line, line
