"""What every command module shares (Terraform's command.Meta): the session, --json, and
raising a result's own error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from fleet.errors import FleetError
    from fleet.services.context import Context

F = TypeVar("F", bound=Callable[..., Any])


class Session:
    """What every command gets: the fleet file it works on."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def context(self) -> Context:
        from fleet.services.context import load

        return load(self.file)

    def live_context(self) -> Context:
        """The context with the ephemeral environments Consul records beside fleet.toml's
        (fleet.services.environments): for every command that names or walks environments."""
        from fleet.services.environments import live

        return live(self.context())


def json_option(fn: F) -> F:
    """--json on every command: the result as JSON on stdout."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as JSON on stdout.")(fn)


def raise_if(error: FleetError | None) -> None:
    """A result's failure (its error()), for the one error boundary in main."""
    if error is not None:
        raise error
