"""Images: versions, inputs digests, catalog records, and the decision a bake takes. Pure."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, asdict, dataclass, fields, replace
from enum import StrEnum
from typing import Any

from fleet.errors import FleetError

VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


class ImageError(FleetError):
    """An image reference, version or catalog record that cannot be used."""


def check_version(version: str) -> str:
    if not VERSION.fullmatch(version):
        raise ImageError(f"version {version!r} is not usable as an image tag",
                         "use letters, digits, '.', '_', '+' or '-', e.g. v1.2")
    return version


def parse_ref(ref: str) -> tuple[str, str]:
    """'web:v1.2' -> ('web', 'v1.2')."""
    role, sep, version = ref.partition(":")
    if not sep or not role or not version:
        raise ImageError(f"{ref!r} is not ROLE:VERSION", "write it as e.g. web:v1.2")
    return role, check_version(version)


def inputs_digest(inputs: Mapping[str, bytes]) -> str:
    """sha256 over named inputs; the names are part of it, so moving a file changes it."""
    return hashed_inputs_digest({name: hashlib.sha256(value).digest()
                                 for name, value in inputs.items()})


def hashed_inputs_digest(hashes: Mapping[str, bytes]) -> str:
    """inputs_digest from each input's own sha256 (raw bytes), for a caller that hashed a
    file once and digests it for many roles."""
    outer = hashlib.sha256()
    for name in sorted(hashes):
        outer.update(name.encode() + b"\0" + hashes[name])
    return outer.hexdigest()


def derive_version(describe: str, taken: Iterable[str]) -> str:
    """git describe plus a counter: 'v1.2-3-gabc1234.2' is the second bake of that commit."""
    base = re.sub(r"[^A-Za-z0-9._+-]", "-", describe) or "untagged"
    used = {v for v in taken if v.startswith(base + ".")}
    n = 1
    while f"{base}.{n}" in used:
        n += 1
    return check_version(f"{base}.{n}")


@dataclass(frozen=True)
class ImageRecord:
    """One baked image in the catalog, with its provenance."""

    role: str
    version: str
    digest: str
    artifact: str          # docker image id (lab) or AMI id (aws)
    target: str
    builder: str           # the Packer builder that made it
    base_ref: str
    base_id: str
    git_commit: str
    git_dirty: bool
    packer_version: str
    baked_at: str          # ISO 8601, UTC
    baked_by: str          # user@host
    revoked: bool = False
    revoked_reason: str = ""
    revoked_at: str = ""
    pruned: bool = False   # removed by `fleet images prune`: history now, never used again
    pruned_reason: str = ""
    pruned_at: str = ""
    # the schema migrations it carries (model.migrations.to_record); () for a role without
    # them, and for a record baked before images carried any
    migrations: tuple[dict[str, str], ...] = ()
    # the provisioner's own inputs it was baked with (bakeinputs.provision_digest): what a
    # pet running it has had until its first converge; "" for a record baked before
    provision_digest: str = ""
    platform_digest: str = ""   # its base, Packer, template and target (bakeinputs)

    @property
    def ref(self) -> str:
        return f"{self.role}:{self.version}"

    @property
    def usable(self) -> bool:
        """Neither revoked nor pruned: an image fleet may reuse, verify or promote."""
        return not self.revoked and not self.pruned

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ImageRecord:
        """Strict about every field without a default; a field added later with a default
        (pruned, ...) may be absent from a record written before it existed."""
        data: dict[str, Any] = json.loads(text)
        data["migrations"] = tuple(data.get("migrations", ()))  # optional: older records
        try:
            return cls(**{f.name: data[f.name] for f in fields(cls)
                          if f.name in data or f.default is MISSING})
        except KeyError as exc:
            raise ImageError(f"catalog record is missing {exc}",
                             "the catalog was written by another tool; inspect it in Consul") from exc

    def revoke(self, reason: str, at: str) -> ImageRecord:
        if self.revoked:
            raise ImageError(f"{self.ref} is already revoked ({self.revoked_reason})")
        if not reason.strip():
            raise ImageError("a revocation needs a reason", "pass --reason TEXT")
        return replace(self, revoked=True, revoked_reason=reason, revoked_at=at)

    def prune(self, reason: str, at: str) -> ImageRecord:
        """The record of an image removed from Docker: it stays in the catalog as history."""
        if self.pruned:
            raise ImageError(f"{self.ref} is already pruned ({self.pruned_at})")
        return replace(self, pruned=True, pruned_reason=reason, pruned_at=at)

    def unprune(self) -> ImageRecord:
        """Undo `prune` when the image could not be removed after all."""
        return replace(self, pruned=False, pruned_reason="", pruned_at="")


class Action(StrEnum):
    BUILD = "build"       # a new image (with `existing`: rebuild a pruned ROLE:VERSION's image)
    CACHED = "cached"     # an image with these inputs exists under this version
    ALIAS = "alias"       # an image with these inputs exists under another version: record it anew


@dataclass(frozen=True)
class Decision:
    action: Action
    version: str
    existing: ImageRecord | None = None


def decide(records: Iterable[ImageRecord], digest: str, version: str | None, rebake: bool,
           describe: Callable[[], str]) -> Decision:
    """What a bake of one role does, given the role's catalog records and its inputs digest.

    A ROLE:VERSION is immutable: baking it again with other inputs, or rebaking it, is refused.
    An image with the same inputs is reused unless rebake is asked for; a revoked or pruned
    image is never reused (a pruned one is no longer in Docker). A pruned ROLE:VERSION named
    again with the same inputs is built anew under that version (BUILD with `existing`): the
    version keeps meaning the same inputs. A derived version never takes the name of a pruned
    one. describe (git describe) is asked only when a version must be derived.
    """
    records = list(records)
    by_version = {r.version: r for r in records}
    same = [r for r in records if r.digest == digest and r.usable]
    if version is not None:
        check_version(version)
        existing = by_version.get(version)
        if existing is not None:
            if existing.digest != digest:
                raise ImageError(
                    f"{existing.ref} exists with other inputs (digest {existing.digest[:12]}, "
                    f"now {digest[:12]}); an image version is immutable",
                    "bake a new version")
            if rebake and not existing.pruned:
                raise ImageError(f"{existing.ref} exists; an image version is immutable",
                                 "rebake under a new version")
            if existing.revoked:
                raise ImageError(f"{existing.ref} is revoked ({existing.revoked_reason})",
                                 "bake a new version")
            if existing.pruned:
                return Decision(Action.BUILD, version, existing)
            return Decision(Action.CACHED, version, existing)
        if same and not rebake:
            return Decision(Action.ALIAS, version, same[-1])
        return Decision(Action.BUILD, version)
    if same and not rebake:
        newest = max(same, key=lambda r: r.baked_at)
        return Decision(Action.CACHED, newest.version, newest)
    return Decision(Action.BUILD, derive_version(describe(), by_version))


def current(records: Iterable[ImageRecord]) -> ImageRecord | None:
    """A role's current image: its newest record that is neither revoked nor pruned (None if
    there is none)."""
    usable = [r for r in records if r.usable]
    return max(usable, key=lambda r: (r.baked_at, r.version)) if usable else None
