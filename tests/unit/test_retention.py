"""The retention policy of `fleet images prune`: what is kept and why. Pure logic."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fleet.model.image import ImageRecord
from fleet.model.promotion import Channel, Rollout, RolloutState
from fleet.model.retention import (
    BaseCandidate,
    Kind,
    Needs,
    RetentionError,
    Verdict,
    retain,
    retain_bases,
)
from tests.unit.test_image_model import record


def image(version: str, day: int, role: str = "web", base: str = "sha256:base1") -> ImageRecord:
    """ROLE:VERSION baked on day DAY of March, its image sha256:ROLE-VERSION."""
    return replace(record(version, f"d-{role}-{version}", at=f"2026-03-{day:02d}"), role=role,
                   artifact=f"sha256:{role}-{version}", base_id=base)


FIVE = [image(f"v{n}", n) for n in range(1, 6)]
HERE = frozenset(r.artifact for r in FIVE)


def by_ref(verdicts: tuple[Verdict, ...]) -> dict[str, Verdict]:
    return {v.ref: v for v in verdicts}


def kept(verdicts: tuple[Verdict, ...]) -> list[str]:
    return sorted(v.ref for v in verdicts if v.keep)


def rollout(state: RolloutState, version: str = "v2", previous: str = "v1") -> Rollout:
    return Rollout("r1", "staging", version, ("web",), {"web": previous},
                   {"web": [{previous: 1, version: 1}, {previous: 0, version: 1}]}, 1, state,
                   "ci@host", "2026-03-10", groups={"web": {previous: 1, version: 1}})


def test_the_newest_n_of_each_role_are_kept_and_the_rest_pruned() -> None:
    api = [image("a1", 1, "api"), image("a2", 2, "api")]
    verdicts = retain([*FIVE, *api], Needs(), 2, HERE | {r.artifact for r in api})
    assert kept(verdicts) == ["api:a1", "api:a2", "web:v4", "web:v5"]
    v1 = by_ref(verdicts)["web:v1"]
    assert not v1.keep and v1.removes and v1.records, "pruned: image removed, record marked"
    assert v1.reasons == ("older than the 2 newest of web, and nothing needs it",)
    assert by_ref(verdicts)["web:v5"].reasons == ("one of the 2 newest of web",)


def test_a_revoked_image_counts_among_the_newest() -> None:
    revoked = [*FIVE[:4], replace(FIVE[4], revoked=True)]
    assert kept(retain(revoked, Needs(), 1, HERE)) == ["web:v5"]


def test_channels_rollbacks_and_desired_nodes_keep_old_images() -> None:
    needs = Needs(channels={("production", "web"): Channel("v2", "v1", "2026-03-09")},
                  desired={"staging": {"web": {"v3": 2, "v2": 0}}})
    verdicts = by_ref(retain(FIVE, needs, 1, HERE))
    assert verdicts["web:v2"].reasons == ("channel of production",)
    assert verdicts["web:v1"].reasons == ("rollback target in production",)
    assert verdicts["web:v3"].reasons == ("2 node(s) desired in staging",)
    assert not verdicts["web:v4"].keep, "an empty desired group keeps nothing by itself"


def test_a_rollout_under_way_keeps_every_version_it_names_and_a_finished_one_none() -> None:
    running = by_ref(retain(FIVE, Needs(rollouts=[rollout(RolloutState.ROLLING, "v3", "v1")]),
                            1, HERE))
    assert running["web:v3"].keep and running["web:v1"].keep
    assert running["web:v1"].reasons == ("rollout r1 in staging (rolling)",)
    assert not running["web:v2"].keep
    back = retain(FIVE, Needs(rollouts=[rollout(RolloutState.ROLLING_BACK, "v3", "v1")]), 1, HERE)
    assert kept(back) == ["web:v1", "web:v3", "web:v5"]
    done = retain(FIVE, Needs(rollouts=[rollout(RolloutState.DONE, "v3", "v1")]), 1, HERE)
    assert kept(done) == ["web:v5"], "a finished rollout's versions are its channel's"


def test_containers_and_terraform_states_keep_the_image_they_run() -> None:
    needs = Needs(containers={"t-web-canary-v1-0": "sha256:web-v1"},
                  machines={"pet gitaly-01 in production": "sha256:web-v2"})
    verdicts = by_ref(retain(FIVE, needs, 1, HERE))
    assert verdicts["web:v1"].reasons == ("container t-web-canary-v1-0",)
    assert verdicts["web:v2"].reasons == ("pet gitaly-01 in production (Terraform state)",)


def test_the_newest_passing_verify_of_the_very_image_is_kept() -> None:
    needs = Needs(verified={("web", "v1"): "sha256:web-v1", ("web", "v2"): "sha256:web-v2",
                            ("web", "v3"): "sha256:another-image"})
    verdicts = by_ref(retain(FIVE, needs, 1, HERE))
    assert verdicts["web:v2"].reasons == ("newest passing verify of web",)
    assert not verdicts["web:v1"].keep, "only the newest verified image is a candidate"
    assert not verdicts["web:v3"].keep, "a verify of another image says nothing of this one"


def test_an_image_shared_by_versions_stays_while_one_of_them_stays_and_goes_once() -> None:
    alias = replace(FIVE[4], version="v6", baked_at="2026-03-06")
    shared = [replace(FIVE[0], artifact="sha256:shared"), replace(FIVE[1], artifact="sha256:shared")]
    records = [*shared, *FIVE[2:], alias]
    here = HERE | {"sha256:shared"}
    verdicts = by_ref(retain(records, Needs(channels={("canary", "web"):
                                                      Channel("v1", "", "2026-03-09")}), 1, here))
    assert verdicts["web:v5"].reasons == ("shares its image with web:v6",)
    assert verdicts["web:v2"].keep and verdicts["web:v2"].reasons[0].startswith("shares its image")
    both = by_ref(retain(records, Needs(), 1, here))
    assert not both["web:v1"].keep and not both["web:v2"].keep
    assert both["web:v1"].removes and not both["web:v2"].removes, "one image: removed once"
    assert both["web:v2"].records, "but both records are marked"


def test_a_rerun_finds_nothing_and_finishes_a_prune_cut_short() -> None:
    first = retain(FIVE, Needs(), 2, HERE)
    after = [replace(r, pruned=True, pruned_at="2026-03-10")
             if not by_ref(first)[r.ref].keep else r for r in FIVE]
    gone = HERE - {f"sha256:web-v{n}" for n in (1, 2, 3)}
    again = retain(after, Needs(), 2, gone)
    assert [(v.ref, v.keep) for v in again] == [("web:v4", True), ("web:v5", True)]
    cut_short = by_ref(retain(after, Needs(), 2, gone | {"sha256:web-v1"}))
    assert cut_short["web:v1"].removes and cut_short["web:v1"].marked
    assert not cut_short["web:v1"].records, "its record is marked already"
    in_use = retain(after, Needs(containers={"x": "sha256:web-v1"}), 2, gone | {"sha256:web-v1"})
    assert "web:v1" not in by_ref(in_use), "a container took it up again: left alone"


def test_an_image_gone_from_docker_is_only_marked_and_aws_records_are_left_alone() -> None:
    ami = replace(image("v0", 1), target="aws", artifact="ami-0123")
    verdicts = by_ref(retain([ami, *FIVE], Needs(), 4, HERE - {"sha256:web-v1"}))
    assert "web:v0" not in verdicts
    assert verdicts["web:v1"].records and not verdicts["web:v1"].removes
    assert "already gone from Docker" in verdicts["web:v1"].reasons[0]


def test_keep_is_at_least_one() -> None:
    with pytest.raises(RetentionError, match="keeps at least its newest image"):
        retain(FIVE, Needs(), 0, HERE)


def test_base_images_current_used_or_built_on_are_kept_and_old_ones_pruned() -> None:
    records = [image("v1", 1, base="sha256:old1"), image("v2", 2, base="sha256:old2"),
               image("v3", 3, base="sha256:cur")]
    verdicts = retain(records, Needs(), 1, frozenset(r.artifact for r in records))
    bases = [BaseCandidate("sha256:cur", ("fleet-base-bookworm:cur", "fleet-base-bookworm:latest"),
                           frozenset({"sha256:cur", "sha256:web-v3"})),
             BaseCandidate("sha256:old1", ("fleet-base-bookworm:old1",),
                           frozenset({"sha256:old1", "sha256:web-v1"})),
             BaseCandidate("sha256:old2", ("fleet-base-bookworm:old2",),
                           frozenset({"sha256:old2", "sha256:web-v2", "sha256:other-fleet"})),
             BaseCandidate("sha256:old3", ("fleet-base-bookworm:old3",)),
             BaseCandidate("sha256:old4", ("fleet-base-bookworm:old4",))]
    needs = Needs(machines={"snowflake monitoring-01 in production": "sha256:old4"})
    out = by_ref(retain_bases(bases, {"sha256:cur": "bookworm"}, records, verdicts, needs))
    assert all(v.kind is Kind.BASE for v in out.values())
    assert out["fleet-base-bookworm:cur"].reasons == ("current base of bookworm",
                                                      "base of web:v3")
    assert not out["fleet-base-bookworm:old1"].keep, "its only image is pruned now"
    assert out["fleet-base-bookworm:old2"].reasons == (
        "1 other image(s) on this machine are built on it",)
    assert not out["fleet-base-bookworm:old3"].keep
    assert out["fleet-base-bookworm:old4"].reasons == (
        "snowflake monitoring-01 in production (Terraform state)",)
