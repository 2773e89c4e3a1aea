"""Local verification of a baked image: check results, the recorded verdict, the promotion gate,
and the nodes Vagrant boots. Pure.

A verification is of one exact image (its docker image id), not of a version name: the gate
accepts it only for the image the catalog holds under that version.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from fleet.errors import FleetError
from fleet.model.definition import Fleet, Role
from fleet.model.grammar import LOCAL_ENVS
from fleet.model.image import ImageRecord
from fleet.model.nodes import Node, node_name, services_json

# The FLEET_ENV of a `fleet verify` node and of a machine of the Vagrantfile. Promotion and
# status read nodes by environment, so these never count as serving.
VERIFY_ENV, VAGRANT_ENV = LOCAL_ENVS


class VerificationError(FleetError):
    """A verification record that cannot be used."""


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"      # the check ran and found a problem, or could not run (an error)
    SKIPPED = "skipped"    # nothing to check (e.g. a role without secrets)


@dataclass(frozen=True)
class CheckResult:
    """One named check on the booted node, and what it found."""

    name: str
    outcome: Outcome
    seconds: float
    detail: str = ""       # why it failed or was skipped; '' when it passed


@dataclass(frozen=True)
class Verification:
    """The verdict of one `fleet verify`, as recorded in Consul KV."""

    role: str
    version: str
    artifact: str          # the docker image id that was booted
    node: str
    checks: tuple[CheckResult, ...]
    at: str                # when it finished (ISO 8601, UTC)
    by: str                # user@host
    seconds: float
    run: int = 1           # 1 for the first verify of this ROLE:VERSION, then 2, 3...

    @property
    def ref(self) -> str:
        return f"{self.role}:{self.version}"

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.outcome is Outcome.FAILED)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and not self.failed

    def summary(self) -> str:
        """One line for a history event or a table: 'passed 21/21 checks at ...'."""
        ran = [c for c in self.checks if c.outcome is not Outcome.SKIPPED]
        good = sum(1 for c in ran if c.outcome is Outcome.PASSED)
        verdict = "passed" if self.passed else f"failed ({self.failed[0].name})" if self.failed \
            else "failed (no check ran)"
        return f"{verdict} {good}/{len(ran)} checks at {self.at} (run {self.run})"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Verification:
        try:
            data: dict[str, Any] = json.loads(text)
            checks = tuple(CheckResult(c["name"], Outcome(c["outcome"]), float(c["seconds"]),
                                       c["detail"]) for c in data["checks"])
            return cls(data["role"], data["version"], data["artifact"], data["node"], checks,
                       data["at"], data["by"], float(data["seconds"]), int(data["run"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise VerificationError(f"verification record is unreadable: {exc}",
                                    "it was written by another tool; inspect it in Consul") from exc


def verify_problems(fleet: Fleet, env: str, image: ImageRecord,
                    verification: Verification | None) -> list[str]:
    """Why IMAGE may not enter ENV for want of a passing `fleet verify`; [] if it may.

    Only an environment with require_verify = true asks. The latest verify of the version
    must have passed, and must have booted the very image the catalog holds under it.
    """
    environment = fleet.environment(env)
    if not environment.require_verify:
        return []
    again = f"run `fleet verify {image.role} --version {image.version}`"
    if verification is None:
        return [f"{image.ref} has not been verified, and {env} requires a passing verify: {again}"]
    if verification.artifact != image.artifact:
        return [f"the verify of {image.ref} booted image {verification.artifact[7:19]}, not the "
                f"catalog's {image.artifact[7:19]}: {again}"]
    if not verification.passed:
        return [f"{image.ref} failed its latest verify ({verification.summary()}); {env} "
                f"requires a passing verify: fix the role, bake a new version and verify it"]
    return []


def local_node(fleet: str, role: Role, env: str, image: ImageRecord, index: int) -> Node:
    """A node of one role booted outside the fleet's environments (env is one of LOCAL_ENVS);
    index tells nodes of the same image apart (a verify run's number)."""
    return Node(node_name(fleet, role.name, env, image.version, index), role.name, env,
                image.version, image.artifact,
                services_json(fleet, role, env, image.version, weight=1))


def container_env(node: Node, consul_join: str, datacenter: str) -> dict[str, str]:
    """What fleet-init reads at boot, as terraform/lab/cattle passes it to cattle nodes."""
    return {"FLEET_CONSUL_JOIN": consul_join, "FLEET_CONSUL_DATACENTER": datacenter,
            "FLEET_ROLE": node.role, "FLEET_ENV": node.env, "FLEET_VERSION": node.version,
            "FLEET_CONSUL_SERVICES": node.services}


def container_labels(fleet: str, node: Node) -> Mapping[str, str]:
    """fleet.lab=1 lets `fleet lab reset` find a node left behind; fleet.name, whose it is."""
    return {"fleet.lab": "1", "fleet.name": fleet, "fleet.role": node.role, "fleet.env": node.env,
            "fleet.version": node.version}
