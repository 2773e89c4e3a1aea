"""fleet status's reads at scale (issue 19): one filtered /v1/health/state/any for every node's
role, environment, version and health (Consul.service_checks), the Weights only of the
canary environments' instances (Consul.instances_in), and status.tally, which counts them as
services.cattle.health counts instances. Against a loopback server answering as Consul does;
tests/integration/test_promote.py checks `fleet status` on real nodes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from fleet.adapters import consul_checks
from fleet.adapters.consul import Consul, Instance
from fleet.errors import FleetError
from fleet.model.definition import parse
from fleet.services.cattle import health_of
from fleet.workflows.status import passing_instances, tally
from tests.conftest import EXAMPLE

FLEET = parse(EXAMPLE.read_text())
ROLES = [FLEET.role("web"), FLEET.role("api")]
TAGS = ("fleet:x", "role:web", "env:canary", "version:v1", "class:cattle")


def check(node: str, check_id: str, status: str, service: str = "",
          tags: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"Node": node, "CheckID": check_id, "Name": check_id, "Status": status, "Notes": "",
            "Output": "", "ServiceID": service, "ServiceName": service,
            "ServiceTags": list(tags), "Type": "", "Definition": {}, "CreateIndex": 1,
            "ModifyIndex": 1}


CHECKS = [
    check("n1", "serfHealth", "passing"),
    check("n1", "service:web", "passing", "web", TAGS),
    check("n2", "_node_maintenance", "critical"),  # a node check failing: the node fails
    check("n2", "serfHealth", "passing"),
    check("n2", "service:web", "passing", "web", TAGS),
    check("n3", "service:web", "passing", "web", TAGS),  # no serfHealth: not a member
]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, dict[str, list[str]]]]] = []

    def do_GET(self) -> None:
        url = urlparse(self.path)
        Handler.seen.append((url.path, parse_qs(url.query)))
        data: Any = None
        if url.path == "/v1/health/state/any":
            data = CHECKS
        elif url.path == "/v1/health/service/web":
            data = [{"Node": {"Node": "n1", "Address": "10.0.0.1"},
                     "Service": {"Service": "web", "Address": "",
                                 "Meta": {"role": "web", "env": "canary"},
                                 "Weights": {"Passing": 10, "Warning": 1}},
                     "Checks": [{"CheckID": "serfHealth", "Status": "passing"},
                                {"CheckID": "service:web", "Status": "passing"}]}]
        raw = json.dumps(data).encode()
        self.send_response(200 if data is not None else 404)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def consul() -> Iterator[Consul]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    Handler.seen.clear()
    yield Consul(f"http://127.0.0.1:{server.server_address[1]}", "t", timeout=2)
    server.shutdown()
    server.server_close()


def test_service_checks_in_one_filtered_read(consul: Consul) -> None:
    checks, members = consul.service_checks("fleet:x")
    assert checks == [("n1", "web", TAGS, True), ("n2", "web", TAGS, True),
                      ("n3", "web", TAGS, True)], "each service check, in Consul's order"
    assert members == {"n1": True, "n2": False}, \
        "members only (n3 has no serfHealth); a failing node check fails its node"
    [(path, query)] = Handler.seen
    assert path == "/v1/health/state/any" and query["filter"] == [
        '"fleet:x" in ServiceTags or ServiceID == ""'], \
        "one request: the fleet's service checks and every node's own checks"


def test_instances_in_sends_only_the_environments_asked(consul: Consul) -> None:
    assert consul.instances_in("web", "fleet:x", ["canary", "production"]) == [
        Instance("n1", "10.0.0.1", "web", {"role": "web", "env": "canary"}, True, 10)]
    [(path, query)] = Handler.seen
    assert path == "/v1/health/service/web" and query["tag"] == ["fleet:x"] and query["filter"] == [
        'Service.Meta.env == "canary" or Service.Meta.env == "production"'], \
        "the environments' filter beside the tag"
    consul.instances_in("web", "fleet:x", ["canary", "production"], 100)
    assert Handler.seen[-1][1]["filter"] == [
        '(Service.Meta.env == "canary" or Service.Meta.env == "production") and '
        "Service.Weights.Passing != 100"], "only those weighing otherwise"


def instance(node: str, env: str, role: str, version: str, passing: bool,
             service: str = "web") -> Instance:
    return Instance(node, "10.0.0.1", service, {"env": env, "role": role, "version": version},
                    passing, 100)


def tags(role: str, env: str, version: str) -> tuple[str, ...]:
    return ("fleet:x", f"role:{role}", f"env:{env}", f"version:{version}", "class:cattle")


def test_tally_counts_as_cattle_health_does() -> None:
    checks = [
        ("a", "web", tags("web", "canary", "v1"), True),
        ("b", "web", tags("web", "canary", "v1"), False),     # its service check fails
        ("c", "web", tags("web", "canary", "v2"), True),
        ("c", "web", tags("web", "canary", "v2"), True),      # two checks, both pass
        ("d", "web", tags("web", "canary", "v2"), True),
        ("d", "web", tags("web", "canary", "v2"), False),     # one of two fails
        ("e", "web", tags("web", "canary", "v1"), True),      # a node check fails
        ("f", "web", tags("web", "canary", "v1"), True),      # not a member
        ("g", "api", tags("api", "staging", "v3"), True),
        ("h", "web", tags("api", "staging", "v3"), True),     # not a service of api
        ("i", "other", tags("web", "canary", "v1"), True),    # not a service of web
    ]
    members = {"a": True, "b": True, "c": True, "d": True, "e": False, "g": True, "h": True,
               "i": True}
    found = tally(checks, members, ROLES)
    assert found == {("canary", "web"): {"a": ("v1", True), "b": ("v1", False),
                                         "c": ("v2", True), "d": ("v2", False),
                                         "e": ("v1", False)},
                     ("staging", "api"): {"g": ("v3", True)}}, found
    # the same nodes as the per-service read sees them (instances carry their node's checks)
    instances = [instance("a", "canary", "web", "v1", True),
                 instance("b", "canary", "web", "v1", False),
                 instance("c", "canary", "web", "v2", True),
                 instance("d", "canary", "web", "v2", False),
                 instance("e", "canary", "web", "v1", False)]
    health = health_of(instances, "canary", "web")
    assert passing_instances(checks, members, ROLES) == {("canary", "web"): 2,
                                                         ("staging", "api"): 1}, \
        "instances, not nodes: a, c (d fails one of its checks, e its node)"
    assert {n: v for n, (v, ok) in found[("canary", "web")].items() if ok} == health.passing
    assert {n: v for n, (v, ok) in found[("canary", "web")].items() if not ok} == health.failing


def test_decoding_pauses_the_collector_and_leaves_it_as_found() -> None:
    import gc

    from fleet.services import bulk

    assert gc.isenabled()
    with bulk.decoding():
        assert not gc.isenabled(), "paused while a large answer is decoded"
    assert gc.isenabled(), "running again after"
    gc.disable()
    try:
        with bulk.decoding():
            pass
        assert not gc.isenabled(), "paused by someone else: left paused"
    finally:
        gc.enable()
    with pytest.raises(ValueError), bulk.decoding():
        raise ValueError
    assert gc.isenabled(), "running again after a failed read"


GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "consul" / "health-state-any.json"


def test_checks_decode_consuls_answer_to_the_fields_read() -> None:
    """The lab's real answer (the example fleet deployed: its cattle's and pets' service
    checks, every member's serfHealth) decoded to the five fields fleet reads, each as the
    standard library reads it."""
    body = GOLDEN.read_bytes()
    found = consul_checks.checks("checks tagged fleet:gitlab", body)
    want = json.loads(body)
    assert len(found) == len(want) == 41, "every check"
    assert [(c.Node, c.CheckID, c.Status, c.ServiceID, c.ServiceName, c.ServiceTags)
            for c in found] == [(w["Node"], w["CheckID"], w["Status"], w["ServiceID"],
                                 w["ServiceName"], tuple(w["ServiceTags"])) for w in want]
    assert {c.CheckID for c in found if not c.ServiceID} == {"serfHealth"}, \
        "a node's own check has no service"


def test_checks_take_null_tags_and_refuse_what_is_no_check_list() -> None:
    null_tags = b'[{"Node": "n1", "CheckID": "c", "Status": "passing", "ServiceTags": null}]'
    [only] = consul_checks.checks("x", null_tags)
    assert (only.ServiceID, only.ServiceTags) == ("", ()), "no service, no tags"
    assert consul_checks.checks("x", b"null") == [], "Consul's null: no checks"
    for body in (b'{"error": "x"}', b"<html>", b'[{"Node": 1}]'):
        with pytest.raises(FleetError, match="checks tagged fleet:x is not a list of health"):
            consul_checks.checks("checks tagged fleet:x", body)


def test_early_hands_over_the_result_or_the_error() -> None:
    from fleet.services import bulk

    assert bulk.Early(lambda: 42).result() == 42

    def fails() -> int:
        raise FleetError("Consul at x refused")

    reading = bulk.Early(fails)
    with pytest.raises(FleetError, match="refused"):
        reading.result()


def test_declared_consul_is_what_load_resolves_and_none_for_a_file_that_does_not_say(
        tmp_path: Path) -> None:
    """status and plan begin their large read with fleet.toml's Consul before the file is
    loaded (bulk.declared_read); the read is kept only where load() resolves the same."""
    from fleet.services.context import declared_consul, load

    three = EXAMPLE.read_text().replace('kind = "lab"', 'kind = "lab"\nservers = 3', 1)
    assert three != EXAMPLE.read_text(), "the example has a lab target"
    for name, text, env in [
            ("as written", EXAMPLE.read_text(), {}),
            ("a lab of three servers", three, {}),
            ("the environment's Consul and token",
             EXAMPLE.read_text(), {"CONSUL_HTTP_ADDR": "127.0.0.9:8600,127.0.0.10:8600",
                                   "CONSUL_HTTP_TOKEN": "t"})]:
        file = tmp_path / name / "fleet.toml"
        file.parent.mkdir()
        file.write_text(text)
        assert declared_consul(file, env) == load(file, env).consul_of, name
    assert load(tmp_path / "a lab of three servers" / "fleet.toml", {}).consul_addrs[2] == \
        "http://127.0.0.3:8500", "three servers spread"
    for name, text in [("no TOML", "[fleet\n"), ("no [fleet]", "[roles]\n"),
                       ("no consul", '[fleet]\nname = "x"\n'),
                       ("targets not tables", 'targets = 3\n[fleet]\nname = "x"\n'
                                              'consul = "c:1"\n'),
                       ("servers not a number", EXAMPLE.read_text().replace(
                           'kind = "lab"', 'kind = "lab"\nservers = "many"', 1))]:
        file = tmp_path / f"{name}.toml"
        file.write_text(text)
        assert declared_consul(file, {}) is None, name
    assert declared_consul(tmp_path / "absent.toml", {}) is None, "no file"


def test_a_read_begun_early_is_kept_only_for_the_loaded_fleets_consul(tmp_path: Path) -> None:
    from fleet.services import bulk
    from fleet.services.context import load

    file = tmp_path / "fleet.toml"
    file.write_text(EXAMPLE.read_text())
    ctx = load(file, {"CONSUL_HTTP_TOKEN": "t"})
    begun_for: list[str] = []

    def read(consul: Consul, tag: str) -> str:
        begun_for.append(tag)
        return f"{consul.addresses[0]} {tag}"

    same = bulk.fleet_read(ctx.consul_of, read)
    assert bulk.on(ctx, same, read) is same, "begun for this fleet's Consul: kept"
    assert same.result() == f"{ctx.consul_addr} fleet:{ctx.fleet.name}"
    other = bulk.fleet_read((ctx.consul_addrs, "t", "another"), read)
    again = bulk.on(ctx, other, read)
    assert again is not other, "begun for another fleet: read again"
    assert again.result() == same.result()
    assert bulk.on(ctx, None, read).result() == same.result(), "none begun: begun now"
    assert sorted(begun_for) == sorted([f"fleet:{ctx.fleet.name}"] * 3 + ["fleet:another"])

    bad = bulk.fleet_read((("no-port",), None, "x"), read)
    with pytest.raises(FleetError, match="has no host:port"):
        bad.result()
