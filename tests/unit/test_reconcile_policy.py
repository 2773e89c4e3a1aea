"""fleet reconcile's pure policy (fleet/model/reconcile.py) and the `heal` key's validation."""

from __future__ import annotations

import pytest

from fleet.errors import FleetError
from fleet.model.definition import problems
from fleet.model.grammar import RoleClass
from fleet.model.heal import heal_problem
from fleet.model.plan import Action, Item, Plan
from fleet.model.reconcile import (
    EXPIRE,
    Situation,
    Verdict,
    decide,
    drift,
    duration,
    policy,
    remember,
)

REPAIRS = tuple(Item("production", "web", "cattle", f"web-{i}", Action.REPAIR, "gone", True)
                for i in range(4))
PLAN = Plan("f", ("staging", "production"), (
    *REPAIRS,
    Item("production", "gitaly", "pet", "gitaly-01", Action.REPLACE,
         "its container is gone: created again", True),
    Item("production", "redis", "pet", "redis-01", Action.CONVERGE, "its provisioner changed"),
    Item("staging", "redis", "pet", "redis-stg-01", Action.CONVERGE, "its provisioner changed"),
    Item("staging", "web", "cattle", "web", Action.REVOKED, "1 node runs revoked web:v1",
         blocked="promote another version or roll back"),
    Item("staging", "web", "cattle", "web", Action.WAIT, "awaits"),
))
HEALS = {"web": "replace", "redis": "converge", "gitaly": "report"}


def verdicts(found: tuple, target: str) -> list[Verdict]:
    return [f.verdict for f in found if f.target == target]


def test_heals_what_the_roles_opt_into_and_reports_the_rest() -> None:
    found = decide(PLAN, policy(HEALS, 0, 10), Situation(now=100))
    assert verdicts(found, "web-0") == [Verdict.HEAL], "cattle with heal=replace are replaced"
    assert verdicts(found, "redis-01") == [Verdict.HEAL], "a converge pet is converged"
    gitaly = [f for f in found if f.target == "gitaly-01"]
    assert [f.verdict for f in gitaly] == [Verdict.REPORT], "a pet is never replaced"
    assert "never replaced" in gitaly[0].why, gitaly[0].why
    assert verdicts(found, "web") == [Verdict.REPORT], "revoked images are reported; WAIT is none"
    assert not [f for f in found if f.action == Action.WAIT.value], "information is not drift"


def test_report_only_by_default() -> None:
    found = decide(PLAN, policy({}, 0, 10), Situation(now=100))
    assert {f.verdict for f in found} == {Verdict.REPORT}, found
    assert 'heal = "replace"' in next(f.why for f in found if f.target == "web-0")


def test_grace_rate_limit_and_locks() -> None:
    rules = policy(HEALS, 30, 3)
    young = decide(PLAN, rules, Situation(now=100, first_seen={"production/web-0/repair": 90}))
    assert verdicts(young, "web-0") == [Verdict.GRACE], "10 s old, grace 30 s"
    old = decide(PLAN, rules, Situation(now=100, first_seen={
        f"production/web-{i}/repair": 0 for i in range(4)} | {"production/redis-01/converge": 0}))
    web = [f.verdict for f in old if f.target.startswith("web-")]
    assert web == [Verdict.HEAL] * 3 + [Verdict.LIMITED], f"3 heals per env per interval: {web}"
    assert verdicts(old, "redis-01") == [Verdict.LIMITED], "the env's limit counts every heal"
    spent = decide(PLAN, policy(HEALS, 0, 3), Situation(now=100, healed={"production": 3}))
    assert verdicts(spent, "web-0") == [Verdict.LIMITED], "heals earlier this interval count"
    locked = decide(PLAN, policy(HEALS, 0, 3), Situation(
        now=100, busy={"production": "its lock is held by x"}))
    assert {f.verdict for f in locked if (f.env == "production" and f.cls != "pet")
            or f.target == "redis-01"} == {Verdict.LOCKED}, "a rolling env is left alone"
    assert verdicts(locked, "redis-stg-01") == [Verdict.HEAL], "other envs are not"


def test_files_changed_by_hand_and_expired_environments() -> None:
    files = {("production", "redis", "redis-01"): "changed: /etc/fleet/settings.env",
             ("production", "gitaly", "gitaly-01"): "changed: /etc/x",
             ("staging", "redis", "redis-stg-01"): ""}
    found = decide(PLAN, policy(HEALS, 0, 10), Situation(now=1, files=files,
                                                         expired=("review-a",)))
    assert len([f for f in found if f.target == "redis-01"]) == 1, "one converge per pet"
    assert verdicts(found, "gitaly-01") == [Verdict.REPORT, Verdict.REPORT]
    expire = [f for f in found if f.action == EXPIRE]
    assert [(f.target, f.verdict) for f in expire] == [("review-a", Verdict.HEAL)]


