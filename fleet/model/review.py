"""Ephemeral environments' template ([review] in fleet.toml), and the checks that tie it and
`pets_from` to the rest of the definition. An ephemeral environment is made like a fixed one
(its settings, its secrets), with few nodes, and lives until its TTL runs out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleet.model.grammar import RoleClass
from fleet.model.spec import Problem, did_you_mean, seconds

DEFAULT_TTL, DEFAULT_MAX_TTL, DEFAULT_MAX = "8h", "168h", 10


@dataclass(frozen=True)
class Review:
    """The template of ephemeral environments ([review] in fleet.toml)."""

    like: str
    ttl_seconds: int
    max_ttl_seconds: int
    max: int
    count: Mapping[str, int]
    pets: str   # "fresh" | "copy"


def _pets_from(data: Mapping[str, Any], envs: Mapping[str, int],
               roles: Mapping[str, Any]) -> list[Problem]:
    """pets_from names another environment with pets of its own; the borrower has none."""
    found: list[Problem] = []
    lenders = {e["name"]: e.get("pets_from", "") for e in data["environments"]}
    for i, e in enumerate(data["environments"]):
        lender = e.get("pets_from", "")  # optional key
        if not lender:
            continue
        where = f"environments[{i}].pets_from"
        if lender == e["name"]:
            found.append((where, "an environment cannot borrow its own pets"))
        elif lender not in envs:
            found.append((where, f'unknown environment "{lender}"{did_you_mean(lender, envs)}'))
        elif lenders[lender]:
            found.append((where, f'"{lender}" borrows its pets from "{lenders[lender]}": name '
                                 "that one"))
        for rname, role in roles.items():
            if role["class"] == RoleClass.PET and role.get("instances", {}).get(e["name"]):
                found.append((f"roles.{rname}.instances.{e['name']}",
                              f'{e["name"]} uses the pets of {lender} (pets_from): it has none '
                              "of its own"))
    return found


def _review(data: Mapping[str, Any], envs: Mapping[str, int],
            roles: Mapping[str, Any]) -> list[Problem]:
    review = data.get("review")  # optional table
    if review is None:
        return []
    found: list[Problem] = []
    if review["like"] not in envs:
        found.append(("review.like", f'unknown environment "{review["like"]}"'
                                     f"{did_you_mean(review['like'], envs)}"))
    for rname in review.get("count", {}):
        if rname not in roles:
            found.append((f"review.count.{rname}", f'unknown role "{rname}"'
                                                   f"{did_you_mean(rname, roles)}"))
        elif roles[rname]["class"] != RoleClass.CATTLE:
            found.append((f"review.count.{rname}", "only cattle roles take a count"))
    ttl = seconds(review.get("ttl", DEFAULT_TTL))
    longest = seconds(review.get("max_ttl", DEFAULT_MAX_TTL))
    if ttl > longest:
        found.append(("review.ttl", f"longer than max_ttl ({review.get('max_ttl', '7d')})"))
    return found


def problems(data: Mapping[str, Any], envs: Mapping[str, int]) -> list[Problem]:
    """What is wrong in [review] and the environments' pets_from."""
    return _pets_from(data, envs, data["roles"]) + _review(data, envs, data["roles"])


def template(data: Mapping[str, Any]) -> Review | None:
    """[review] with its documented defaults: a node for each cattle role that runs in `like`."""
    review, roles = data.get("review"), data["roles"]  # [review] is optional
    if review is None:
        return None
    like = review["like"]
    count = {name: review.get("count", {}).get(name, min(1, r.get("count", {}).get(like, 0)))
             for name, r in roles.items() if r["class"] == RoleClass.CATTLE}
    return Review(like, seconds(review.get("ttl", DEFAULT_TTL)),
                  seconds(review.get("max_ttl", DEFAULT_MAX_TTL)),
                  review.get("max", DEFAULT_MAX), count, review.get("pets", "fresh"))
