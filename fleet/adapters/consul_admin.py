"""Consul's membership and ACL calls, through py-consul (a mixin of adapters/consul.Consul):
what the lab's administration, the cattle's drain and lab status ask, never a read command.

Each call goes to the server in use and, with several servers, moves to the next when its
server is gone (connection refused), or also when it went away mid-call for a call that may
be repeated (resend=True: listings, force-leave, deregistration, which are idempotent).
Creating a policy or a token is not repeated after a server vanished mid-call: it may have
been made, and a second would fail or duplicate it.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fleet.errors import FleetError
from fleet.model.secret import Secret

MEMBER_CHECK = "serfHealth"  # the check of a cluster member (see adapters/consul.py)


class TokenState(StrEnum):
    KNOWN = "known"
    UNKNOWN = "unknown"
    ACL_DISABLED = "acl disabled"


@dataclass(frozen=True)
class Token:
    """An ACL token as a listing shows it: never its SecretID."""

    accessor: str
    description: str


class Admin:
    """Membership and ACLs; Consul provides _call (py-consul, failover) and the token."""

    _token: str | None

    def _call(self, what: str, fn: Callable[[Any], Any], *, resend: bool = False) -> Any:
        raise NotImplementedError

    def _headers(self) -> dict[str, str] | None:
        # py-consul's agent and catalog calls send no token, which default deny refuses
        return {"X-Consul-Token": self._token} if self._token else None

    def members(self) -> dict[str, int]:
        """Every LAN member the server knows: node name -> serf status (1 alive, 2 leaving,
        3 left, 4 failed), from /v1/agent/members."""
        from consul.callback import CB

        listed = self._call("agent/members", lambda c: c.http.get(
            CB.json(), "/v1/agent/members", headers=self._headers()), resend=True)
        return {str(m["Name"]): int(m["Status"]) for m in listed}

    def version(self) -> str:
        from consul.callback import CB

        self_info = self._call("agent/self", lambda c: c.http.get(
            CB.json(), "/v1/agent/self", headers=self._headers()), resend=True)
        return str(self_info["Config"]["Version"])

    def mark_member(self, node: str, address: str) -> None:
        """What Consul's leader does when a member joins: the node's MEMBER_CHECK, passing, in
        the catalog (the node's own entry left as its agent wrote it)."""
        from consul.callback import CB

        body = {"Node": node, "Address": address, "SkipNodeUpdate": True,
                "Check": {"Node": node, "CheckID": MEMBER_CHECK, "Name": "Serf Health Status",
                          "Status": "passing", "Output": "Agent alive and reachable"}}
        self._call(f"mark {node} a member", lambda c: c.http.put(
            CB.boolean(), "/v1/catalog/register", data=json.dumps(body),
            headers=self._headers()), resend=True)

    def forget(self, node: str) -> None:
        """A node whose container is gone, out of Consul, as the cattle drain does it
        (terraform/lab/cattle): one Consul calls failed or left is force-left and pruned from
        the member list; one it still calls alive is only force-left (marked leaving, so that
        it is called left, never failed, once found gone, and the leader does not register
        it again: pruning a live member makes every agent hold its member list). Then it is
        deregistered from the catalog, with what its agent's last sync may have put back."""
        status = self.members().get(node)
        if status is not None:
            self._call(f"force {node} out", lambda c: c.agent.force_leave(
                node, prune=status in (3, 4)), resend=True)
        self.deregister(node)

    def deregister(self, node: str) -> None:
        """The node out of the catalog, with its services and checks. Not py-consul's
        catalog.deregister: it sends its token as a `WriteRequest` field of the body too,
        which Consul 1.8 refuses (400 "unknown field"); the header alone is the API's way."""
        from consul.callback import CB

        self._call(f"deregister {node}", lambda c: c.http.put(
            CB.boolean(), "/v1/catalog/deregister", data=json.dumps({"Node": node}),
            headers=self._headers()), resend=True)

    # ---- ACLs (the lab runs default deny) --------------------------------------------------

    def _token_state(self) -> TokenState:
        import consul

        try:
            self._call("acl/token/self", lambda c: c.acl.token.read_self(), resend=True)
        except FleetError as exc:
            if isinstance(exc.__cause__, consul.ACLDisabled):
                return TokenState.ACL_DISABLED
            if isinstance(exc.__cause__, consul.ACLPermissionDenied):
                return TokenState.UNKNOWN  # 'ACL not found'
            raise
        return TokenState.KNOWN

    def acl_enabled(self) -> bool:
        """Whether the server enforces ACLs (asked as this client's token, known or not)."""
        return self._token_state() is not TokenState.ACL_DISABLED

    def token_known(self) -> bool:
        """Whether the server knows this client's token."""
        return self._token_state() is TokenState.KNOWN

    def policies(self) -> dict[str, str]:
        """Every ACL policy: name -> ID."""
        items = self._call("list ACL policies", lambda c: c.acl.policy.list(), resend=True)
        return {str(i["Name"]): str(i["ID"]) for i in items}

    def put_policy(self, name: str, rules: Mapping[str, Any], description: str,
                   known: Mapping[str, str] | None = None) -> None:
        """Create the policy, or replace its rules (Consul's rule language in its JSON form).
        known: the policies (name -> ID) the caller has just listed, saving a listing."""
        existing = (self.policies() if known is None else known).get(name)
        if existing is None:
            self._call(f"create ACL policy {name}", lambda c: c.acl.policy.create(
                name, rules=dict(rules), description=description))
        else:
            self._call(f"update ACL policy {name}", lambda c: c.acl.policy.update(
                existing, name, rules=dict(rules), description=description), resend=True)

    def delete_policy(self, policy_id: str) -> None:
        self._call("delete an ACL policy", lambda c: c.acl.policy.delete(policy_id), resend=True)

    def create_token(self, description: str, policies: builtins.list[str],
                     secret: Secret | None = None) -> Secret:
        """A token bound to these policies (by name); its SecretID chosen by Consul unless
        given (a lab token fleet keeps in a file)."""
        item = self._call("create an ACL token", lambda c: c.acl.token.create(
            description=description, policies_name=policies,
            secret_id=secret.reveal() if secret else None))
        return Secret(str(item["SecretID"]))

    def tokens(self) -> builtins.list[Token]:
        items = self._call("list ACL tokens", lambda c: c.acl.token.list(), resend=True)
        return [Token(str(i["AccessorID"]), str(i["Description"])) for i in items]

    def token_secret(self, accessor: str) -> Secret:
        """A token's SecretID (acl = "write" reads it)."""
        item = self._call("read an ACL token", lambda c: c.acl.token.read(accessor), resend=True)
        return Secret(str(item["SecretID"]))

    def delete_token(self, accessor: str) -> None:
        self._call("delete an ACL token", lambda c: c.acl.token.delete(accessor), resend=True)
