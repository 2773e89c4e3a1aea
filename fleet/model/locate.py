"""Find the line of a dotted path (roles.web.count.production, environments[1].name) in TOML text.

tomllib keeps no positions, so this reads the text the way TOML lays it out: table headers,
array-of-table headers (counted per name) and `key =` lines, dotted keys included. A path
that has no line of its own (a key inside an inline table, a missing key) resolves to the
line of its nearest ancestor that has one.
"""

from __future__ import annotations

import re

HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
PART = r"""(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')"""
KEY = re.compile(rf"^\s*({PART}(?:\s*\.\s*{PART})*)\s*=")
INDEX = re.compile(r"\[(\d+)\]")


def _keys(dotted: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'""", dotted)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def index(text: str) -> dict[str, int]:
    """Map every path that has a line of its own to that (1-based) line."""
    lines: dict[str, int] = {}
    counters: dict[str, int] = {}
    table = ""
    depth = 0  # open [ of a multi-line array: its lines are values, not keys
    for number, line in enumerate(text.splitlines(), start=1):
        if depth == 0 and (m := HEADER.match(line)):
            name = ".".join(_keys(m.group(2)))
            if m.group(1) == "[[":
                counters[name] = counters.get(name, -1) + 1
                table = f"{name}[{counters[name]}]"
            else:
                table = _with_indices(name, counters)
            _claim(lines, table, number)
            continue
        if depth == 0 and (k := KEY.match(line)):
            path = ".".join([*([table] if table else []), *_keys(k.group(1))])
            _claim(lines, path, number)
        value = line.split("#", 1)[0]
        depth = max(0, depth + value.count("[") - value.count("]"))
    return lines


def _claim(lines: dict[str, int], path: str, number: int) -> None:
    """A header or dotted key also defines its parents ([a.b] defines a): first line wins."""
    parts = path.split(".")
    for end in range(1, len(parts) + 1):
        lines.setdefault(".".join(parts[:end]), number)


def _with_indices(name: str, counters: dict[str, int]) -> str:
    """[environments.gates] after [[environments]] belongs to the latest environment."""
    parts = name.split(".")
    out: list[str] = []
    for part in parts:
        out.append(part)
        key = ".".join(INDEX.sub("", p) for p in out)
        if key in counters:
            out[-1] = f"{part}[{counters[key]}]"
    return ".".join(out)


def locate(text: str, path: str) -> int:
    """The line of path, or of its nearest ancestor with a line; 1 when none has."""
    lines = index(text)
    probe = path
    while probe:
        if probe in lines:
            return lines[probe]
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return 1
