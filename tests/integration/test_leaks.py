"""Leaks the secret scan must catch in a real bake: a known value written encoded (issue 13,
item 8: a secret written base64-encoded into an image baked and shipped unnoticed)."""

from __future__ import annotations

import base64
import secrets
import subprocess
from typing import Any

import pytest

from fleet.adapters import docker
from fleet.adapters.vault import Vault
from fleet.model import secretscan
from tests.conftest import FleetCopy

pytestmark = pytest.mark.lab


def role_images(role: str) -> set[str]:
    """Every image (dangling ones too) that a bake of this role committed."""
    out = subprocess.run(["docker", "images", "-a", "-q", "--no-trunc", "--filter",
                          f"label=fleet.role={role}"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_a_base64_encoded_secret_fails_the_bake(lab: Any, fleet_copy: FleetCopy) -> None:
    value = "lab-" + secrets.token_hex(12)
    vault = Vault(lab.vault_addr, lab.vault_token.reveal())
    vault.kv_put(lab.fleet.secrets_mount, f"{fleet_copy.name}/web/canary", {"db_password": value})
    # a Basic-auth style blob: the value starts 7 bytes in, i.e. 1 byte into a 3-byte group
    encoded = base64.b64encode(f"gitlab:{value}".encode()).decode()
    assert value not in encoded  # only an encoding-aware scan can see it
    before = role_images("web")
    fleet_copy.edit("packer/scripts/web.sh", "install_services",
                    f"echo '{encoded}' > /etc/gitlab/db_auth\ninstall_services")

    run = fleet_copy.run("bake", "web", "--version", "v1")

    assert run.code == 1, run.stdout + run.stderr
    assert (f"web would ship a secret: /etc/gitlab/db_auth holds the value of "
            f"{lab.fleet.secrets_mount}/{fleet_copy.name}/web/canary:db_password (base64)") in run.stderr
    shown = run.stdout + run.stderr
    assert value not in shown and encoded not in shown
    assert not any(form.decode() in shown for form in secretscan.encodings(value.encode()))
    assert docker.images(f"fleet-{fleet_copy.name}-web") == []
    assert role_images("web") == before  # the image was removed
    logs = fleet_copy.root / ".fleet" / "logs" / "bake"
    assert not any(value in p.read_text() or encoded in p.read_text() for p in logs.glob("*.log"))
