"""Image retention: which images `fleet images prune` keeps, and why. Pure.

The policy, after ECR lifecycle policies (keep the newest N images of a repository) and HCP
Packer (an iteration a channel names is never deleted):

- per role, the `keep` newest images of the catalog that are not pruned yet, by bake time
  (revoked ones count: they are the role's recent history, as in ECR's count rule);
- whatever still needs an image, however old:
  - a channel: the version an environment runs, and its previous version (a rollback's
    target);
  - a desired cattle group with nodes;
  - a rollout that is not finished (one cut short by a killed fleet included): its version,
    the versions it started from and every version its steps name;
  - a container on this machine made from the image, running or stopped (any node, a verify
    or Vagrant machine, any fleet's: Docker would refuse to remove it anyway);
  - a pet or snowflake that records the image in its Terraform state (the next apply keeps
    it on that image, and recreates it from it if its container is gone);
  - the newest image of a role whose latest `fleet verify` passed on that very image: the
    candidate an environment with require_verify admits next;
- an image shared by several versions (a bake that reused its inputs under a new version)
  stays while any of them stays.

Everything else is pruned: its image leaves Docker and its record is marked pruned (history,
never promotable). An image that is already gone from Docker is only marked. A record marked
pruned whose image is still here (a prune cut short) has its image removed on the next prune.

Base images (fleet-base-<base>, one per inputs digest) of the fleet's bases: the current one
of each base is kept, and any other one that a kept catalog image was baked on, a container
or a Terraform state uses, or any other image on this machine was built on (another fleet's
bakes share the base images); the rest are pruned.

A future record that needs images (a rehearsal, a move) adds its reasons to `Needs`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from fleet.errors import FleetError
from fleet.model.image import ImageRecord
from fleet.model.promotion import Channel, Rollout


class RetentionError(FleetError):
    """A retention policy that cannot be applied."""


def check_keep(keep: int) -> int:
    """At least one: the newest image of a role is its current image (plan, verify, apply)."""
    if keep < 1:
        raise RetentionError(f"--keep {keep}: a role keeps at least its newest image",
                             "pass --keep 1 or more")
    return keep


class Kind(StrEnum):
    ROLE = "role"    # a role image, recorded in the catalog
    BASE = "base"    # a base image the role images are baked on


@dataclass(frozen=True)
class Needs:
    """What needs images, as read from the fleet's state, Docker and Terraform."""

    channels: Mapping[tuple[str, str], Channel] = field(default_factory=dict)  # (env, role)
    desired: Mapping[str, Mapping[str, Mapping[str, int]]] = field(default_factory=dict)
    rollouts: Sequence[Rollout] = ()                     # every environment's last rollout
    containers: Mapping[str, str] = field(default_factory=dict)   # container -> image id
    machines: Mapping[str, str] = field(default_factory=dict)     # "pet X in ENV" -> image id
    verified: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # (role, version) -> the image id its latest verify passed on (failed verifies left out)

    def of_versions(self) -> dict[tuple[str, str], list[str]]:
        """(role, version) -> why that version must stay."""
        found: dict[tuple[str, str], list[str]] = {}

        def need(role: str, version: str, why: str) -> None:
            if version and why not in found.setdefault((role, version), []):
                found[(role, version)].append(why)

        for (env, role), channel in sorted(self.channels.items()):
            need(role, channel.version, f"channel of {env}")
            need(role, channel.previous, f"rollback target in {env}")
        for env, roles in sorted(self.desired.items()):
            for role, groups in sorted(roles.items()):
                for version, count in sorted(groups.items()):
                    if count > 0:
                        need(role, version, f"{count} node(s) desired in {env}")
        for rollout in self.rollouts:
            if rollout.finished:
                continue
            why = f"rollout {rollout.id} in {rollout.env} ({rollout.state.value})"
            for role in rollout.roles:
                need(role, rollout.version, why)
                need(role, rollout.previous.get(role, ""), why)
                for groups in [*rollout.plan.get(role, []), rollout.groups.get(role, {})]:
                    for version in groups:
                        need(role, version, why)
        return found

    def of_images(self) -> dict[str, list[str]]:
        """image id -> what uses it (containers, Terraform states)."""
        found: dict[str, list[str]] = {}
        for name, image in sorted(self.containers.items()):
            found.setdefault(image, []).append(f"container {name}")
        for what, image in sorted(self.machines.items()):
            found.setdefault(image, []).append(f"{what} (Terraform state)")
        return found


@dataclass(frozen=True)
class Verdict:
    """What the prune does with one image, and why."""

    kind: Kind
    ref: str                    # web:v1, or a base image's repository:tag
    artifact: str               # the docker image id
    keep: bool
    reasons: tuple[str, ...]    # why it is kept, or why it goes
    present: bool               # the image is in Docker now
    role: str = ""              # a role image: its catalog record's role and version
    version: str = ""
    marked: bool = False        # its record is already marked pruned (a prune cut short)

    @property
    def removes(self) -> bool:
        """Whether the prune takes the image out of Docker."""
        return not self.keep and self.present

    @property
    def records(self) -> bool:
        """Whether the prune marks a catalog record pruned."""
        return not self.keep and self.kind is Kind.ROLE and not self.marked


