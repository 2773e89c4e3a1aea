"""docker.mount_source: the source field of a `docker run --mount` value (a CSV record), and the
throwaway containers that bind host files with it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from fleet.adapters import docker


@pytest.mark.parametrize("path", ["/srv/fleet/.fleet/logs/bake/web-1-upload", "/a, b:c/up",
                                  '/a "b"/up', "/a,b/c,d"])
def test_a_mount_source_reads_back_as_one_field_holding_the_path(path: str) -> None:
    value = f"type=bind,{docker.mount_source(Path(path))},target=/mnt,readonly"
    fields = next(csv.reader([value]))
    assert fields == ["type=bind", f"source={path}", "target=/mnt", "readonly"], value


def test_a_plain_path_is_not_quoted() -> None:
    assert docker.mount_source(Path("/srv/up")) == "source=/srv/up"


def test_a_throwaway_binds_a_host_path_holding_a_colon_by_mount() -> None:
    """-v splits at colons: `/a, b:c/f:/in:ro` would be read as three fields."""
    argv = docker.throwaway_argv("img", ["sh", "-c", "true"], binds={Path("/a, b:c/f"): "/in"})
    mounts = [a.removeprefix("--mount=") for a in argv if a.startswith("--mount=")]
    assert [next(csv.reader([m])) for m in mounts] == [
        ["type=bind", "source=/a, b:c/f", "target=/in", "readonly"]], argv
    assert not [a for a in argv if a.startswith(("-v", "--volume=/"))], argv
