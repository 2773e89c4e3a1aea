"""The Consul ACL policies fleet writes (fleet/model/acl.py): least privilege for nodes."""

from __future__ import annotations

from fleet.model import acl


def test_a_node_may_register_itself_and_its_services_and_read_what_it_watches() -> None:
    rules = acl.node_rules("gitlab-web-canary-v1-0", ["web"], ["gitaly", "postgres"])
    assert rules == {
        "node": {"gitlab-web-canary-v1-0": {"policy": "write"}},
        "agent": {"gitlab-web-canary-v1-0": {"policy": "write"}},
        "node_prefix": {"": {"policy": "read"}},
        "service": {"gitaly": {"policy": "read"}, "postgres": {"policy": "read"},
                    "web": {"policy": "write"}},
    }
    # no KV, no sessions, no ACL rights, nothing by prefix but reading nodes
    assert not {"key", "key_prefix", "session", "session_prefix", "acl", "service_prefix",
                "operator"} & set(rules)


def test_a_role_that_watches_itself_still_writes_its_own_service() -> None:
    rules = acl.node_rules("n", ["gitaly"], ["gitaly"])
    assert rules["service"] == {"gitaly": {"policy": "write"}}


def test_a_node_without_services_gets_no_service_rule() -> None:
    assert "service" not in acl.node_rules("n", [], [])


def test_the_operator_writes_only_the_fleets_kv() -> None:
    rules = acl.operator_rules()
    assert rules["key_prefix"] == {"fleet/": {"policy": "write"}}
    assert rules["acl"] == "write"
    assert "key" not in rules and "" not in rules["key_prefix"]


def test_the_operator_may_force_a_destroyed_node_out_of_consul() -> None:
    rules = acl.operator_rules()
    assert rules["operator"] == "write"  # consul force-leave (-prune)
    assert rules["node_prefix"] == {"": {"policy": "write"}}  # /v1/catalog/deregister
    # but no service writes: registering services stays with each node's own token
    assert rules["service_prefix"] == {"": {"policy": "read"}}


def test_node_tokens_are_told_apart_by_their_description() -> None:
    assert acl.node_of(acl.node_description("gitlab-web-canary-v1-0")) == "gitlab-web-canary-v1-0"
    assert acl.node_of("fleet operator (lab)") is None
    assert acl.policy_node(acl.node_policy("n1")) == "n1"
    assert acl.policy_node(acl.OPERATOR_POLICY) is None


def test_a_token_goes_only_once_its_node_is_gone_and_not_while_it_drains() -> None:
    containers = ["a", "b.draining", "other"]
    assert acl.gone({"a", "b", "c"}, containers) == {"c"}
    assert acl.gone(set(), containers) == set()
