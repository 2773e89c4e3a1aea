"""The fleet's own state in Consul KV, every write check-and-set:

  <prefix>/channels/<env>/<role>   the version a role should run in an environment
  <prefix>/desired/<env>           role -> version -> node count: what Terraform is given
  <prefix>/rollouts/<env>          the environment's current (or last) rollout
  <prefix>/history/<time>-<id>     append-only events: promotions, steps, gates, rollbacks
  <prefix>/locks/<env>             the rollout lock (see lock.py)

A write that cannot be made raises, and the step it was meant to record is not taken.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from fleet.errors import FleetError
from fleet.model.promotion import Channel, Groups, Rollout
from fleet.services.catalog import KV


class StateConflict(FleetError):
    """Someone else wrote the same state between our read and our write."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class FleetState:
    def __init__(self, kv: KV, prefix: str) -> None:
        self.kv = kv
        self.prefix = prefix

    def _read(self, key: str) -> tuple[Any, int]:
        entry = self.kv.get(f"{self.prefix}/{key}")
        if entry is None or not entry.value:
            return None, 0
        return json.loads(entry.value), entry.modify_index

    def _write(self, key: str, value: str, index: int) -> None:
        if not self.kv.put(f"{self.prefix}/{key}", value, cas=index):
            raise StateConflict(f"{self.prefix}/{key} changed while fleet was writing it",
                                "another operator is at work: rerun the command")

    # ---- channels ----
    def channel(self, env: str, role: str) -> Channel | None:
        data, _ = self._read(f"channels/{env}/{role}")
        return Channel.from_json(json.dumps(data)) if data is not None else None

    def set_channel(self, env: str, role: str, channel: Channel) -> None:
        _, index = self._read(f"channels/{env}/{role}")
        self._write(f"channels/{env}/{role}", channel.to_json(), index)

    # ---- desired cattle ----
    def desired(self, env: str) -> tuple[dict[str, Groups], int]:
        data, index = self._read(f"desired/{env}")
        return ({str(r): {str(v): int(n) for v, n in g.items()} for r, g in (data or {}).items()},
                index)

    def set_desired(self, env: str, groups: dict[str, Groups]) -> None:
        _, index = self._read(f"desired/{env}")
        self._write(f"desired/{env}", json.dumps(groups, sort_keys=True), index)

    # ---- rollouts ----
    def rollout(self, env: str) -> Rollout | None:
        data, _ = self._read(f"rollouts/{env}")
        return Rollout.from_json(json.dumps(data)) if data is not None else None

    def save_rollout(self, rollout: Rollout) -> None:
        _, index = self._read(f"rollouts/{rollout.env}")
        self._write(f"rollouts/{rollout.env}", rollout.to_json(), index)

    # ---- history ----
    def record(self, event: dict[str, Any]) -> None:
        """Append one event; raise if it cannot be recorded (then the step is not taken)."""
        at = now()
        key = f"history/{at}-{uuid.uuid4().hex[:8]}"
        try:
            written = self.kv.put(f"{self.prefix}/{key}", json.dumps({"at": at, **event}), cas=0)
        except FleetError as exc:
            raise FleetError(f"could not record {event.get('event')} in the history: {exc.what}",
                             "nothing was changed; rerun when Consul answers") from exc
        if not written:
            raise StateConflict(f"history key {key} already exists", "rerun the command")

    def history(self) -> list[dict[str, Any]]:
        entries = self.kv.list(f"{self.prefix}/history/")
        return [json.loads(e.value) for e in sorted(entries, key=lambda e: e.key) if e.value]
