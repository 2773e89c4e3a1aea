"""One command bakes what the plan needs, and `fleet images prune` keeps what is needed: against
the real Packer, Docker, Consul, OpenBao and Terraform of the lab."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from fleet.adapters import docker
from fleet.services import baseimage, cattle
from fleet.services.context import load
from tests.conftest import ROOT, FleetCopy

pytestmark = pytest.mark.lab

SHELL_ROLES = ["web", "api", "git", "sidekiq", "gitaly", "postgres", "redis", "bastion"]


def test_bake_all_bakes_everything_the_plan_needs(lab: Any, fleet_copy: FleetCopy) -> None:
    run = fleet_copy.run("bake", "--all", "--version", "v1", "--json")
    assert run.code == 0, run.stderr
    outcomes = {r["role"]: r["outcome"] for r in run.json()["results"]}
    assert outcomes == {**dict.fromkeys(SHELL_ROLES, "built"), "monitoring": "skipped"}, \
        "--all bakes cattle, pets and snowflakes alike, and names the chef-solo role as skipped"
    (skipped,) = [r for r in run.json()["results"] if r["outcome"] == "skipped"]
    assert "chef-solo, which cannot run in the lab" in skipped["detail"], skipped["detail"]
    try:
        planned = fleet_copy.run("plan", "--json")
        assert planned.code == 0, planned.stderr
        bakes = [i["role"] for i in json.loads(planned.stdout)["items"] if i["action"] == "bake"]
        assert bakes == [], f"after bake --all the plan still wants images of {bakes}"

        again = fleet_copy.run("bake", "--all", "--json")
        assert again.code == 0, again.stderr
        assert {r["role"]: r["outcome"] for r in again.json()["results"]} == {
            **dict.fromkeys(SHELL_ROLES, "cached"), "monitoring": "skipped"}, \
            "a second --all finds every image baked"
    finally:
        lab.consul().delete_tree(f"fleet/{fleet_copy.name}/")


# ---- prune ------------------------------------------------------------------------------------

def own_base(copy: FleetCopy) -> tuple[str, str]:
    """Give the copy a base of its own name, so that its prune judges only its own base images:
    the lab's current base image, tagged under the copy's base repository (the inputs digest
    leaves the name out, so it is the copy's current base too). Returns (repository, tag)."""
    text = copy.file.read_text()
    base = f"b{copy.name}"
    copy.file.write_text(text.replace("[bases.bookworm]", f"[bases.{base}]")
                         .replace('base = "bookworm"', f'base = "{base}"'))
    ref, image = baseimage.current(lab_base(), ROOT / "packer" / "base", ROOT / ".fleet" / "cache")
    assert image is not None, f"the lab's base image {ref} is not built"
    repository, tag = f"fleet-base-{base}", ref.split(":")[1]
    docker.tag(image.id, f"{repository}:{tag}")
    return repository, tag


def lab_base() -> Any:
    return load(ROOT / "fleet.toml").fleet.bases["bookworm"]


def old_base(repository: str, tmp: Path) -> str:
    """A stand-in for an old base image nothing uses any more: one small file, imported."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("etc/old-base")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"old"))
    (tmp / "old-base.tar").write_bytes(data.getvalue())
    return docker.import_tarball(tmp / "old-base.tar", f"{repository}:000000000000",
                                 ["LABEL fleet.base=old fleet.base.digest=" + "0" * 64])


def prune(copy: FleetCopy, *args: str) -> dict[str, Any]:
    run = copy.run("images", "prune", "--keep", "1", "--json", *args)
    assert run.code == 0, run.stderr
    report: dict[str, Any] = run.json()
    return report


def outcomes(report: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    return {p["verdict"]["ref"]: (p["outcome"], p["verdict"]["reasons"]) for p in report["images"]}


def test_prune_keeps_the_channel_its_rollback_and_the_newest(lab: Any, fleet_copy: FleetCopy,
                                                             tmp_path: Path) -> None:
    fc = fleet_copy
    repository, tag = own_base(fc)
    fake = old_base(repository, tmp_path)
    try:
        ids = {}
        for version in ("v1", "v2", "v3", "v4"):  # the same inputs, four real builds
            run = fc.run("bake", "web", "--version", version, "--rebake", "--json")
            assert run.code == 0, run.stderr
            ids[version] = run.json()["results"][0]["artifact"]
        for version in ("v1", "v2"):  # canary's channel: v2, and v1 before it
            run = fc.run("promote", version, "--to", "canary", "--role", "web")
            assert run.code == 0, run.stderr
        catalog_before = fc.run("images", "--json").json()

        dry = outcomes(prune(fc, "--dry-run"))
        assert dry["web:v3"][0] == "would prune", dry
        assert dry[f"{repository}:000000000000"][0] == "would prune", dry
        assert all(docker.image(i) is not None for i in ids.values()), "--dry-run removed an image"
        assert docker.image(fake) is not None, "--dry-run removed the old base image"
        assert fc.run("images", "--json").json() == catalog_before, "--dry-run changed the catalog"

        done = outcomes(prune(fc))
        assert done["web:v2"][0] == "kept" and done["web:v2"][1][:2] == [
            "channel of canary", "1 node(s) desired in canary"], done["web:v2"]
        assert f"container {fc.name}-web-canary-v2-0" in done["web:v2"][1], done["web:v2"]
        # (v1's node may still be draining away: its container is then a reason too)
        assert done["web:v1"][0] == "kept", done["web:v1"]
        assert done["web:v1"][1][0] == "rollback target in canary", done["web:v1"]
        assert done["web:v4"] == ("kept", ["one of the 1 newest of web"]), done["web:v4"]
        assert done["web:v3"][0] == "pruned", done["web:v3"]
        assert done[f"{repository}:{tag}"][0] == "kept", "the current base image must stay"
        assert done[f"{repository}:000000000000"][0] == "pruned", done
        assert docker.image(ids["v3"]) is None, "web:v3's image is still in Docker"
        assert docker.image(fake) is None, "the old base image is still in Docker"
        assert sorted(t for t, _ in docker.images(f"fleet-{fc.name}-web")) == ["v1", "v2", "v4"]
        assert all(docker.image(ids[v]) is not None for v in ("v1", "v2", "v4"))
        assert docker.image(f"{repository}:{tag}") is not None, "the current base lost its tag"
        shown = fc.run("images", "show", "web:v3", "--json").json()
        assert shown["pruned"] is True and shown["artifact"] == ids["v3"], \
            "the pruned record stays in the catalog, marked, as history"
        assert "older than the 1 newest of web" in shown["pruned_reason"], shown
        events = [e for e in fc.run("history", "--json").json() if e["event"] == "prune"]
        ours = [[i for i in e["images"] if i.startswith(("web:", repository))] for e in events]
        assert ours == [["web:v3", f"{repository}:000000000000"]], events  # the lab may hold
        # stale base images of other bases too (a base rebuilt on this machine): pruned alike

        again = prune(fc)
        assert {o for o, _ in outcomes(again).values()} == {"kept"}, "a rerun must be a no-op"
        assert "web:v3" not in outcomes(again), "a pruned record is no longer judged"

        refused = fc.run("promote", "v3", "--to", "canary", "--role", "web")
        assert refused.code == 1 and "web:v3 was pruned" in refused.stderr, refused.stderr
        plan = fc.run("plan", "canary", "--json")
        assert plan.code == 0, plan.stderr
        assert not [i for i in plan.json()["items"] if i["action"] == "bake" and i["role"] == "web"]

        rebuilt = fc.run("bake", "web", "--version", "v3", "--json")
        assert rebuilt.code == 0, rebuilt.stderr
        result = rebuilt.json()["results"][0]
        assert result["outcome"] == "built", "a pruned version with the same inputs is rebuilt"
        record = fc.run("images", "show", "web:v3", "--json").json()
        assert record["pruned"] is False and record["artifact"] == result["artifact"]
        assert docker.image(result["artifact"]) is not None
    finally:
        ctx = load(fc.file, fc.env)
        cattle.apply(ctx, "canary", [])
        subprocess.run(["docker", "image", "rm", f"{repository}:{tag}"], capture_output=True)
        subprocess.run(["docker", "image", "rm", fake], capture_output=True)
        lab.consul().delete_tree(f"fleet/{fc.name}/")


def test_prune_bad_input_and_consul_down_are_one_line(lab: Any, fleet_copy: FleetCopy) -> None:
    from tests.conftest import fleet

    zero = fleet_copy.run("images", "prune", "--keep", "0")
    assert zero.code == 1 and "a role keeps at least its newest image" in zero.stderr, zero.stderr
    down = fleet("images", "prune", file=fleet_copy.file,
                 env={**fleet_copy.env, "CONSUL_HTTP_ADDR": "127.0.0.1:1"})
    assert down.code == 1, down.stderr
    assert "Consul at http://127.0.0.1:1 is not reachable" in down.stderr, down.stderr
    assert "Traceback" not in zero.stderr + down.stderr
