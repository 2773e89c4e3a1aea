"""What a release does in each environment of the chain: pure decisions (model.release)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fleet.model.definition import Environment, parse
from fleet.model.promotion import Purpose, Rollout, RolloutState
from fleet.model.release import (
    ReleaseError,
    Step,
    approved_to,
    carries_on,
    decide,
    go_on,
    runs,
)
from tests.conftest import EXAMPLE

FLEET = parse(EXAMPLE.read_text())
CANARY, STAGING, PRODUCTION = FLEET.chain


def rollout(state: RolloutState = RolloutState.ROLLING, version: str = "v2",
            roles: tuple[str, ...] = ("web",), purpose: Purpose = Purpose.PROMOTE) -> Rollout:
    return Rollout("r1", "staging", version, roles, {"web": "v1"}, {"web": [{"v2": 1}]}, 1,
                   state, "me@here", "2026-01-01T00:00:00+00:00", purpose=purpose)


def test_the_example_chain_has_one_gate_at_production() -> None:
    assert [e.name for e in FLEET.chain] == ["canary", "staging", "production"]
    assert [e.manual_approval for e in FLEET.chain] == [False, False, True]


@pytest.mark.parametrize(("yes_to", "position"), [
    ("", -1), ("canary", 0), ("staging", 1), ("production", 2)])
def test_yes_to_approves_up_to_and_including_its_environment(yes_to: str, position: int) -> None:
    assert approved_to(FLEET, yes_to) == position


def test_yes_to_outside_the_chain_is_one_clear_error() -> None:
    with pytest.raises(ReleaseError) as unknown:
        approved_to(FLEET, "prodution")
    line = unknown.value.line()
    assert '--yes-to "prodution" is not an environment of the chain' in line
    assert 'did you mean "production"?' in line
    assert "canary -> staging -> production" in line
    review = replace(STAGING, name="review-x", ephemeral=True)
    fleet = replace(FLEET, environments=(*FLEET.environments, review))
    assert [e.name for e in fleet.chain] == ["canary", "staging", "production"]
    with pytest.raises(ReleaseError, match="ephemeral environment, outside the promotion chain"):
        approved_to(fleet, "review-x")


def test_an_environment_runs_the_version_only_when_every_role_does_and_nothing_is_unfinished(
        ) -> None:
    assert runs(["v2", "v2"], None, "v2")
    assert runs(["v2"], rollout(RolloutState.DONE), "v2")
    assert not runs(["v2", "v1"], None, "v2")
    assert not runs(["v2", None], None, "v2")
    assert not runs([""], None, "v2")
    assert not runs([], None, "v2")
    assert not runs(["v2"], rollout(RolloutState.ROLLING, version="v3"), "v2")
    assert not runs(["v2"], rollout(RolloutState.ROLLING_BACK), "v2")


def test_only_an_unfinished_promotion_of_the_version_and_roles_is_carried_on() -> None:
    assert carries_on(rollout(), "v2", ["web"])
    assert not carries_on(None, "v2", ["web"])
    assert not carries_on(rollout(), "v3", ["web"]), "another version's rollout"
    assert not carries_on(rollout(), "v2", ["web", "api"]), "it covered fewer roles"
    assert carries_on(rollout(roles=("web", "api")), "v2", ["web"])
    assert not carries_on(rollout(RolloutState.ROLLING_BACK), "v2", ["web"]), "a failure"
    assert not carries_on(rollout(RolloutState.DONE), "v2", ["web"])
    assert not carries_on(rollout(purpose=Purpose.ROLLBACK), "v2", ["web"]), "a rollback"


@pytest.mark.parametrize(("env", "position", "approved", "running", "unfinished", "step"), [
    (CANARY, 0, -1, True, False, Step.SKIP),
    (CANARY, 0, -1, False, False, Step.PROMOTE),
    (STAGING, 1, -1, False, True, Step.CARRY_ON),
    (PRODUCTION, 2, -1, False, False, Step.ASK),
    (PRODUCTION, 2, 1, False, False, Step.ASK),       # --yes-to staging stops short of it
    (PRODUCTION, 2, 2, False, False, Step.PROMOTE),   # --yes-to production
    (PRODUCTION, 2, -1, False, True, Step.CARRY_ON),  # approved when the rollout started
    (PRODUCTION, 2, -1, True, False, Step.SKIP),      # already there: nothing to approve
])
def test_decide(env: Environment, position: int, approved: int, running: bool, unfinished: bool,
                step: Step) -> None:
    assert decide(env, position, approved, running=running,
                  unfinished=unfinished) is step


def test_the_command_to_go_on_repeats_the_roles_and_approves_the_gate() -> None:
    assert go_on("v1", "production", []) == "fleet release v1 --yes-to production"
    assert go_on("v1", "production", ["web", "api"]) == (
        "fleet release v1 --role web --role api --yes-to production")
    assert go_on("v1+b", "prod env", ["web"]) == "fleet release v1+b --role web --yes-to 'prod env'"


def test_the_views_say_where_a_release_stopped_and_how_to_go_on(
        capsys: pytest.CaptureFixture[str]) -> None:
    from fleet.cli.release import RELEASE
    from fleet.model.release import Outcome, ReleaseState
    from fleet.workflows.release import ReleaseReport, ReleaseStep

    steps = (ReleaseStep("canary", Outcome.SKIPPED, detail="already there"),
             ReleaseStep("staging", Outcome.PROMOTED, "r2", 2, 9.5, carried_on=True),
             ReleaseStep("production", Outcome.AWAITING_APPROVAL,
                         detail="production needs manual approval"))
    waiting = ReleaseReport("v1", ("web",), ReleaseState.AWAITING_APPROVAL, steps, 12.0,
                            stopped_at="production", go_on=go_on("v1", "production", ["web"]),
                            detail="production needs manual approval")
    assert waiting.error() is None, "awaiting approval is an outcome, not a failure"
    RELEASE.show(waiting, as_json=False)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "canary: web at v1 (already there)",
        "staging: web at v1 (carried on; rollout r2, 2 step(s), 9.5s)",
        "production: awaiting approval (production needs manual approval)",
        "v1 stopped at production, awaiting approval; to go on: "
        "fleet release v1 --role web --yes-to production"], out
    RELEASE.show(waiting, as_json=True)
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "awaiting-approval" and shown["stopped_at"] == "production"

    failed = ReleaseReport("v1", ("web",), ReleaseState.FAILED,
                           (*steps[:2], ReleaseStep("production", Outcome.FAILED)), 30.0,
                           stopped_at="production", detail="promotion of v1 to production "
                           "failed and was rolled back (why); production runs web v0",
                           fix="see fleet history")
    error = failed.error()
    assert error is not None and error.line() == (
        "release of v1 stopped at production: promotion of v1 to production failed and was "
        "rolled back (why); production runs web v0: see fleet history")
    RELEASE.show(failed, as_json=False)
    assert "production" not in capsys.readouterr().out, "the error line says it, once"
