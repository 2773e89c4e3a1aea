"""Consul through py-consul: KV with check-and-set, sessions, health and ACL policies and tokens.
Its dicts stop here. Reads (KV, health, the leader) go over the standard library's HTTP
(adapters/http.Http): a read command then never imports py-consul and requests, ~75 ms of
its start; py-consul is made on the first write, session, watch or ACL call. A whole fleet's
health checks are read by the FleetChecks mixin (adapters/consul_checks.py)."""

from __future__ import annotations

import base64
import builtins
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlparse

from fleet.adapters.consul_admin import MEMBER_CHECK, Admin
from fleet.adapters.consul_checks import FleetChecks, Health
from fleet.adapters.http import Answer, Leaderless, Servers, answering
from fleet.errors import Denied, FleetError


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


# The leader gives every member of the cluster this check, and takes it away with the node when
# the node leaves. A node's agent can still sync its services in its last moment, after the
# leader deregistered it: the catalog then holds them, passing, without this check, until the
# leader's next reconcile (up to a minute). Such a node is not counted as registered.
# MEMBER_CHECK (serfHealth, from consul_admin): that check.
TXN_OPS = 64  # operations in one transaction, Consul's limit


@dataclass(frozen=True)
class NodeCheck:
    """One health check on one node: the node's own (serfHealth) or one of its services'."""

    check_id: str
    name: str
    service: str       # '' for a check of the node itself
    status: Health
    output: str


