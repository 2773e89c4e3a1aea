"""The image catalog in Consul KV: one record per ROLE:VERSION, written with check-and-set.

Layout: <fleet prefix>/catalog/<role>/<version> -> ImageRecord JSON.

A record is never deleted: a revoked or pruned image keeps its record as history (who baked
it, from what, and when and why it left).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fleet.adapters.consul import Entry
from fleet.model.image import ImageError, ImageRecord


class KV(Protocol):
    """What the catalog needs of a KV store (Consul in practice)."""

    def get(self, key: str) -> Entry | None: ...
    def list(self, prefix: str) -> list[Entry]: ...
    def put(self, key: str, value: bytes | str, *, cas: int) -> bool: ...


@dataclass(frozen=True)
class Stored:
    record: ImageRecord
    index: int


class Catalog:
    def __init__(self, kv: KV, prefix: str) -> None:
        self.kv = kv
        self.root = f"{prefix}/catalog"

    def key(self, role: str, version: str) -> str:
        return f"{self.root}/{role}/{version}"

    def records(self, role: str | None = None) -> list[ImageRecord]:
        """Every record (of one role), oldest first."""
        prefix = f"{self.root}/{role}/" if role else f"{self.root}/"
        records = [ImageRecord.from_json(e.value) for e in self.kv.list(prefix) if e.value]
        return sorted(records, key=lambda r: (r.role, r.baked_at, r.version))

    def get(self, role: str, version: str) -> Stored | None:
        entry = self.kv.get(self.key(role, version))
        if entry is None:
            return None
        return Stored(ImageRecord.from_json(entry.value), entry.modify_index)

    def require(self, role: str, version: str) -> Stored:
        stored = self.get(role, version)
        if stored is None:
            known = [r.version for r in self.records(role)]
            hint = f"known versions: {', '.join(known)}" if known else f"bake it: fleet bake {role}"
            raise ImageError(f"no image {role}:{version} in the catalog", hint)
        return stored

    def create(self, record: ImageRecord) -> bool:
        """Record a new image; False if that ROLE:VERSION was recorded meanwhile (CAS 0)."""
        return self.kv.put(self.key(record.role, record.version), record.to_json(), cas=0)

    def revoke(self, role: str, version: str, reason: str, at: str) -> ImageRecord:
        """Mark an image revoked, by check-and-set against the record it read."""
        return self._change(role, version, "revoked", lambda r: r.revoke(reason, at))

    def prune(self, role: str, version: str, artifact: str, reason: str, at: str) -> ImageRecord:
        """Mark an image pruned (check-and-set). Refused if the record now names another image
        than the one the prune decided about (a bake rebuilt it meanwhile)."""
        def pruned(record: ImageRecord) -> ImageRecord:
            if record.artifact != artifact:
                raise ImageError(f"{record.ref} was baked again while it was being pruned",
                                 "run the prune again")
            return record.prune(reason, at)
        return self._change(role, version, "pruned", pruned)

    def unprune(self, role: str, version: str) -> ImageRecord:
        """Take back a prune whose image could not be removed (check-and-set)."""
        return self._change(role, version, "restored", lambda r: r.unprune())

    def replace_pruned(self, record: ImageRecord) -> bool:
        """Record a rebuilt image over the pruned record of the same ROLE:VERSION and inputs;
        False if that record changed meanwhile (another bake rebuilt it first)."""
        stored = self.require(record.role, record.version)
        if not stored.record.pruned or stored.record.digest != record.digest:
            return False
        return self.kv.put(self.key(record.role, record.version), record.to_json(),
                           cas=stored.index)

    def _change(self, role: str, version: str, what: str,
                change: Callable[[ImageRecord], ImageRecord]) -> ImageRecord:
        """Read, change and write back one record by check-and-set, a few times over if
        someone else writes it in between."""
        for _ in range(5):
            stored = self.require(role, version)
            changed = change(stored.record)
            if self.kv.put(self.key(role, version), changed.to_json(), cas=stored.index):
                return changed
        raise ImageError(f"{role}:{version} kept changing while it was being {what}",
                         "run the command again")
