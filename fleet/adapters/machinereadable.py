"""HashiCorp's machine-readable output (Packer's and Vagrant's `-machine-readable`). Pure.

Each line is `timestamp,target,type,data...`; a comma inside data is written `%!(TOOL_COMMA)`
and a newline a literal backslash-n
(https://developer.hashicorp.com/packer/docs/commands#machine-readable-output,
https://developer.hashicorp.com/vagrant/docs/cli/machine-readable).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LINE = re.compile(r"^(\d+),([^,]*),([^,]+),?(.*)$")


@dataclass(frozen=True)
class Line:
    timestamp: int
    target: str
    kind: str
    data: tuple[str, ...]


def unescape(field: str, comma: str) -> str:
    return field.replace(comma, ",").replace("\\n", "\n").replace("\\r", "\r")


def parse_line(raw: str, comma: str) -> Line | None:
    """One line, or None if it is not in the format (a crash, a stray print)."""
    match = LINE.match(raw)
    if match is None:
        return None
    stamp, target, kind, rest = match.groups()
    data = tuple(unescape(f, comma) for f in rest.split(",")) if rest else ()
    return Line(int(stamp), target, kind, data)
