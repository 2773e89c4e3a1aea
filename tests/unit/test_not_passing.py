"""model.nodes.not_passing: a failed gate names the nodes it waited for and what Consul says
of each, in one line, short for a crowd."""

from __future__ import annotations

from fleet.model.nodes import not_passing

SERF = ("serfHealth", "Serf Health Status", "passing", "Agent alive and reachable")


def http(status: str, output: str) -> tuple[str, str, str, str]:
    return ("service:web", "Service 'web' check", status, output)


def test_each_case_is_named_with_the_member_status() -> None:
    checks = {
        "web-canary-v1-7": [SERF, http("critical", "Get \"http://127.0.0.1:8080/health\":\n"
                                                   "  dial tcp 127.0.0.1:8080: connect: "
                                                   "connection refused " + "x" * 80)],
        "web-canary-v1-8": [http("passing", "HTTP GET ...: 200 OK")],
        "web-canary-v1-10": [("serfHealth", "Serf Health Status", "critical",
                              "Agent not live or unreachable"), http("passing", "ok")],
        "web-canary-v1-11": [SERF, http("passing", "ok")],
    }
    members = {"web-canary-v1-7": 1, "web-canary-v1-8": 1, "web-canary-v1-9": 3,
               "web-canary-v1-10": 4, "web-canary-v1-11": 1}
    line = not_passing(["web-canary-v1-7", "web-canary-v1-8", "web-canary-v1-9",
                        "web-canary-v1-10", "web-canary-v1-11", "web-canary-v1-12"],
                       checks, members, shown=6)
    said = line.split("; ")
    assert said[0] == ("web-canary-v1-7: Service 'web' check critical: Get "
                       "\"http://127.0.0.1:8080/health\": dial tcp 127.0.0.1:8080: connect: "
                       "connect... (member alive)"), said[0]
    assert said[1] == ("web-canary-v1-8: services registered, but the leader has not "
                       "registered the node (no serfHealth) (member alive)"), said[1]
    assert said[2] == "web-canary-v1-9: not in Consul's catalog (member left)", said[2]
    assert said[3] == ("web-canary-v1-10: Serf Health Status critical: Agent not live "
                       "or unreachable (member failed)"), said[3]
    assert said[4] == "web-canary-v1-11: passing now (member alive)", said[4]
    assert said[5] == "web-canary-v1-12: not in Consul's catalog (no member)", said[5]
    assert "\n" not in line


def test_a_crowd_is_cut_short() -> None:
    names = [f"web-canary-v1-{i}" for i in range(20)]
    line = not_passing(names, {}, {})
    assert line == ("web-canary-v1-0: not in Consul's catalog (no member); "
                    "web-canary-v1-1: not in Consul's catalog (no member); "
                    "web-canary-v1-2: not in Consul's catalog (no member); 17 more"), line
    assert not_passing([], {}, {}) == ""
