"""The plan model: diff of desired against actual, depends_on order, the JSON structure."""

from __future__ import annotations

import pytest

from fleet.model import nodes
from fleet.model.definition import parse
from fleet.model.plan import (
    Action,
    Actual,
    Desired,
    MachineChange,
    Options,
    PetRun,
    Plan,
    PlanError,
    data_path,
    diff,
    order,
    refusals,
)
from fleet.workflows.apply import stale
from tests.conftest import EXAMPLE

FLEET = parse(EXAMPLE.read_text())
ALL = FLEET.env_names()


def actual(**kw: object) -> Actual:
    fields: dict[str, object] = {"digests": {}, "revoked": frozenset(), "groups": {},
                                 "nodes": {}, "machines": {}}
    fields.update(kw)
    return Actual(**fields)  # type: ignore[arg-type]


def desired(digests: dict[str, str] | None = None,
            channels: dict[tuple[str, str], str] | None = None) -> Desired:
    return Desired(FLEET, digests or {}, channels or {}, ALL)


def test_roles_come_after_what_they_depend_on() -> None:
    roles = order(FLEET)
    assert sorted(roles) == sorted(FLEET.roles)
    for name in roles:
        for dep in FLEET.roles[name].depends_on:
            assert roles.index(dep) < roles.index(name)
    assert roles[:3] == ["gitaly", "postgres", "redis"]


def test_a_fresh_fleet_bakes_everything_and_creates_every_instance_in_order() -> None:
    machines = {env: tuple(MachineChange(i, "create") for r in FLEET.roles.values()
                           for i in r.instances.get(env, ())) for env in ALL}
    plan = diff(desired({"web": "d1", "gitaly": "d2"}), actual(machines=machines))
    bakes = [i.role for i in plan.items if i.action is Action.BAKE]
    assert bakes == ["gitaly", "web"]
    assert plan.items[0].env == "" and plan.pending
    creates = [(i.env, i.target) for i in plan.items if i.action is Action.CREATE]
    assert ("production", "postgres-01") in creates and ("production", "bastion-01") in creates
    promoted = [(i.env, i.role) for i in plan.items if i.action is Action.PROMOTE]
    assert promoted == [("canary", "web"), ("canary", "api"), ("canary", "git")]  # sidekiq: 0
    waiting = [i for i in plan.items if i.action is Action.WAIT]
    assert waiting and not any(i.change for i in waiting)
    envs = [i.env for i in plan.items if i.env]
    assert envs == sorted(envs, key=ALL.index)  # grouped by environment, in promotion order
    staging = [i.role for i in plan.items if i.env == "staging" and i.change]
    assert staging.index("gitaly") < staging.index("postgres")


def test_a_fleet_that_matches_has_nothing_to_do() -> None:
    channels = {(env, r.name): "v1" for env in ALL for r in FLEET.roles.values()
                if r.cls.value == "cattle"}
    groups = {env: {r.name: {"v1": r.count[env]} for r in FLEET.roles.values()
                    if r.cls.value == "cattle"} for env in ALL}
    nodes = {(env, r.name): frozenset(f"gitlab-{r.name}-{env}-v1-{i}" for i in range(r.count[env]))
             for env in ALL for r in FLEET.roles.values() if r.cls.value == "cattle"}
    plan = diff(desired({"web": "d1"}, channels),
                actual(digests={"web": frozenset({"d1"})}, groups=groups, nodes=nodes))
    assert plan.items == () and not plan.pending and plan.changes == 0


def test_cattle_grow_shrink_roll_revoked_and_a_missing_node() -> None:
    channels = {("production", "web"): "v2", ("production", "api"): "v1",
                ("production", "git"): "v1"}
    groups = {"production": {"web": {"v1": 1, "v2": 1}, "api": {"v1": 3}, "git": {"v1": 1}}}
    nodes = {("production", "web"): frozenset({"gitlab-web-production-v1-0",
                                               "gitlab-web-production-v2-0"}),
             ("production", "api"): frozenset({"gitlab-api-production-v1-0",
                                               "gitlab-api-production-v1-1",
                                               "gitlab-api-production-v1-2"}),
             ("production", "git"): frozenset()}
    plan = diff(Desired(FLEET, {}, channels, ("production",)),
                actual(groups=groups, nodes=nodes, revoked=frozenset({("api", "v1")})))
    got = {(i.role, i.action) for i in plan.items}
    assert {("web", Action.GROW), ("web", Action.ROLL), ("api", Action.SHRINK),
            ("api", Action.REVOKED), ("git", Action.REPAIR)} <= got
    repair = next(i for i in plan.items if i.action is Action.REPAIR)
    assert repair.target == "gitlab-git-production-v1-0" and repair.drift
    assert next(i for i in plan.items if i.action is Action.REVOKED).blocked


