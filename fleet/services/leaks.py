"""Leak scanning: the secret values to look for, and the files of images, layers and
containers to look in (fleet.model.secretscan does the looking)."""

from __future__ import annotations

from pathlib import Path

from fleet.adapters import docker, process
from fleet.adapters.vault import Vault
from fleet.errors import DependencyDown
from fleet.model import secretscan
from fleet.services.context import Context


def secret_needles(ctx: Context) -> dict[bytes, str]:
    """Every value stored under the fleet's Vault mount, and the Vault token fleet uses, by
    value; a secret scan fails closed without them (also used by `fleet verify`'s suite)."""
    if ctx.vault_token is None:
        raise DependencyDown("no Vault token to read the lab's secrets for the secret scan",
                             "set VAULT_TOKEN or run `fleet lab up`")
    vault = Vault(ctx.vault_addr, ctx.vault_token.reveal())
    mount = ctx.fleet.secrets_mount
    pairs = [(f"{mount}/{path}:{key}", value)
             for path, data in vault.kv_walk(mount) for key, value in data.items()]
    return secretscan.needles([*pairs, ("the Vault token fleet uses", ctx.vault_token.reveal())])


def scan_tree(top: Path, needles: dict[bytes, str]) -> list[secretscan.Finding]:
    """Every regular file below top (an overlay2 layer's directory), named as in the image."""
    found: list[secretscan.Finding] = []
    for path in sorted(top.rglob("*")):
        if path.is_file() and not path.is_symlink():  # whiteouts are devices; links point away
            found += secretscan.scan("/" + str(path.relative_to(top)), path.read_bytes(), needles)
    return found


def scan_image(image_id: str, needles: dict[bytes, str]) -> list[secretscan.Finding]:
    """Every file of an image (through `docker export` of a container made from it)."""
    container = docker.create_container(image_id)
    try:
        return scan_container(container, needles)
    finally:
        docker.remove_container(container)


def scan_container(container: str, needles: dict[bytes, str]) -> list[secretscan.Finding]:
    """Every file of a container's filesystem (`docker export`: its tmpfs mounts are not in it)."""
    with process.reading(docker.export_argv(container)) as stream:
        return list(secretscan.scan_tar(stream, needles))
