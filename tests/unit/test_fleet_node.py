"""fleet-node's upstreams renderer (packer/base/fleet-node), on consul watch's own JSON shape."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.scripts import load_script


def load() -> Any:
    return load_script("packer/base/fleet-node", "fleet_node")


def entry(address: str, port: int, fleet: str, env: str, passing: int = 1,
          tags: tuple[str, ...] = ()) -> dict[str, Any]:
    """One element of /v1/health/service/NAME, as consul watch -type=service passes it."""
    return {"Node": {"Node": f"n-{address}", "Address": address},
            "Service": {"Service": "gitaly", "Address": "", "Port": port,
                        "Tags": [f"fleet:{fleet}", *tags],
                        "Weights": {"Passing": passing, "Warning": 1},
                        "Meta": {"fleet": fleet, "env": env}},
            "Checks": []}


def test_renders_this_fleet_and_environment_merged_and_atomically(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = load()
    monkeypatch.setattr(node, "UPSTREAMS", str(tmp_path / "run"))
    out = tmp_path / "etc" / "upstreams.json"

    def fire(service: str, entries: Any) -> dict[str, list[str]]:
        monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(entries)))
        assert node.main(["upstreams", service, "gitlab", "canary", str(out)]) == 0
        return dict(json.loads(out.read_text()))

    assert fire("redis", None) == {"redis": []}  # no instance at all: Consul sends null
    seen = fire("gitaly", [entry("10.0.0.2", 8075, "gitlab", "canary"),
                           entry("10.0.0.3", 8075, "gitlab", "staging"),
                           entry("10.0.0.4", 8075, "other", "canary"),
                           entry("10.0.0.1", 8075, "gitlab", "canary")])
    assert seen == {"gitaly": ["10.0.0.1:8075", "10.0.0.2:8075"], "redis": []}
    weights = json.loads((out.parent / "weights.json").read_text())
    assert weights == {"gitaly": {"10.0.0.1:8075": 1, "10.0.0.2:8075": 1}, "redis": {}}
    # a move's cut-over: the source held at weight:0 (Passing 1), the target at 100
    cut = fire("gitaly", [entry("10.0.0.1", 8075, "gitlab", "canary", 1, ("weight:0", "ro")),
                          entry("10.0.0.5", 8075, "gitlab", "canary", 100)])
    weights = json.loads((out.parent / "weights.json").read_text())
    assert weights["gitaly"] == {"10.0.0.1:8075": 0, "10.0.0.5:8075": 100}, weights
    assert cut["gitaly"] == ["10.0.0.5:8075"], "users reach only the one that serves"
    held = fire("gitaly", [entry("10.0.0.1", 8075, "gitlab", "canary", 1, ("weight:0",))])
    assert held["gitaly"] == ["10.0.0.1:8075"], "weight 0 everywhere: all are reached"
    assert fire("gitaly", []) == {"gitaly": [], "redis": []}
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in out.parent.iterdir()) == ["upstreams.json", "weights.json"]


def test_usage_is_exit_2() -> None:
    assert load().main(["nonsense"]) == 2


def test_login_hands_the_agent_its_token_0600_and_prints_no_value(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    node = load()
    config = tmp_path / "consul" / "acl.json"
    monkeypatch.setattr(node, "CONSUL_CONFIG", str(config))
    monkeypatch.delenv("FLEET_CONSUL_JOIN", raising=False)  # no agent on this "node"
    token = "3f1c9a4e-0b7d-4e55-9a61-1d2b8c7e6f50"
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"consul_token": token})))
    assert node.main(["login"]) == 0
    assert json.loads(config.read_text()) == {"acl": {"tokens": {"default": token,
                                                                 "agent": token}}}
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert node.stored_token() == token
    out = capsys.readouterr()
    assert token not in out.out + out.err and "stored its consul token" in out.out


def test_drain_without_a_token_asks_nothing_of_the_agent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node stopped before its token came has nothing registered: drain is quiet, and
    fleet-init goes on to its leave."""
    node = load()
    monkeypatch.setattr(node, "CONSUL_CONFIG", str(tmp_path / "consul" / "acl.json"))
    monkeypatch.setattr("urllib.request.urlopen",
                        lambda *a, **k: pytest.fail("drain called the agent without a token"))
    assert node.main(["drain"]) == 0


