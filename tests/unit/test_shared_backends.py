"""Shared backends (pets_from): an environment that uses another's pets discovers them, takes
the lender's credentials for them, shows the borrowing in plan and status, and owns none of
them. The pure parts; tests/integration/test_shared_backends.py runs it in the lab."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fleet.cli import views
from fleet.errors import ConfigError
from fleet.model import secrets
from fleet.model.definition import parse
from fleet.model.nodes import services_json, upstreams, with_watches
from fleet.model.plan import Action, Actual, Desired, MachineChange, Plan, diff
from fleet.workflows.status import RoleStatus
from tests.conftest import EXAMPLE

FLEET = parse(EXAMPLE.read_text())
ALL = FLEET.env_names()
PRODUCTION_PETS = ("gitaly-01", "postgres-01", "redis-01")


def actual(**kw: object) -> Actual:
    fields: dict[str, object] = {"digests": {}, "revoked": frozenset(), "groups": {},
                                 "nodes": {}, "machines": {}}
    fields.update(kw)
    return Actual(**fields)  # type: ignore[arg-type]


def test_the_example_canary_borrows_production_pets_and_owns_none() -> None:
    canary = FLEET.environment("canary")
    assert canary.pets_from == "production" and canary.pets_env == "production", \
        "the example's canary uses production's pets"
    assert FLEET.environment("staging").pets_env == "staging", "staging has pets of its own"
    assert FLEET.owned_pets("canary") == (), "a borrower owns no pet"
    assert FLEET.borrowed_pets("canary") == PRODUCTION_PETS, "canary uses production's pets"
    assert FLEET.owned_pets("production") == PRODUCTION_PETS, "the lender owns its pets"
    assert FLEET.borrowed_pets("production") == (), "the lender borrows nothing"
    assert FLEET.borrowers("production") == ("canary",), "production lends to canary"
    assert FLEET.borrowers("staging") == (), "staging lends to nobody"
    assert "bastion-01" not in FLEET.owned_pets("production"), "snowflakes are not pets"


def test_a_borrower_owns_no_pet_even_if_its_roles_named_some() -> None:
    """Belt and braces for destroy and refresh code: the validator refuses a borrower with
    instances, and owned_pets never hands out one all the same."""
    roles = {**FLEET.roles, "redis": replace(FLEET.roles["redis"], instances={
        **FLEET.roles["redis"].instances, "canary": ("redis-can-01",)})}
    fleet = replace(FLEET, roles=roles)
    assert fleet.owned_pets("canary") == (), "a borrower's stray instance is not its own"
    assert fleet.owned_pets("nowhere") == (), "an unknown environment owns nothing"


def test_a_borrower_with_pets_of_its_own_is_refused() -> None:
    text = EXAMPLE.read_text().replace(
        'instances = { canary = [], staging = ["redis-stg-01"]',
        'instances = { canary = ["redis-can-01"], staging = ["redis-stg-01"]', 1)
    with pytest.raises(ConfigError) as raised:
        parse(text)
    assert any("roles.redis.instances.canary" in line and "pets_from" in line
               for line in raised.value.problems), raised.value.problems


def test_a_borrower_discovers_the_lender_pets_and_registers_as_itself() -> None:
    web = FLEET.roles["web"]
    assert upstreams(FLEET, web, "canary") == {
        "gitaly": "production", "postgres": "production", "redis": "production"}, \
        "canary's web watches production's pets"
    assert upstreams(FLEET, web, "staging") == {
        "gitaly": "staging", "postgres": "staging", "redis": "staging"}, \
        "staging's web watches its own pets"
    assert upstreams(FLEET, web, "local") == {
        "gitaly": "local", "postgres": "local", "redis": "local"}, \
        "a node outside the environments (verify's) watches its own"
    git = replace(FLEET.roles["git"], depends_on=("gitaly", "web"))
    assert upstreams(FLEET, git, "canary") == {"gitaly": "production", "web": "canary"}, \
        "a cattle upstream is always found in the node's own environment"

    own = services_json(FLEET.name, web, "canary", "v1", weight=10)
    config = json.loads(with_watches(own, FLEET.name, upstreams(FLEET, web, "canary")))
    handlers = {w["service"]: w["args"] for w in config["watches"]}
    assert handlers["postgres"] == ["/usr/local/sbin/fleet-node", "upstreams", "postgres",
                                    "gitlab", "production", "/etc/fleet/upstreams.json"], \
        "fleet-node keeps production's postgres instances"
    for service in config["services"]:
        assert "env:canary" in service["tags"] and service["meta"]["env"] == "canary", \
            "a canary node's own services stay canary's, out of production's traffic"
        assert "env:production" not in service["tags"], "never tagged as the lender's"


def test_borrowed_secrets_are_those_shared_with_the_pets_used() -> None:
    web, api, postgres = FLEET.roles["web"], FLEET.roles["api"], FLEET.roles["postgres"]
    assert secrets.borrowed_keys(FLEET, web, "canary") == ("db_password",), \
        "web's db_password is postgres's credential"
    assert secrets.borrowed_keys(FLEET, api, "canary") == ("db_password",), "api's too"
    assert secrets.borrowed_keys(FLEET, web, "staging") == (), "staging has its own pets"
    assert secrets.borrowed_keys(FLEET, postgres, "production") == (), "the lender lends"
    assert secrets.source(FLEET, web, "canary", "db_password") == "production", \
        "canary's db_password is production's"
    assert secrets.source(FLEET, web, "canary", "secret_key_base") == "canary", \
        "canary's own secrets stay its own"


def test_one_database_one_password_for_the_pet_and_its_cattle() -> None:
    web, postgres, redis = FLEET.roles["web"], FLEET.roles["postgres"], FLEET.roles["redis"]
    assert secrets.shared_with(FLEET, web) == {"db_password": "postgres"}, \
        "web's db_password is postgres's: web logs in with what postgres sets"
    assert secrets.shared_with(FLEET, postgres) == {}, "the pet shares, it does not take"
    assert [r.name for r in secrets.sharers(FLEET, postgres, "db_password")] == [
        "api", "sidekiq", "web"], "the cattle that use the database"
    assert secrets.sharers(FLEET, redis, "db_password") == [], "redis declares none"
    mine, pets = {"db_password": "a", "secret_key_base": "s"}, {"db_password": "b"}
    found = secrets.unlike(FLEET, web, "staging", "db_password", mine, pets)
    assert found is not None and str(found) == \
        "web/staging: db_password (not postgres/staging's value)", found
    canary = secrets.unlike(FLEET, web, "canary", "db_password", mine, pets)
    assert canary is not None and canary.lender == "postgres/production", \
        "canary's is production's postgres's"
    assert secrets.unlike(FLEET, web, "staging", "db_password", mine, {"db_password": "a"}) \
        is None, "the same value"
    assert secrets.unlike(FLEET, web, "staging", "db_password", {}, pets) is None, \
        "an absent one is missing's to name"
    assert secrets.unlike(FLEET, web, "staging", "secret_key_base", mine, pets) is None


def test_check_asks_for_a_borrowed_secret_at_the_lender_only() -> None:
    missing = secrets.missing(FLEET, {("web", "canary"): ["db_password", "secret_key_base"]})
    shown = {str(m) for m in missing}
    assert "web/canary: db_password" not in shown, "never demanded at the borrower"
    db = next(m for m in missing if (m.role, m.key, m.env) == ("web", "db_password", "production"))
    assert db.borrowers == ("canary",), "production's db_password is canary's too"
    assert str(db) == "web/production: db_password (used by canary too)", str(db)
    assert db.needed_in("canary") and db.needed_in("production") and not db.needed_in("staging")
    assert db.shown_in(["canary"]) == "canary" and db.shown_in(ALL) == "production"
    assert sum(1 for m in missing if (m.role, m.key) == ("web", "db_password")
               and m.env == "production") == 1, "once, whoever needs it"

    lent = secrets.missing(FLEET, {("web", "production"): ["db_password"],
                                   ("web", "canary"): ["secret_key_base"]})
    assert not any(m.role == "web" and m.key == "db_password" and m.needed_in("canary")
                   for m in lent), "the lender's value serves canary"


def test_a_mirror_makes_the_borrower_copy_the_lender_value() -> None:
    keys = ("db_password",)
    fresh = secrets.mirror(keys, {"db_password": "prod", "secret_key_base": "p"}, None)
    assert fresh.write == {"db_password": "prod"} and not fresh.drop, \
        "only the borrowed key is copied, never the lender's other secrets"
    same = secrets.mirror(keys, {"db_password": "prod"}, {"db_password": "prod", "x": "y"})
    assert not same, "a copy equal to the lender's is left alone"
    moved = secrets.mirror(keys, {"db_password": "new"}, {"db_password": "old"})
    assert moved.write == {"db_password": "new"}, "a lender's new value is copied again"
    gone = secrets.mirror(keys, None, {"db_password": "canary-own", "secret_key_base": "c"})
    assert gone.drop == ("db_password",) and not gone.write, \
        "a value that is not the lender's is removed, the borrower's own secrets kept"


def test_plan_shows_the_borrowing_and_no_pet_for_the_borrower() -> None:
    machines = {env: tuple(MachineChange(i, "create") for i in FLEET.owned_pets(env))
                for env in ALL}
    plan = diff(Desired(FLEET, {}, {}, ALL), actual(machines=machines))
    assert plan.pets_from == {"canary": "production"}, "plan says whose pets canary uses"
    assert plan.borrowed == {"canary": PRODUCTION_PETS}, "and which"
    canary_pets = [i for i in plan.items if i.env == "canary" and i.cls == "pet"]
    assert canary_pets == [], f"no pet work in canary: {canary_pets}"
    creates = {(i.env, i.target) for i in plan.items if i.action is Action.CREATE}
    assert ("production", "postgres-01") in creates, "production creates its own pets"
    again = Plan.from_json(plan.to_json())
    assert again == plan, "the JSON (and a saved plan) carries the borrowing"
    assert json.loads(plan.to_json())["pets_from"] == {"canary": "production"}


def test_plan_puts_a_missing_borrowed_secret_at_the_lender() -> None:
    only = ("canary",)
    plan = diff(Desired(FLEET, {}, {}, only),
                actual(missing_secrets={("canary", "web"): ("db_password",)},
                       stale=frozenset({("canary", "api")})))
    [item] = [i for i in plan.items if i.action is Action.SECRET]
    assert item.env == "canary" and item.target == "web/db_password"
    assert item.blocked == "fleet secrets put web db_password --env production", item.blocked
    assert "fleet/web/production" in item.detail, item.detail
    [sync] = [i for i in plan.items if i.action is Action.SYNC]
    assert (sync.env, sync.target) == ("canary", "api/borrowed") and "production" in sync.detail


def test_views_show_the_borrowing(capsys: pytest.CaptureFixture[str]) -> None:
    plan = diff(Desired(FLEET, {}, {}, ALL), actual())
    views.PLAN.human(plan)
    out = capsys.readouterr().out
    assert "canary uses production's pets (pets_from): gitaly-01, postgres-01, redis-01" in out
    rows = [RoleStatus("canary", "web", "v1", {"v1": 1}, {"v1": 1}, {}, 50.0, 0, "production"),
            RoleStatus("staging", "web", "v1", {"v1": 1}, {"v1": 1}, {}, None, 1, "")]
    views.STATUS.human(rows)
    out = capsys.readouterr().out
    assert "production's" in out and "own" in out, out
    views.STATUS.json(rows)
    data = json.loads(capsys.readouterr().out)
    assert [r["pets_from"] for r in data] == ["production", ""], data
