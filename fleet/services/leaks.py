"""Leak scanning: the secret values to look for, and the files of images, layers and
containers to look in (fleet.model.secretscan does the looking)."""

from __future__ import annotations

import hashlib
import hmac
import threading
from pathlib import Path

from fleet.adapters import docker, process
from fleet.errors import DependencyDown
from fleet.model import secretscan
from fleet.services import memo
from fleet.services.context import Context


def secret_needles(ctx: Context) -> dict[bytes, str]:
    """Every value stored under the fleet's Vault mount, and the Vault token fleet uses, by
    value; a secret scan fails closed without them (also used by `fleet verify`'s suite)."""
    if ctx.vault_token is None:
        raise DependencyDown("no Vault token to read the lab's secrets for the secret scan",
                             "set VAULT_TOKEN or run `fleet lab up`")
    vault = ctx.vault()
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


def scan_build(ctx: Context, artifact: str, base_id: str, log: Path, needles: dict[bytes, str],
               base_lock: threading.Lock) -> list[secretscan.Finding]:
    """A bake's log, what the bake added to the image, and (once per secret set) its base.

    On overlay2 the role's own layer is a directory on disk: its files are read directly. The
    base image's files are scanned once for each set of secret values on this machine, and
    the result remembered for every fleet directory on it (fleet.services.memo.machine_dir:
    fleets sharing a lab share its base images), since base and values change rarely and a
    base's 370 MB cost ~3 s to read (~5 s through `docker export`) on each fleet's first bake.
    """
    findings = secretscan.scan(log.name, log.read_bytes(), needles) if log.exists() else []
    image = docker.image(artifact)
    if image is not None and image.top_layer is not None and image.top_layer.is_dir():
        findings += scan_tree(image.top_layer, needles)
        findings += _scan_base_once(ctx, base_id, needles, base_lock)
    else:
        findings += scan_image(artifact, needles)
    return findings


CLEAN_BASES = "clean-bases.json"  # in memo.machine_dir(): base image and secret set -> clean


def _scan_base_once(ctx: Context, base_id: str, needles: dict[bytes, str],
                    lock: threading.Lock) -> list[secretscan.Finding]:
    # keyed by an HMAC of the values under the Vault token: the cache file reveals nothing
    assert ctx.vault_token is not None  # secret_needles() demanded one
    values = hmac.new(ctx.vault_token.reveal().encode(), b"\0".join(sorted(needles)),
                      hashlib.sha256).hexdigest()
    memo_file = memo.machine_dir() / CLEAN_BASES
    key = f"{base_id}:{values}"
    with lock:  # one base scan at a time
        if memo.known(memo_file, key):
            return []
        base = docker.image(base_id)
        found = scan_whole(base, needles) if base is not None else scan_image(base_id, needles)
        if not found:
            memo.remember(memo_file, key)
        return found


def scan_whole(image: docker.Image, needles: dict[bytes, str]) -> list[secretscan.Finding]:
    """Every file of an image. On overlay2 each layer's directory is read in place (a file a
    later layer deleted is read too: a false alarm at worst, never a miss); elsewhere through
    `docker export`."""
    if image.layers_on_disk:
        return [f for layer in image.layers for f in scan_tree(layer, needles)]
    return scan_image(image.id, needles)
