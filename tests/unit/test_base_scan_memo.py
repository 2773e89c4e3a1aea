"""A bake's base image scan (fleet.services.leaks._scan_base_once): done once per base image
and secret set on the machine, for every fleet directory on it, and never remembered when it
found something. The files are real (a layer directory under tmp_path); Docker's answer about
the image is the fake."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from fleet.adapters import docker
from fleet.model import secretscan
from fleet.services import leaks, memo
from fleet.services.context import Context

BASE = "sha256:" + "b" * 64


@pytest.fixture
def layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A base image of one overlay2 layer, and the machine's cache under tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    top = tmp_path / "layer"
    (top / "etc").mkdir(parents=True)
    (top / "etc" / "motd").write_bytes(b"welcome\n")
    image = docker.Image(BASE, (), "", {}, (top,))
    monkeypatch.setattr(docker, "image", lambda ref: image if ref == BASE else None)
    return top


def fleet_dir(tmp_path: Path, name: str) -> Context:
    """What _scan_base_once reads of a Context: the Vault token (the lab's, shared)."""
    return cast(Context, SimpleNamespace(
        state_dir=tmp_path / name / ".fleet",
        vault_token=SimpleNamespace(reveal=lambda: "lab-operator-token")))


def counting(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    read: list[Path] = []
    real = leaks.scan_tree

    def scan_tree(top: Path, needles: dict[bytes, str]) -> list[secretscan.Finding]:
        read.append(top)
        return real(top, needles)

    monkeypatch.setattr(leaks, "scan_tree", scan_tree)
    return read


def test_a_base_is_read_once_per_secret_set_for_every_fleet_on_the_machine(
        layer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read = counting(monkeypatch)
    needles = secretscan.needles([("secret/web:db_password", "correct-horse-battery")])
    lock = threading.Lock()
    assert leaks._scan_base_once(fleet_dir(tmp_path, "a"), BASE, needles, lock) == []
    assert read == [layer], "the layer's directory is read in place"
    assert (memo.machine_dir() / leaks.CLEAN_BASES).is_file()
    assert memo.machine_dir() == tmp_path / "cache" / "fleet"

    # another fleet directory on the same machine, the same base and values: not read again
    assert leaks._scan_base_once(fleet_dir(tmp_path, "b"), BASE, needles, lock) == []
    assert read == [layer]

    # a new secret value: read again
    more = {**needles, **secretscan.needles([("secret/web:api_key", "another-long-value")])}
    assert leaks._scan_base_once(fleet_dir(tmp_path, "b"), BASE, more, lock) == []
    assert len(read) == 2


def test_a_base_holding_a_secret_fails_every_time_and_an_unwritable_cache_is_no_error(
        layer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read = counting(monkeypatch)
    (layer / "etc" / "leak.conf").write_bytes(b"password=correct-horse-battery\n")
    needles = secretscan.needles([("secret/web:db_password", "correct-horse-battery")])
    lock = threading.Lock()
    for _ in range(2):
        found = leaks._scan_base_once(fleet_dir(tmp_path, "a"), BASE, needles, lock)
        assert [f.where for f in found] == ["/etc/leak.conf"]
    assert len(read) == 2, "a finding is never remembered"

    (layer / "etc" / "leak.conf").unlink()
    (tmp_path / "cache").write_text("a file where the cache directory would go")
    assert leaks._scan_base_once(fleet_dir(tmp_path, "a"), BASE, needles, lock) == []
    assert leaks._scan_base_once(fleet_dir(tmp_path, "a"), BASE, needles, lock) == []
    assert len(read) == 4, "nothing remembered, nothing failed"
