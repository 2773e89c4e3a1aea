"""Where a command runs: the fleet definition, its directory, and the endpoints it talks to."""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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

    @property
    def state_dir(self) -> Path:
        """Local lab state, keys and logs: .fleet/ beside fleet.toml, never committed."""
        return self.root / ".fleet"


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
    VAULT_TOKEN override it as they do for the consul and vault CLIs. Without VAULT_TOKEN the
    lab's root token is used, if this directory has a lab."""
    env = os.environ if environ is None else environ
    file = file.resolve()
    fleet = parse(read_text(file), file.name)
    consul_addr = env.get("CONSUL_HTTP_ADDR") or fleet.consul
    if "//" not in consul_addr:
        consul_addr = "http://" + consul_addr  # the consul CLI accepts a bare host:port
    vault_token = env.get("VAULT_TOKEN") or _lab_root_token(file.parent / ".fleet")
    consul_token = env.get("CONSUL_HTTP_TOKEN")
    return Context(
        fleet=fleet,
        file=file,
        consul_addr=consul_addr,
        consul_token=Secret(consul_token) if consul_token else None,
        vault_addr=env.get("VAULT_ADDR") or fleet.vault,
        vault_token=Secret(vault_token) if vault_token else None,
    )


def _lab_root_token(state_dir: Path) -> str | None:
    init = state_dir / "lab" / "openbao-init.json"
    try:
        return str(json.loads(init.read_text())["root_token"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{init} is unreadable: {exc}", fix="run `fleet lab reset`") from exc
