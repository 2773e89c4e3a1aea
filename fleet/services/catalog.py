"""The image catalog in Consul KV: one record per ROLE:VERSION, written with check-and-set.

Layout: <fleet prefix>/catalog/<role>/<version> -> ImageRecord JSON.
"""

from __future__ import annotations

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
        for _ in range(5):
            stored = self.require(role, version)
            revoked = stored.record.revoke(reason, at)
            if self.kv.put(self.key(role, version), revoked.to_json(), cas=stored.index):
                return revoked
        raise ImageError(f"{role}:{version} kept changing while it was being revoked",
                         "run the revoke again")
