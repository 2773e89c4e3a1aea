"""Where pet moves are recorded (fleet/model/move.py says why there): one key per moving pet,
<prefix>/moves/<source>, written with check-and-set, and each step an event in the fleet's
history. A write that loses its check-and-set means another process drives the same move:
it stops, naming that."""

from __future__ import annotations

from fleet.model.move import Entry, Move, key
from fleet.model.moved import Placement, placement
from fleet.services.state import FleetState, StateConflict, StateKV


class Moves:
    def __init__(self, kv: StateKV, prefix: str) -> None:
        self.kv = kv
        self.prefix = prefix
        self.state = FleetState(kv, prefix)

    def get(self, pet: str) -> tuple[Move | None, int]:
        """The move of pet (None when it never moved) and the index to write it back with."""
        entry = self.kv.get(f"{self.prefix}/{key(pet)}")
        if entry is None or not entry.value:
            return None, 0
        return Move.from_json(entry.value), entry.modify_index

    def all(self) -> list[Move]:
        """Every move on record, in flight or over, by source."""
        return sorted((Move.from_json(e.value) for e in self.kv.list(f"{self.prefix}/moves/")
                       if e.value), key=lambda m: m.source)

    def placement(self, env: str) -> Placement:
        return placement(self.all(), env)

    def write(self, move: Move, index: int, before: Move | None) -> int:
        """Record the move (check-and-set on index; `before` is what that index held), then
        the history events it gained; the index for the next write. Raise when either cannot
        be recorded: the step is not taken."""
        if not self.kv.put(f"{self.prefix}/{key(move.source)}", move.to_json(), cas=index):
            raise StateConflict(f"the move of {move.source} was changed by another fleet "
                                "process meanwhile", "see fleet move --status; rerun when it "
                                "is done (one process drives a move at a time)")
        known = len(before.history) if before is not None else 0
        for entry in move.history[known:]:
            self.state.record(event(move, entry))
        _, now = self.get(move.source)
        return now


def event(move: Move, entry: Entry) -> dict[str, object]:
    """One step of a move as the fleet's history has it."""
    return {"event": "move", "roles": [move.role], "env": move.env, "pet": move.source,
            "target": move.target, "step": entry.step.value, "outcome": entry.outcome.value,
            "who": entry.by, "detail": entry.detail}

