"""The fleet's own state in Consul KV, every write check-and-set:

  <prefix>/channels/<env>/<role>   the version a role should run in an environment
  <prefix>/desired/<env>           role -> version -> node count: what Terraform is given
  <prefix>/rollouts/<env>          the environment's current (or last) rollout
  <prefix>/history/<time>-<id>     append-only events: promotions, steps, gates, rollbacks
  <prefix>/locks/<env>             the rollout lock (see lock.py)

A write that cannot be made raises, and the step it was meant to record is not taken.

The history only grows, so it is read by its keys: `<time>` is an ISO 8601 UTC stamp of fixed
width, so the keys sort by time, and a reader that wants events since a time, or the newest
N, lists the keys alone (one request) and reads only the values it needs, newest first.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from fleet.adapters.consul import TXN_OPS, Entry
from fleet.errors import FleetError
from fleet.model.promotion import Channel, Groups, Rollout
from fleet.services.catalog import KV

Event = dict[str, Any]  # one history entry, as recorded


class StateKV(KV, Protocol):
    """What the state needs of a KV store besides the catalog's: keys alone, and many values
    at once (Consul in practice)."""

    def keys(self, prefix: str) -> list[str]: ...
    def get_many(self, keys: list[str]) -> list[Entry]: ...
    def delete(self, key: str) -> None: ...


def _every(event: Event) -> bool:
    return True


class StateConflict(FleetError):
    """Someone else wrote the same state between our read and our write."""


def stamp(at: datetime) -> str:
    """A history key's time: ISO 8601 in UTC, to the microsecond, so keys sort by time."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def now() -> str:
    return stamp(datetime.now(UTC))


class FleetState:
    def __init__(self, kv: StateKV, prefix: str) -> None:
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

    def channels(self) -> dict[tuple[str, str], Channel]:
        """Every channel, (env, role) -> Channel, in one request."""
        root = f"{self.prefix}/channels/"
        found = {}
        for entry in self.kv.list(root):
            env, _, role = entry.key[len(root):].partition("/")
            if role and entry.value:
                found[(env, role)] = Channel.from_json(entry.value)
        return found

    def set_channel(self, env: str, role: str, channel: Channel) -> None:
        _, index = self._read(f"channels/{env}/{role}")
        self._write(f"channels/{env}/{role}", channel.to_json(), index)

    # ---- desired cattle ----
    def desired(self, env: str) -> tuple[dict[str, Groups], int]:
        data, index = self._read(f"desired/{env}")
        return ({str(r): {str(v): int(n) for v, n in g.items()} for r, g in (data or {}).items()},
                index)

    def every_desired(self) -> dict[str, dict[str, Groups]]:
        """desired() of every environment that has one, env -> groups, in one request."""
        root = f"{self.prefix}/desired/"
        return {e.key[len(root):]: {str(r): {str(v): int(n) for v, n in g.items()}
                                    for r, g in json.loads(e.value).items()}
                for e in self.kv.list(root) if e.value}

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

    # ---- what each pet or snowflake was last converged with ----
    def converged(self) -> dict[str, str]:
        """Instance -> the provision digest (services.bakeinputs.provision_digest) its last
        converge ran, for every instance converged since it was created."""
        keys = self.kv.keys(f"{self.prefix}/converged/")
        return {e.key.rsplit("/", 1)[-1]: str(json.loads(e.value)["digest"])
                for e in self.kv.get_many(keys) if e.value}

    def set_converged(self, instance: str, digest: str, by: str) -> None:
        _, index = self._read(f"converged/{instance}")
        self._write(f"converged/{instance}", json.dumps({"digest": digest, "at": now(),
                                                          "by": by}), index)

    def forget_converged(self, instance: str) -> None:
        """A new container runs its image's provisioner, not the last converge's."""
        self.kv.delete(f"{self.prefix}/converged/{instance}")

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

    def history(self, *, since: datetime | None = None, limit: int | None = None,
                keep: Callable[[Event], bool] = _every) -> list[Event]:
        """The events `keep` accepts, oldest first: those at or after `since` (None for all),
        and of them the newest `limit` (None for all).

        Without since or limit, the whole history in one request. Otherwise the keys (one
        request), then the values of the keys since `since`, newest first, TXN_OPS a request,
        until `limit` events are kept.
        """
        root = f"{self.prefix}/history/"
        if since is None and limit is None:
            entries = sorted(self.kv.list(root), key=lambda e: e.key)
            return [event for e in entries if e.value and keep(event := json.loads(e.value))]
        start = stamp(since) if since else ""
        keys = sorted(k for k in self.kv.keys(root) if k[len(root):] >= start)
        newest: list[Event] = []
        while keys and (limit is None or len(newest) < limit):
            batch, keys = keys[-TXN_OPS:], keys[:-TXN_OPS]
            for entry in sorted(self.kv.get_many(batch), key=lambda e: e.key, reverse=True):
                if entry.value and keep(event := json.loads(entry.value)):
                    newest.append(event)
                    if len(newest) == limit:
                        break
        return newest[::-1]
