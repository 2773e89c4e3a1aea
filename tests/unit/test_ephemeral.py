"""Ephemeral environments' pure rules (fleet/model/ephemeral.py): slugs, names, TTLs, expiry,
and the fleet they make beside the fixed environments."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.errors import ConfigError
from fleet.model import ephemeral
from fleet.model.definition import Fleet, parse
from fleet.model.ephemeral import Record
from fleet.model.promotion import gate

EXAMPLE = Path(__file__).resolve().parents[2] / "fleet.toml"


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return parse(EXAMPLE.read_text())


@pytest.mark.parametrize(("branch", "slug"), [
    ("main", "main"),
    ("feature/Login-Page", "feature-login-page"),
    ("Fix: #123 -- über", "fix-123-ber"),
    ("-leading/and/trailing-", "leading-and-trailing"),
])
def test_slugs_as_gitlab_makes_them(branch: str, slug: str) -> None:
    assert ephemeral.slug(branch) == slug


def test_long_branches_are_cut_and_keep_apart() -> None:
    a, b = ephemeral.slug("x" * 40 + "a"), ephemeral.slug("x" * 40 + "b")
    assert len(a) <= ephemeral.SLUG_MAX and len(b) <= ephemeral.SLUG_MAX
    assert a != b, "two long branches must not share an environment"
    assert ephemeral.review_name("feature/x") == "review-feature-x"


def test_a_branch_without_letters_or_digits_is_refused() -> None:
    with pytest.raises(ConfigError, match="no letter or digit"):
        ephemeral.slug("///")


@pytest.mark.parametrize(("name", "why"), [
    ("staging", "fixed environment"),
    ("verify", "kept for the nodes"),
    ("Bad_Name", "not a valid environment name"),
    ("a" * 31, "not a valid environment name"),
    ("trailing-", "not a valid environment name"),
])
def test_names_an_ephemeral_environment_may_not_take(fleet: Fleet, name: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        ephemeral.check_name(fleet, name)


def test_ttls(fleet: Fleet) -> None:
    assert ephemeral.ttl(fleet, None) == 8 * 3600, "the template's"
    assert ephemeral.ttl(fleet, "90m") == 5400
    assert ephemeral.ttl(fleet, "2d") == 2 * 86400 and ephemeral.ttl(fleet, "1d12h") == 36 * 3600
    for bad, why in (("soon", "not a duration"), ("0s", "not a duration"), ("d", "not a duration"),
                     ("169h", "exceeds"), ("8d", "exceeds")):
        with pytest.raises(ConfigError, match=why):
            ephemeral.ttl(fleet, bad)


def test_expiry_pins_and_deploys() -> None:
    record = Record("review-x", "staging", 1000.0, "me@here", 3600, 4600.0)
    assert not record.expired(4599) and record.expired(4600)
    assert ephemeral.expires_in(record, 1000) == "1h00m"
    assert ephemeral.expires_in(record, 4000) == "10m00s"
    assert ephemeral.expires_in(record, 5000) == "expired"
    pinned = Record("review-x", "staging", 1000.0, "me@here", 3600, 4600.0, pinned=True)
    assert not pinned.expired(10**9) and ephemeral.expires_in(pinned, 10**9) == "pinned"
    assert record.deployed(5000).expires == 8600, "a deploy resets the expiry to now + ttl"
    assert record.extended(5000, 60).expires == 5060
    assert Record.from_json(record.to_json()) == record


def test_the_fleet_an_ephemeral_environment_joins(fleet: Fleet) -> None:
    record = Record("review-x", "staging", 0.0, "me", 3600, 3600.0)
    joined = ephemeral.joined(fleet, [record])
    env = joined.environment("review-x")
    assert env.ephemeral and env.soak_seconds == 0 and not env.manual_approval
    assert [e.name for e in joined.chain] == ["canary", "staging", "production"], \
        "never in the promotion chain"
    assert joined.previous(env) is None
    assert joined.roles["web"].count["review-x"] == 1, "one node per cattle role by default"
    assert joined.roles["sidekiq"].count["review-x"] == 1
    assert joined.roles["postgres"].instances["review-x"] == ("postgres-review-x",)
    assert joined.roles["bastion"].instances["review-x"] == (), "snowflakes never come along"
    assert gate(joined, "review-x", "web", "v9", None, False, None) == [], "nothing gates it"
    assert fleet.environment("staging") == joined.environment("staging")
    assert ephemeral.joined(fleet, []) is fleet