class Consul(Admin, FleetChecks):
    """A Consul HTTP API client with one token, knowing every server of the cluster (one
    address or several: see adapters/http.Servers for how a request moves between them)."""

    def __init__(self, address: str | Sequence[str], token: str | None = None,
                 timeout: float = 5.0) -> None:
        addresses = (address,) if isinstance(address, str) else tuple(address)
        for one in addresses:
            url = urlparse(one)
            if not url.hostname or not url.port:
                raise FleetError(f"Consul address {one!r} has no host:port",
                                 "set fleet.consul or CONSUL_HTTP_ADDR to http://HOST:PORT")
        self.addresses = addresses
        self._token, self._timeout = token, timeout
        self._servers = Servers(addresses, timeout, {"X-Consul-Token": token} if token else {},
                                _leaderless, _maybe_applied)
        self._clients: dict[int, Any] = {}

    @property
    def address(self) -> str:
        """The server in use: the last that answered."""
        return self._servers.address

    def _client(self, at: int) -> Any:
        if at not in self._clients:
            import consul  # lazy: only membership and ACLs need py-consul

            url = urlparse(self.addresses[at])
            self._clients[at] = consul.Consul(
                host=url.hostname, port=url.port, token=self._token,
                scheme=url.scheme or "http", connections_timeout=self._timeout)
        return self._clients[at]

    def _call(self, what: str, fn: Callable[[Any], Any], *, resend: bool = False) -> Any:
        """fn(py-consul client) on the server in use, moving on as Servers.each does."""
        import consul

        def call(at: int) -> Any:
            try:
                return fn(self._client(at))
            except consul.ConsulException as exc:
                if len(self.addresses) > 1 and _leaderless(500, str(exc).encode()) \
                        and not isinstance(exc, consul.ACLPermissionDenied | consul.ACLDisabled):
                    raise Leaderless(str(exc), "leadership lost" in str(exc)) from exc
                raise
            except OSError as exc:  # requests' errors are OSErrors
                if "refused" in str(exc).lower():
                    raise ConnectionRefusedError(str(exc)) from exc
                raise

        try:
            with answering("Consul", self.address, what, "CONSUL_HTTP_ADDR"):
                return self._servers.each(call, resend=resend)[0]
        except consul.ACLPermissionDenied as exc:
            raise _denied(what, exc) from exc
        except consul.ConsulException as exc:
            raise FleetError(f"Consul refused {what}: {exc}") from exc

    def _send(self, what: str, method: str, path: str, query: Mapping[str, str] | None = None,
              body: bytes | None = None, ok: tuple[int, ...] = (200,)) -> Answer:
        """One request, sent again elsewhere if its server goes away (every request this
        adapter sends this way may be: reads, check-and-set writes, idempotent writes)."""
        url = quote(path, safe="/:") + (f"?{urlencode(query)}" if query else "")
        with answering("Consul", self.address, what, "CONSUL_HTTP_ADDR"):
            answer = self._servers.request(method, url, body, resend=True)
        if answer.status in ok:
            return answer
        said = f"{answer.status} {answer.body.decode(errors='replace').strip()}"
        raise _denied(what, said) if answer.status == 403 else FleetError(f"Consul refused {what}: {said}")

    def _read(self, what: str, path: str, query: Mapping[str, str] | None = None,
              body: Any = None) -> Any:
        """A read (body: a read-only transaction's): its JSON, None on 404."""
        answer = self._send(what, "GET" if body is None else "PUT", path, query,
                            None if body is None else json.dumps(body).encode(), ok=(200, 404))
        return json.loads(answer.body) if answer.status == 200 else None

    def leader(self) -> str:
        """The raft leader's address, '' while there is none."""
        return str(self._read("status/leader", "/v1/status/leader") or "")

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
        return self.instances_index(service, tag)[1]

    def instances_index(self, service: str, tag: str, index: int = 0,
                        wait: str = "") -> tuple[int, builtins.list[Instance]]:
        """instances() and the answer's index; with index and wait a blocking query, which
        answers once the service's instances or their checks change, or after wait (the
        client's timeout must exceed it)."""
        found, items = self._health(service, tag, index, wait)
        return found, _instances(items)

    def unmarked(self, service: str, tag: str) -> builtins.list[tuple[str, str, dict[str, str]]]:
        """(node, address, service meta) of the instances carrying tag whose node has no
        MEMBER_CHECK: registered by their agent, but not (yet, or no longer) a member to
        Consul's leader."""
        items = self._health(service, tag)[1]
        return [(i["Node"]["Node"], i["Node"]["Address"], dict(i["Service"]["Meta"] or {}))
                for i in items if not any(c["CheckID"] == MEMBER_CHECK for c in i["Checks"])]

    def _health(self, service: str, tag: str, index: int = 0,
                wait: str = "") -> tuple[int, builtins.list[dict[str, Any]]]:
        """/v1/health/service's answer for service's instances carrying tag, and its index
        (kv_index's blocking)."""
        answer = self._send(f"health of {service}", "GET", f"/v1/health/service/{service}",
                            {"tag": tag, **_blocking(index, wait)}, ok=(200, 404))
        items = json.loads(answer.body) if answer.status == 200 else None
        return _index(answer), items or []

    def node_checks(self, node: str, *, members_only: bool = True) -> builtins.list[NodeCheck]:
        """Every check on a node; [] while the node is not a member of the cluster (it has not
        joined, or it has left: see MEMBER_CHECK), unless members_only is False."""
        items = self._read(f"health of node {node}", f"/v1/health/node/{node}") or []
        if members_only and not any(i["CheckID"] == MEMBER_CHECK for i in items):
            return []
        return [NodeCheck(i["CheckID"], i["Name"], i["ServiceName"], Health(i["Status"]),
                          i["Output"]) for i in items]

    def put(self, key: str, value: bytes | str, *, cas: int) -> bool:
        """Write key only if its ModifyIndex is still cas (0: only if it does not exist).
        Sent again to another server if its server went away mid-write; a write that then
        fails its check-and-set is looked up: if the key holds exactly this value, written
        after cas, the first attempt landed and the write is done."""
        data = value.encode() if isinstance(value, str) else value
        answer = self._send(f"write {key}", "PUT", f"/v1/kv/{key}", {"cas": str(cas)}, data)
        if json.loads(answer.body) is True:
            return True
        if answer.doubtful:
            entry = self.get(key)
            return entry is not None and entry.value == data and entry.modify_index != cas
        return False

    def session(self, name: str, ttl: int) -> str:
        """A session that dies with its TTL alone (lock delay 0: a dead holder's lock frees
        at once). No node check: by default Consul ties a session to the health of the node
        whose agent made it, here a server, and losing that server would end the session
        and free its lock under a live holder. Sent again if its server went away: a session
        made twice leaves one unused, which its TTL ends."""
        body = json.dumps({"Name": name, "TTL": f"{ttl}s", "LockDelay": "0s",
                           "Behavior": "release", "Checks": []}).encode()
        return str(json.loads(self._send("create a session", "PUT", "/v1/session/create",
                                         body=body).body)["ID"])

    def renew(self, session: str) -> bool:
        """False once the session has expired."""
        answer = self._send("renew a session", "PUT", f"/v1/session/renew/{session}",
                            ok=(200, 404))
        return answer.status == 200

    def end(self, session: str) -> None:
        self._send("destroy a session", "PUT", f"/v1/session/destroy/{session}")

    def acquire(self, key: str, value: str, session: str) -> bool:
        """Take key as session's lock (again by the same session: still True)."""
        return json.loads(self._send(f"lock {key}", "PUT", f"/v1/kv/{key}", {"acquire": session},
                                     value.encode()).body) is True

    def release(self, key: str, session: str) -> bool:
        return json.loads(self._send(f"unlock {key}", "PUT", f"/v1/kv/{key}",
                                     {"release": session}).body) is True

    def kv_index(self, prefix: str, index: int = 0, wait: str = "") -> int:
        """Prefix's index; with index and wait a blocking query (the timeout must exceed it)."""
        query = {"keys": "true", **_blocking(index, wait)}
        return _index(self._send(f"watch {prefix}", "GET", f"/v1/kv/{prefix}", query, ok=(200, 404)))

    def checks_index(self, tag: str, index: int = 0,
                     wait: str = "") -> tuple[int, frozenset[tuple[str, str, str]]]:
        """(index, {(node, check, status)}) of tag's services' checks and serfHealths; kv_index's wait."""
        answer, items = self._checks(f"watch checks tagged {tag}", "any", {
            "filter": f'"{tag}" in ServiceTags or CheckID == "{MEMBER_CHECK}"',
            **_blocking(index, wait)})
        return _index(answer), frozenset((i.Node, i.CheckID, i.Status) for i in items)

    def delete(self, key: str) -> None:
        self._send(f"delete {key}", "DELETE", f"/v1/kv/{key}")

    def delete_cas(self, key: str, index: int) -> bool:
        """Delete key only if its ModifyIndex is still index (a delete that went to a server
        that then went away, and now fails, is done if the key is gone)."""
        answer = self._send(f"delete {key}", "DELETE", f"/v1/kv/{key}", {"cas": str(index)})
        if json.loads(answer.body) is True:
            return True
        return answer.doubtful and self.get(key) is None

    def delete_tree(self, prefix: str) -> None:
        self._send(f"delete {prefix}", "DELETE", f"/v1/kv/{prefix}", {"recurse": "true"})

    def instances_in(self, service: str, tag: str, envs: Sequence[str],
                     weight_not: int | None = None) -> builtins.list[Instance]:
        """instances() of those whose service meta puts them in one of envs (and with
        weight_not, whose Weights.Passing is another): only they are sent (a filter)."""
        where = " or ".join(f"Service.Meta.env == {json.dumps(e)}" for e in envs)
        if weight_not is not None:
            where = f"({where}) and Service.Weights.Passing != {int(weight_not)}"
        items = self._read(f"health of {service}", f"/v1/health/service/{service}",
                           {"tag": tag, "filter": where}) or []
        return _instances(items)


