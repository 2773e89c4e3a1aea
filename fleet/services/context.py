"""Where a command runs: the fleet definition, its directory, and the endpoints it talks to."""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fleet.adapters.consul import Consul
from fleet.errors import ConfigError
from fleet.model.definition import Fleet, parse
from fleet.model.secret import Secret


@dataclass(frozen=True)
class Context:
    """The loaded fleet and resolved endpoints; the environment overrides fleet.toml."""

    fleet: Fleet
    file: Path
    consul_addr: str
    consul_token: Secret | None
    vault_addr: str
    vault_token: Secret | None

    @property
    def root(self) -> Path:
        return self.file.parent

    def consul(self, timeout: float = 5.0) -> Consul:
        """A Consul client with the token this command runs with."""
        return Consul(self.consul_addr, self.consul_token.reveal() if self.consul_token else None,
                      timeout=timeout)

    @property
    def state_dir(self) -> Path:
        """Local lab state, keys and logs: .fleet/ beside fleet.toml, never committed."""
        return self.root / ".fleet"


def token_environ(ctx: Context) -> dict[str, str]:
    """VAULT_TOKEN and CONSUL_HTTP_TOKEN as this context has them (by default fleet's
    operator tokens): what a copy of the fleet elsewhere on disk (a test's, a benchmark's)
    needs to work on the same lab, with the same least privilege."""
    tokens = {"VAULT_TOKEN": ctx.vault_token, "CONSUL_HTTP_TOKEN": ctx.consul_token}
    return {k: v.reveal() for k, v in tokens.items() if v is not None}


def who() -> str:
    """user@host: who did it, as catalog records and verdicts name them."""
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
    env = os.environ if environ is None else environ
    file = file.resolve()
    fleet = parse(read_text(file), file.name)
    consul_addr = env.get("CONSUL_HTTP_ADDR") or fleet.consul
    if "//" not in consul_addr:
        consul_addr = "http://" + consul_addr  # the consul CLI accepts a bare host:port
    lab = file.parent / ".fleet" / "lab"
    vault_token = env.get("VAULT_TOKEN") or _lab_secret(lab / "openbao-operator.json", "token")
    consul_token = env.get("CONSUL_HTTP_TOKEN") or _lab_secret(lab / "consul-acl.json", "operator")
    return Context(
        fleet=fleet,
        file=file,
        consul_addr=consul_addr,
        consul_token=Secret(consul_token) if consul_token else None,
        vault_addr=env.get("VAULT_ADDR") or fleet.vault,
        vault_token=Secret(vault_token) if vault_token else None,
    )


def _lab_secret(file: Path, key: str) -> str | None:
    """A token the lab keeps in one of its 0600 files, None before the lab made it."""
    try:
        return str(json.loads(file.read_text())[key])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{file} is unreadable: {exc}", fix="run `fleet lab reset`") from exc