def test_a_pet_down_is_reported_never_healed() -> None:
    found = decide(PLAN, policy(HEALS, 0, 10, {"gitaly": "pet"}), Situation(
        now=1, down={("production", "gitaly", "gitaly-01"): "its container is not running"}))
    down = [f for f in found if f.action == "down"]
    assert [(f.target, f.cls, f.verdict) for f in down] == [
        ("gitaly-01", "pet", Verdict.REPORT)], down


def test_an_alive_node_failing_its_checks_is_replaced_after_an_interval() -> None:
    failing = {("production", "web", "web-9"): "fails its service checks",
               ("production", "web", "web-0"): "fails its service checks"}  # gone already
    rules = policy(HEALS, 0, 10, failing_grace=30)
    sizes = {("production", "web"): 10}
    young = decide(PLAN, rules, Situation(now=100, failing=failing, sizes=sizes,
                                          first_seen={"production/web-9/repair": 80}))
    assert verdicts(young, "web-9") == [Verdict.GRACE], "failing 20 s, given an interval (30 s)"
    assert verdicts(young, "web-0") == [Verdict.HEAL], "one finding: the plan's repair"
    old = decide(PLAN, rules, Situation(now=100, failing=failing, sizes=sizes,
                                        first_seen={"production/web-9/repair": 60}))
    assert verdicts(old, "web-9") == [Verdict.HEAL]
    report = decide(PLAN, policy({}, 0, 10, failing_grace=30),
                    Situation(now=100, failing=failing, sizes=sizes))
    assert verdicts(report, "web-9") == [Verdict.REPORT], "report-only by default"
    shared = decide(PLAN, rules, Situation(now=100, failing=failing, sizes={
        ("production", "web"): 3}, first_seen={"production/web-9/repair": 0}))
    [web9] = [f for f in shared if f.target == "web-9"]
    assert web9.verdict is Verdict.REPORT and "share" in web9.why, "2 of 3 fail: not the nodes"


def test_memory_and_drift_counts() -> None:
    found = decide(PLAN, policy(HEALS, 0, 10), Situation(now=100))
    seen = remember({"production/web-0/repair": 5, "gone/x/repair": 1}, found, 100)
    assert seen["production/web-0/repair"] == 5 and "gone/x/repair" not in seen
    assert seen["production/web-1/repair"] == 100
    assert drift(found)[("production", "cattle")] == 4


def test_heal_values_per_class() -> None:
    assert heal_problem(RoleClass.CATTLE, "replace") == ""
    assert "cannot heal" in heal_problem(RoleClass.PET, "replace")
    assert "cannot heal" in heal_problem(RoleClass.CATTLE, "converge")
    assert 'unknown heal "always"' in heal_problem(RoleClass.SNOWFLAKE, "always")


def test_validation_names_the_heal_line() -> None:
    import tomllib
    from pathlib import Path

    data = tomllib.loads(Path("fleet.toml").read_text())
    data["roles"]["redis"]["heal"] = "replace"
    found = problems(data)
    assert any(p[0] == "roles.redis.heal" and "never replaced" in p[1] for p in found), found


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("1m30s", 90), ("0.5s", 0.5)])
def test_durations(text: str, seconds: float) -> None:
    assert duration(text, "--interval") == seconds


@pytest.mark.parametrize("text", ["soon", "30", "-1s", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(FleetError, match="not a duration"):
        duration(text, "--interval")


@pytest.mark.parametrize(("args", "said"), [
    (("--interval", "soon"), '--interval "soon" is not a duration'),
    (("--interval", "0s"), "--interval 0s is shorter than 1s"),
    (("--grace", "2 minutes"), "not a duration"),
    (("--max-heals", "-1"), "--max-heals -1 is negative"),
    (("--metrics-port", "70000"), "is not a port"),
])
def test_bad_options_are_one_line(args: tuple[str, ...], said: str,
                                  capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused before anything is read (no Consul needed): one line, exit 1."""
    import sys

    from fleet.cli.main import main

    monkeypatch.setattr(sys, "argv", ["fleet", "reconcile", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    _, err = capsys.readouterr()
    assert exit_info.value.code == 1 and said in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_a_standby_takes_over_within_two_intervals() -> None:
    """The session's TTL: Consul drops a dead holder's session at most 2 x TTL after its last
    renewal, which must fit in two intervals (Consul's floor of 10 s aside)."""
    from fleet.workflows.reconcile.leader import ttl_for

    assert ttl_for(30) == 15 and 2 * ttl_for(30) <= 2 * 30
    assert ttl_for(4) == 10, "Consul's floor"
    assert all(2 * ttl_for(i) <= 2 * i for i in (10, 20, 60, 300, 3600))
