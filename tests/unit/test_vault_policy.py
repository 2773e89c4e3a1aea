"""The fleet-operator Vault policy (fleet/model/vault_policy.py): exactly what fleet's commands
need. The integration test (tests/integration/test_vault_operator.py) holds it against the
real OpenBao; these read it as Vault would, request by request."""

from __future__ import annotations

import pytest

from fleet.model import vault_policy

POLICY = vault_policy.operator_policy("approle")
ROLE = "auth/approle/role/gitlab-web-canary"

# (path, capability) of every request fleet's commands make with the operator token
NEEDED = [
    ("fleet/metadata/web/review-x", "delete"),       # env destroy: its secrets, every version
    ("sys/policies/acl/gitlab-web-review-x", "delete"),  # its policies
    ("auth/approle/role/gitlab-web-review-x", "delete"),  # its AppRoles
    ("fleet/data/web/canary", "read"),               # check, scan, put's patch (read first)
    ("fleet/data/web/canary", "create"),             # put: the first version
    ("fleet/data/web/canary", "update"),             # put: a check-and-set write
    ("fleet/metadata/", "list"),                     # the scans walk the mount
    ("fleet/metadata/web/", "list"),
    ("t1234/data/web/canary", "read"),               # another fleet's own mount
    ("sys/mounts", "read"),                          # sync: ensure_kv
    ("sys/mounts/t1234", "create"),                  # sync: a fleet's new kv mount
    ("sys/mounts/t1234", "update"),
    ("sys/auth", "read"),                            # sync: ensure_auth sees AppRole
    ("sys/policies/acl", "list"),                    # sync
    ("sys/policies/acl/gitlab-web-canary", "read"),
    ("sys/policies/acl/gitlab-web-canary", "create"),
    ("sys/policies/acl/gitlab-web-canary", "update"),
    ("sys/policies/acl/fleet-operator", "read"),     # listing by prefix "fleet-" reads it
    ("auth/approle/role", "list"),                   # sync, check, deliver, rotate
    (ROLE, "read"),
    (ROLE, "create"),
    (ROLE, "update"),
    (f"{ROLE}/role-id", "read"),                     # deliver
    (f"{ROLE}/role-id", "update"),                   # rotate: a new RoleID
    (f"{ROLE}/secret-id", "update"),                 # deliver: a wrapped SecretID
    (f"{ROLE}/secret-id", "list"),                   # rotate: the outstanding SecretIDs
    (f"{ROLE}/secret-id-accessor/destroy", "update"),
]

# what an administrator does, and fleet's commands never
ADMIN = [
    ("sys/mounts/fleet", "delete"),                  # unmount: every secret gone
    ("sys/mounts/fleet/tune", "update"),
    ("sys/remount", "update"),
    ("sys/auth/approle", "update"),                  # enable an auth method
    ("sys/auth/approle", "delete"),
    ("sys/audit", "read"),
    ("sys/audit/file", "update"),
    ("sys/audit/file", "delete"),
    ("sys/policies/acl/fleet-operator", "update"),   # widen its own policy
    ("sys/policies/acl/default", "update"),          # or every token's
    ("sys/policies/acl/fleet-operator", "delete"),
    ("sys/policies/acl/default", "delete"),
    ("auth/token/create", "update"),                 # mint tokens
    ("auth/token/create-orphan", "update"),
    ("auth/token/revoke-accessor", "update"),
    ("fleet/data/web/canary", "delete"),
    ("fleet/destroy/web/canary", "update"),
    ("sys/seal", "update"),
    ("sys/raw/core", "read"),
    ("sys/storage/raft/snapshot", "read"),
    ("sys/rotate", "update"),
]


@pytest.mark.parametrize(("path", "capability"), NEEDED)
def test_the_operator_may_do_what_fleets_commands_do(path: str, capability: str) -> None:
    assert vault_policy.allows(POLICY, path, capability), f"{capability} {path} denied"


@pytest.mark.parametrize(("path", "capability"), ADMIN)
def test_the_operator_may_not_do_what_an_administrator_does(path: str, capability: str) -> None:
    assert not vault_policy.allows(POLICY, path, capability), f"{capability} {path} allowed"


# fleet env destroy removes an ephemeral environment's secrets (every version), its policies
# and its AppRoles: the only deletes the operator has
DELETES = {"+/metadata/*", "sys/policies/acl/*", "auth/approle/role/*"}


def test_it_never_says_sudo_or_deny_and_mounts_only_kv() -> None:
    rules = vault_policy.rules(POLICY)
    assert not any({"sudo", "deny"} & caps for caps in rules.values())
    assert {path for path, caps in rules.items() if "delete" in caps} == DELETES
    mounts = POLICY.split('path "sys/mounts/+"')[1].split("\n}\n")[0]
    assert '"type" = ["kv"]' in mounts, "a new mount may only be a kv engine"


def test_its_own_policy_and_default_are_read_only() -> None:
    for name in vault_policy.RESERVED:
        assert vault_policy.capabilities(POLICY, f"sys/policies/acl/{name}") == {"read"}


def test_the_approle_mount_is_the_one_named() -> None:
    other = vault_policy.operator_policy("nodes")
    assert vault_policy.allows(other, "auth/nodes/role/x/secret-id", "update")
    assert not vault_policy.allows(other, "auth/approle/role/x/secret-id", "update")


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("+/data/*", "fleet/data/web/canary", True),
    ("+/data/*", "fleet/data/", True),
    ("+/data/*", "a/b/data/x", False),           # + is one segment
    ("sys/mounts/+", "sys/mounts/t1", True),
    ("sys/mounts/+", "sys/mounts/t1/tune", False),
    ("sys/mounts", "sys/mounts/t1", False),      # an exact path is only itself
])
def test_vaults_globbing(pattern: str, path: str, matches: bool) -> None:
    policy = f'path "{pattern}" {{\n  capabilities = ["read"]\n}}\n'
    assert vault_policy.allows(policy, path, "read") is matches
