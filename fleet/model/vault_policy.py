"""What fleet's own token may do in Vault: the `fleet-operator` policy. Pure: `fleet lab up`
writes it with the root token and mints fleet's operator token under it.

Three kinds of Vault token in the lab, as for Consul (fleet/model/acl.py):
- the root token (.fleet/lab/openbao-init.json, 0600): only `fleet lab up` uses it, to mount
  the fleet's kv-v2 engine, enable AppRole, write this policy and mint the operator token; no
  fleet command reads it (tests may, to tidy up as an administrator would);
- fleet's operator token (.fleet/lab/openbao-operator.json, 0600): what every command uses
  unless VAULT_TOKEN names another. An orphan, periodic token (renewable without end as long
  as `lab up` renews it within TOKEN_PERIOD; re-minted if it lapsed) under this policy and
  Vault's `default` (look itself up, renew itself, unwrap);
- each node's AppRole token, under its role's policy alone (fleet/model/secrets.py).

The operator may do exactly what `fleet secrets sync | check | put | rotate | deliver | scan`,
the bake's and the plan's secrets checks need:
- read and write secrets in a kv-v2 engine, under whichever mount a fleet names (`+`: every
  fleet on the lab brings its own `secrets_mount`), and list them (the scans walk them);
- list the mounted engines and mount a kv engine where a fleet names one not mounted yet
  (`secrets sync`), never another type, never unmount, tune or remount one;
- list auth methods (to see AppRole is on; enabling one is the administrator's);
- write and read role policies, but not its own nor `default`;
- write AppRoles, read their RoleIDs, issue (response-wrapped) and destroy SecretIDs.
It cannot delete a policy, an AppRole or a secret, mint tokens, nor touch audit devices,
seal, raft or `sys/raw`. Writing policies and AppRoles is still powerful (a policy may grant
anything), as Consul's `acl = "write"` is: a production fleet would run `secrets sync` from a
separate, more guarded pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

OPERATOR_POLICY = "fleet-operator"
TOKEN_PERIOD = "168h"   # renewed by every `lab up`; a lab unused for a week gets a new token
TOKEN_RENEWAL = 7 * 24 * 3600
RESERVED = (OPERATOR_POLICY, "default")  # policies the operator may read but never write


def operator_policy(approle_mount: str) -> str:
    """The HCL of the fleet-operator policy (comments say which command needs each path)."""
    role = f"auth/{approle_mount}/role"
    reserved = "\n\n".join(
        f'path "sys/policies/acl/{name}" {{\n  capabilities = ["read"]\n}}' for name in RESERVED)
    return f"""\
# {OPERATOR_POLICY}: what fleet's commands do in Vault (fleet/model/vault_policy.py)

# secrets put (a patch: read, then a check-and-set write), check, scan, the bake's scan
path "+/data/*" {{
  capabilities = ["create", "read", "update"]
}}

# the scans walk every secret of the mount; fleet env destroy deletes an ephemeral
# environment's secrets, every version
path "+/metadata/*" {{
  capabilities = ["list", "delete"]
}}

# secrets sync: which engines are mounted; a kv engine where a fleet names a new one
path "sys/mounts" {{
  capabilities = ["read"]
}}

path "sys/mounts/+" {{
  capabilities = ["create", "update"]
  allowed_parameters = {{
    "type" = ["kv"]
    "*"    = []
  }}
}}

# secrets sync: AppRole is on (the administrator enables it: `fleet lab up`)
path "sys/auth" {{
  capabilities = ["read"]
}}

# secrets sync: each role's policy per environment
path "sys/policies/acl" {{
  capabilities = ["list"]
}}

# fleet env destroy: an ephemeral environment's policies and AppRoles go with it
path "sys/policies/acl/*" {{
  capabilities = ["create", "read", "update", "delete"]
}}

{reserved}

# secrets sync (AppRoles), deliver (RoleID, a wrapped SecretID), rotate (a new RoleID, every
# outstanding SecretID destroyed)
path "{role}" {{
  capabilities = ["list"]
}}

path "{role}/*" {{
  capabilities = ["create", "read", "update", "list", "delete"]
}}
"""


# ---- reading a policy back: what it grants a request -----------------------------------

_RULE = re.compile(r'^path\s+"([^"]+)"\s*\{(.*?)^\}', re.MULTILINE | re.DOTALL)
_CAPABILITIES = re.compile(r'capabilities\s*=\s*\[([^\]]*)\]')


def rules(policy: str) -> dict[str, frozenset[str]]:
    """Each path pattern of an HCL policy and its capabilities."""
    found = {}
    for pattern, body in _RULE.findall(policy):
        listed = _CAPABILITIES.search(body)
        caps = listed.group(1).split(",") if listed else []
        found[pattern] = frozenset(c.strip().strip('"') for c in caps if c.strip())
    return found


def _matches(pattern: str, path: str) -> bool:
    """Vault's path globbing: `+` is one whole segment, a trailing `*` any rest."""
    glob = pattern.endswith("*")
    parts = [("[^/]+" if part == "+" else re.escape(part))
             for part in (pattern[:-1] if glob else pattern).split("/")]
    return re.fullmatch("/".join(parts) + (".*" if glob else ""), path) is not None


def _priority(pattern: str) -> tuple[int, int, int]:
    """Vault's precedence among matching patterns, as far as these policies need it: an exact
    path first, then the longer literal start, then fewer `+`."""
    literal = re.split(r"[+*]", pattern, maxsplit=1)[0]
    return ("*" not in pattern and "+" not in pattern, len(literal), -pattern.count("+"))


def capabilities(policy: str, path: str) -> frozenset[str]:
    """What the policy lets a token do at path (the most specific matching rule decides)."""
    found = [p for p in rules(policy) if _matches(p, path)]
    if not found:
        return frozenset()
    best = max(found, key=_priority)
    caps = rules(policy)[best]
    return frozenset() if "deny" in caps else caps


def allows(policy: str, path: str, capability: str) -> bool:
    return capability in capabilities(policy, path)


def denied(policy: str, requests: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (path, capability) requests the policy refuses."""
    return [(path, cap) for path, cap in requests if not allows(policy, path, cap)]
