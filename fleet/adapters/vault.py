"""Vault's API through hvac (the lab runs OpenBao): health, init/unseal, kv-v2. Its dicts stop here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fleet.adapters.http import answering
from fleet.errors import DependencyDown, FleetError


class SealState(StrEnum):
    UNINITIALIZED = "uninitialized"
    SEALED = "sealed"
    STANDBY = "standby"  # unsealed but not (yet) the active node: reads only
    UNSEALED = "unsealed"


@dataclass(frozen=True)
class Health:
    state: SealState
    version: str


@dataclass(frozen=True)
class InitKeys:
    """The unseal key and root token of a freshly initialised lab server (lab only)."""

    unseal_key: str
    root_token: str


class Vault:
    """A Vault API client scoped to one address and token."""

    def __init__(self, address: str, token: str | None = None, timeout: float = 5.0) -> None:
        import hvac  # lazy: keeps `fleet --help` fast

        self.address = address
        self._client: Any = hvac.Client(url=address, token=token, timeout=timeout)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import hvac.exceptions

        try:
            with answering("Vault", self.address, what, "VAULT_ADDR"):
                return fn(*args, **kwargs)
        except hvac.exceptions.VaultDown as exc:
            raise DependencyDown(f"Vault at {self.address} is sealed ({what})",
                                 "unseal it (`fleet lab up` does so for the lab)") from exc
        except hvac.exceptions.Forbidden as exc:
            raise FleetError(f"Vault denied {what}",
                             "check VAULT_TOKEN and the token's policies") from exc
        except hvac.exceptions.VaultError as exc:
            raise FleetError(f"Vault refused {what}: {exc}") from exc

    def health(self) -> Health:
        # sys/health answers 501 uninitialised, 503 sealed; ask for 200 in every case
        data = self._call("sys/health", self._client.sys.read_health_status, method="GET",
                          sealed_code=200, uninit_code=200, standby_code=200)
        if not data["initialized"]:
            state = SealState.UNINITIALIZED
        elif data["sealed"]:
            state = SealState.SEALED
        elif data["standby"]:
            state = SealState.STANDBY
        else:
            state = SealState.UNSEALED
        return Health(state, str(data["version"]))

    def initialize(self) -> InitKeys:
        """One key share, threshold one: a lab, not production."""
        data = self._call("sys/init", self._client.sys.initialize, 1, 1)
        return InitKeys(data["keys"][0], data["root_token"])

    def unseal(self, key: str) -> None:
        data = self._call("sys/unseal", self._client.sys.submit_unseal_key, key)
        if data["sealed"]:
            raise FleetError(f"Vault at {self.address} stayed sealed after the lab's unseal key",
                             "the key in .fleet/lab does not match: run `fleet lab reset`")

    def ensure_kv(self, mount: str) -> bool:
        """Enable a kv-v2 engine at mount unless one is there; True if it was enabled now."""
        mounts = self._call("sys/mounts", self._client.sys.list_mounted_secrets_engines)
        if f"{mount}/" in mounts["data"]:
            return False
        self._call(f"enable kv-v2 at {mount}/", self._client.sys.enable_secrets_engine,
                   "kv", path=mount, options={"version": "2"})
        return True

    def kv_put(self, mount: str, path: str, data: dict[str, str]) -> None:
        self._call(f"write {mount}/{path}", self._client.secrets.kv.v2.create_or_update_secret,
                   path, secret=data, mount_point=mount)

    def kv_get(self, mount: str, path: str) -> dict[str, str] | None:
        """The latest version of a kv-v2 secret, None if there is none."""
        import hvac.exceptions

        try:
            data = self._call(f"read {mount}/{path}",
                              self._client.secrets.kv.v2.read_secret_version, path,
                              mount_point=mount, raise_on_deleted_version=True)
        except FleetError as exc:
            if isinstance(exc.__cause__, hvac.exceptions.InvalidPath):
                return None
            raise
        return {str(k): str(v) for k, v in data["data"]["data"].items()}

    def kv_walk(self, mount: str, path: str = "") -> list[tuple[str, dict[str, str]]]:
        """Every secret under mount/path, depth first: (path, data) pairs."""
        import hvac.exceptions

        try:
            listing = self._call(f"list {mount}/{path}",
                                 self._client.secrets.kv.v2.list_secrets, path, mount_point=mount)
        except FleetError as exc:
            if isinstance(exc.__cause__, hvac.exceptions.InvalidPath):
                return []  # nothing stored under it
            raise
        found: list[tuple[str, dict[str, str]]] = []
        for key in listing["data"]["keys"]:
            child = f"{path}{key}"
            if key.endswith("/"):
                found += self.kv_walk(mount, child)
            else:
                data = self.kv_get(mount, child)
                if data is not None:
                    found.append((child, data))
        return found
