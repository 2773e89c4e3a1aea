"""The lab's base image: debootstrap minbase + sshd, python3, the consul binary and fleet-init,
fleet-node (the node's side of fleet) and fleet-migrate (the runner of an image's schema
migrations), content-addressed.

The tag carries a digest of every input (suite, packages, packer/base files, the consul binary),
so `fleet lab up` rebuilds only when one of them changes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleet.adapters import debootstrap, docker, process
from fleet.model.definition import Base
from fleet.services import memo

CONSUL_BINARY = Path("/usr/bin/consul")  # Debian bullseye's consul package, see DESIGN.md
FILES = ("fleet-init", "fleet-node", "fleet-migrate", "finish.sh")


@dataclass(frozen=True)
class BaseImage:
    name: str
    ref: str
    digest: str
    image_id: str
    built_now: bool


def inputs_digest(base: Base, files_dir: Path, cache_dir: Path,
                  consul_binary: Path = CONSUL_BINARY) -> str:
    """sha256 over everything that decides the base image (the 68 MB consul binary's digest
    is remembered by its stat, so a cached bake stays quick)."""
    inputs = {
        "suite": base.suite,
        "packages": sorted(base.packages),
        "files": {name: memo.file_sha256(files_dir / name)[0] for name in FILES},
        "consul": memo.by_stat(cache_dir, consul_binary, lambda: memo.file_sha256(consul_binary)[0]),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def repository(base: Base) -> str:
    return f"fleet-base-{base.name}"


def current(base: Base, files_dir: Path, cache_dir: Path) -> tuple[str, docker.Image | None]:
    """The ref the inputs call for, and the image if it is already built."""
    digest = inputs_digest(base, files_dir, cache_dir)
    ref = f"{repository(base)}:{digest[:12]}"
    return ref, docker.image(ref)


def ensure(base: Base, files_dir: Path, build_dir: Path, cache_dir: Path,
           progress: Callable[[str], None]) -> BaseImage:
    """Build the base image unless an image with the same inputs digest exists."""
    digest = inputs_digest(base, files_dir, cache_dir)
    ref = f"{repository(base)}:{digest[:12]}"
    existing = docker.image(ref)
    if existing is not None:
        return BaseImage(base.name, ref, digest, existing.id, built_now=False)
    progress(f"building base image {ref} (debootstrap {base.suite}, about a minute)")
    work = build_dir / f"{base.name}-{digest[:12]}"
    shutil.rmtree(work, ignore_errors=True)  # a half-finished earlier build
    rootfs = work / "rootfs"
    try:
        debootstrap.bootstrap(base.suite, base.packages, rootfs)
        shutil.copy2(CONSUL_BINARY, rootfs / "usr/local/bin/consul")
        shutil.copy2(files_dir / "fleet-init", rootfs / "usr/local/sbin/fleet-init")
        shutil.copy2(files_dir / "fleet-node", rootfs / "usr/local/sbin/fleet-node")
        shutil.copy2(files_dir / "fleet-migrate", rootfs / "usr/local/sbin/fleet-migrate")
        shutil.copy2(files_dir / "finish.sh", rootfs / "tmp/finish.sh")
        process.run(["chroot", str(rootfs), "/bin/sh", "/tmp/finish.sh"], timeout=300)
        tarball = work / "rootfs.tar"
        process.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."],
                    timeout=600)
        image_id = docker.import_tarball(tarball, ref, [
            'ENTRYPOINT ["/usr/local/sbin/fleet-init"]',
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            f"LABEL fleet.base={base.name} fleet.base.digest={digest}",
        ])
        docker.tag(ref, f"{repository(base)}:latest")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BaseImage(base.name, ref, digest, image_id, built_now=True)