def test_weigh_replaces_a_held_back_declaration_and_declared_keeps_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A move's target is declared held back (weight:0): the cut-over's weights must take that
    tag away, or no front end would send it new work; --declared puts it back."""
    node = load()
    services = tmp_path / "services.json"
    services.write_text(json.dumps({"services": [{
        "name": "gitaly", "port": 8075, "tags": ["fleet:gitlab", "weight:0"],
        "weights": {"passing": 1, "warning": 0}}]}))
    monkeypatch.setattr(node, "SERVICES", str(services))
    monkeypatch.setattr(node, "stored_token", lambda: "token")
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(node, "agent_call", lambda method, path, token, body=None:
                        sent.append(body) or "")
    assert node.main(["weigh", "50", "1", "readonly"]) == 0
    assert sent[-1]["tags"] == ["fleet:gitlab", "readonly"], sent[-1]
    assert sent[-1]["weights"] == {"passing": 50, "warning": 1}
    assert node.main(["weigh", "1", "0", "readonly", "weight:0"]) == 0
    assert sent[-1]["tags"] == ["fleet:gitlab", "readonly", "weight:0"], sent[-1]
    assert node.main(["weigh", "--declared"]) == 0
    assert sent[-1]["tags"] == ["fleet:gitlab", "weight:0"], sent[-1]
    assert sent[-1]["weights"] == {"passing": 1, "warning": 0}


def test_a_reload_refused_for_its_token_is_asked_again_then_given_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """During an election no server resolves a token just minted, and the agent answers 403:
    login asks again; a token still refused after RELOAD_WAIT fails with the agent's answer."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    answers = [403, 403, 200]
    asked: list[str] = []

    class Agent(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            asked.append(self.headers["X-Consul-Token"])
            self.send_response(answers.pop(0) if answers else 403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Agent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    node = load()
    node.AGENT = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setattr(node.time, "sleep", lambda _s: None)
    try:
        node.reload_agent("t0k3n")
        assert asked == ["t0k3n"] * 3, "asked until the agent took it"
        node.RELOAD_WAIT = 0
        with pytest.raises(node.Failed, match="refused its reload: 403"):
            node.reload_agent("t0k3n")
    finally:
        server.shutdown()


def fake_agent(monkeypatch: pytest.MonkeyPatch, node: Any, listed: list[bool],
               leave: Any) -> list[str]:
    """The local agent as leave sees it: /v1/agent/self, the catalog's serfHealth for the node
    (listed[0] at first, then each following answer), and PUT /v1/agent/leave (leave())."""
    calls: list[str] = []

    def call(method: str, path: str, token: str, body: Any = None, timeout: float = 5) -> bytes:
        calls.append(f"{method} {path}")
        if path == "/v1/agent/self":
            return b'{"Config": {"NodeName": "n1"}}'
        if path == "/v1/health/node/n1":
            shown = listed.pop(0) if len(listed) > 1 else listed[0]
            return json.dumps([{"CheckID": "serfHealth"}] if shown else []).encode()
        assert (method, path) == ("PUT", "/v1/agent/leave")
        leave()
        return b""

    monkeypatch.setattr(node, "stored_token", lambda: "token")
    monkeypatch.setattr(node, "agent_call", call)
    return calls


def test_leave_returns_once_the_servers_call_the_node_left(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import threading
    import time

    node = load()
    held = threading.Event()  # the agent's own leave, still waiting out its 3 s
    calls = fake_agent(monkeypatch, node, [True, True, False], held.wait)
    start = time.monotonic()
    assert node.main(["leave"]) == 0, "a leave the servers took is a success"
    held.set()
    assert time.monotonic() - start < 2, "leave waits for the servers, not the agent's delay"
    assert "PUT /v1/agent/leave" in calls, "the agent was asked to leave"
    assert "the servers call this node left" in capsys.readouterr().out


def test_leave_of_a_node_never_listed_waits_for_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    node = load()
    left = []
    fake_agent(monkeypatch, node, [False], lambda: left.append(True))
    assert node.main(["leave"]) == 0, "the agent left"
    assert left == [True], "no serfHealth to watch: the agent's own leave is waited for"


def test_a_refused_leave_fails_so_that_fleet_init_sends_term(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    node = load()

    def refuse() -> None:
        raise OSError("HTTP Error 403: Forbidden")

    fake_agent(monkeypatch, node, [True], refuse)
    assert node.main(["leave"]) == 1, "a refused leave fails: fleet-init then sends TERM"
    monkeypatch.setattr(node, "CONSUL_CONFIG", str(tmp_path / "acl.json"))
    monkeypatch.setattr(node, "stored_token", lambda: None)
    assert node.main(["leave"]) == 1, "no token: nothing to ask, fleet-init sends TERM"


def test_the_first_token_of_a_boot_is_stored_for_the_agent_to_start_with_and_not_waited_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """fleet-init starts the agent only once the token is there: the first login only stores
    it (no wait for a join, no reload, whose restart of every watch is CPU a boot pays); a
    later one (a rotation) reloads the agent that runs with the earlier token."""
    node = load()
    config = tmp_path / "consul" / "acl.json"
    monkeypatch.setattr(node, "CONSUL_CONFIG", str(config))
    monkeypatch.setenv("FLEET_CONSUL_JOIN", "172.30.7.1")
    reloaded: list[str] = []
    monkeypatch.setattr(node, "leader_known", lambda wait: True)
    monkeypatch.setattr(node, "reload_agent", reloaded.append)
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"consul_token": "first"})))
    assert node.main(["login"]) == 0
    assert reloaded == [], "the first token is not a reload: the agent starts with it"
    assert "the agent starts with it" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"consul_token": "second"})))
    assert node.main(["login"]) == 0
    assert reloaded == ["second"], "a rotated token reloads the running agent"
    assert node.stored_token() == "second"


