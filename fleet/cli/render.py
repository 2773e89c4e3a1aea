"""Rendering: results to stdout (human tables, or JSON with --json), progress to stderr."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Any

# json, dataclasses and the Secret type are imported where they are used: `fleet --help` needs
# none of them, and start-up time is a feature (bench/startup.py)


def jsonable(value: Any) -> Any:
    """Result objects as plain JSON: dataclasses, enums, paths; secrets as ***."""
    if type(value) in _PLAIN:  # most of a large result: its strings and numbers, at once
        return value
    from fleet.model.secret import Secret

    shape = _shape(type(value))
    if shape is not None:
        fields, derived = shape
        out = {name: jsonable(getattr(value, name)) for name in fields}
        for name in derived:  # derived facts (ok, healthy) belong in the result too
            out[name] = jsonable(getattr(value, name))
        return out
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Secret):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


_PLAIN = frozenset({str, int, float, bool, type(None)})  # exactly these: an Enum is a str too
_SHAPES: dict[type, tuple[tuple[str, ...], tuple[str, ...]] | None] = {}


def _shape(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """A dataclass's field names and its properties' (in dir() order), None for any other
    type: worked out once a type, not once an object (a 10,000-node status has hundreds)."""
    if cls not in _SHAPES:
        import dataclasses

        _SHAPES[cls] = None if not dataclasses.is_dataclass(cls) else (
            tuple(f.name for f in dataclasses.fields(cls)),
            tuple(n for n in dir(cls) if isinstance(getattr(cls, n), property)))
    return _SHAPES[cls]


def emit_json(value: Any) -> None:
    import json

    sys.stdout.write(json.dumps(jsonable(value), indent=2) + "\n")


def progress(message: str) -> None:
    sys.stderr.write(f"fleet: {message}\n")
    sys.stderr.flush()


class Styled(str):
    """A table cell that is rich markup on purpose (see `colour`); every other cell is text."""


def colour(text: str, name: str) -> Styled:
    """TEXT in colour NAME, as a table cell."""
    from rich.markup import escape

    return Styled(f"[{name}]{escape(text)}[/{name}]")


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A table on stdout, for people. Cells are plain text, so `consul::passing[web:8080]` or
    `recipe[monitoring]` show as written; only `colour` cells are styled."""
    from rich.console import Console  # lazy: keeps `fleet --help` fast
    from rich.markup import escape
    from rich.table import Table

    grid = Table(title=escape(title), title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*(cell if isinstance(cell, Styled) else escape(cell) for cell in row))
    # a pipe or a log gets the whole table: wide enough that ids and paths are not cut
    Console(width=None if sys.stdout.isatty() else 200).print(grid)


class RoleProgress:
    """A live line per role on stderr (a terminal), or plain `fleet: [role] ...` lines."""

    def __init__(self, roles: list[str]) -> None:
        import threading

        self.roles = roles
        self.state = {r: "waiting" for r in roles}
        self.lock = threading.Lock()
        self.live: Any = None

    def __enter__(self) -> RoleProgress:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self._render(), console=Console(stderr=True), refresh_per_second=8)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(None, None, None)

    def _render(self) -> Any:
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        for role in self.roles:
            grid.add_row(f"[bold]{role}[/bold]", self.state[role])
        return grid

    def __call__(self, role: str, message: str) -> None:
        with self.lock:
            self.state[role] = message
            if self.live is not None:
                self.live.update(self._render())
            else:
                progress(f"[{role}] {message}")
