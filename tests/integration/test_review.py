"""Review apps in the lab, beside the deployed example fleet: `fleet review up` on a branch makes
an environment that answers over HTTP; another `review up` after a commit updates it and resets
its expiry; three live side by side and a fourth is refused ([review] max); bad names, TTLs and
fixed environments are refused with one line; `fleet env gc` destroys the expired one, and
the real clients (consul, bao, docker) find nothing of it; a destroy killed with -9 finishes
when run again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, FleetCopy

pytestmark = pytest.mark.lab

def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def answer(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.loads(response.read()))


def leftovers(copy: FleetCopy, env: str) -> dict[str, list[str]]:
    """What the real clients still hold of the copy's environment (another run's fleet may
    have had one of the same name)."""
    environ = {**os.environ, **copy.env, "CONSUL_HTTP_ADDR": "http://127.0.0.1:8500",
               "VAULT_ADDR": "http://127.0.0.1:8200", "BAO_ADDR": "http://127.0.0.1:8200"}
    def run(*argv: str, mine: bool = True) -> list[str]:
        out = subprocess.run(list(argv), capture_output=True, text=True, env=environ)
        return [line for line in out.stdout.splitlines()
                if env in line and (copy.name in line or not mine)]

    kv = [k for k in run("consul", "kv", "get", "-recurse", f"fleet/{copy.name}/")
          if "/history/" not in k]  # the history keeps the record of its life
    return {
        "consul catalog nodes": run("consul", "catalog", "nodes"),
        "consul members": [m for m in run("consul", "members") if " left " not in m],
        "consul kv": kv,
        "bao approles": run(str(ROOT / ".venv" / "bin" / "bao"), "list", "auth/approle/role"),
        "bao policies": run(str(ROOT / ".venv" / "bin" / "bao"), "policy", "list"),
        "bao secrets": run(str(ROOT / ".venv" / "bin" / "bao"), "kv", "list", "fleet/web",
                           mine=False),  # kv paths are ROLE/ENV: no fleet name in them
        "docker ps -a": run("docker", "ps", "-a", "--format", "{{.Names}}"),
        "docker volume ls": run("docker", "volume", "ls", "--format", "{{.Name}}"),
    }


def gone(copy: FleetCopy, env: str, timeout: float = 30) -> dict[str, list[str]]:
    """What is left of env once it settles (a node leaving Consul takes a few seconds)."""
    deadline = time.monotonic() + timeout
    while any((found := leftovers(copy, env)).values()) and time.monotonic() < deadline:
        time.sleep(1)
    return found


def test_review_apps_live_and_die(lab: Any, fleet_copy: FleetCopy) -> None:
    root = fleet_copy.root
    fleet_copy.edit("fleet.toml", 'ttl = "8h"\n', 'ttl = "1h"\n')
    fleet_copy.edit("fleet.toml", "max = 10\n", "max = 3\n"
                    "count = { web = 1, api = 0, git = 0, sidekiq = 0 }\n")
    assert fleet_copy.run("validate").code == 0
    shutil.copytree(ROOT / "secrets-policy", root / "secrets-policy")
    # the fleet itself deployed first: its pets, snowflakes and canary (review apps come
    # beside a running fleet)
    deployed = fleet_copy.run("apply", "--yes", "--json")
    assert deployed.code == 0, f"the fleet's own apply failed: {deployed.stderr[-800:]}"
    fixed = {n for n in subprocess.run(["docker", "ps", "--format", "{{.Names}}"],
                                       capture_output=True, text=True).stdout.split()
             if n.startswith(f"{fleet_copy.name}-")}
    assert len(fixed) >= 10, f"the fleet runs {len(fixed)} nodes"
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "the example fleet")
    git(root, "checkout", "-q", "-b", "feature/Login-Page")
    names = []
    try:
        # ---- up: made, answers --------------------------------------------------------------
        made = fleet_copy.run("review", "up", "--json")
        assert made.code == 0, f"review up failed: {made.stderr[-800:]}"
        app = made.json()
        env = app["env"]
        names.append(env)
        assert env == "review-feature-login-page", app
        assert app["created"] is True, app
        web = [e for e in app["endpoints"] if e["role"] == "web"]
        assert len(web) == 1 and web[0]["passing"], f"web's endpoint: {app['endpoints']}"
        said = answer(web[0]["url"] + "/")
        assert said["role"] == "web" and said["version"] == app["version"], said
        first_expiry = app["record"]["expires"]

        # ---- a commit, then up again: updated, expiry reset ----------------------------------
        script = root / "packer" / "scripts" / "web.sh"
        script.write_text(script.read_text() + "echo review-change > /srv/gitlab/public/change\n")
        git(root, "commit", "-q", "-am", "web: a change under review")
        time.sleep(1)
        again = fleet_copy.run("review", "up", "--json")
        assert again.code == 0, f"the second review up failed: {again.stderr[-800:]}"
        second = again.json()
        assert second["env"] == env and second["created"] is False, second
        assert second["version"] != app["version"], "the commit should give a new version"
        assert second["record"]["expires"] > first_expiry, "a deploy must reset the expiry"
        web = [e for e in second["endpoints"] if e["role"] == "web"]
        assert web and answer(web[0]["url"] + "/")["version"] == second["version"], web

        # ---- three side by side; a fourth is refused ------------------------------------------
        for branch in ("fix/typo", "spike"):
            git(root, "checkout", "-q", "-b", branch)
            other = fleet_copy.run("review", "up", "--json")
            assert other.code == 0, f"review up on {branch} failed: {other.stderr[-600:]}"
            names.append(other.json()["env"])
        running = set(subprocess.run(["docker", "ps", "--format", "{{.Names}}"],
                                     capture_output=True, text=True).stdout.split())
        assert fixed <= running, f"the fleet's own nodes went: {sorted(fixed - running)}"
        listed = {e["name"]: e for e in fleet_copy.run("env", "list", "--json").json()}
        assert {n for n, e in listed.items() if e["kind"] == "ephemeral"} == set(names), listed
        assert all(listed[n]["nodes"] == 4 for n in names), {n: listed[n]["nodes"] for n in names}
        fourth = fleet_copy.run("env", "create", "one-too-many")
        assert fourth.code == 1 and "max" in fourth.stderr, fourth.stderr
        assert "one-too-many" not in fleet_copy.run("env", "list").stdout

        # ---- bad input: one line, exit 1, nothing made ----------------------------------------
        for argv, expected in ((("env", "create", "staging"), "fixed environment"),
                               (("env", "create", "Bad_Name"), "not a valid environment name"),
                               (("env", "extend", names[1], "--ttl", "9999h"), "max_ttl"),
                               (("env", "extend", names[1], "--ttl", "soon"), "not a duration"),
                               (("env", "destroy", "production"), "fixed environment")):
            refused = fleet_copy.run(*argv)
            assert refused.code == 1, f"{argv}: exit {refused.code}"
            assert expected in refused.stderr and "Traceback" not in refused.stderr, refused.stderr

        # ---- pin, then gc with a short TTL ----------------------------------------------------
        assert fleet_copy.run("env", "pin", names[2]).code == 0
        assert fleet_copy.run("env", "extend", names[2], "--ttl", "1s").code == 0
        assert fleet_copy.run("env", "extend", env, "--ttl", "1s").code == 0
        time.sleep(2)
        dry = fleet_copy.run("env", "gc", "--dry-run", "--json").json()
        assert dry["expired"] == [env], f"only the unpinned expired one: {dry}"
        swept = fleet_copy.run("env", "gc", "--json")
        assert swept.code == 0, swept.stderr[-600:]
        assert swept.json()["destroyed"] == [env], swept.stdout
        names.remove(env)
        found = gone(fleet_copy, env)
        assert not any(found.values()), f"left behind: {found}"
        history = fleet_copy.run("history", "--json").json()
        assert {"environment-created", "environment-destroyed"} <= {
            e["event"] for e in history if e.get("env") == env}, "its life is in the history"

        # ---- a destroy killed with -9 finishes when run again ---------------------------------
        victim = names[0]
        proc = subprocess.Popen([sys.executable, "-m", "fleet", "-f", str(fleet_copy.file), "env",
                                 "destroy", victim], cwd=ROOT, env={**os.environ, **fleet_copy.env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        said = []
        for line in proc.stderr:  # killed as its teardown begins: mid-destroy, however fast
            said.append(line)
            if f"{victim}: destroying" in line:
                break
        proc.kill()
        proc.wait()
        assert any("destroying" in line for line in said), f"the destroy never began: {said}"
        listed = {e["name"] for e in fleet_copy.run("env", "list", "--json").json()}
        assert victim in listed, "the killed destroy had already finished: nothing to rerun"
        rerun = fleet_copy.run("env", "destroy", victim)
        assert rerun.code == 0, f"the rerun did not finish the destroy: {rerun.stderr[-600:]}"
        names.remove(victim)
        found = gone(fleet_copy, victim)
        assert not any(found.values()), f"left behind after the rerun: {found}"
    finally:
        for name in names:
            fleet_copy.run("env", "destroy", name)
