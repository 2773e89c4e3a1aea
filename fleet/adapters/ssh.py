"""OpenSSH: the lab's key pair for its local nodes, host keys as nodes print them, and remote
work on many hosts at once over Fabric (ThreadingGroup), pinned to each host's own key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# ---- remote work over Fabric ---------------------------------------------------------------

@dataclass(frozen=True)
class Host:
    """Where one node's sshd listens, and the only host key the connection trusts."""

    name: str          # the node's name, for results
    address: str
    user: str
    key_file: Path
    host_key: PublicKey
    port: int = 22


@dataclass(frozen=True)
class HostResult:
    """What one host did: ok with its exit status and output, or why it could not."""

    host: str
    ok: bool
    exit_code: int | None      # None when the command never ran (unreachable, upload failed)
    stdout: str
    stderr: str
    error: str = ""


def run_group(hosts: list[Host], command: str, *, uploads: Sequence[tuple[Path, str]] = (),
              limit: int = 5, timeout: float = 600) -> list[HostResult]:
    """Run `command` on every host with Fabric's ThreadingGroup, at most `limit` at once, after
    uploading files (local path, remote path). One host's failure hides none of the others."""
    results: dict[str, HostResult] = {}
    for start in range(0, len(hosts), max(limit, 1)):
        results.update(_run_batch(hosts[start:start + max(limit, 1)], command, uploads,
                                  timeout))
    return [results[h.name] for h in hosts]


def _run_batch(hosts: list[Host], command: str, uploads: Sequence[tuple[Path, str]],
               timeout: float) -> dict[str, HostResult]:
    import base64

    from fabric import Connection, ThreadingGroup
    from fabric.exceptions import GroupException
    from paramiko import ECDSAKey, Ed25519Key, PKey, RejectPolicy

    by_conn: dict[int, Host] = {}
    conns = []
    for host in hosts:
        conn = Connection(host.address, port=host.port, user=host.user, connect_timeout=10,
                          connect_kwargs={"key_filename": str(host.key_file),
                                          "look_for_keys": False, "allow_agent": False})
        kind: type[PKey] = Ed25519Key if host.host_key.kind == "ssh-ed25519" else ECDSAKey
        key = kind(data=base64.b64decode(host.host_key.base64))
        name = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
        conn.client.get_host_keys().add(name, host.host_key.kind, key)
        conn.client.set_missing_host_key_policy(RejectPolicy())
        by_conn[id(conn)] = host
        conns.append(conn)
    failed: dict[str, HostResult] = {}

    def gone(conn: object, exc: BaseException) -> None:
        host = by_conn[id(conn)]
        failed[host.name] = HostResult(host.name, False, None, "", "",
                                       f"{type(exc).__name__}: {exc}".strip())

    group = ThreadingGroup.from_connections(conns)
    try:
        for local, remote in uploads:
            live = ThreadingGroup.from_connections([c for c in conns
                                                    if by_conn[id(c)].name not in failed])
            try:
                live.put(str(local), remote)
            except GroupException as exc:
                for conn, error in exc.result.failed.items():
                    gone(conn, error)
        live = ThreadingGroup.from_connections([c for c in conns
                                                if by_conn[id(c)].name not in failed])
        outcome: dict[Any, Any]
        try:
            outcome = dict(live.run(command, hide=True, warn=True, in_stream=False,
                                    timeout=timeout))
        except GroupException as exc:
            outcome = dict(exc.result)
        results = dict(failed)
        for conn, result in outcome.items():
            host = by_conn[id(conn)]
            if isinstance(result, BaseException):
                gone(conn, result)
                results[host.name] = failed[host.name]
                continue
            code = int(result.exited)
            results[host.name] = HostResult(host.name, code == 0, code,
                                            str(result.stdout),
                                            str(result.stderr))
        return results
    finally:
        group.close()
