"""Image versions, digests, records and the bake decision: pure logic."""

from __future__ import annotations

import pytest

from fleet.model.image import (
    Action,
    ImageError,
    ImageRecord,
    decide,
    derive_version,
    inputs_digest,
    parse_ref,
)


def record(version: str, digest: str, *, revoked: bool = False, at: str = "2026-01-01") -> ImageRecord:
    return ImageRecord(role="web", version=version, digest=digest, artifact=f"sha256:{digest}",
                       target="lab", builder="docker", base_ref="fleet-base-bookworm:1",
                       base_id="sha256:b", git_commit="c0ffee", git_dirty=False,
                       packer_version="1.6.6", baked_at=at, baked_by="ci@host", revoked=revoked)


def test_digest_depends_on_names_and_content() -> None:
    a = inputs_digest({"script/web.sh": b"echo 1", "template": b"t"})
    assert a == inputs_digest({"template": b"t", "script/web.sh": b"echo 1"})
    assert a != inputs_digest({"script/web.sh": b"echo 2", "template": b"t"})
    assert a != inputs_digest({"script/api.sh": b"echo 1", "template": b"t"})


def test_parse_ref() -> None:
    assert parse_ref("web:v1.2") == ("web", "v1.2")
    for bad in ("web", "web:", ":v1", "web:v 1"):
        with pytest.raises(ImageError):
            parse_ref(bad)


def test_derived_versions_count_up() -> None:
    assert derive_version("v1.2-3-gabc1234", []) == "v1.2-3-gabc1234.1"
    assert derive_version("abc1234", ["abc1234.1", "abc1234.2", "other.3"]) == "abc1234.3"
    assert derive_version("", []) == "untagged.1"


def test_same_inputs_are_cached() -> None:
    d = decide([record("v1", "aaa")], "aaa", None, False, lambda: "abc")
    assert (d.action, d.version) == (Action.CACHED, "v1")


def test_new_inputs_build_a_derived_version() -> None:
    d = decide([record("abc.1", "aaa")], "bbb", None, False, lambda: "abc")
    assert (d.action, d.version) == (Action.BUILD, "abc.2")


def test_rebake_builds_even_with_same_inputs() -> None:
    d = decide([record("abc.1", "aaa")], "aaa", None, True, lambda: "abc")
    assert (d.action, d.version) == (Action.BUILD, "abc.2")


def test_a_version_is_immutable() -> None:
    with pytest.raises(ImageError, match="exists with other inputs"):
        decide([record("v1", "aaa")], "bbb", "v1", False, lambda: "abc")
    with pytest.raises(ImageError, match="immutable"):
        decide([record("v1", "aaa")], "aaa", "v1", True, lambda: "abc")


def test_explicit_version_reuses_an_image_with_the_same_inputs() -> None:
    d = decide([record("v1", "aaa")], "aaa", "v2", False, lambda: "abc")
    assert (d.action, d.version) == (Action.ALIAS, "v2")
    assert d.existing is not None and d.existing.version == "v1"


def test_revoked_images_are_never_reused() -> None:
    d = decide([record("v1", "aaa", revoked=True)], "aaa", None, False, lambda: "abc")
    assert d.action is Action.BUILD
    with pytest.raises(ImageError, match="revoked"):
        decide([record("v1", "aaa", revoked=True)], "aaa", "v1", False, lambda: "abc")


def test_record_round_trips_and_parses_strictly() -> None:
    r = record("v1", "aaa")
    assert ImageRecord.from_json(r.to_json()) == r
    with pytest.raises(ImageError, match="missing 'digest'"):
        ImageRecord.from_json('{"role": "web", "version": "v1"}')


def test_revoke_needs_a_reason_and_happens_once() -> None:
    r = record("v1", "aaa").revoke("CVE-2026-1", "2026-02-02")
    assert r.revoked and r.revoked_reason == "CVE-2026-1"
    with pytest.raises(ImageError, match="already revoked"):
        r.revoke("again", "2026-02-03")
    with pytest.raises(ImageError, match="needs a reason"):
        record("v1", "aaa").revoke("  ", "2026-02-03")


def test_a_record_written_before_prune_existed_still_reads() -> None:
    import json

    old = json.loads(record("v1", "aaa").to_json())
    for name in ("pruned", "pruned_reason", "pruned_at"):
        del old[name]
    read = ImageRecord.from_json(json.dumps(old))
    assert read == record("v1", "aaa") and not read.pruned


def test_prune_keeps_the_record_as_history_and_happens_once() -> None:
    r = record("v1", "aaa").prune("older than the 3 newest of web", "2026-03-01")
    assert r.pruned and not r.usable and r.digest == "aaa", "a pruned record keeps its provenance"
    with pytest.raises(ImageError, match="already pruned"):
        r.prune("again", "2026-03-02")
    assert r.unprune() == record("v1", "aaa")


def test_a_pruned_image_is_never_reused_or_current() -> None:
    from fleet.model.image import current

    pruned = record("v1", "aaa", at="2026-01-02").prune("retention", "2026-03-01")
    d = decide([pruned], "aaa", None, False, lambda: "abc")
    assert (d.action, d.version) == (Action.BUILD, "abc.1"), "same inputs, but the image is gone"
    d = decide([pruned], "aaa", "v2", False, lambda: "abc")
    assert (d.action, d.existing) == (Action.BUILD, None), "no alias of a missing image"
    assert current([record("v0", "zzz"), pruned]) == record("v0", "zzz")
    assert current([pruned]) is None


def test_a_pruned_version_baked_again_with_the_same_inputs_is_rebuilt() -> None:
    pruned = record("v1", "aaa").prune("retention", "2026-03-01")
    for rebake in (False, True):
        d = decide([pruned], "aaa", "v1", rebake, lambda: "abc")
        assert (d.action, d.version, d.existing) == (Action.BUILD, "v1", pruned)
    with pytest.raises(ImageError, match="exists with other inputs"):
        decide([pruned], "bbb", "v1", False, lambda: "abc")
    revoked = record("v1", "aaa", revoked=True).prune("retention", "2026-03-01")
    with pytest.raises(ImageError, match="revoked"):
        decide([revoked], "aaa", "v1", False, lambda: "abc")


def test_a_derived_version_never_takes_a_pruned_name() -> None:
    pruned = record("abc.1", "aaa").prune("retention", "2026-03-01")
    d = decide([pruned], "bbb", None, False, lambda: "abc")
    assert d.version == "abc.2"
