"""A whole fleet's health checks in one read of /v1/health/state/any (a mixin of
adapters/consul.Consul): what fleet status, fleet plan and the reconciler read of every node.

Consul answers each check with a dozen fields (~320 bytes: its output, definition, indexes);
fleet reads five of them. The answer is decoded straight into a struct of those five (msgspec,
which skips the rest of each object unparsed and makes no dict per check): a 10,000-node
fleet's 3 MB in ~9 ms, where json.loads makes 20,000 dicts in ~45 ms (issue 19). msgspec is
imported on the first such read (~7 ms), never by a command that makes none.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any, Protocol

from fleet.adapters.consul_admin import MEMBER_CHECK
from fleet.adapters.http import Answer
from fleet.errors import FleetError


class Health(StrEnum):
    """A check's Status."""

    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"
    MAINTENANCE = "maintenance"


class Check(Protocol):
    """What fleet reads of one check (the struct decoder() decodes to; attribute names as Consul's
    JSON spells them). A node's own check has ServiceID ''."""

    Node: str
    CheckID: str
    Status: str
    ServiceID: str
    ServiceName: str
    ServiceTags: tuple[str, ...]


# Consul.service_checks: each service check as (node, service, its tags, passes), and node ->
# whether the node's own checks pass, for the members
ServiceCheck = tuple[str, str, tuple[str, ...], bool]
ServiceChecks = tuple[builtins.list[ServiceCheck], dict[str, bool]]


@cache
def decoder() -> Callable[[bytes], builtins.list[Any] | None]:
    """The decoder of a /v1/health/state answer, made (msgspec imported) on the first call: a
    command may make it ahead, while it waits for Consul's answer."""
    import msgspec

    class Struct(msgspec.Struct, gc=False):  # no cycles: the collector need not track them
        Node: str
        CheckID: str
        Status: str
        ServiceID: str = ""
        ServiceName: str = ""
        ServiceTags: tuple[str, ...] | None = ()

    return msgspec.json.Decoder(builtins.list[Struct] | None).decode


def checks(what: str, body: bytes) -> builtins.list[Check]:
    """The checks of a /v1/health/state/* answer (a check without service tags, which Consul
    may send as null, with ()); one FleetError if the answer is not that."""
    import msgspec

    try:
        found = decoder()(body) or []
    except msgspec.DecodeError as exc:  # ValidationError is one
        raise FleetError(f"Consul's answer to {what} is not a list of health checks ({exc})",
                         "check that CONSUL_HTTP_ADDR names a Consul server") from exc
    for check in found:
        if check.ServiceTags is None:
            check.ServiceTags = ()
    return found


@dataclass(frozen=True)
class TaggedNodes:
    """What one read of the health checks says of a fleet's nodes (Consul.nodes_by_tags)."""

    by_tags: dict[tuple[str, ...], set[str]]  # a service's tag list -> nodes with its check
    members: dict[str, bool]                  # node -> its MEMBER_CHECK passes (a failed
                                              # member: False); a node without one is absent


class FleetChecks:
    """Consul provides _send (one request, failover)."""

    def _send(self, what: str, method: str, path: str, query: Mapping[str, str] | None = None,
              body: bytes | None = None, ok: tuple[int, ...] = (200,)) -> Answer:
        raise NotImplementedError

    def _checks(self, what: str, where: str,
                query: Mapping[str, str] | None = None) -> tuple[Answer, builtins.list[Check]]:
        answer = self._send(what, "GET", f"/v1/health/state/{where}", query)
        return answer, checks(what, answer.body)

    def nodes_by_tags(self, tag: str) -> TaggedNodes:
        """The nodes with a service check whose service carries tag, grouped by the service's
        tag list, and every member's serfHealth: every node of a large fleet in one request
        (a filter on /v1/health/state/any), and no object per node, which fleet plan would
        pay for. (serfHealth checks carry no service tags, so they are read for every member
        of the datacenter: one small check each.)"""
        _, items = self._checks(f"checks tagged {tag}", "any", {
            "filter": f'"{tag}" in ServiceTags or CheckID == "{MEMBER_CHECK}"'})
        found: dict[tuple[str, ...], set[str]] = {}
        members: dict[str, bool] = {}
        passes = str(Health.PASSING)
        for item in items:
            if item.CheckID == MEMBER_CHECK:
                members[item.Node] = item.Status == passes
            else:
                found.setdefault(item.ServiceTags, set()).add(item.Node)
        return TaggedNodes(found, members)

    def service_checks(self, tag: str) -> ServiceChecks:
        """What instances() makes each instance's health of, for every service carrying tag at
        once, in one request (a filter on /v1/health/state/any), without the services' meta,
        addresses and weights (10,000 nodes: 6 MB with their serfHealths; instances() of every
        service, 9 MB): each check of such a service as (node, service, its tags, passing), and
        node -> whether every check of the node itself passes, for the members (a node without
        MEMBER_CHECK is absent). A service without a check is not seen (model.nodes gives one)."""
        _, items = self._checks(f"checks tagged {tag}", "any", {
            "filter": f'"{tag}" in ServiceTags or ServiceID == ""'})
        found: builtins.list[ServiceCheck] = []
        add, passes = found.append, str(Health.PASSING)
        node_ok: dict[str, bool] = {}
        members: set[str] = set()
        for item in items:
            node, passing = item.Node, item.Status == passes
            if item.ServiceID:
                add((node, item.ServiceName, item.ServiceTags, passing))
            else:
                node_ok[node] = node_ok.get(node, True) and passing
                if item.CheckID == MEMBER_CHECK:
                    members.add(node)
        return found, {n: ok for n, ok in node_ok.items() if n in members}

    def failing(self, tag: str) -> builtins.list[tuple[str, tuple[str, ...]]]:
        """(node, service tags) of each critical check of a service tagged tag: one request."""
        _, items = self._checks(f"critical checks tagged {tag}", "critical",
                                {"filter": f'"{tag}" in ServiceTags'})
        return [(i.Node, i.ServiceTags) for i in items]
