"""The per-role Vault policies, the AppRoles' settings, what a sync changes, what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.errors import ConfigError
from fleet.model import secrets as model
from fleet.model.definition import parse
from fleet.model.nodes import upstream_services, with_watches

ROOT = Path(__file__).resolve().parents[2]
FLEET = parse((ROOT / "fleet.toml").read_text(), "fleet.toml")
TEMPLATES = {p.stem: p.read_text() for p in (ROOT / "secrets-policy").glob("*.hcl")}


def test_the_example_policies_are_least_privilege() -> None:
    want = model.desired(FLEET, TEMPLATES)
    assert {(a.role, a.env) for a in want} == {
        (r, e) for r in ("web", "api", "sidekiq", "postgres")
        for e in ("canary", "staging", "production")}
    web = next(a for a in want if (a.role, a.env) == ("web", "staging"))
    assert web.name == "gitlab-web-staging"
    assert model.grants(web.policy) == [("fleet/data/web/staging", ("read",))]
    assert web.approle["token_policies"] == "gitlab-web-staging"
    assert web.approle["secret_id_num_uses"] == "1"


@pytest.mark.parametrize(("policy", "problem"), [
    ('path "fleet/data/api/canary" { capabilities = ["read"] }', "is not fleet/data/web/canary"),
    ('path "fleet/data/web/canary" { capabilities = ["read", "update"] }', "grants update"),
    ('path "fleet/data/web/*" { capabilities = ["read"] }', "is not"),
    ('path "fleet/data/web/canary" { capabilities = ["read"] }\n'
     'path "sys/*" { capabilities = ["sudo"] }', 'path "sys/*"'),
    ("# nothing", "grants no path"),
])
def test_excess_names_what_a_policy_grants_too_much(policy: str, problem: str) -> None:
    assert any(problem in p for p in model.excess(policy, "fleet", "web", "canary"))


def test_a_greedy_or_missing_template_is_refused_before_anything_is_written() -> None:
    greedy = {**TEMPLATES, "web": TEMPLATES["web"] + 'path "{{mount}}/data/*" {\n'
              '  capabilities = ["read"]\n}\n'}
    with pytest.raises(ConfigError, match=r"web\.hcl"):
        model.desired(FLEET, greedy)
    without = {k: v for k, v in TEMPLATES.items() if k != "api"}
    with pytest.raises(ConfigError, match=r"api\.hcl is missing"):
        model.desired(FLEET, without)
    with pytest.raises(ConfigError, match=r"nobody\.hcl names no role"):
        model.desired(FLEET, {**TEMPLATES, "nobody": TEMPLATES["web"]})


def test_diff_creates_updates_and_leaves_alone() -> None:
    want = [a for a in model.desired(FLEET, TEMPLATES) if a.role == "web"]
    fresh = model.diff(want, {}, {})
    assert {c.action for c in fresh} == {model.Action.CREATE}
    policies = {a.name: a.policy for a in want}
    approles = {a.name: {**a.approle, "bind_secret_id": "True"} for a in want}
    assert {c.action for c in model.diff(want, policies, approles)} == {model.Action.UNCHANGED}
    policies["gitlab-web-canary"] = 'path "x" {}'
    approles["gitlab-web-staging"] = {**approles["gitlab-web-staging"], "secret_id_num_uses": "0"}
    changed = {(c.kind, c.name) for c in model.diff(want, policies, approles)
               if c.action is model.Action.UPDATE}
    assert changed == {("policy", "gitlab-web-canary"), ("approle", "gitlab-web-staging")}


def test_missing_counts_only_environments_a_role_runs_in() -> None:
    stored = {("web", "canary"): ["db_password"]}
    missing = {str(m) for m in model.missing(FLEET, stored)}
    assert "web/canary: secret_key_base" in missing
    assert "web/canary: db_password" not in missing
    assert not any(m.startswith("sidekiq/canary") for m in missing)  # count 0 there
    assert not any(m.startswith("postgres/canary") for m in missing)  # no instance there
    assert "postgres/staging: db_password" in missing


def test_watches_follow_depends_on() -> None:
    web = FLEET.roles["web"]
    assert upstream_services(FLEET, web) == ["gitaly", "postgres", "redis"]
    config = with_watches('{"services": []}', "gitlab", {"gitaly": "staging"})
    assert '"args": ["/usr/local/sbin/fleet-node", "upstreams", "gitaly", "gitlab", "staging"' \
        in config
    assert with_watches('{"services": []}', "gitlab", {}) == '{"services": []}'
