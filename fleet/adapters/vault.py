"""Vault's API through hvac (the lab runs OpenBao): health, init/unseal, kv-v2, policies and
AppRole, tokens and audit devices. Its dicts stop here."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fleet.adapters.http import Leaderless, Servers, answering
from fleet.errors import Denied, DependencyDown, FleetError, NotFound, Sealed
from fleet.model.secret import Secret


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
class TokenInfo:
    """What Vault says of a token (lookup-self, renew-self): never its secret."""

    accessor: str
    policies: tuple[str, ...]
    ttl: int                 # seconds left
    renewable: bool


@dataclass(frozen=True)
class InitKeys:
    """The unseal key and root token of a freshly initialised lab server (lab only)."""

    unseal_key: str
    root_token: str


# How long a cluster whose nodes answer, none active, is given to elect one (OpenBao's raft
# election and the new active node's setup take a few seconds) before its quorum is said lost.
ELECTION_SECONDS = 15.0


class Vault:
    """A Vault API client with one token, knowing every node of the cluster (one address or
    several). A call goes to the node in use; with several, it moves to the next node when
    that one is gone (refused, or no answer for a call that may be repeated), sealed (a node
    started again and not yet unsealed), or without an active node (during an election), as
    adapters/http.Servers does for Consul. A standby node forwards requests to the active one.
    Calls that must not be repeated blindly pass resend=False: minting a token or a SecretID
    (a repeat would mint a second), the lab's init."""

    def __init__(self, address: str | Sequence[str], token: str | None = None,
                 timeout: float = 5.0) -> None:
        import hvac  # lazy: keeps `fleet --help` fast

        self.addresses = (address,) if isinstance(address, str) else tuple(address)
        self._client: Any = hvac.Client(url=self.addresses[0], token=token, timeout=timeout)
        # the same failover as Consul's; its HTTP clients go unused (hvac talks to Vault)
        self._servers = Servers(self.addresses, timeout, {}, lambda status, body: False)

    @property
    def address(self) -> str:
        """The node in use: the last that answered."""
        return self._servers.address

    def _call(self, what: str, fn: Any, *args: Any, resend: bool = True, **kwargs: Any) -> Any:
        import hvac.exceptions

        def call(at: int) -> Any:
            self._client.url = self.addresses[at]  # fn is bound to the client's one adapter
            try:
                return fn(*args, **kwargs)
            except (hvac.exceptions.VaultDown, hvac.exceptions.InternalServerError) as exc:
                if len(self.addresses) > 1 and _leaderless(exc):
                    raise Leaderless(str(exc), _commit_failed(exc)) from exc
                raise
            except OSError as exc:  # requests' errors are OSErrors
                if "refused" in str(exc).lower():
                    raise ConnectionRefusedError(str(exc)) from exc
                raise

        try:
            with answering("Vault", self.address, what, "VAULT_ADDR"):
                return self._servers.each(call, resend=resend)[0]
        except hvac.exceptions.VaultDown as exc:
            raise Sealed(f"Vault at {self.address} is sealed ({what})",
                         "unseal it (`fleet lab up` does so for the lab)") from exc
        except hvac.exceptions.Forbidden as exc:
            raise Denied(f"Vault denied {what}", "check VAULT_TOKEN and the token's policies") from exc
        except hvac.exceptions.InvalidPath as exc:
            raise NotFound(f"Vault has nothing at {what}") from exc
        except hvac.exceptions.VaultError as exc:
            raise FleetError(f"Vault refused {what}: {exc}") from exc

    def health(self) -> Health:
        """The node in use's health; of a cluster, the first node found active. While none is
        but a standby answers (the active node just died and the others elect one: a few
        seconds), it asks again for up to ELECTION_SECONDS; then what the first node that
        answered said."""
        if len(self.addresses) == 1:
            return self._health()
        deadline = time.monotonic() + ELECTION_SECONDS
        while True:
            first: Health | None = None
            error: DependencyDown | None = None
            for _ in self.addresses:
                try:
                    found = self._health()
                except DependencyDown as exc:
                    error = error or exc
                else:
                    if found.state is SealState.UNSEALED:
                        return found
                    first = first or found
                self._servers.at = (self._servers.at + 1) % len(self.addresses)
            if first is None:
                assert error is not None
                raise error
            if first.state is not SealState.STANDBY or time.monotonic() > deadline:
                return first
            time.sleep(0.5)

    def _health(self) -> Health:
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

    def require_unsealed(self, why: str = "") -> None:
        """Raise DependencyDown unless Vault answers, unsealed and active."""
        state = self.health().state
        if state is SealState.STANDBY:  # of a cluster: no node is active, none can be elected
            raise DependencyDown(
                f"Vault has no active node: of its {len(self.addresses)} nodes none leads, so "
                f"its quorum is lost{why}", "start the stopped nodes (`fleet lab status` names "
                "them, `fleet lab start NAME` starts one), then run this again")
        if state is not SealState.UNSEALED:
            error = Sealed if state is SealState.SEALED else DependencyDown
            raise error(f"Vault at {self.address} is {state}{why}",
                        "unseal it (`fleet lab up` does so for the lab)")

    def initialize(self) -> InitKeys:
        """One key share, threshold one: a lab, not production."""
        data = self._call("sys/init", self._client.sys.initialize, 1, 1, resend=False)
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

    def kv_set(self, mount: str, path: str, key: str, value: Secret) -> None:
        """Set one key of a kv-v2 secret, keeping its other keys: its latest version is read,
        then written back with the key set, check-and-set on the version read, so a write
        between the two makes this one fail rather than be lost (what hvac's kv.v2.patch does,
        without its warning of a default that hvac 3 changes); check-and-set 0, the secret's
        first version, when there is none yet."""
        try:
            current = self._call(f"read {mount}/{path}",
                                 self._client.secrets.kv.v2.read_secret_version, path,
                                 mount_point=mount, raise_on_deleted_version=True)
        except NotFound:
            data, version = {}, 0
        else:
            data = dict(current["data"]["data"])
            version = current["data"]["metadata"]["version"]
        self._call(f"write {key} at {mount}/{path}",
                   self._client.secrets.kv.v2.create_or_update_secret, path,
                   secret={**data, key: value.reveal()}, cas=version, mount_point=mount)

    def kv_get(self, mount: str, path: str) -> dict[str, str] | None:
        """The latest version of a kv-v2 secret, None if there is none."""
        try:
            data = self._call(f"read {mount}/{path}",
                              self._client.secrets.kv.v2.read_secret_version, path,
                              mount_point=mount, raise_on_deleted_version=True)
        except NotFound:
            return None
        return {str(k): str(v) for k, v in data["data"]["data"].items()}

    def kv_destroy(self, mount: str, path: str) -> None:
        """Delete a kv-v2 secret with every version and its metadata (nothing to undelete)."""
        try:
            self._call(f"delete {mount}/{path}",
                       self._client.secrets.kv.v2.delete_metadata_and_all_versions, path,
                       mount_point=mount)
        except NotFound:
            return

    def kv_walk(self, mount: str, path: str = "") -> list[tuple[str, dict[str, str]]]:
        """Every secret under mount/path, depth first: (path, data) pairs."""
        try:
            listing = self._call(f"list {mount}/{path}",
                                 self._client.secrets.kv.v2.list_secrets, path, mount_point=mount)
        except NotFound:
            return []  # nothing stored under it
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

    # ---- policies and AppRole ------------------------------------------------------------

    def policies(self, prefix: str) -> dict[str, str]:
        """Every ACL policy whose name starts with prefix: name -> HCL text."""
        names = self._call("list policies", self._client.sys.list_acl_policies)["data"]["keys"]
        return {n: str(self._call(f"read policy {n}", self._client.sys.read_acl_policy,
                                  n)["data"]["policy"])
                for n in names if n.startswith(prefix)}

    def put_policy(self, name: str, text: str) -> None:
        self._call(f"write policy {name}", self._client.sys.create_or_update_acl_policy,
                   name, text)

    def delete_policy(self, name: str) -> None:
        self._call(f"delete policy {name}", self._client.sys.delete_acl_policy, name)

    def ensure_auth(self, kind: str, path: str) -> bool:
        """Enable an auth method at path unless one is there; True if it was enabled now."""
        methods = self._call("sys/auth", self._client.sys.list_auth_methods)
        if f"{path}/" in methods["data"]:
            return False
        self._call(f"enable auth {kind} at {path}/", self._client.sys.enable_auth_method,
                   kind, path=path)
        return True

    def approles(self, prefix: str, mount: str) -> dict[str, dict[str, str]]:
        """Every AppRole whose name starts with prefix: name -> its settings as strings
        (lists joined with commas), as create_approle takes them."""
        try:
            listing = self._call("list approles", self._client.auth.approle.list_roles,
                                 mount_point=mount)
        except NotFound:
            return {}  # none yet
        found = {}
        for name in listing["data"]["keys"]:
            if not name.startswith(prefix):
                continue
            data = self._call(f"read approle {name}", self._client.auth.approle.read_role,
                              name, mount_point=mount)["data"]
            found[name] = {str(k): ",".join(map(str, v)) if isinstance(v, list) else str(v)
                           for k, v in data.items()}
        return found

    def put_approle(self, name: str, settings: dict[str, str], mount: str) -> None:
        self._call(f"write approle {name}", self._client.adapter.post,
                   f"/v1/auth/{mount}/role/{name}", json=settings)

    def delete_approle(self, name: str, mount: str) -> None:
        self._call(f"delete approle {name}", self._client.auth.approle.delete_role, name,
                   mount_point=mount)

    def role_id(self, name: str, mount: str) -> str:
        """An AppRole's RoleID (an identifier, not a secret by itself)."""
        data = self._call(f"read the RoleID of {name}", self._client.auth.approle.read_role_id,
                          name, mount_point=mount)
        return str(data["data"]["role_id"])

    def new_role_id(self, name: str, mount: str) -> None:
        """Replace an AppRole's RoleID with a fresh random one (rotation)."""
        import uuid

        self._call(f"rotate the RoleID of {name}", self._client.auth.approle.update_role_id,
                   name, str(uuid.uuid4()), mount_point=mount)

    def wrapped_secret_id(self, name: str, mount: str, wrap_ttl: str) -> Secret:
        """A new SecretID of the AppRole, response-wrapped: what comes back is a single-use
        wrapping token that only an unwrap turns into the SecretID."""
        data = self._call(f"issue a SecretID of {name}",
                          self._client.auth.approle.generate_secret_id, name,
                          mount_point=mount, wrap_ttl=wrap_ttl, resend=False)
        return Secret(str(data["wrap_info"]["token"]))

    def destroy_secret_ids(self, name: str, mount: str) -> int:
        """Destroy every SecretID the AppRole has outstanding; how many there were."""
        try:
            listing = self._call(f"list SecretIDs of {name}",
                                 self._client.auth.approle.list_secret_id_accessors, name,
                                 mount_point=mount)
        except NotFound:
            return 0  # none outstanding
        accessors = listing["data"]["keys"]
        for accessor in accessors:
            self._call(f"destroy a SecretID of {name}",
                       self._client.auth.approle.destroy_secret_id_accessor, name, accessor,
                       mount_point=mount)
        return len(accessors)

    def unwrap(self, wrapping_token: Secret) -> dict[str, str]:
        """What a wrapping token wraps (its data); the token is spent."""
        data = self._call("unwrap", self._client.sys.unwrap, wrapping_token.reveal(),
                          resend=False)
        return {str(k): str(v) for k, v in data["data"].items()}

    def login_approle(self, role_id: str, secret_id: Secret, mount: str) -> Secret:
        """Log in with an AppRole; the client token it gives."""
        data = self._call("AppRole login", self._client.auth.approle.login, role_id,
                          secret_id.reveal(), use_token=False, mount_point=mount, resend=False)
        return Secret(str(data["auth"]["client_token"]))

    # ---- tokens and audit devices (the lab's bootstrap) ---------------------------------

    def create_token(self, policies: list[str], period: str, display_name: str) -> tuple[Secret, str]:
        """A new orphan, periodic token under policies (and `default`): its secret and its
        accessor. An orphan outlives the token that made it (the root token may be revoked);
        a periodic token lives on as long as it is renewed within each period."""
        data = self._call(f"create a token with {', '.join(policies)}",
                          self._client.auth.token.create, policies=policies, period=period,
                          renewable=True, no_parent=True, display_name=display_name,
                          resend=False)
        return Secret(str(data["auth"]["client_token"])), str(data["auth"]["accessor"])

    def renew_self(self) -> TokenInfo:
        """Renew this client's token (a periodic one for a whole period again)."""
        auth = self._call("renew its token", self._client.auth.token.renew_self)["auth"]
        return TokenInfo(str(auth["accessor"]), tuple(map(str, auth["policies"])),
                         int(auth["lease_duration"]), bool(auth["renewable"]))

    def lookup_self(self) -> TokenInfo:
        data = self._call("look up its token", self._client.auth.token.lookup_self)["data"]
        return TokenInfo(str(data["accessor"]), tuple(map(str, data["policies"])),
                         int(data["ttl"]), bool(data["renewable"]))

    def revoke_accessor(self, accessor: str) -> None:
        self._call("revoke a token", self._client.auth.token.revoke_accessor, accessor)

    def policy(self, name: str) -> str | None:
        """An ACL policy's HCL text, None if there is none of that name."""
        try:
            data = self._call(f"read policy {name}", self._client.sys.read_acl_policy, name)
        except NotFound:
            return None
        return str(data["data"]["policy"])

    def audit_devices(self) -> dict[str, dict[str, str]]:
        """Every enabled audit device: path -> its type and options (a root-only read)."""
        data = self._call("sys/audit", self._client.sys.list_enabled_audit_devices)["data"]
        return {str(path): {"type": str(d["type"]),
                            **{str(k): str(v) for k, v in (d["options"] or {}).items()}}
                for path, d in data.items()}

    def disable_secrets_engine(self, mount: str) -> None:
        self._call(f"disable {mount}/", self._client.sys.disable_secrets_engine, mount)


def _leaderless(exc: Exception) -> bool:
    """A node that cannot serve now while another may: sealed, no active node (elected), or
    its raft storage failed to commit what the request wrote (a leader changing or slow under
    load: seen in a 3-node lab on a role-id read, which OpenBao may write through)."""
    said = str(exc).lower()
    return ("sealed" in said or "active" in said or "leader" in said or "standby" in said
            or _commit_failed(exc))


def _commit_failed(exc: Exception) -> bool:
    """OpenBao's raft storage could not commit the request's write: it may or may not stand,
    so only a request that may be sent again is (Servers)."""
    return "transaction commit failed" in str(exc).lower()
