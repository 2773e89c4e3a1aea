"""fleet plan / apply / converge / run against the real lab: Terraform plans and applies the
pets and snowflakes, cattle roll through promote, Consul and Docker are read for drift, and
SSH goes to the real nodes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

import pytest

from fleet.adapters import docker
from tests.conftest import ROOT, FleetCopy, Run

pytestmark = pytest.mark.lab


def plan(copy: FleetCopy, *args: str) -> tuple[Run, dict[str, Any]]:
    run = copy.run("plan", "--json", "--detailed-exitcode", *args)
    assert run.code in (0, 2), run.stderr
    return run, json.loads(run.stdout)


def nothing(copy: FleetCopy) -> None:
    """A plan that finds nothing to do (--detailed-exitcode 0); else what it found."""
    run, data = plan(copy)
    assert run.code == 0, [i for i in data["items"] if i["action"] != "awaits promotion"]


def work(data: dict[str, Any], *actions: str) -> list[tuple[str, str, str]]:
    return [(i["env"], i["target"], i["action"]) for i in data["items"]
            if i["action"] in actions]


def docker_ps() -> list[str]:
    return subprocess.run(["docker", "ps", "--format", "{{.Names}}"], capture_output=True,
                          text=True, check=True).stdout.split()


def sh(container: str, command: str) -> str:
    return subprocess.run(["docker", "exec", container, "sh", "-c", command],
                          capture_output=True, text=True, check=True).stdout


def test_plan_apply_converge_drift_stale_and_destroy(fleet_copy: FleetCopy, lab: Any) -> None:
    fc, name = fleet_copy, fleet_copy.name
    shutil.copytree(ROOT / "secrets-policy", fc.root / "secrets-policy")
    try:
        timings: dict[str, float] = {}
        started = time.monotonic()

        # a fresh lab: the whole example fleet is to be made, in depends_on order
        run, fresh = plan(fc)
        assert run.code == 2 and fresh["changes"] > 0
        bakes = [t for _, t, _ in work(fresh, "bake")]
        assert bakes[:3] == ["gitaly", "postgres", "redis"] and "web" in bakes
        assert bakes.index("gitaly") < bakes.index("web")
        creates = work(fresh, "create")
        assert {t for _, t, _ in creates} == {"gitaly-stg-01", "postgres-stg-01", "redis-stg-01",
                                              "gitaly-01", "postgres-01", "redis-01",
                                              "bastion-01", "monitoring-01"}
        assert work(fresh, "promote") == [("canary", "web", "promote"),
                                          ("canary", "api", "promote"),
                                          ("canary", "git", "promote")]

        # secrets: apply syncs the AppRoles; the values are for a person to put
        assert ("canary", "web/approle", "sync secrets") in work(fresh, "sync secrets")
        missing = [i for i in fresh["items"] if i["action"] == "missing secret"]
        # the secrets mount is the lab's, shared by every copy: values may be there already
        assert all("fleet secrets put" in i["blocked"] for i in missing)
        for i in missing:
            role, key = i["target"].split("/")
            put = subprocess.run([sys.executable, "-m", "fleet", "-f", str(fc.file), "secrets",
                                  "put", role, key, "--env", i["env"]], input=f"{key}-value",
                                 capture_output=True, text=True, env={**os.environ, **fc.env})
            assert put.returncode == 0, put.stderr

        applied = fc.run("apply", "--yes", "--json")
        assert applied.code == 0, applied.stderr
        done = [(d["env"], d["target"], d["action"]) for d in json.loads(applied.stdout)["done"]]
        assert [a for _, _, a in done[:len(bakes)]] == ["bake"] * len(bakes)
        done = [d for d in done if d[2] != "sync secrets"]
        chain = ["canary", "staging", "production"].index
        placed = {t for _, t, _ in creates}
        machines = [i for i, (e, t, _) in enumerate(done) if e and t in placed]
        cattle = [i for i, (e, t, _) in enumerate(done) if e and t not in placed]
        assert max(machines) < min(cattle), f"every environment's pets before any cattle: {done}"
        for group in (machines, cattle):
            envs = [done[i][0] for i in group]
            assert envs == sorted(envs, key=chain), f"environments in chain order: {envs}"
        staging = [t for e, t, _ in done if e == "staging"]
        assert staging == ["gitaly-stg-01", "postgres-stg-01", "redis-stg-01"]
        running = docker_ps()
        assert {f"{name}-{i}" for _, i, _ in creates} <= set(running)
        assert any(n.startswith(f"{name}-web-canary-") for n in running)
        timings["fresh plan + apply"] = time.monotonic() - started

        # a second plan finds nothing to do; a second apply does nothing
        nothing(fc)
        assert "nothing to do" in fc.run("apply", "--yes").stdout

        # a pet's setting: an in-place update, applied over SSH by converge
        step = time.monotonic()
        pet = f"{name}-gitaly-stg-01"
        sh(pet, "echo repos > /var/opt/gitaly/marker")  # data on the pet's volume
        fc.edit("fleet.toml", 'storage_name = "default"', 'storage_name = "second"')
        run, changed = plan(fc, "staging")
        assert run.code == 2
        assert work(changed, "update", "replace", "destroy", "create") == [
            ("staging", "gitaly-stg-01", "update")]
        converged = fc.run("converge", "gitaly", "--env", "staging")
        assert converged.code == 0, converged.stderr
        assert f"== {pet}: ok (exit 0)" in converged.stdout
        shown = fc.run("run", "gitaly", "--env", "staging", "--", "cat", "/etc/fleet/settings.env")
        assert shown.code == 0, shown.stderr
        assert "FLEET_SETTING_STORAGE_NAME=second" in shown.stdout
        assert fc.run("apply", "--yes").code == 0
        nothing(fc)
        timings["setting -> converge -> apply"] = time.monotonic() - step

        # a pet's provisioner changed: the plan converges it in place (and bakes its image);
        # apply does both, and once converged the new image offers nothing more
        step = time.monotonic()
        fc.edit("packer/scripts/gitaly.sh", "write_settings", "write_settings\n"
                "echo provisioned-twice > /etc/fleet/provisioned")
        run, changed = plan(fc)
        assert run.code == 2
        assert sorted(work(changed, "converge")) == [("production", "gitaly-01", "converge"),
                                                     ("staging", "gitaly-stg-01", "converge")], \
            f"converge for the gitaly pets only: {work(changed, 'converge')}"
        assert not work(changed, "update", "replace", "move"), changed["items"]
        applied = fc.run("apply", "--yes", "--json")
        assert applied.code == 0, applied.stderr
        done = {(d["target"], d["action"]) for d in json.loads(applied.stdout)["done"]}
        assert {("gitaly-01", "converge"), ("gitaly-stg-01", "converge")} <= done, done
        assert sh(pet, "cat /etc/fleet/provisioned").strip() == "provisioned-twice", \
            "apply ran the changed provisioner on the running pet"
        nothing(fc)
        timings["provisioner -> converge"] = time.monotonic() - step

        # one host down: reported beside the others, exit 1
        step = time.monotonic()
        subprocess.run(["docker", "stop", "-t", "1", f"{name}-gitaly-01"], check=True,
                       capture_output=True)
        partial = fc.run("run", "gitaly", "--", "hostname")
        assert partial.code == 1
        assert f"== {pet}: ok" in partial.stdout and "not running" in partial.stdout
        subprocess.run(["docker", "start", f"{name}-gitaly-01"], check=True, capture_output=True)

        # a node removed by hand is drift; a plan saved before it is stale
        saved = fc.root / "saved-plan.json"
        assert fc.run("plan", "--out", str(saved)).code == 0
        subprocess.run(["docker", "rm", "-f", pet], check=True, capture_output=True)
        run, drifted = plan(fc)
        assert run.code == 2
        [item] = [i for i in drifted["items"] if i["target"] == "gitaly-stg-01"]
        assert item["drift"] and item["action"] == "replace" and not item["blocked"]
        refused = fc.run("apply", "--plan", str(saved))
        assert refused.code == 1 and "saved plan no longer matches" in refused.stderr
        assert pet not in docker_ps()  # nothing was applied
        assert fc.run("apply", "--yes").code == 0
        assert pet in docker_ps()
        assert sh(pet, "cat /var/opt/gitaly/marker").strip() == "repos"  # the volume stayed
        nothing(fc)
        timings["drift + stale plan"] = time.monotonic() - step

        # the role's newest image is made on another platform (here: another template): no
        # converge brings that, so the plan offers each pet a move, and apply leaves it be
        step = time.monotonic()
        fc.edit("packer/lab-shell.pkr.hcl", "# A role image for the lab", "# A role image (2)")
        assert fc.run("bake", "gitaly").code == 0
        run, offered = plan(fc)
        moves = {i["target"]: i for i in offered["items"] if i["action"] == "move"}
        assert sorted(moves) == ["gitaly-01", "gitaly-stg-01"], offered["items"]
        assert all(i["blocked"] for i in moves.values()), "a move is offered, never done unasked"
        assert "another base, Packer or template" in moves["gitaly-01"]["detail"]
        assert not work(offered, "converge", "replace"), "the provisioner is the same"
        timings["newer platform -> move offered"] = time.monotonic() - step

        # a plan that would destroy a pet is refused, saying what data lives there
        fc.edit("fleet.toml", 'staging = ["postgres-stg-01"]', "staging = []")
        destroy = fc.run("plan", "staging")
        assert destroy.code == 1
        assert "postgres-stg-01" in destroy.stderr and "PostgreSQL cluster" in destroy.stderr
        assert fc.run("apply", "--yes", "staging").code == 1
        assert f"{name}-postgres-stg-01" in docker_ps()
        print(timings)
    finally:
        docker.remove_containers([n for n in docker.lab_containers() if n.startswith(f"{name}-")])
        lab.consul().delete_tree(f"fleet/{name}/")


def test_bad_input_is_one_line(fleet_copy: FleetCopy) -> None:
    for args, says in ((("plan", "nowhere"), 'unknown environment "nowhere"'),
                       (("apply", "--yes", "--allow-replace", "web-01"), "no pet instance"),
                       (("converge", "web"), "cattle: never changed in place"),
                       (("run", "bastion", "--env", "canary", "--", "true"), "no node")):
        run = fleet_copy.run(*args)
        assert run.code == 1, (args, run.stderr)
        assert says in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    consul_down = subprocess.run(
        [str(ROOT / ".venv/bin/fleet"), "-f", str(fleet_copy.file), "plan"], capture_output=True,
        text=True, env={**os.environ, **fleet_copy.env, "CONSUL_HTTP_ADDR": "http://127.0.0.1:1"})
    assert consul_down.returncode == 1 and "Consul" in consul_down.stderr, consul_down.stderr
    assert len(consul_down.stderr.strip().splitlines()) == 1
