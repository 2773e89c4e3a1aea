"""Consul through py-consul: KV with check-and-set, sessions, health and ACL policies and tokens.
Its dicts stop here. Reads (KV, health, the leader) go over the standard library's HTTP
(adapters/http.Http): a read command then never imports py-consul and requests, ~75 ms of
its start; py-consul is made on the first write, session, watch or ACL call."""

from __future__ import annotations

import base64
import builtins
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlencode, urlparse

from fleet.adapters.http import Http, answering
from fleet.errors import Denied, FleetError
from fleet.model.secret import Secret


@dataclass(frozen=True)
class Entry:
    """One KV entry: its value and the ModifyIndex a check-and-set write must name."""

    key: str
    value: bytes
    modify_index: int
    session: str = ""   # the session holding the key as a lock ('' when none does)


@dataclass(frozen=True)
class Instance:
    """One registered instance of a service, as the health endpoint reports it."""

    node: str
    address: str
    service: str
    meta: dict[str, str]
    passing: bool      # every check of the instance and its node passes
    weight: int        # Weights.Passing


class Health(StrEnum):
    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"
    MAINTENANCE = "maintenance"


# The leader gives every member of the cluster this check, and takes it away with the node when
# the node leaves. A node's agent can still sync its services in its last moment, after the
# leader deregistered it: the catalog then holds them, passing, without this check, until the
# leader's next reconcile (up to a minute). Such a node is not counted as registered.
MEMBER_CHECK = "serfHealth"
TXN_OPS = 64  # operations in one transaction, Consul's limit


@dataclass(frozen=True)
class TaggedNodes:
    """What one read of the health checks says of a fleet's nodes (Consul.nodes_by_tags)."""

    by_tags: dict[tuple[str, ...], set[str]]  # a service's tag list -> nodes with its check
    members: dict[str, bool]                  # node -> its MEMBER_CHECK passes (a failed
                                              # member: False); a node without one is absent


class TokenState(StrEnum):
    KNOWN = "known"
    UNKNOWN = "unknown"
    ACL_DISABLED = "acl disabled"


@dataclass(frozen=True)
class Token:
    """An ACL token as a listing shows it: never its SecretID."""

    accessor: str
    description: str


@dataclass(frozen=True)
class NodeCheck:
    """One health check on one node: the node's own (serfHealth) or one of its services'."""

    check_id: str
    name: str
    service: str       # '' for a check of the node itself
    status: Health
    output: str


