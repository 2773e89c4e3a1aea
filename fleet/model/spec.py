"""A tiny declarative spec for TOML documents: one source for validation and for the JSON Schema.

Each node checks a parsed value and returns every problem at once, as (path, message) pairs,
so a user fixes a whole file in one pass instead of one error per run.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Problem = tuple[str, str]
JSON = dict[str, Any]

DURATION_RE = re.compile(r"^(\d+h)?(\d+m)?(\d+s)?$")


def show(value: object) -> str:
    """Render a value as TOML would spell it, for 'got ...' in messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


def join(path: str, key: str | int) -> str:
    """Dotted path for table keys, [i] for array items."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Node:
    """A spec node: checks a value and describes itself as JSON Schema."""

    doc: str = ""

    def check(self, value: object, path: str) -> list[Problem]:
        raise NotImplementedError

    def schema(self) -> JSON:
        raise NotImplementedError

    def _with_doc(self, schema: JSON) -> JSON:
        if self.doc:
            schema["description"] = self.doc
        return schema


@dataclass(frozen=True)
class Str(Node):
    doc: str = ""
    pattern: str | None = None
    pattern_doc: str = ""
    choices: tuple[str, ...] = ()

    def check(self, value: object, path: str) -> list[Problem]:
        if not isinstance(value, str):
            return [(path, f"expected a string, got {show(value)}")]
        if self.choices and value not in self.choices:
            hint = did_you_mean(value, self.choices)
            return [(path, f"expected one of {', '.join(self.choices)}, got {show(value)}{hint}")]
        if self.pattern and not re.fullmatch(self.pattern, value):
            return [(path, f"expected {self.pattern_doc or 'a match of ' + self.pattern}, "
                           f"got {show(value)}")]
        return []

    def schema(self) -> JSON:
        out: JSON = {"type": "string"}
        if self.choices:
            out["enum"] = list(self.choices)
        if self.pattern:
            out["pattern"] = f"^{self.pattern}$"
        return self._with_doc(out)


@dataclass(frozen=True)
class Int(Node):
    doc: str = ""
    minimum: int | None = None
    maximum: int | None = None

    def check(self, value: object, path: str) -> list[Problem]:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and self.minimum is not None and value < self.minimum:  # type: ignore[operator]
            ok = False
        if ok and self.maximum is not None and value > self.maximum:  # type: ignore[operator]
            ok = False
        if ok:
            return []
        bounds = []
        if self.minimum is not None:
            bounds.append(f">= {self.minimum}")
        if self.maximum is not None:
            bounds.append(f"<= {self.maximum}")
        return [(path, f"expected an integer {' and '.join(bounds)}".rstrip()
                 + f", got {show(value)}")]

    def schema(self) -> JSON:
        out: JSON = {"type": "integer"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return self._with_doc(out)


@dataclass(frozen=True)
class Bool(Node):
    doc: str = ""

    def check(self, value: object, path: str) -> list[Problem]:
        if isinstance(value, bool):
            return []
        return [(path, f"expected true or false, got {show(value)}")]

    def schema(self) -> JSON:
        return self._with_doc({"type": "boolean"})


def seconds(duration: str) -> int:
    """A checked Duration in seconds: '1h30m' -> 5400."""
    total, number = 0, ""
    for char in duration:
        if char.isdigit():
            number += char
        else:
            total += int(number) * {"h": 3600, "m": 60, "s": 1}[char]
            number = ""
    return total


@dataclass(frozen=True)
class Duration(Node):
    """A Go-style duration as Consul and Vault spell them: 30s, 5m, 1h30m."""

    doc: str = ""

    def check(self, value: object, path: str) -> list[Problem]:
        if isinstance(value, str) and value and DURATION_RE.fullmatch(value):
            return []
        return [(path, f"expected a duration such as \"30s\", \"5m\" or \"1h30m\", got {show(value)}")]

    def schema(self) -> JSON:
        return self._with_doc({"type": "string", "pattern": "^(\\d+h)?(\\d+m)?(\\d+s)?$"})


@dataclass(frozen=True)
class Array(Node):
    item: Node
    doc: str = ""
    min_items: int = 0
    unique: bool = False

    def check(self, value: object, path: str) -> list[Problem]:
        if not isinstance(value, list):
            return [(path, f"expected an array, got {show(value)}")]
        if len(value) < self.min_items:
            return [(path, f"expected at least {self.min_items} item(s), got {len(value)}")]
        problems: list[Problem] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            problems += self.item.check(item, join(path, i))
            if self.unique and isinstance(item, str | int):
                key = str(item)
                if key in seen:
                    problems.append((join(path, i), f"duplicate {show(item)} (also item {seen[key]})"))
                seen.setdefault(key, i)
        return problems

    def schema(self) -> JSON:
        out: JSON = {"type": "array", "items": self.item.schema()}
        if self.min_items:
            out["minItems"] = self.min_items
        if self.unique:
            out["uniqueItems"] = True
        return self._with_doc(out)


NAME = r"[a-z][a-z0-9-]*"


@dataclass(frozen=True)
class Table(Node):
    """A table with known keys; `values` makes it a map of NAME -> node instead."""

    fields: Mapping[str, Node] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    values: Node | None = None
    doc: str = ""
    min_keys: int = 0
    key_pattern: str = NAME

    def check(self, value: object, path: str) -> list[Problem]:
        if not isinstance(value, dict):
            return [(path, f"expected a table, got {show(value)}")]
        problems: list[Problem] = []
        for key in self.required:
            if key not in value:
                problems.append((join(path, key), "missing required key"))
        if self.values is not None and len(value) < self.min_keys:
            problems.append((path, f"expected at least {self.min_keys} entry, got none"))
        for key, item in value.items():
            sub = join(path, key)
            if key in self.fields:
                problems += self.fields[key].check(item, sub)
            elif self.values is not None:
                if not re.fullmatch(self.key_pattern, key):
                    problems.append((sub, f"expected a key matching {self.key_pattern}, "
                                          f"got {show(key)}"))
                problems += self.values.check(item, sub)
            else:
                problems.append((sub, f"unknown key{did_you_mean(key, self.fields)}"))
        return problems

    def schema(self) -> JSON:
        out: JSON = {"type": "object"}
        if self.fields:
            out["properties"] = {k: v.schema() for k, v in self.fields.items()}
        if self.required:
            out["required"] = list(self.required)
        if self.values is not None:
            out["additionalProperties"] = self.values.schema()
            out["propertyNames"] = {"pattern": f"^{self.key_pattern}$"}
        else:
            out["additionalProperties"] = False
        return self._with_doc(out)


@dataclass(frozen=True)
class Union(Node):
    """One of several tables, chosen by the value of a tag key (e.g. provisioner type)."""

    tag: str
    variants: Mapping[str, Table]
    doc: str = ""

    def check(self, value: object, path: str) -> list[Problem]:
        if not isinstance(value, dict):
            return [(path, f"expected a table, got {show(value)}")]
        if self.tag not in value:
            return [(join(path, self.tag), "missing required key")]
        kind = value[self.tag]
        if not isinstance(kind, str) or kind not in self.variants:
            return Str(choices=tuple(self.variants)).check(kind, join(path, self.tag))
        return self.variants[kind].check(value, path)

    def schema(self) -> JSON:
        return self._with_doc({"oneOf": [v.schema() for v in self.variants.values()]})


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""
