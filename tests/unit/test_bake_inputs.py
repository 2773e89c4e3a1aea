"""The inputs digest of an image, as bake and plan compute it: one Reading shared by many roles
gives each role the digest it gets alone, and reads each file once. Real files (a copy of the
example fleet's packer/, cookbooks/ and db/); only Path.read_bytes is counted."""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path

import pytest

from fleet.model.image import hashed_inputs_digest, inputs_digest
from fleet.services import bakeinputs
from fleet.services.context import Context, load
from tests.conftest import EXAMPLE, ROOT


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    root = tmp_path / "fleet"
    for part in ("packer", "cookbooks", "db"):
        shutil.copytree(ROOT / part, root / part)
    (root / "fleet.toml").write_text(EXAMPLE.read_text())
    return load(root / "fleet.toml")


def reference(ctx: Context, role_name: str, base_id: str, packer: str) -> str:
    """The digest as bake computed it before Reading: every input read whole, then digested."""
    role, target = ctx.fleet.role(role_name), ctx.fleet.lab_target()
    inputs = {name: path.read_bytes() for name, path in bakeinputs.files(ctx, role).items()}
    inputs["template"] = bakeinputs.template_for(ctx, target, role).read_bytes()
    inputs.update({"base": base_id.encode(), "packer": packer.encode(),
                   "target": target.kind.encode()})
    inputs["role"] = bakeinputs.role_document(role)
    return inputs_digest(inputs)


def test_hashed_inputs_digest_is_inputs_digest_of_the_same_inputs() -> None:
    inputs = {"script/web.sh": b"echo 1", "template": b"t", "lib/common.sh": b""}
    assert hashed_inputs_digest({k: hashlib.sha256(v).digest() for k, v in inputs.items()}) \
        == inputs_digest(inputs), "digesting the hashes gives the digest of the inputs"


def test_a_shared_reading_gives_every_role_its_own_digest_and_reads_each_file_once(
        ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    target = ctx.fleet.lab_target()
    roles = [r for r in ctx.fleet.roles.values() if bakeinputs.bakeable(r)]
    assert len(roles) > 3 and any(r.migrations for r in roles), "the example has many roles"
    alone = {r.name: bakeinputs.digest_of(ctx, target, r, "sha256:b", "1.6.6") for r in roles}
    assert alone == {r.name: reference(ctx, r.name, "sha256:b", "1.6.6") for r in roles}, \
        "a role digested alone: the digest bake always computed"
    reads: Counter[Path] = Counter()
    read_bytes = Path.read_bytes

    def counted(path: Path) -> bytes:
        reads[path] += 1
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    reading = bakeinputs.Reading()
    shared = {r.name: bakeinputs.digest_of(ctx, target, r, "sha256:b", "1.6.6", reading)
              for r in roles}
    assert shared == alone, "a shared reading changes no role's digest"
    assert reads and max(reads.values()) == 1, \
        f"each file read once for all the roles: {reads.most_common(2)}"
    lib = ctx.root / "packer/scripts/lib"
    assert all(reads[p] == 1 for p in lib.iterdir() if p.is_file()), "the lib files read once"
    other = bakeinputs.digest_of(ctx, target, roles[0], "sha256:other", "1.6.6", reading)
    assert other != alone[roles[0].name], "the base image is an input"


def test_a_new_reading_sees_a_file_changed_since_the_last(ctx: Context) -> None:
    target, web = ctx.fleet.lab_target(), ctx.fleet.role("web")
    before = bakeinputs.digest_of(ctx, target, web, "sha256:b", "1.6.6", bakeinputs.Reading())
    (ctx.root / "packer/scripts/lib/common.sh").write_text("# changed\n")
    (ctx.root / "packer/scripts/lib/new-helper").write_text("x\n")
    after = bakeinputs.digest_of(ctx, target, web, "sha256:b", "1.6.6", bakeinputs.Reading())
    assert after != before and after == reference(ctx, "web", "sha256:b", "1.6.6"), \
        "a changed lib file and a new one change the digest"
    assert "lib/new-helper" in bakeinputs.files(ctx, web), "a new lib file is an input"
