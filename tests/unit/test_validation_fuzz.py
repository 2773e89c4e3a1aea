"""Hypothesis: whatever a fleet file holds, validation reports problems and never crashes."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.model.definition import Fleet, build, parse, problems
from fleet.model.locate import locate
from tests.conftest import EXAMPLE

TEXT = EXAMPLE.read_text()
DATA = tomllib.loads(TEXT)

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += paths(child, (*prefix, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += paths(child, (*prefix, i))
    return found


ALL_PATHS = paths(DATA)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL_PATHS), values)
def test_any_substitution_yields_problems_not_a_crash(where: tuple[Any, ...], value: Any) -> None:
    data = copy.deepcopy(DATA)
    node = data
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    found = problems(data)
    if found:
        assert all(isinstance(p, str) and isinstance(m, str) and m for p, m in found)
    else:  # a substitution nothing objects to must be one the model takes
        assert_builds(data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ALL_PATHS))
def test_removing_any_key_is_reported_or_harmless(where: tuple[Any, ...]) -> None:
    data = copy.deepcopy(DATA)
    node = data
    for key in where[:-1]:
        node = node[key]
    del node[where[-1]]
    found = problems(data)
    if found:
        assert all(isinstance(p, str) and isinstance(m, str) and m for p, m in found)
    else:  # harmless: an optional key with a documented default
        assert_builds(data)


def assert_builds(data: dict[str, Any]) -> None:
    """A document validation passes becomes the typed model, naming the same roles and
    environments (a KeyError or TypeError here is a hole in the validator)."""
    fleet = build(data)
    assert isinstance(fleet, Fleet)
    assert list(fleet.roles) == list(data["roles"])
    assert fleet.env_names() == tuple(e["name"] for e in data["environments"])


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.text(max_size=40))
def test_locate_always_answers_a_line(text: str, path: str) -> None:
    line = locate(text, path)
    assert 1 <= line <= max(1, len(text.splitlines()))


def test_the_example_parses_in_file_order() -> None:
    fleet = parse(TEXT)
    assert fleet.env_names() == ("canary", "staging", "production")
    assert list(fleet.roles) == list(DATA["roles"])
    assert fleet.roles["web"].count == {"canary": 1, "staging": 1, "production": 2}
    assert fleet.roles["gitaly"].instances["production"] == ("gitaly-01",)
    assert fleet.environments[2].manual_approval is True
    assert fleet.environments[1].soak_seconds == 60