def test_stop_drains_then_leaves_and_a_failed_drain_does_not_keep_it_from_leaving(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    node = load()
    done: list[str] = []

    def drain() -> None:
        done.append("drain")
        raise node.Failed("could not take the node's services out of consul: refused")

    monkeypatch.setattr(node, "drain", drain)
    monkeypatch.setattr(node, "leave", lambda: done.append("leave"))
    assert node.main(["stop"]) == 0, "the leave went: stop succeeds"
    assert done == ["drain", "leave"], done
    assert "could not take the node's services out" in capsys.readouterr().err

    def refused() -> None:
        raise node.Failed("the consul agent refused its leave: 403")

    monkeypatch.setattr(node, "leave", refused)
    assert node.main(["stop"]) == 1, "a refused leave fails stop: fleet-init then sends TERM"


def test_a_watch_handler_run_imports_no_http_client() -> None:
    """Each run of a watch handler is a Python start on the node: -IS (no site) and urllib
    imported only where HTTP is spoken keep it cheap."""
    import subprocess
    import sys

    path = Path(__file__).resolve().parents[2] / "packer/base/fleet-node"
    assert path.read_text().splitlines()[0] == "#!/usr/bin/python3 -IS"
    probe = (f"import sys; sys.argv = ['fleet-node']; src = open({str(path)!r}).read(); "
             "exec(compile(src.replace('if __name__ == \"__main__\":', 'if False:'), "
             "'fleet-node', 'exec')); print(sorted(m for m in sys.modules if m.startswith("
             "('urllib', 'http', 'tempfile', 'threading'))))")
    found = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert found == "[]", f"imported at start: {found}"


def test_agent_reloads_only_when_a_watch_has_not_run_since_the_join(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch that asked before the join failed and waits 5 s: a reload restarts it. Where
    every watch's handler has run, a reload would only run each again."""
    node = load()
    services = tmp_path / "services.json"
    services.write_text(json.dumps({"services": [], "watches": [
        {"type": "service", "service": "postgres", "args": []},
        {"type": "service", "service": "redis", "args": []}]}))
    upstreams = tmp_path / "upstreams"
    upstreams.mkdir()
    monkeypatch.setattr(node, "SERVICES", str(services))
    monkeypatch.setattr(node, "UPSTREAMS", str(upstreams))
    monkeypatch.setattr(node, "WATCH_GRACE", 0.2)
    monkeypatch.setattr(node, "stored_token", lambda: "t0k3n")
    monkeypatch.setattr(node, "leader_known", lambda wait: True)
    reloaded: list[str] = []
    monkeypatch.setattr(node, "reload_agent", reloaded.append)
    watched: list[str] = []  # stay_member has its own test below
    monkeypatch.setattr(node, "stay_member", watched.append)
    (upstreams / "postgres.json").write_text("{}")
    assert node.main(["agent"]) == 0
    assert reloaded == ["t0k3n"], "redis's watch never ran: the agent is reloaded"
    (upstreams / "redis.json").write_text("{}")
    assert node.main(["agent"]) == 0
    assert reloaded == ["t0k3n"], "every watch ran: no second reload"
    services.write_text(json.dumps({"services": []}))
    assert node.main(["agent"]) == 0
    assert reloaded == ["t0k3n"], "a node that watches nothing needs no reload"
    assert watched == ["t0k3n"] * 3, "each boot then watches that the servers call it alive"


def test_a_node_the_servers_call_failed_joins_them_again_until_it_is_alive(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """stay_member: a node taking back a name just left is called failed by a rumour of the
    old node's leave; it joins the servers again (a push-pull: it hears it and refutes it)
    after two looks in a row not passing (then four, eight...: a leader that missed the join
    is not helped by it), and stops watching once it passed MEMBER_SETTLED seconds."""
    node = load()
    clock = [0.0]
    monkeypatch.setattr(node.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(node.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    monkeypatch.setenv("FLEET_CONSUL_JOIN", "172.30.0.2")
    seen = iter(["passing", "critical", "critical", "critical", "", None, "", "", "",
                 "passing"] + ["passing"] * 100)
    calls: list[tuple[str, str]] = []

    def agent_call(method: str, path: str, token: str, body: Any = None,
                   timeout: float = 5) -> bytes:
        calls.append((method, path))
        if path == "/v1/agent/self":
            return json.dumps({"Config": {"NodeName": "web-canary-v1-0"}}).encode()
        if path.startswith("/v1/health/node/web-canary-v1-0"):
            status = next(seen)
            if status is None:
                raise OSError("agent busy")
            return json.dumps([{"CheckID": "serfHealth", "Status": status}] if status
                              else [{"CheckID": "service:web", "Status": "passing"}]).encode()
        assert (method, path) == ("PUT", "/v1/agent/join/172.30.0.2"), path
        return b""

    monkeypatch.setattr(node, "agent_call", agent_call)
    node.stay_member("token")
    joins = [i for i, call in enumerate(calls) if call[1].startswith("/v1/agent/join/")]
    looks = sum(1 for _, path in calls if path.startswith("/v1/health/node/"))
    # critical twice: a join; then four looks (an unanswered one is no count): the next
    assert len(joins) == 2, calls
    assert clock[0] <= 10 * node.MEMBER_EVERY + node.MEMBER_SETTLED, clock
    assert looks == 10 + node.MEMBER_SETTLED // node.MEMBER_EVERY, looks


@pytest.mark.parametrize("holder_alive", [False, True])
def test_an_agent_whose_gossip_shut_down_is_started_afresh_once_the_name_is_free(
        monkeypatch: pytest.MonkeyPatch, holder_alive: bool) -> None:
    """stay_member's join answered as an agent that lost a name conflict answers (HTTP 500,
    serf's "can't Join after Leave or Shutdown"): no join can help, so revive waits until the
    servers have called the name's other holder failed for RECLAIM_WAIT seconds (a holder seen
    passing again starts the count anew), then asks fleet-init (PID 1) for a new agent with
    SIGUSR1, once. While the holder stays alive, nothing is restarted."""
    import signal
    import urllib.error

    node = load()
    clock = [0.0]
    monkeypatch.setattr(node.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(node.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    monkeypatch.setenv("FLEET_CONSUL_JOIN", "172.30.0.2")
    # two looks not passing make stay_member join; then what revive sees
    seen = iter(["critical", "critical"] + (["passing"] * 200 if holder_alive
                                            else ["passing", "critical"] + ["critical"] * 200))
    joins: list[float] = []

    def agent_call(method: str, path: str, token: str, body: Any = None,
                   timeout: float = 5) -> bytes:
        if path == "/v1/agent/self":
            return json.dumps({"Config": {"NodeName": "git-canary-v1-0"}}).encode()
        if path.startswith("/v1/health/node/git-canary-v1-0"):
            return json.dumps([{"CheckID": "serfHealth", "Status": next(seen)}]).encode()
        assert (method, path) == ("PUT", "/v1/agent/join/172.30.0.2"), path
        joins.append(clock[0])
        raise urllib.error.HTTPError(path, 500, "Internal Server Error", None,  # type: ignore[arg-type]
                                     io.BytesIO(b"Serf can't Join after Leave or Shutdown"))

    signals: list[tuple[int, int, float]] = []
    monkeypatch.setattr(node, "agent_call", agent_call)
    monkeypatch.setattr(node.os, "kill", lambda pid, sig: signals.append((pid, sig, clock[0])))
    node.stay_member("token")
    assert joins == [node.MEMBER_EVERY], "one join, after two looks not passing"
    if holder_alive:
        assert signals == [], "the name's holder is alive: no new agent"
        assert clock[0] >= node.MEMBER_WATCH, "it looked until the watch's end"
        return
    # looks at 5 (passing: the count starts anew), 10 (critical), ... 45 = 10 + RECLAIM_WAIT
    assert signals == [(1, signal.SIGUSR1, 2 * node.MEMBER_EVERY + node.RECLAIM_WAIT)], signals