def test_dead_cattle_that_consul_still_lists_are_replaced() -> None:
    channels = {("production", "web"): "v1"}
    groups = {"production": {"web": {"v1": 2}}}
    web = frozenset({"gitlab-web-production-v1-0", "gitlab-web-production-v1-1"})
    healthy = diff(Desired(FLEET, {}, channels, ("production",)),
                   actual(groups=groups, nodes={("production", "web"): web}))
    assert [i for i in healthy.items if i.role == "web"] == []
    dead = {"gitlab-web-production-v1-0": nodes.FAILED,
            "gitlab-web-production-v1-1": nodes.NO_CONTAINER}
    plan = diff(Desired(FLEET, {}, channels, ("production",)),
                actual(groups=groups, nodes={("production", "web"): web}, gone=dead))
    repairs = [i for i in plan.items if i.role == "web"]
    assert [(i.target, i.action, i.drift, i.blocked) for i in repairs] == [
        ("gitlab-web-production-v1-0", Action.REPAIR, True, ""),
        ("gitlab-web-production-v1-1", Action.REPAIR, True, "")]
    assert "failed member" in repairs[0].detail and "container is gone" in repairs[1].detail
    assert plan.changes == 2 and plan.pending


def test_a_node_is_gone_when_it_failed_or_its_container_went_not_when_never_a_member() -> None:
    listed = {"failed", "member", "removed", "stopped", "draining", "synthetic"}
    members = {"failed": False, "member": True, "removed": True, "stopped": True,
               "draining": True, "other-fleet": False}
    containers = {"member", "stopped", "draining.draining", "failed"}
    assert nodes.gone(listed, members, containers) == {
        "failed": nodes.FAILED, "removed": nodes.NO_CONTAINER, "draining": nodes.NO_CONTAINER}
    # without a container listing (no lab), Consul's word: only failed members are gone
    assert nodes.gone(listed, members, None) == {"failed": nodes.FAILED}
    # a node without serfHealth (registered through the catalog API) is taken as present
    assert nodes.gone({"synthetic"}, {}, set()) == {}


def test_a_pet_replace_is_refused_unless_allowed_and_says_what_data_it_holds() -> None:
    machines = {"production": (MachineChange("postgres-01", "replace", "replace_because_triggered_by"),
                               MachineChange("redis-01", "update"))}
    plan = diff(Desired(FLEET, {}, {}, ("production",)), actual(machines=machines))
    [refused] = refusals(plan)
    assert "postgres-01" in refused and "PostgreSQL cluster" in refused
    assert "--allow-replace postgres-01" in refused
    allowed = diff(Desired(FLEET, {}, {}, ("production",), Options(("postgres-01",))),
                   actual(machines=machines))
    assert refusals(allowed) == [] and allowed.changes == 2


def test_a_pet_whose_container_is_gone_is_drift_and_not_refused() -> None:
    machines = {"staging": (MachineChange("gitaly-stg-01", "replace", "replace_by_request",
                                          drift=True),)}
    plan = diff(Desired(FLEET, {}, {}, ("staging",)), actual(machines=machines))
    [item] = [i for i in plan.items if i.target == "gitaly-stg-01"]
    assert item.drift and not item.blocked and refusals(plan) == []


def test_snowflakes_change_only_when_named_but_are_created_freely() -> None:
    machines = {"production": (MachineChange("bastion-01", "update"),
                               MachineChange("monitoring-01", "create"))}
    plan = diff(Desired(FLEET, {}, {}, ("production",)), actual(machines=machines))
    blocked = {i.target: i.blocked for i in plan.items}
    assert "--snowflake bastion-01" in blocked["bastion-01"] and blocked["monitoring-01"] == ""
    assert plan.changes == 1 and plan.pending and refusals(plan) == []
    named = diff(Desired(FLEET, {}, {}, ("production",), Options(snowflakes=("bastion-01",))),
                 actual(machines=machines))
    assert named.changes == 2