def _denied(what: str, why: object) -> Denied:
    return Denied(f"Consul denied {what} ({why}): the token lacks that permission",
                  "set CONSUL_HTTP_TOKEN to a token whose policy allows it "
                  "(the lab's operator token is used by default)")


def _entry(item: Mapping[str, Any]) -> Entry:
    """A KV entry from Consul's JSON (Session there only while a session holds the key)."""
    return Entry(item["Key"], base64.b64decode(item["Value"] or ""), int(item["ModifyIndex"]),
                 str(item.get("Session") or ""))


def _leaderless(status: int, body: bytes) -> bool:
    """Consul's answers while its servers elect a leader (a follower that still forwards to
    the dead one cannot reach it), or have lost their quorum: the request was not carried
    out, or (leadership lost mid-commit) may have been, which only a request that may be
    sent again is (Servers)."""
    return status == 500 and (any(said in body for said in (
        b"No cluster leader", b"leadership lost", b"raft is already shutdown",
        b"rpc error getting client", b"failed to get conn")) or _forward_lost(body))


def _forward_lost(body: bytes) -> bool:
    """A follower's forward to the leader cut as the leader died (`rpc error making call:
    ... broken pipe`, `EOF`, `stream closed`: its connection or multiplexed stream): not an
    answer of the leader's, such as an invalid session's, which the same words begin."""
    return b"rpc error making call" in body and any(cut in body for cut in (
        b"EOF", b"broken pipe", b"connection reset", b"connection refused", b"stream closed",
        b"session shutdown", b"use of closed network connection", b"i/o timeout"))


def _maybe_applied(body: bytes) -> bool:
    """After this leaderless answer the request may have been carried out (Servers)."""
    return b"leadership lost" in body or _forward_lost(body)


def _blocking(index: int, wait: str) -> dict[str, str]:
    return {"index": str(index), "wait": wait} if index and wait else {}


def _index(answer: Answer) -> int:
    found = {k.lower(): v for k, v in answer.headers.items()}.get("x-consul-index", "0")
    return int(found or 0)


def _instances(items: list[dict[str, Any]]) -> list[Instance]:
    """Instances from /v1/health/service's answer, on member nodes only (MEMBER_CHECK)."""
    return [Instance(
        node=i["Node"]["Node"],
        address=i["Service"]["Address"] or i["Node"]["Address"],
        service=i["Service"]["Service"],
        meta=dict(i["Service"]["Meta"] or {}),
        passing=all(c["Status"] == "passing" for c in i["Checks"]),
        weight=int(i["Service"]["Weights"]["Passing"]),
    ) for i in items if any(c["CheckID"] == MEMBER_CHECK for c in i["Checks"])]
