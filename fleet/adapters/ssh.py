"""OpenSSH's tools: the lab's key pair for its local nodes, and host keys as nodes print them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleet.adapters import process
from fleet.errors import FleetError


@dataclass(frozen=True)
class PublicKey:
    """One `TYPE BASE64 [COMMENT]` line (authorized_keys, *.pub)."""

    kind: str
    base64: str

    def line(self) -> str:
        return f"{self.kind} {self.base64}"


def parse_public_key(text: str) -> PublicKey:
    fields = text.split()
    if len(fields) < 2 or not fields[0].startswith(("ssh-", "ecdsa-")):
        raise FleetError(f"not an OpenSSH public key: {text[:60]!r}")
    return PublicKey(fields[0], fields[1])


def keygen(path: Path, comment: str) -> None:
    """A new ed25519 key pair without a passphrase: path (0600) and path.pub."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    process.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                timeout=30)
