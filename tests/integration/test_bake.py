"""fleet bake against the real Packer, Docker, Consul and OpenBao of the lab."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fleet.adapters import docker
from fleet.adapters.vault import Vault
from tests.conftest import FleetCopy

pytestmark = pytest.mark.lab


def images_of(copy: FleetCopy, role: str) -> list[tuple[str, str]]:
    return docker.images(f"fleet-{copy.name}-{role}")


def role_images(role: str) -> set[str]:
    """Every image (dangling ones too) that a bake of this role committed."""
    out = subprocess.run(["docker", "images", "-a", "-q", "--no-trunc", "--filter",
                          f"label=fleet.role={role}"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def catalog_keys(lab: Any, copy: FleetCopy) -> list[str]:
    return [e.key for e in lab.consul().list(f"fleet/{copy.name}/catalog/")]


def bake(copy: FleetCopy, *args: str) -> tuple[int, dict[str, Any], str]:
    run = copy.run("bake", *args, "--json")
    return run.code, json.loads(run.stdout) if run.stdout else {}, run.stderr


def test_bake_records_provenance_and_then_is_cached(lab: Any, fleet_copy: FleetCopy) -> None:
    code, report, err = bake(fleet_copy, "web", "--version", "v1")
    assert code == 0, err
    assert "fleet: [web] running packer/scripts/web.sh" in err, \
        f"the bake's one shell step is not shown as the role's scripts: {err}"
    (result,) = report["results"]
    assert result["outcome"] == "built" and result["version"] == "v1"
    assert images_of(fleet_copy, "web") == [("v1", result["artifact"])]
    image = docker.image(result["artifact"])
    assert image is not None
    assert image.labels["fleet.digest"] == result["digest"]

    shown = fleet_copy.run("images", "show", "web:v1", "--json")
    assert shown.code == 0, shown.stderr
    record = shown.json()
    assert record["digest"] == result["digest"] and record["artifact"] == result["artifact"]
    assert record["builder"] == "docker" and record["packer_version"] == "1.6.6"
    assert record["base_ref"].startswith("fleet-base-bookworm:")
    assert record["base_id"].startswith("sha256:")
    assert record["git_commit"] == "unknown"  # the copy is not a git checkout
    assert "@" in record["baked_by"] and record["baked_at"].endswith("+00:00")

    # The image starts its real init and its service, not Packer's /bin/sh.
    container = docker.create_container(result["artifact"])
    try:
        subprocess.run(["docker", "start", container], check=True, capture_output=True)
        probe = subprocess.run(
            ["docker", "exec", container, "python3", "-c",
             "import time, urllib.request as u\n"
             "for _ in range(50):\n"
             "    try: print(u.urlopen('http://127.0.0.1:8080/-/health').status); break\n"
             "    except OSError: time.sleep(0.1)"],
            capture_output=True, text=True, check=True)
        assert probe.stdout.strip() == "200"
        # what the bake uploaded is gone but the migrations' folders, where fleet-migrate
        # reads them (the copy has no db/: test_migrations bakes and runs real ones)
        files = subprocess.run(
            ["docker", "exec", container, "sh", "-c",
             "ls /tmp/fleet /tmp/script_* /tmp/packer-* 2>&1; ls /opt/fleet/migrations/*"],
            capture_output=True, text=True)
        assert "No such file" in files.stdout and "/tmp/fleet:" not in files.stdout \
            and "script_" not in files.stdout.replace("/tmp/script_*", ""), files.stdout
        assert "/opt/fleet/migrations/regular:" in files.stdout \
            and "/opt/fleet/migrations/post_deployment:" in files.stdout, files.stdout
    finally:
        docker.remove_container(container)

    code, again, err = bake(fleet_copy, "web")
    assert code == 0, err
    assert again["results"][0]["outcome"] == "cached"
    assert again["results"][0]["version"] == "v1"
    assert again["results"][0]["seconds"] < 1.0
    assert catalog_keys(lab, fleet_copy) == [f"fleet/{fleet_copy.name}/catalog/web/v1"]

    # The catalog wiped under its images (as `fleet lab reset` wipes Consul and keeps Docker's
    # images): the bake builds v1 again, and the image the tag moves from, recorded nowhere
    # now, goes rather than stay behind nameless
    lab.consul().delete_tree(f"fleet/{fleet_copy.name}/catalog/")
    code, rebuilt, err = bake(fleet_copy, "web", "--version", "v1")
    assert code == 0, err
    assert rebuilt["results"][0]["outcome"] == "built"
    new = rebuilt["results"][0]["artifact"]
    assert new != result["artifact"] and images_of(fleet_copy, "web") == [("v1", new)]
    assert docker.image(result["artifact"]) is None, "the displaced image is gone"


def test_changing_a_script_rebakes_with_a_new_digest(lab: Any, fleet_copy: FleetCopy) -> None:
    code, first, err = bake(fleet_copy, "web", "--version", "v1")
    assert code == 0, err
    fleet_copy.edit("packer/scripts/web.sh", "install_services", "echo tuned\ninstall_services")

    code, _, err = bake(fleet_copy, "web", "--version", "v1")
    assert code == 1
    assert "web:v1 exists with other inputs" in err and "immutable" in err

    # a second script, which runs after the first, with the same environment and lib (and a
    # space in its name: the step's commands quote it)
    (fleet_copy.root / "packer/scripts/web after.sh").write_text(
        "#!/bin/sh\nset -eu\n. /tmp/fleet/common.sh\ntest -d /etc/gitlab\n"
        'echo "$FLEET_ROLE after $(basename "$0")" > /etc/fleet-after\n')
    fleet_copy.edit("fleet.toml", '"packer/scripts/web.sh"]',
                    '"packer/scripts/web.sh", "packer/scripts/web after.sh"]')
    # from a folder whose path holds a comma and a colon: the build container mounts the
    # staged uploads, and `--mount` is a CSV record where `-v` splits at colons
    moved = replace(fleet_copy, root=fleet_copy.root.rename(fleet_copy.root.with_name("a, b:c")))
    code, second, err = bake(moved, "web", "--version", "v2")
    assert code == 0, err
    assert second["results"][0]["outcome"] == "built"
    assert second["results"][0]["digest"] != first["results"][0]["digest"]
    assert sorted(t for t, _ in images_of(fleet_copy, "web")) == ["v1", "v2"]
    after = subprocess.run(["docker", "run", "--rm", "--entrypoint", "cat",
                            second["results"][0]["artifact"], "/etc/fleet-after"],
                           capture_output=True, text=True)
    assert after.stdout == "web after role-1-web after.sh\n", \
        f"the second script did not run after the first: {after.stdout}{after.stderr}"
    # and a node of it boots from there: its authorized_keys (under .fleet) is mounted by
    # --mount too, which `fleet run` logs in with
    promoted = moved.run("promote", "v2", "--to", "canary", "--role", "web")
    assert promoted.code == 0, promoted.stderr
    shown = moved.run("run", "web", "--env", "canary", "--", "cat /etc/fleet-after")
    assert shown.code == 0 and "web after role-1-web after.sh" in shown.stdout, \
        shown.stdout + shown.stderr


def test_failing_provisioner_leaves_nothing_behind(lab: Any, fleet_copy: FleetCopy) -> None:
    before = role_images("web")
    fleet_copy.edit("packer/scripts/web.sh", "install_services",
                    "echo 'cannot reach the gem mirror' >&2\nexit 7\ninstall_services")
    run = fleet_copy.run("bake", "web", "--version", "v1")
    assert run.code == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("fleet: error: bake of web failed:")
    assert "cannot reach the gem mirror" in last and "exit status: 7" in last
    assert "Traceback" not in run.stderr
    assert images_of(fleet_copy, "web") == []
    assert role_images("web") == before
    assert catalog_keys(lab, fleet_copy) == []


def test_a_planted_secret_fails_the_bake(lab: Any, fleet_copy: FleetCopy) -> None:
    value = "lab-" + secrets.token_hex(12)
    vault = Vault(lab.vault_addr, lab.vault_token.reveal())
    vault.kv_put(lab.fleet.secrets_mount, f"{fleet_copy.name}/web/canary",
                 {"db_password": value})
    before = role_images("web")
    fleet_copy.edit("packer/scripts/web.sh", "install_services",
                    f"echo '{value}' | tee /etc/gitlab/db_password\ninstall_services")
    run = fleet_copy.run("bake", "web", "--version", "v1")
    assert run.code == 1
    assert "web would ship a secret" in run.stderr
    assert "db_password" in run.stderr
    assert value not in run.stderr + run.stdout
    assert images_of(fleet_copy, "web") == []
    assert role_images("web") == before
    assert catalog_keys(lab, fleet_copy) == []
    logs = fleet_copy.root / ".fleet" / "logs" / "bake"
    assert not any(value in p.read_text() for p in logs.glob("*.log"))


def test_aws_template_passes_packer_validate(lab: Any, fleet_copy: FleetCopy) -> None:
    code, report, err = bake(fleet_copy, "web", "monitoring", "--target", "aws",
                             "--version", "v1")
    assert code == 0, err
    outcomes = {r["role"]: (r["outcome"], r["detail"]) for r in report["results"]}
    assert outcomes["web"][0] == "validated" and "aws-shell.pkr.hcl" in outcomes["web"][1]
    assert outcomes["monitoring"][0] == "validated"
    assert "aws-chef-solo.pkr.hcl" in outcomes["monitoring"][1]
    assert catalog_keys(lab, fleet_copy) == []


def test_chef_checks_catch_a_broken_recipe_and_an_unknown_entry(lab: Any,
                                                                 fleet_copy: FleetCopy) -> None:
    fleet_copy.edit("cookbooks/monitoring/recipes/default.rb", "recursive true", "recursive true\nend end")
    run = fleet_copy.run("bake", "monitoring", "--target", "aws")
    assert run.code == 1
    assert "cookbooks/monitoring/recipes/default.rb does not parse" in run.stderr

    fleet_copy.edit("fleet.toml", 'run_list = ["recipe[monitoring]"]',
                    'run_list = ["recipe[monitoring]", "recipe[alerting::pager]"]')
    run = fleet_copy.run("bake", "monitoring", "--target", "aws")
    assert run.code == 1
    assert ("recipe[alerting::pager] resolves to no recipe: "
            "cookbooks/alerting/recipes/pager.rb does not exist") in run.stderr


def test_chef_solo_role_is_refused_in_the_lab_after_its_checks(lab: Any,
                                                              fleet_copy: FleetCopy) -> None:
    run = fleet_copy.run("bake", "monitoring")
    assert run.code == 1
    assert "chef-solo, which cannot run in the lab" in run.stderr
    assert "the aws template passes packer validate" in run.stderr


def test_revoke_is_recorded(lab: Any, fleet_copy: FleetCopy) -> None:
    code, _, err = bake(fleet_copy, "web", "--version", "v1")
    assert code == 0, err
    run = fleet_copy.run("revoke", "web:v1", "--reason", "CVE-2026-0001 in the base")
    assert run.code == 0, run.stderr
    shown = fleet_copy.run("images", "web", "--json").json()
    assert shown[0]["revoked"] is True and shown[0]["revoked_reason"] == "CVE-2026-0001 in the base"
    again = fleet_copy.run("revoke", "web:v1", "--reason", "again")
    assert again.code == 1 and "already revoked" in again.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("bake", "wbe"), 'unknown role "wbe" (did you mean "web"?)'),
    (("bake",), "no role named"),
    (("bake", "web", "--target", "gcp"), 'unknown target "gcp"'),
    (("images", "show", "web"), "'web' is not ROLE:VERSION"),
    (("images", "show", "web:v404"), "no image web:v404 in the catalog"),
])
def test_bad_input_is_one_line(lab: Any, fleet_copy: FleetCopy, args: tuple[str, ...],
                               message: str) -> None:
    run = fleet_copy.run(*args)
    assert run.code == 1
    assert message in run.stderr
    assert "Traceback" not in run.stderr


def test_consul_down_fails_before_building(lab: Any, fleet_copy: FleetCopy) -> None:
    env = {**fleet_copy.env, "CONSUL_HTTP_ADDR": "127.0.0.1:1"}
    from tests.conftest import fleet

    run = fleet("bake", "web", file=fleet_copy.file, env=env)
    assert run.code == 1
    assert "Consul at http://127.0.0.1:1 is not reachable" in run.stderr
    assert images_of(fleet_copy, "web") == []


def test_docker_down_is_one_clear_line(lab: Any, fleet_copy: FleetCopy) -> None:
    from tests.conftest import fleet

    env = {**fleet_copy.env, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    run = fleet("bake", "web", file=fleet_copy.file, env=env)
    assert run.code == 1
    assert "dockerd is not running" in run.stderr
    assert "Traceback" not in run.stderr
    assert catalog_keys(lab, fleet_copy) == []


def test_two_concurrent_bakes_of_one_version_cannot_both_win(lab: Any,
                                                              fleet_copy: FleetCopy) -> None:
    import os
    import sys

    from tests.conftest import ROOT

    before = role_images("git")
    argv = [sys.executable, "-m", "fleet", "-f", str(fleet_copy.file), "bake", "git",
            "--version", "v7", "--json"]
    env = {**os.environ, **fleet_copy.env}
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT, env=env) for _ in range(2)]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outcomes.append(json.loads(out)["results"][0])
    assert sorted(o["outcome"] for o in outcomes) == ["built", "cached"]
    assert catalog_keys(lab, fleet_copy) == [f"fleet/{fleet_copy.name}/catalog/git/v7"]
    recorded = fleet_copy.run("images", "show", "git:v7", "--json").json()["artifact"]
    assert images_of(fleet_copy, "git") == [("v7", recorded)]
    assert {o["artifact"] for o in outcomes} == {recorded}
    assert role_images("git") - before == {recorded}, "the losing bake must remove its image"


def packers_of(copy: FleetCopy) -> list[int]:
    """PIDs of the Packer processes building from the copy's templates."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"packer") and any(str(copy.root).encode() in a
                                                         for a in argv):
            found.append(int(proc.name))
    return found


