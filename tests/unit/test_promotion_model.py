"""Promotion rules, rollout steps and the rollout state machine: pure logic."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fleet.model.definition import parse
from fleet.model.image import ImageRecord
from fleet.model.promotion import (
    Channel,
    PromotionError,
    Purpose,
    Rollout,
    RolloutState,
    after_need,
    floor,
    gate,
    groups_at,
    image_problems,
    must_pass,
    promotable_roles,
    settles_rollback,
    steps,
    superseded,
    weight,
)
from tests.conftest import EXAMPLE
from tests.unit.test_image_model import record

FLEET = parse(EXAMPLE.read_text())


def passing_total(groups: dict[str, int], passing_new: int, target: str) -> int:
    return sum(n for v, n in groups.items() if v != target) + min(passing_new, groups[target])


@pytest.mark.parametrize("surge_batches", [0, 1, 2, 3, 50])
@pytest.mark.parametrize(("current", "count", "batch"), [
    ({"v1": 3}, 3, 1), ({"v1": 20}, 20, 5), ({"v1": 2}, 2, 2), ({"v1": 1}, 3, 2),
    ({"v1": 2, "v0": 1}, 2, 1), ({}, 4, 3), ({"v1": 5}, 5, 10), ({"v1": 20}, 20, 3),
])
def test_steps_never_drop_below_the_count_and_end_on_target(current: dict[str, int], count: int,
                                                            batch: int,
                                                            surge_batches: int) -> None:
    surge = surge_batches * batch
    plan = steps(current, "v2", count, batch, surge)
    previous = {**current, "v2": 0}
    for groups in plan:
        assert groups["v2"] - previous["v2"] <= batch
        # never more nodes than the count and the surge (or what ran before, if more)
        assert sum(groups.values()) <= max(count + max(surge, batch), sum(previous.values()))
        # before the new nodes of this apply pass, only the previous ones count
        assert passing_total(groups, previous["v2"], "v2") >= min(count, sum(current.values()))
        # and the workflow waits for exactly those before it applies
        needed = must_pass(previous, groups, "v2", count)
        assert needed <= previous["v2"]
        assert sum(n for v, n in groups.items() if v != "v2") + needed >= min(
            count, sum(current.values()))
        previous = groups
    assert plan[-1]["v2"] == count
    assert all(n == 0 for v, n in plan[-1].items() if v != "v2")


def test_batches_bound_each_grow() -> None:
    plan = steps({"v1": 20}, "v2", 20, 5)
    assert [g["v2"] for g in plan] == [5, 10, 15, 20, 20]
    assert [g["v1"] for g in plan] == [20, 15, 10, 5, 0]
    assert [must_pass(a, b, "v2", 20) for a, b in zip([{"v1": 20}, *plan], plan, strict=False)] \
        == [0, 5, 10, 15, 20]


def test_a_surge_boots_the_next_batch_while_the_one_before_is_gated() -> None:
    one = steps({"v1": 20}, "v2", 20, 5)
    assert steps({"v1": 20}, "v2", 20, 5, 5) == one, "a surge of one batch is the default shape"
    plan = steps({"v1": 20}, "v2", 20, 5, 10)
    assert [g["v2"] for g in plan] == [5, 10, 15, 20, 20], "the same applies, the same batches"
    assert [g["v1"] for g in plan] == [20, 20, 15, 10, 0], "removals lag one batch behind"
    rollout = Rollout("r", "canary", "v2", ("web",), {"web": "v1"}, {"web": plan}, 0,
                      RolloutState.ROLLING, "me", "now", groups={"web": {"v1": 20}},
                      max_surge=10)
    before = [must_pass(groups_at(rollout, "web", k - 1), groups_at(rollout, "web", k), "v2", 20)
              for k in range(1, 6)]
    after = [after_need(rollout, "web", k, "v2", 20) for k in range(1, 6)]
    assert before == [0, 0, 5, 10, 20], "the second batch is made before the first passes"
    assert after == [0, 5, 10, 20, 20], "after each apply: what the next one removes"
    default = replace(rollout, plan={"web": one}, max_surge=0)
    assert [after_need(default, "web", k, "v2", 20) for k in range(1, 6)] == [
        5, 10, 15, 20, 20], "one batch at a time: every new node of the step passes first"
    again = Rollout.from_json(rollout.to_json())
    assert again == rollout and again.max_surge == 10, "a rollback keeps the rollout's surge"
    older = json.loads(rollout.to_json())
    del older["max_surge"]
    assert Rollout.from_json(json.dumps(older)).max_surge == 0, "one recorded before surges"


def test_nothing_to_do_is_no_step() -> None:
    assert steps({"v1": 2}, "v1", 2, 1) == []
    assert steps({"v1": 3}, "v1", 1, 1) == [{"v1": 1}]


def test_floor() -> None:
    assert floor(3, 50) == 2 and floor(2, 50) == 1 and floor(5, 0) == 0 and floor(4, 100) == 4


def test_gates_follow_the_environment_order_and_soak() -> None:
    assert gate(FLEET, "canary", "web", "v1", None, False, None) == []
    (problem,) = gate(FLEET, "production", "web", "v1", None, False, None)
    assert "has not been promoted to staging first" in problem
    soaking = Channel("v1", "", "2026-01-01T00:00:00+00:00")
    (problem,) = gate(FLEET, "staging", "web", "v1", soaking, True, 10)
    assert "soaked 10s in canary, which needs 30s" in problem
    (problem,) = gate(FLEET, "staging", "web", "v1", soaking, False, 100)
    assert "not passing in canary" in problem
    assert gate(FLEET, "staging", "web", "v1", soaking, True, 31) == []


def test_unbaked_and_revoked_images_are_refused() -> None:
    assert "is not baked" in image_problems("web", "v1", None)[0]
    revoked: ImageRecord = record("v1", "aaa").revoke("CVE", "2026-01-01")
    assert "is revoked (CVE)" in image_problems("web", "v1", revoked)[0]
    assert image_problems("web", "v1", record("v1", "aaa")) == []


def test_promotable_roles() -> None:
    baked = {"web": record("v1", "a"), "api": None, "git": None, "sidekiq": None}
    assert promotable_roles(FLEET, baked, []) == ["web"]
    with pytest.raises(PromotionError, match="gitaly is a pet"):
        promotable_roles(FLEET, baked, ["gitaly"])
    with pytest.raises(PromotionError, match="no cattle role is baked"):
        promotable_roles(FLEET, {}, [])


def test_canary_weight_gives_the_configured_share() -> None:
    canary, production = weight(FLEET, "canary", "web"), weight(FLEET, "production", "web")
    share = 1 * canary / (1 * canary + 2 * production)  # web: 1 canary node, 2 in production
    assert share == pytest.approx(0.10, abs=0.005)
    assert weight(FLEET, "staging", "web") == 100


def rollout(state: RolloutState = RolloutState.ROLLING) -> Rollout:
    return Rollout("r1", "canary", "v2", ("web",), {"web": "v1"},
                   {"web": [{"v1": 1, "v2": 1}, {"v1": 0, "v2": 1}]}, 0, state, "me", "now",
                   groups={"web": {"v1": 1}})


def test_rollout_state_machine_refuses_illegal_moves() -> None:
    done = rollout().move(RolloutState.DONE)
    with pytest.raises(PromotionError, match="cannot go from done to rolling"):
        done.move(RolloutState.ROLLING)
    back = rollout().move(RolloutState.ROLLING_BACK)
    with pytest.raises(PromotionError):
        back.move(RolloutState.DONE)
    assert back.move(RolloutState.ROLLED_BACK).finished


def test_rollout_round_trips_and_knows_its_groups() -> None:
    r = rollout()
    assert Rollout.from_json(r.to_json()) == r
    assert groups_at(r, "web", 0) == {"v1": 1}
    assert groups_at(r, "web", 2) == {"v1": 0, "v2": 1}
    assert groups_at(r, "web", 9) == {"v1": 0, "v2": 1}


def test_a_rollout_knows_its_purpose_and_older_records_read_as_promotions() -> None:
    back = replace(rollout(), purpose=Purpose.ROLLBACK)
    assert Rollout.from_json(back.to_json()).purpose is Purpose.ROLLBACK
    old = json.loads(rollout().to_json())
    del old["purpose"]  # recorded before rollouts knew their purpose
    assert Rollout.from_json(json.dumps(old)).purpose is Purpose.PROMOTE


@pytest.mark.parametrize(("purpose", "state", "command", "version", "expected"), [
    # fleet rollback rerun: an unfinished rollback is carried on, never undone
    (Purpose.ROLLBACK, RolloutState.ROLLING, Purpose.ROLLBACK, "", False),
    # fleet rollback over an unfinished promotion: rolling it back is the rollback
    (Purpose.PROMOTE, RolloutState.ROLLING, Purpose.ROLLBACK, "", True),
    # a rollback under way is always carried on
    (Purpose.PROMOTE, RolloutState.ROLLING_BACK, Purpose.ROLLBACK, "", False),
    (Purpose.ROLLBACK, RolloutState.ROLLING_BACK, Purpose.PROMOTE, "v9", False),
    # a promotion carries on a rollout to its own version, and supersedes another
    (Purpose.PROMOTE, RolloutState.ROLLING, Purpose.PROMOTE, "v2", False),
    (Purpose.ROLLBACK, RolloutState.ROLLING, Purpose.PROMOTE, "v2", False),
    (Purpose.PROMOTE, RolloutState.ROLLING, Purpose.PROMOTE, "v3", True),
    (Purpose.ROLLBACK, RolloutState.ROLLING, Purpose.PROMOTE, "v1", True),
])
def test_what_a_command_does_with_an_unfinished_rollout(
        purpose: Purpose, state: RolloutState, command: Purpose, version: str,
        expected: bool) -> None:
    found = replace(rollout(state), purpose=purpose)  # a rollout to v2
    assert superseded(found, command, version) is expected


def test_which_settled_rollouts_are_the_rollback_asked_for() -> None:
    done, undone = rollout().move(RolloutState.DONE), rollout().move(
        RolloutState.ROLLING_BACK).move(RolloutState.ROLLED_BACK)
    assert settles_rollback(undone), "a promotion undone is the rollback"
    assert settles_rollback(replace(done, purpose=Purpose.ROLLBACK)), "a rollback done is"
    assert not settles_rollback(replace(undone, purpose=Purpose.ROLLBACK)), \
        "a rollback undone is not: it is asked for again"


def test_an_environment_takes_a_surge() -> None:
    text = EXAMPLE.read_text().replace("batch_size = 1\n", "batch_size = 1\nmax_surge = 2\n", 1)
    surged = parse(text)
    assert surged.environments[0].max_surge == 2, "max_surge is read from fleet.toml"
    assert FLEET.environments[0].max_surge == 0, "absent: one batch, the default shape"
