"""The catalog's check-and-set semantics, over an in-memory KV with Consul's CAS rules."""

from __future__ import annotations

import pytest

from fleet.adapters.consul import Entry
from fleet.model.image import ImageError
from fleet.services.catalog import Catalog
from tests.unit.test_image_model import record


class MemoryKV:
    """Consul's KV contract: cas=0 creates only; cas=N writes only at ModifyIndex N."""

    def __init__(self) -> None:
        self.data: dict[str, Entry] = {}
        self.index = 0

    def get(self, key: str) -> Entry | None:
        return self.data.get(key)

    def list(self, prefix: str) -> list[Entry]:
        return [e for k, e in sorted(self.data.items()) if k.startswith(prefix)]

    def put(self, key: str, value: bytes | str, *, cas: int) -> bool:
        current = self.data.get(key)
        if (current.modify_index if current else 0) != cas:
            return False
        self.index += 1
        raw = value.encode() if isinstance(value, str) else value
        self.data[key] = Entry(key, raw, self.index)
        return True


def test_two_bakes_of_one_version_cannot_both_win() -> None:
    catalog = Catalog(MemoryKV(), "fleet/t")
    assert catalog.create(record("v1", "aaa"))
    assert not catalog.create(record("v1", "bbb"))
    assert catalog.require("web", "v1").record.digest == "aaa"


def test_revoke_is_check_and_set() -> None:
    kv = MemoryKV()
    catalog = Catalog(kv, "fleet/t")
    catalog.create(record("v1", "aaa"))
    before = kv.index
    revoked = catalog.revoke("web", "v1", "CVE", "2026-03-03")
    assert revoked.revoked and kv.index == before + 1
    assert catalog.records("web")[0].revoked


def test_unknown_version_lists_known_ones() -> None:
    catalog = Catalog(MemoryKV(), "fleet/t")
    catalog.create(record("v1", "aaa"))
    with pytest.raises(ImageError, match="known versions: v1"):
        catalog.require("web", "v9")


def test_prune_is_check_and_set_and_keeps_the_record() -> None:
    kv = MemoryKV()
    catalog = Catalog(kv, "fleet/t")
    catalog.create(record("v1", "aaa"))
    pruned = catalog.prune("web", "v1", "sha256:aaa", "older than the 3 newest of web", "2026-03-01")
    assert pruned.pruned and catalog.require("web", "v1").record == pruned
    assert [r.version for r in catalog.records("web")] == ["v1"], "a pruned record stays"
    with pytest.raises(ImageError, match="already pruned"):
        catalog.prune("web", "v1", "sha256:aaa", "again", "2026-03-02")
    assert not catalog.unprune("web", "v1").pruned


def test_prune_is_refused_once_the_record_names_another_image() -> None:
    catalog = Catalog(MemoryKV(), "fleet/t")
    catalog.create(record("v1", "aaa"))
    with pytest.raises(ImageError, match="baked again while it was being pruned"):
        catalog.prune("web", "v1", "sha256:other", "retention", "2026-03-01")
    assert not catalog.require("web", "v1").record.pruned


def test_a_rebuild_replaces_only_a_pruned_record_of_the_same_inputs() -> None:
    from dataclasses import replace

    catalog = Catalog(MemoryKV(), "fleet/t")
    catalog.create(record("v1", "aaa"))
    rebuilt = replace(record("v1", "aaa"), artifact="sha256:new", baked_at="2026-04-01")
    assert not catalog.replace_pruned(rebuilt), "a live record is never overwritten"
    catalog.prune("web", "v1", "sha256:aaa", "retention", "2026-03-01")
    assert not catalog.replace_pruned(replace(rebuilt, digest="bbb")), "other inputs: refused"
    assert catalog.replace_pruned(rebuilt)
    assert catalog.require("web", "v1").record == rebuilt
    assert not catalog.replace_pruned(rebuilt), "a second rebuild finds it live again"