def packer_containers() -> set[str]:
    """Containers of Packer's docker builder (its shared folder is mounted at /packer-files)."""
    out = subprocess.run(["docker", "ps", "-aq", "--no-trunc", "--filter",
                          "volume=/packer-files"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def bake_held_in_web_script(copy: FleetCopy, *args: str) -> tuple[subprocess.Popen[str], set[str]]:
    """`fleet bake ARGS` started with web's script sleeping 60 s, returned once it runs that
    script, with the Packer container building it."""
    import os
    import signal
    import sys
    import time

    from tests.conftest import ROOT

    containers = packer_containers()
    copy.edit("packer/scripts/web.sh", "install_services", "sleep 60\ninstall_services")
    argv = [sys.executable, "-m", "fleet", "-f", str(copy.file), "bake", *args, "--json"]
    # SIGINT as a terminal's fleet has it: a suite started in the background (CI) ignores it,
    # and the ignoring is inherited, so fleet would never hear the interrupt test's SIGINT.
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, **copy.env},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stderr is not None
    deadline, said = time.monotonic() + 120, ""
    while "running packer/scripts/web.sh" not in said and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        said += line
    assert "running packer/scripts/web.sh" in said, f"the bake never reached its script: {said}"
    building = packer_containers() - containers
    assert len(building) == 1 and packers_of(copy), "Packer is not building"
    return proc, building


def test_a_bake_killed_mid_build_leaves_nothing_building_and_a_rerun_bakes(
        lab: Any, fleet_copy: FleetCopy) -> None:
    import os
    import signal

    from tests.conftest import eventually

    before = role_images("web")
    proc, building = bake_held_in_web_script(fleet_copy, "web", "--version", "v1")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    assert eventually(lambda: packers_of(fleet_copy), [], timeout=60) == [], \
        "Packer went on building after its fleet was killed"
    assert eventually(lambda: packer_containers() & building, set(), timeout=30) == set(), \
        "the killed bake's Packer container stayed"
    logdir = fleet_copy.root / ".fleet" / "logs" / "bake"
    logs = sorted(logdir.glob("web-*.log"))
    said = logs[-1].read_text() if logs else ""
    assert "Cleanly cancelled builds" in said, f"Packer did not finish its clean-up: {said[-800:]}"
    left = sorted(logdir.glob("*-upload"))
    assert [p.name for p in left] == [logs[-1].stem + "-upload"], \
        f"the killed bake's upload folder is not what it left: {left}"
    assert role_images("web") == before, "the killed bake left an image"
    assert catalog_keys(lab, fleet_copy) == []

    fleet_copy.edit("packer/scripts/web.sh", "sleep 60\ninstall_services", "install_services")
    code, again, err = bake(fleet_copy, "web", "--version", "v1")
    assert code == 0, err
    assert again["results"][0]["outcome"] == "built"
    assert images_of(fleet_copy, "web") == [("v1", again["results"][0]["artifact"])]
    assert sorted(logdir.glob("*-upload")) == [], "the rerun left the killed bake's folder"
    assert logs[-1].exists(), "the killed bake's log (no secret in it) was not kept"


@pytest.mark.parametrize(("signum", "exit_code", "word"), [
    (signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["SIGINT", "SIGTERM"])
def test_a_bake_interrupted_cancels_its_packer_begins_no_other_role_and_records_nothing(
        lab: Any, fleet_copy: FleetCopy, signum: int, exit_code: int, word: str) -> None:
    """SIGINT to fleet alone (not to its process group, as a terminal's Ctrl-C would send it:
    Packer never sees it), or SIGTERM (`kill`, a cancelled CI job), while web builds and api
    waits its turn (--parallel 1)."""
    import os

    from tests.conftest import eventually

    before = role_images("web"), role_images("api")
    proc, building = bake_held_in_web_script(fleet_copy, "web", "api", "--version", "v1",
                                             "--parallel", "1")
    assert proc.stderr is not None
    os.kill(proc.pid, signum)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = None
    said = proc.stderr.read()
    assert code == exit_code, \
        f"fleet did not stop within 30 s of {signum!r} (exit {code}): {said[-600:]}"
    assert f"fleet: {word}" in said, said[-600:]
    assert "Cancelling build" in said, f"Packer was not told to cancel: {said[-600:]}"
    assert "building api" not in said, f"a role was begun after the interrupt: {said[-600:]}"
    assert packers_of(fleet_copy) == [], "Packer outlived the interrupted bake"
    assert eventually(lambda: packer_containers() & building, set(), timeout=30) == set(), \
        "the interrupted bake's Packer container stayed"
    assert (role_images("web"), role_images("api")) == before, "the interrupted bake left an image"
    assert catalog_keys(lab, fleet_copy) == [], "the interrupted bake recorded an image"
    assert sorted((fleet_copy.root / ".fleet" / "logs" / "bake").glob("*-upload")) == []
