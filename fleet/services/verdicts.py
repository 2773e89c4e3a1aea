"""Verdicts of `fleet verify` in Consul KV: what the promotion gate reads."""

from __future__ import annotations

from dataclasses import replace

from fleet.errors import FleetError
from fleet.model.verification import Verification
from fleet.services.catalog import KV


class Verifications:
    """<prefix>/verify/<role>/<version> -> the latest Verification of that version."""

    def __init__(self, kv: KV, prefix: str) -> None:
        self.kv = kv
        self.root = f"{prefix}/verify"

    def key(self, role: str, version: str) -> str:
        return f"{self.root}/{role}/{version}"

    def latest(self, role: str, version: str) -> Verification | None:
        entry = self.kv.get(self.key(role, version))
        return Verification.from_json(entry.value) if entry is not None else None

    def record(self, verification: Verification) -> Verification:
        """Write a verdict over the one it read (check-and-set), numbering the runs."""
        key = self.key(verification.role, verification.version)
        for _ in range(5):
            entry = self.kv.get(key)
            before = Verification.from_json(entry.value) if entry is not None else None
            numbered = replace(verification, run=before.run + 1 if before else 1)
            if self.kv.put(key, numbered.to_json(), cas=entry.modify_index if entry else 0):
                return numbered
        raise FleetError(f"the verify record of {verification.ref} kept changing while it was "
                         "written", "run the verify again")


def read_verification(kv: KV, prefix: str, role: str, version: str) -> Verification | None:
    """The latest `fleet verify` of ROLE:VERSION (None if it was never verified): what the
    promotion gate (fleet.model.verification.verify_problems) judges."""
    return Verifications(kv, prefix).latest(role, version)