class Consul:
    """A Consul HTTP API client scoped to one address and token."""

    def __init__(self, address: str | Sequence[str], token: str | None = None,
                 timeout: float = 5.0) -> None:
        address = address if isinstance(address, str) else address[0]
        url = urlparse(address)
        if not url.hostname or not url.port:
            raise FleetError(f"Consul address {address!r} has no host:port",
                             "set fleet.consul or CONSUL_HTTP_ADDR to http://HOST:PORT")
        self.address = address
        self._url, self._token, self._timeout = url, token, timeout
        self._http = Http(address, timeout, {"X-Consul-Token": token} if token else {})

    @cached_property
    def _client(self) -> Any:
        import consul  # lazy: only writes, sessions, watches and ACLs need py-consul

        return consul.Consul(host=self._url.hostname, port=self._url.port, token=self._token,
                             scheme=self._url.scheme or "http", connections_timeout=self._timeout)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import consul  # already imported: fn is one of self._client's
        try:
            with answering("Consul", self.address, what, "CONSUL_HTTP_ADDR"):
                return fn(*args, **kwargs)
        except consul.ACLPermissionDenied as exc:
            raise _denied(what, exc) from exc
        except consul.ConsulException as exc:
            raise FleetError(f"Consul refused {what}: {exc}") from exc

    def _read(self, what: str, path: str, query: Mapping[str, str] | None = None,
              body: Any = None) -> Any:
        """A read over http.client (body: a read-only transaction's): its JSON, None on 404."""
        url = quote(path, safe="/:") + (f"?{urlencode(query)}" if query else "")
        with answering("Consul", self.address, what, "CONSUL_HTTP_ADDR"):
            status, data = self._http.request("GET" if body is None else "PUT", url,
                                              None if body is None else json.dumps(body).encode())
        if status in (200, 404):
            return json.loads(data) if status == 200 else None
        said = f"{status} {data.decode(errors='replace').strip()}"
        raise _denied(what, said) if status == 403 else FleetError(f"Consul refused {what}: {said}")

    def leader(self) -> str:
        """The raft leader's address, '' while there is none."""
        return str(self._read("status/leader", "/v1/status/leader") or "")

    def members(self) -> dict[str, int]:
        """Every LAN member the agent knows: node name -> serf status (1 alive, 2 leaving,
        3 left, 4 failed), from /v1/agent/members."""
        from consul.callback import CB

        # py-consul's agent.members() sends no token: ask with the client's own
        headers = {"X-Consul-Token": self._client.token} if self._client.token else None
        listed = self._call("agent/members", self._client.http.get, CB.json(),
                            "/v1/agent/members", headers=headers)
        return {str(m["Name"]): int(m["Status"]) for m in listed}

    def version(self) -> str:
        from consul.callback import CB

        # py-consul's agent.self() sends no token, which default deny refuses: the same
        # request through its HTTP client, with the token
        self_info = self._call("agent/self", self._client.http.get, CB.json(), "/v1/agent/self",
                               headers=self._client.prepare_headers())
        return str(self_info["Config"]["Version"])

    def get(self, key: str) -> Entry | None:
        items = self._read(f"read {key}", f"/v1/kv/{key}")
        return _entry(items[0]) if items else None

    def list(self, prefix: str) -> list[Entry]:
        """Every entry under prefix, in one request."""
        items = self._read(f"list {prefix}", f"/v1/kv/{prefix}", {"recurse": "true"})
        return [_entry(i) for i in items or []]

    def keys(self, prefix: str) -> builtins.list[str]:
        """Every key under prefix, without values, in one request."""
        keys = self._read(f"list keys of {prefix}", f"/v1/kv/{prefix}", {"keys": "true"})
        return [str(k) for k in keys or []]

    def get_many(self, keys: builtins.list[str]) -> builtins.list[Entry]:
        """These keys' entries, TXN_OPS a request (one transaction each). A key gone meanwhile
        is left out: each is read with get-tree, which (unlike get) fails no transaction."""
        wanted, found = set(keys), []
        for start in range(0, len(keys), TXN_OPS):
            ops = [{"KV": {"Verb": "get-tree", "Key": k}} for k in keys[start:start + TXN_OPS]]
            # with the token: without one, Consul leaves out, silently, every entry the
            # anonymous token may not read
            answer = self._read(f"read {len(ops)} keys", "/v1/txn", body=ops)
            for result in answer["Results"] or []:
                kv = result["KV"]
                if kv["Key"] in wanted:  # get-tree also returns longer keys the key prefixes
                    found.append(Entry(kv["Key"], base64.b64decode(kv["Value"] or ""),
                                       int(kv["ModifyIndex"])))
        return found

    def instances(self, service: str, tag: str) -> builtins.list[Instance]:
        """Every instance of a service carrying tag, with its health, in one request. Only
        on nodes that are members of the cluster (see MEMBER_CHECK)."""
        items = [i for i in self._health(service, tag)
                 if any(c["CheckID"] == MEMBER_CHECK for c in i["Checks"])]
        return [Instance(
            node=i["Node"]["Node"],
            address=i["Service"]["Address"] or i["Node"]["Address"],
            service=i["Service"]["Service"],
            meta=dict(i["Service"]["Meta"] or {}),
            passing=all(c["Status"] == "passing" for c in i["Checks"]),
            weight=int(i["Service"]["Weights"]["Passing"]),
        ) for i in items]

    def unmarked(self, service: str, tag: str) -> builtins.list[tuple[str, str, dict[str, str]]]:
        """(node, address, service meta) of the instances carrying tag whose node has no
        MEMBER_CHECK: registered by their agent, but not (yet, or no longer) a member to
        Consul's leader."""
        items = self._health(service, tag)
        return [(i["Node"]["Node"], i["Node"]["Address"], dict(i["Service"]["Meta"] or {}))
                for i in items if not any(c["CheckID"] == MEMBER_CHECK for c in i["Checks"])]

    def _health(self, service: str, tag: str) -> builtins.list[dict[str, Any]]:
        return self._read(f"health of {service}", f"/v1/health/service/{service}", {"tag": tag}) or []

    def mark_member(self, node: str, address: str) -> None:
        """What Consul's leader does when a member joins: the node's MEMBER_CHECK, passing, in
        the catalog (the node's own entry left as its agent wrote it)."""
        from consul.callback import CB

        body = {"Node": node, "Address": address, "SkipNodeUpdate": True,
                "Check": {"Node": node, "CheckID": MEMBER_CHECK, "Name": "Serf Health Status",
                          "Status": "passing", "Output": "Agent alive and reachable"}}
        headers = {"X-Consul-Token": self._client.token} if self._client.token else None
        self._call(f"mark {node} a member", self._client.http.put, CB.boolean(),
                   "/v1/catalog/register", data=json.dumps(body), headers=headers)

    def forget(self, node: str) -> None:
        """A node whose container is gone, out of Consul, as the cattle drain does it
        (terraform/lab/cattle): one Consul calls failed or left is force-left and pruned from
        the member list; one it still calls alive is only force-left (marked leaving, so that
        it is called left, never failed, once found gone, and the leader does not register
        it again: pruning a live member makes every agent hold its member list). Then it is
        deregistered from the catalog, with what its agent's last sync may have put back."""
        status = self.members().get(node)
        if status is not None:
            self._call(f"force {node} out", self._client.agent.force_leave, node,
                       prune=status in (3, 4))
        self.deregister(node)

    def deregister(self, node: str) -> None:
        """The node out of the catalog, with its services and checks. Not py-consul's
        catalog.deregister: it sends its token as a `WriteRequest` field of the body too,
        which Consul 1.8 refuses (400 "unknown field"); the header alone is the API's way."""
        from consul.callback import CB

        headers = {"X-Consul-Token": self._client.token} if self._client.token else None
        self._call(f"deregister {node}", self._client.http.put, CB.boolean(),
                   "/v1/catalog/deregister", data=json.dumps({"Node": node}), headers=headers)

    def node_checks(self, node: str) -> builtins.list[NodeCheck]:
        """Every check on a node; [] while the node is not a member of the cluster (it has not
        joined, or it has left: see MEMBER_CHECK)."""
        items = self._read(f"health of node {node}", f"/v1/health/node/{node}") or []
        if not any(i["CheckID"] == MEMBER_CHECK for i in items):
            return []
        return [NodeCheck(i["CheckID"], i["Name"], i["ServiceName"], Health(i["Status"]),
                          i["Output"]) for i in items]

    def put(self, key: str, value: bytes | str, *, cas: int) -> bool:
        """Write key only if its ModifyIndex is still cas (0: only if it does not exist)."""
        return bool(self._call(f"write {key}", self._client.kv.put, key, value, cas=cas))

    def session(self, name: str, ttl: int) -> str:
        """A session that dies with its TTL (lock delay 0: a dead holder's lock frees at once)."""
        return str(self._call("create a session", self._client.session.create, name=name,
                              ttl=ttl, lock_delay=0, behavior="release"))

    def renew(self, session: str) -> bool:
        """False once the session has expired."""
        return self._call("renew a session", self._client.session.renew, session) is not None

    def end(self, session: str) -> None:
        self._call("destroy a session", self._client.session.destroy, session)

    def acquire(self, key: str, value: str, session: str) -> bool:
        return bool(self._call(f"lock {key}", self._client.kv.put, key, value, acquire=session))

    def release(self, key: str, session: str) -> bool:
        return bool(self._call(f"unlock {key}", self._client.kv.put, key, None, release=session))

    def kv_index(self, prefix: str, index: int = 0, wait: str = "") -> int:
        """Prefix's index; with index and wait a blocking query (the timeout must exceed it)."""
        return int(self._call(f"watch {prefix}", self._client.kv.get, prefix, keys=True,
                              index=index or None, wait=wait or None)[0] or 0)

    def checks_index(self, tag: str, index: int = 0,
                     wait: str = "") -> tuple[int, frozenset[tuple[str, str, str]]]:
        """(index, {(node, check, status)}) of tag's services' checks and serfHealths; kv_index's wait."""
        found, items = self._call(f"watch checks tagged {tag}", self._client.health.state,
                                  "any", index=index or None, wait=wait or None,
                                  filter_expr=f'"{tag}" in ServiceTags or CheckID == "{MEMBER_CHECK}"')
        return int(found or 0), frozenset((i["Node"], i["CheckID"], i["Status"]) for i in items)

    def failing(self, tag: str) -> builtins.list[tuple[str, tuple[str, ...]]]:
        """(node, service tags) of each critical check of a service tagged tag: one request."""
        items = self._read(f"critical checks tagged {tag}", "/v1/health/state/critical",
                           {"filter": f'"{tag}" in ServiceTags'})
        return [(str(i["Node"]), tuple(str(t) for t in i["ServiceTags"])) for i in items or []]

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", self._client.kv.delete, key)

    def delete_cas(self, key: str, index: int) -> bool:
        """Delete key only if its ModifyIndex is still index."""
        return bool(self._call(f"delete {key}", self._client.kv.delete, key, cas=index))

    def delete_tree(self, prefix: str) -> None:
        self._call(f"delete {prefix}", self._client.kv.delete, prefix, recurse=True)

    def nodes_by_tags(self, tag: str) -> TaggedNodes:
        """The nodes with a service check whose service carries tag, grouped by the service's
        tag list, and every member's serfHealth: every node of a large fleet in one request
        (a filter on /v1/health/state/any), and no object per node, which fleet plan would
        pay for. (serfHealth checks carry no service tags, so they are read for every member
        of the datacenter: one small check each.)"""
        items = self._read(f"checks tagged {tag}", "/v1/health/state/any", {
            "filter": f'"{tag}" in ServiceTags or CheckID == "{MEMBER_CHECK}"'}) or []
        found: dict[tuple[str, ...], set[str]] = {}
        members: dict[str, bool] = {}
        for item in items:
            if item["CheckID"] == MEMBER_CHECK:
                members[item["Node"]] = item["Status"] == Health.PASSING
            else:
                found.setdefault(tuple(item["ServiceTags"]), set()).add(item["Node"])
        return TaggedNodes(found, members)

    # ---- ACLs (the lab runs default deny) --------------------------------------------------

    def _token_state(self) -> TokenState:
        import consul

        try:
            self._call("acl/token/self", self._client.acl.token.read_self)
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
        items = self._call("list ACL policies", self._client.acl.policy.list)
        return {str(i["Name"]): str(i["ID"]) for i in items}

    def put_policy(self, name: str, rules: Mapping[str, Any], description: str,
                   known: Mapping[str, str] | None = None) -> None:
        """Create the policy, or replace its rules (Consul's rule language in its JSON form).
        known: the policies (name -> ID) the caller has just listed, saving a listing."""
        existing = (self.policies() if known is None else known).get(name)
        if existing is None:
            self._call(f"create ACL policy {name}", self._client.acl.policy.create, name,
                       rules=dict(rules), description=description)
        else:
            self._call(f"update ACL policy {name}", self._client.acl.policy.update, existing,
                       name, rules=dict(rules), description=description)

    def delete_policy(self, policy_id: str) -> None:
        self._call("delete an ACL policy", self._client.acl.policy.delete, policy_id)

    def create_token(self, description: str, policies: builtins.list[str],
                     secret: Secret | None = None) -> Secret:
        """A token bound to these policies (by name); its SecretID chosen by Consul unless
        given (a lab token fleet keeps in a file)."""
        item = self._call("create an ACL token", self._client.acl.token.create,
                          description=description, policies_name=policies,
                          secret_id=secret.reveal() if secret else None)
        return Secret(str(item["SecretID"]))

    def tokens(self) -> builtins.list[Token]:
        items = self._call("list ACL tokens", self._client.acl.token.list)
        return [Token(str(i["AccessorID"]), str(i["Description"])) for i in items]

    def token_secret(self, accessor: str) -> Secret:
        """A token's SecretID (acl = "write" reads it)."""
        item = self._call("read an ACL token", self._client.acl.token.read, accessor)
        return Secret(str(item["SecretID"]))

    def delete_token(self, accessor: str) -> None:
        self._call("delete an ACL token", self._client.acl.token.delete, accessor)


def _denied(what: str, why: object) -> Denied:
    return Denied(f"Consul denied {what} ({why}): the token lacks that permission",
                  "set CONSUL_HTTP_TOKEN to a token whose policy allows it "
                  "(the lab's operator token is used by default)")


def _entry(item: Mapping[str, Any]) -> Entry:
    """A KV entry from Consul's JSON (Session there only while a session holds the key)."""
    return Entry(item["Key"], base64.b64decode(item["Value"] or ""), int(item["ModifyIndex"]),
                 str(item.get("Session") or ""))
