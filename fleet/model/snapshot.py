"""Pet data snapshots and what moves them between environments: the record a snapshot leaves
in Consul KV, the pet instance it is of, where the aws target would keep it, which way data
may flow (`fleet env refresh`), and how a rebuild takes an environment's cattle. Pure."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from fleet.errors import ConfigError, FleetError
from fleet.model.definition import Environment, Fleet, Role
from fleet.model.grammar import RoleClass
from fleet.model.spec import did_you_mean

DEFAULT_METHOD = "volume"  # the pet's data volume copied while its service is paused
ID = re.compile(r"[a-z0-9][a-z0-9-]{0,80}-\d{8}T\d{6}Z-[0-9a-f]{6}")


class SnapshotError(FleetError):
    """A snapshot that cannot be taken, found, trusted or restored here."""


@dataclass(frozen=True)
class Snapshot:
    """One copy of a pet's data, as recorded under <prefix>/snapshots/<id>."""

    id: str
    pet: str             # the instance it was taken of (postgres-01)
    role: str
    env: str
    method: str          # how it was copied (DEFAULT_METHOD, or a role's own way)
    source: str          # what was copied: the pet's Docker volume
    size: int            # bytes of the archive
    sha256: str          # of the archive, checked before every restore
    created: str         # ISO 8601, UTC
    created_by: str      # user@host
    location: str        # the archive on the lab's machine (.fleet/snapshots/<id>.tar)
    object_store: str    # where the aws target keeps it (rendered: s3://...), "" without one

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Snapshot:
        data: dict[str, Any] = json.loads(text)
        try:
            return cls(**{f.name: data[f.name] for f in fields(cls)})
        except KeyError as exc:
            raise SnapshotError(f"snapshot record is missing {exc}",
                                "it was written by another tool; inspect it in Consul") from exc


def snapshot_id(pet: str, at: datetime, token: str) -> str:
    """postgres-01-20260514T101500Z-1a2b3c: the pet, the UTC time, a random token."""
    return f"{pet}-{at.strftime('%Y%m%dT%H%M%SZ')}-{token[:6]}"


def check_id(text: str) -> str:
    if not ID.fullmatch(text):
        raise SnapshotError(f'"{text}" is not a snapshot id',
                            "fleet snapshot list shows them (e.g. postgres-01-20260514T101500Z-1a2b3c)")
    return text


def object_location(fleet: Fleet, snap_id: str, env: str, role: str) -> str:
    """Where the aws target would keep a snapshot: an S3 object in a bucket per fleet and
    region (rendered only; the lab keeps its snapshots on its own disk)."""
    for target in fleet.targets.values():
        if target.kind == "aws":
            region = target.settings["region"]
            return f"s3://fleet-{fleet.name}-snapshots-{region}/{env}/{role}/{snap_id}.tar"
    return ""


@dataclass(frozen=True)
class PetInstance:
    """A pet instance of fleet.toml: its role and the environment it serves."""

    name: str
    role: Role
    env: str


def pet(fleet: Fleet, name: str) -> PetInstance:
    """The pet instance called name; one ConfigError, with did-you-mean, if there is none."""
    known: dict[str, PetInstance] = {}
    for role in fleet.roles.values():
        if role.cls is RoleClass.PET:
            for env, names in role.instances.items():
                known.update({n: PetInstance(n, role, env) for n in names})
    if name not in known:
        raise ConfigError(f'no pet instance "{name}"{did_you_mean(name, known)}',
                          fix=f"pet instances: {', '.join(known) or 'none'}")
    return known[name]


def same_role(snapshot: Snapshot, target: PetInstance) -> None:
    """A snapshot goes only into another instance of the role it was taken of."""
    if snapshot.role != target.role.name:
        raise SnapshotError(f"snapshot {snapshot.id} holds {snapshot.role} data; {target.name} "
                            f"is a {target.role.name}: refused",
                            f"restore it into a {snapshot.role} instance")


# ---- fleet env refresh ENV --from SRC --------------------------------------------------------

def check_direction(fleet: Fleet, env: Environment, source: Environment) -> None:
    """Data flows only down the chain: from a later environment into an earlier one
    (production -> staging), or from a fixed environment into an ephemeral one. An
    environment that uses another's pets has none of its own to refresh or to give."""
    chain = [e.name for e in fleet.chain]
    if env.name == source.name:
        raise SnapshotError(f"{env.name} cannot be refreshed from itself")
    if env.pets_from:
        raise SnapshotError(f"{env.name} uses the pets of {env.pets_from} (pets_from): it has "
                            "none of its own to refresh", "refresh the environment that owns them")
    if source.pets_from:
        raise SnapshotError(f"{source.name} uses the pets of {source.pets_from} (pets_from): "
                            "it has no data of its own", f"refresh from {source.pets_from}")
    if source.name not in chain:
        raise SnapshotError(f"{source.name} is ephemeral: data is copied only from an "
                            "environment of the chain")
    if env.name in chain and chain.index(source.name) < chain.index(env.name):
        raise SnapshotError(f"refused: data flows only from a later environment into an "
                            f"earlier one ({' -> '.join(chain)}), not from {source.name} into "
                            f"{env.name}")


def pairs(fleet: Fleet, env: str, source: str) -> list[tuple[Role, str, str]]:
    """(role, source instance, target instance) for every pet of ENV, matched by role and
    by position within it; a role of ENV whose instances do not match SRC's one to one is
    refused (a role ENV has no instance of is none of its business)."""
    found = []
    for role in fleet.roles.values():
        if role.cls is not RoleClass.PET or not role.instances.get(env):
            continue
        mine, theirs = role.instances[env], role.instances.get(source, ())
        if len(mine) != len(theirs):
            raise SnapshotError(f"{role.name}: {env} has {len(mine)} instance(s), {source} "
                                f"{len(theirs)}: they cannot be matched one to one",
                                "give both environments the same pet instances in fleet.toml")
        found += [(role, s, t) for s, t in zip(theirs, mine, strict=True)]
    if not found:
        raise SnapshotError(f"{env} has no pets to refresh")
    return found


# ---- fleet env rebuild ENV -------------------------------------------------------------------

def batches(names: Sequence[str], size: int) -> list[list[str]]:
    """Nodes in batches of the environment's batch_size (at least one a batch)."""
    size = max(size, 1)
    return [list(names[i:i + size]) for i in range(0, len(names), size)]


def off_channel(desired: dict[str, dict[str, int]], channels: dict[str, str]) -> list[str]:
    """Roles with nodes at another version than their channel holds (a rollout not finished,
    or nodes without a channel): a rebuild would not know which version to make."""
    return sorted({role for role, groups in desired.items()
                   for version, count in groups.items()
                   if count > 0 and channels.get(role) != version})