def _few(refs: Sequence[str], most: int = 3) -> str:
    shown = ", ".join(refs[:most])
    return shown + (f" and {len(refs) - most} more" if len(refs) > most else "")


def retain(records: Iterable[ImageRecord], needs: Needs, keep: int,
           present: frozenset[str]) -> tuple[Verdict, ...]:
    """A verdict per role image of the catalog (lab images only: an AMI is not in Docker).

    present: the image ids Docker has. A record already pruned gets a verdict only if its
    image is still here and nothing needs it (to finish that prune); otherwise none.
    """
    check_keep(keep)
    lab = [r for r in records if r.target == "lab"]
    live = [r for r in lab if not r.pruned]
    by_version = needs.of_versions()
    by_image = needs.of_images()
    why: dict[str, list[str]] = {}  # ref -> reasons to keep
    for role in sorted({r.role for r in live}):
        mine = sorted((r for r in live if r.role == role),
                      key=lambda r: (r.baked_at, r.version), reverse=True)
        for record in mine[:keep]:
            why.setdefault(record.ref, []).append(f"one of the {keep} newest of {role}")
        verified = [r for r in mine if needs.verified.get((role, r.version)) == r.artifact]
        if verified:
            why.setdefault(verified[0].ref, []).append(f"newest passing verify of {role}")
    for record in live:
        why.setdefault(record.ref, [])
        why[record.ref] += by_version.get((record.role, record.version), [])
        why[record.ref] += by_image.get(record.artifact, [])
    kept_images: dict[str, list[str]] = {}
    for record in live:
        if why[record.ref]:
            kept_images.setdefault(record.artifact, []).append(record.ref)
    verdicts = []
    for record in live:
        reasons = list(why[record.ref])
        sharing = [ref for ref in kept_images.get(record.artifact, []) if ref != record.ref]
        if sharing and not reasons:
            reasons.append(f"shares its image with {_few(sharing)}")
        here = record.artifact in present
        if not reasons:
            gone = "" if here else "; its image is already gone from Docker"
            reasons.append(f"older than the {keep} newest of {record.role}, and nothing needs "
                           f"it{gone}")
        verdicts.append(Verdict(Kind.ROLE, record.ref, record.artifact, bool(why[record.ref])
                                or bool(sharing), tuple(reasons), here, record.role,
                                record.version))
    for record in lab:
        if (record.pruned and record.artifact in present and record.artifact not in kept_images
                and record.artifact not in by_image):
            verdicts.append(Verdict(Kind.ROLE, record.ref, record.artifact, False,
                                    (f"pruned at {record.pruned_at}, but its image is still here",),
                                    True, record.role, record.version, marked=True))
    return tuple(_once_per_image(verdicts))


def _once_per_image(verdicts: list[Verdict]) -> list[Verdict]:
    """Two pruned records sharing an image: the image is removed once (by the first)."""
    seen: set[str] = set()
    out = []
    for v in verdicts:
        if v.removes and v.artifact in seen:
            v = Verdict(v.kind, v.ref, v.artifact, v.keep, v.reasons, False, v.role, v.version,
                        v.marked)
        if v.removes:
            seen.add(v.artifact)
        out.append(v)
    return out


@dataclass(frozen=True)
class BaseCandidate:
    """A base image in Docker, and the other images on this machine built on it."""

    id: str
    tags: tuple[str, ...]              # repository:tag, e.g. fleet-base-bookworm:3f2a9c1d0e4b
    built_on: frozenset[str] = frozenset()   # ids of images whose layers start with its own


def retain_bases(bases: Iterable[BaseCandidate], current: Mapping[str, str],
                 records: Iterable[ImageRecord], verdicts: Sequence[Verdict],
                 needs: Needs) -> tuple[Verdict, ...]:
    """A verdict per base image. current: base image id -> the base it is current for."""
    kept_refs = {v.ref for v in verdicts if v.kind is Kind.ROLE and v.keep}
    pruned_now = {v.artifact for v in verdicts if not v.keep}
    on_base: dict[str, list[str]] = {}
    kept_ids: set[str] = set()
    for record in records:
        if record.ref in kept_refs:
            on_base.setdefault(record.base_id, []).append(record.ref)
            kept_ids.add(record.artifact)
    by_image = needs.of_images()
    out = []
    for base in bases:
        reasons = []
        if base.id in current:
            reasons.append(f"current base of {current[base.id]}")
        if base.id in on_base:
            reasons.append(f"base of {_few(sorted(on_base[base.id]))}")
        reasons += by_image.get(base.id, [])
        others = base.built_on - pruned_now - kept_ids - {base.id}
        if others:
            reasons.append(f"{len(others)} other image(s) on this machine are built on it")
        keep = bool(reasons)
        if not keep:
            reasons.append("an old base image that no kept image, node or state uses")
        ref = base.tags[0] if base.tags else base.id[:19]
        out.append(Verdict(Kind.BASE, ref, base.id, keep, tuple(reasons), True))
    return tuple(out)