def test_the_json_structure_round_trips_and_a_broken_one_is_refused() -> None:
    plan = diff(desired({"web": "d1"}), actual())
    again = Plan.from_json(plan.to_json())
    assert again == plan and again.same_work(plan)
    assert '"changes"' in plan.to_json()
    with pytest.raises(PlanError):
        Plan.from_json('{"fleet": "x"}')


def test_a_saved_plan_that_no_longer_matches_is_stale() -> None:
    before = diff(desired({"web": "d1"}), actual())
    assert stale(before, before) == ""
    after = diff(desired({"web": "d1"}), actual(digests={"web": frozenset({"d1"})}))
    assert stale(before, after) == "no longer: web bake"
    assert "now also" in stale(after, before)


def test_a_pet_is_converged_when_its_provisioner_changed_and_offered_a_move_to_a_newer_image(
        ) -> None:
    """converge: the provisioner now differs from what the pet last had (apply carries it out);
    move: the role's image is made on another platform than the pet's (offered, blocked: a
    live pet is never replaced unasked), not when a newer image differs only in what a
    converge gives; nothing when unknown, nor for an instance Terraform changes."""
    want = Desired(FLEET, {}, {}, ("production",), provision={"gitaly": "p2", "redis": "r2"},
                   images={"gitaly": PetRun("v2", "p2", "base2"), "redis": PetRun("v2", "r2", "b1"),
                           "postgres": PetRun("v2", "", "b2")})
    plan = diff(want, actual(pets={"gitaly-01": PetRun("v1", "p1", "base1"),
                                   "redis-01": PetRun("v1", "r2", "b1"),  # converged to v2's
                                   "postgres-01": PetRun("v1", "", "")}))
    found = {(i.target, i.action): i for i in plan.items}
    converge = found.get(("gitaly-01", Action.CONVERGE))
    assert converge is not None and not converge.blocked and converge.change, plan.items
    assert "p1 -> p2" in converge.detail, converge.detail
    move = found.get(("gitaly-01", Action.MOVE))
    assert move is not None and move.blocked and "fleet move gitaly-01 --to" in move.blocked
    assert "gitaly:v1" in move.detail and "gitaly:v2" in move.detail, move.detail
    assert "another base" in move.detail, move.detail
    assert not refusals(plan), "an offered move does not refuse the plan"
    pets = {t for t, _ in found if t.endswith("-01")}
    assert pets == {"gitaly-01"}, "redis has v2's provisioner on v2's platform; postgres's are unknown"
    moved = diff(want, actual(moved={"gitaly-01": "gitaly-02"}))
    [said] = [i for i in moved.items if i.target == "gitaly-01"]
    assert said.action is Action.MOVED and not said.change and "gitaly-02" in said.detail
    replaced = diff(want, actual(pets={"gitaly-01": PetRun("v1", "p1", "base1")},
                                 machines={"production": (MachineChange("gitaly-01", "replace"),)}))
    assert [i.action for i in replaced.items if i.target == "gitaly-01"] == [Action.REPLACE]


def test_a_pets_data_path_comes_from_its_data() -> None:
    assert data_path(FLEET.roles["postgres"]) == "/var/lib/postgresql"
    assert data_path(FLEET.roles["gitaly"]) == "/var/opt/gitaly"


def test_secrets_unsynced_are_work_and_missing_values_are_for_a_person() -> None:
    plan = diff(Desired(FLEET, {}, {}, ("staging",)),
                actual(unsynced=frozenset({("staging", "web")}),
                       missing_secrets={("staging", "web"): ("db_password",)}))
    got = {(i.target, i.action): i.blocked for i in plan.items}
    assert got[("web/approle", Action.SYNC)] == ""
    assert got[("web/db_password", Action.SECRET)] == \
        "fleet secrets put web db_password --env staging"
    assert plan.changes == 1 and plan.pending and refusals(plan) == []
