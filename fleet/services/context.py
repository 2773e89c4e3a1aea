"""Where a command runs: the fleet definition, its directory, and the endpoints it talks to.

The model's code (fleet.model.definition and what it imports: ~40 ms, most of it making its
dataclasses) is imported by load(), not by this module: a command whose first large read only
needs the fleet's Consul and name (declared_consul) begins it before that import (issue 19).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet.adapters.consul import Consul
from fleet.errors import ConfigError
from fleet.model import servers
from fleet.model.secret import Secret

if TYPE_CHECKING:  # imported where used: a read of Consul alone (status, history) needs neither
    from fleet.adapters.vault import Vault  # (~3 ms of their start)
    from fleet.model.definition import Fleet

# A Consul and a fleet on it: the servers, the token and the fleet's name
ConsulOf = tuple[tuple[str, ...], str | None, str]


@dataclass(frozen=True)
class Context:
    """The loaded fleet and resolved endpoints; the environment overrides fleet.toml."""

    fleet: Fleet
    file: Path
    consul_addrs: tuple[str, ...]   # every Consul server fleet may ask (fleet/model/servers.py)
    consul_token: Secret | None
    vault_addrs: tuple[str, ...]    # every OpenBao (Vault) node
    vault_token: Secret | None

    @property
    def root(self) -> Path:
        return self.file.parent

    @property
    def consul_addr(self) -> str:
        """The first Consul server: where the lab starts its first, and what messages name."""
        return self.consul_addrs[0]

    @property
    def vault_addr(self) -> str:
        return self.vault_addrs[0]

    def consul(self, timeout: float = 5.0) -> Consul:
        """A Consul client with the token this command runs with, knowing every server."""
        return Consul(self.consul_addrs, self.consul_token.reveal() if self.consul_token else None,
                      timeout=timeout)

    def vault(self, timeout: float = 5.0) -> Vault:
        """A Vault client with the token this command runs with (if any), knowing every node."""
        from fleet.adapters.vault import Vault

        return Vault(self.vault_addrs, self.vault_token.reveal() if self.vault_token else None,
                     timeout=timeout)

    @property
    def consul_of(self) -> ConsulOf:
        """The servers, token and fleet name this context reads Consul with."""
        return (self.consul_addrs, self.consul_token.reveal() if self.consul_token else None,
                self.fleet.name)

    @property
    def state_dir(self) -> Path:
        """Local lab state, keys and logs: .fleet/ beside fleet.toml, never committed. A
        checkout whose .fleet is a link to another's (a git worktree) shares that lab: the
        path is resolved, so both write the lab servers' configuration alike."""
        return (self.root / ".fleet").resolve()


def token_environ(ctx: Context) -> dict[str, str]:
    """VAULT_TOKEN and CONSUL_HTTP_TOKEN as this context has them (by default fleet's
    operator tokens): what a copy of the fleet elsewhere on disk (a test's, a benchmark's)
    needs to work on the same lab, with the same least privilege."""
    tokens = {"VAULT_TOKEN": ctx.vault_token, "CONSUL_HTTP_TOKEN": ctx.consul_token}
    return {k: v.reveal() for k, v in tokens.items() if v is not None}


def who() -> str:
    """user@host: who did it, as catalog records and verdicts name them."""
    import getpass

    return f"{getpass.getuser()}@{socket.gethostname()}"


def read_text(file: Path) -> str:
    try:
        return file.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"{file} does not exist",
                          fix="run fleet from the fleet's directory or pass --file PATH") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file} cannot be read: {exc}") from exc


def load(file: Path, environ: Mapping[str, str] | None = None) -> Context:
    """Read and validate fleet.toml; CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, VAULT_ADDR and
    VAULT_TOKEN override it as they do for the consul and vault CLIs. Without them, if this
    directory has a lab, fleet's operator tokens are used: Consul's and Vault's (never the
    lab's Consul management nor Vault root token, which only `fleet lab up` uses)."""
    from fleet.model.definition import parse

    env = os.environ if environ is None else environ
    file = file.resolve()
    fleet = parse(read_text(file), file.name)
    lab = _lab_dir(file)
    consul_addrs, consul_token = _consul(env, lab, fleet.consul, fleet.lab_servers)
    vault_addrs = _servers(env.get("VAULT_ADDR"), fleet.vault, fleet.lab_servers)
    vault_token = env.get("VAULT_TOKEN") or _lab_secret(lab / "openbao-operator.json", "token")
    return Context(
        fleet=fleet,
        file=file,
        consul_addrs=consul_addrs,
        consul_token=Secret(consul_token) if consul_token else None,
        vault_addrs=vault_addrs,
        vault_token=Secret(vault_token) if vault_token else None,
    )


def declared_consul(file: Path, environ: Mapping[str, str] | None = None) -> ConsulOf | None:
    """The Consul and fleet name that load() will resolve, read from fleet.toml's TOML before
    it is validated or its model built, for a command to begin its large read while that
    code is imported; None where the file does not plainly say them (load() then says what is
    wrong). Whoever uses a read begun with it checks it against the loaded context's
    consul_of: the file may change in between."""
    import tomllib

    env = os.environ if environ is None else environ
    file = file.resolve()
    try:
        declared: dict[str, Any] = tomllib.loads(file.read_text())
        fleet, targets = declared["fleet"], declared.get("targets", {})
        lab_servers = servers.lab_count((t.get("kind"), t) for t in targets.values())
        return *_consul(env, _lab_dir(file), str(fleet["consul"]), lab_servers), str(fleet["name"])
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, LookupError, AttributeError,
            TypeError, ValueError, ConfigError):
        return None


def _lab_dir(file: Path) -> Path:
    """Where the lab of the fleet in file keeps its state and tokens."""
    return file.parent / ".fleet" / "lab"


def _consul(env: Mapping[str, str], lab: Path, declared: str,
            lab_servers: int) -> tuple[tuple[str, ...], str | None]:
    """Consul's servers and the token to use: CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN, else
    fleet.toml's address(es) and the lab's operator token."""
    token = env.get("CONSUL_HTTP_TOKEN") or _lab_secret(lab / "consul-acl.json", "operator")
    return _servers(env.get("CONSUL_HTTP_ADDR"), declared, lab_servers), token


def _servers(override: str | None, declared: str, lab_servers: int) -> tuple[str, ...]:
    """Every server's address: the environment's as it lists them; fleet.toml's as listed,
    or its one address spread over the lab's servers."""
    if override:
        return servers.addresses(override)
    found = servers.addresses(declared)
    return servers.spread(found[0], lab_servers) if len(found) == 1 else found


def _lab_secret(file: Path, key: str) -> str | None:
    """A token the lab keeps in one of its 0600 files, None before the lab made it."""
    try:
        return str(json.loads(file.read_text())[key])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{file} is unreadable: {exc}", fix="run `fleet lab reset`") from exc
