"""What pet moves (fleet/model/move.py) change in an environment's instances, as Terraform
must hold them whatever fleet.toml says meanwhile. Pure.

- A move's target exists from its create-target step until the move is aborted: every plan
  and apply of the environment keeps it (fleet.toml need not name it; `fleet apply` must not
  destroy a target in the middle of a copy). An abort's own Terraform run is the one that
  leaves it out (from `aborting` on), unless fleet.toml declares it.
- A move's source is decommissioned from `finishing` on: its container goes, its data volume
  stays (out of Terraform's state, kept until `fleet move --purge`). fleet.toml may still
  name it until someone renames it there; no plan brings it back while the record says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fleet.model.move import Move, Step

GONE = (Step.PLAN, Step.ABORTING, Step.ABORTED)


@dataclass(frozen=True)
class Placement:
    """One environment's instances as the moves have them."""

    targets: dict[str, Move]       # target instance -> its move (kept in the state)
    decommissioned: dict[str, Move]  # source instance -> its move (left out of the state)


def held_back(move: Move) -> bool:
    """Whether the target registers held back (no traffic but the cut-over's): until the
    move finishes, when it registers as declared."""
    return move.reached not in (Step.FINISHING, Step.FINISHED)


def target_exists(move: Move) -> bool:
    """Whether the move's target is one of its environment's instances now."""
    if move.step is Step.FAILED:
        return move.reached is not Step.PLAN
    return move.step not in GONE


def placement(moves: Iterable[Move], env: str) -> Placement:
    targets, gone = {}, {}
    for move in moves:
        if move.env != env:
            continue
        if target_exists(move):
            targets[move.target] = move
        if move.reached in (Step.FINISHING, Step.FINISHED):
            gone[move.source] = move
    return Placement(targets, gone)
