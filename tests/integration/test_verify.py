"""fleet verify and the Vagrantfile against the real lab: real Vagrant (docker provider), Docker,
Consul agents on the nodes, sshd reached over Fabric. Each test works on its own fleet copy."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fleet.adapters import vagrant
from fleet.adapters.consul import Consul
from fleet.model.verification import verify_problems
from fleet.services import cattle
from fleet.services.context import load
from fleet.services.verdicts import read_verification
from fleet.workflows.images import catalog
from tests.conftest import ROOT, FleetCopy, fleet

pytestmark = pytest.mark.lab


def verifiable(copy: FleetCopy) -> FleetCopy:
    """Give the copy what `fleet verify` boots and runs: the Vagrantfile and the suites."""
    shutil.copy2(ROOT / "Vagrantfile", copy.root / "Vagrantfile")
    shutil.copytree(ROOT / "tests" / "verify", copy.root / "tests" / "verify")
    return copy


def bake(copy: FleetCopy, *args: str) -> None:
    run = copy.run("bake", *args)
    assert run.code == 0, run.stderr


def containers(prefix: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                         text=True, check=True).stdout.split()
    return sorted(n for n in out if n.startswith(prefix))


def consul(copy: FleetCopy) -> Consul:
    return load(copy.file, copy.env).consul()


def test_verify_web_passes_and_leaves_nothing_running(fleet_copy: FleetCopy,
                                                      tmp_path: Path) -> None:
    """Bad input first (one line, nothing started), then web:v1 verified twice, the gate."""
    copy = verifiable(fleet_copy)
    copy.edit("fleet.toml", 'name = "canary"\n', 'name = "canary"\nrequire_verify = true\n')
    bad_input_is_one_line_and_starts_nothing(copy, tmp_path)  # bakes web:v1

    human = copy.run("verify", "web")
    assert human.code == 0, human.stderr
    for check in ("vagrant::up", "consul::joined", "consul::passing[web:8080]",
                  "common/test_services.py::test_listening[web:8080]",
                  "common/test_secrets.py::test_no_secret_in_node_files",
                  "common/test_secrets.py::test_consul_token_delivered_readable_by_root_only",
                  "common/test_secrets.py::test_credentials_live_on_a_tmpfs",
                  "web/test_web.py::test_serves_this_role_and_version"):
        assert check in human.stdout, check
    # every check passed, however many: one per package of the base among them
    checks = re.search(r"passed (\d+)/(\d+) checks", human.stderr)
    assert checks and checks[1] == checks[2] and int(checks[1]) >= 20, human.stderr

    run = copy.run("verify", "web", "--version", "v1", "--json")
    assert run.code == 0, run.stderr
    report = run.json()
    result = report["verification"]
    assert report["passed"] and result["run"] == 2
    assert {c["outcome"] for c in result["checks"]} == {"passed"}
    assert containers(f"{copy.name}-web-verify-") == []
    assert consul(copy).node_checks(result["node"]) == []  # it left Consul too

    # the gate: v1 (verified) may enter canary; v2, the same image under a new name, may not yet
    ctx = load(copy.file, copy.env)
    kv = consul(copy)
    verified = read_verification(kv, ctx.fleet.kv_prefix, "web", "v1")
    assert verified is not None and verified.artifact == result["artifact"]
    v1 = catalog(ctx).require("web", "v1").record
    assert verify_problems(ctx.fleet, "canary", v1, verified) == []
    bake(copy, "web", "--version", "v2")
    v2 = catalog(ctx).require("web", "v2").record
    assert verify_problems(ctx.fleet, "canary", v2,
                           read_verification(kv, ctx.fleet.kv_prefix, "web", "v2")) == [
        "web:v2 has not been verified, and canary requires a passing verify: "
        "run `fleet verify web --version v2`"]

    # and `fleet promote` applies it: v2 is refused, v1 goes in with its verify recorded
    refused = copy.run("promote", "v2", "--to", "canary", "--role", "web")
    assert refused.code == 1 and "web:v2 has not been verified" in refused.stderr
    try:
        promoted = copy.run("promote", "v1", "--to", "canary", "--role", "web")
        assert promoted.code == 0, promoted.stderr
        (event,) = [e for e in copy.run("history", "canary", "--json").json()
                    if e["event"] == "promote"]
        assert event["verified"]["web"].startswith(f"passed {checks[1]}/{checks[1]} checks")
    finally:
        cattle.apply(ctx, "canary", [])


def test_a_role_that_does_not_listen_fails_verify_naming_the_check(fleet_copy: FleetCopy) -> None:
    copy = verifiable(fleet_copy)
    copy.edit("packer/scripts/web.sh", "install_services", "FLEET_SERVICES=''\ninstall_services")
    bake(copy, "web", "--version", "broken")

    run = copy.run("verify", "web", "--wait", "4")
    assert run.code == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("fleet: error: verify of web:broken failed: consul::passing[web:8080]")
    assert "connection refused" in last
    failed = [line.split("│")[1].strip() for line in run.stdout.splitlines()
              if "│ failed" in line]
    assert "common/test_services.py::test_listening[web:8080]" in failed
    assert "nothing listens on port 8080" in run.stdout
    assert containers(f"{copy.name}-web-verify-") == []

    ctx = load(copy.file, copy.env)
    verdict = read_verification(consul(copy), ctx.fleet.kv_prefix, "web", "broken")
    assert verdict is not None and not verdict.passed
    assert consul(copy).node_checks(verdict.node) == []


def test_vagrant_up_status_ssh_destroy_from_the_repo_root(fleet_copy: FleetCopy,
                                                          tmp_path: Path) -> None:
    copy = fleet_copy  # the repo's own Vagrantfile, pointed at the copy by FLEET_FILE
    roles = ["api", "git", "sidekiq", "web"]  # the cattle roles: one machine each
    bake(copy, *roles, "--version", "v1")
    env = {**os.environ, **copy.env, "FLEET_FILE": str(copy.file),
           "VAGRANT_DOTFILE_PATH": str(tmp_path / "vagrant")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["vagrant", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)

    def states() -> dict[str, vagrant.State]:
        status = run("status", "--machine-readable")
        assert status.returncode == 0, status.stderr
        return {m.name: m.state for m in vagrant.parse_status(status.stdout)}

    try:
        up = run("up")
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr
        assert states() == dict.fromkeys(roles, vagrant.State.RUNNING)
        assert containers(f"{copy.name}-") == [f"{copy.name}-{r}-vagrant-v1-0" for r in roles]
        ssh = run("ssh", "web", "-c", "hostname; curl -fsS http://127.0.0.1:8080/")
        assert ssh.returncode == 0, ssh.stderr
        hostname, body = ssh.stdout.strip().splitlines()
        assert hostname == f"{copy.name}-web-vagrant-v1-0"
        assert json.loads(body)["version"] == "v1"
    finally:
        # the docker provider destroys machines side by side when asked (each stop waits ~1.5 s
        # for its node to leave Consul); plain `destroy -f` takes them one after another
        destroy = run("destroy", "-f", "--parallel")
    assert destroy.returncode == 0, destroy.stderr
    assert containers(f"{copy.name}-") == []
    assert states() == dict.fromkeys(roles, vagrant.State.NOT_CREATED)


def bad_input_is_one_line_and_starts_nothing(copy: FleetCopy, tmp_path: Path) -> None:
    """Before anything is verified: an unbaked role, an unknown version, docker or vagrant
    missing. Bakes web:v1 (the one version it knows), which the verify test goes on with."""
    unbaked = copy.run("verify", "api")
    assert unbaked.code == 1
    assert unbaked.stderr == "fleet: error: api has no baked image: bake it: fleet bake api\n"

    bake(copy, "web", "--version", "v1")
    unknown = copy.run("verify", "web", "--version", "v9")
    assert unknown.code == 1
    assert unknown.stderr == ("fleet: error: no image web:v9 in the catalog: "
                              "known versions: v1\n")

    tools = tmp_path / "bin"  # vagrant and ssh-keygen, but no docker
    tools.mkdir()
    for tool in ("vagrant", "ssh-keygen"):
        (tools / tool).symlink_to(shutil.which(tool) or tool)
    without = dict(copy.env, PATH=str(tools))
    no_docker = fleet("verify", "web", file=copy.file, env=without)
    assert no_docker.code == 1
    assert no_docker.stderr == ("fleet: error: docker is not installed: "
                                "run scripts/setup.sh to install the lab's tools\n")
    (tools / "vagrant").unlink()
    no_vagrant = fleet("verify", "web", file=copy.file, env=without)
    assert no_vagrant.code == 1
    assert no_vagrant.stderr.startswith("fleet: error: vagrant is not installed")
    assert containers(f"{copy.name}-") == []
