"""What a promote or rollback command tells: one report per rollout, from the state it left."""

from __future__ import annotations

from dataclasses import dataclass, field

from fleet.errors import FleetError
from fleet.model.promotion import PromotionError, Purpose, RolloutState


@dataclass(frozen=True)
class PromotionReport:
    """One rollout, told from the state it left behind.

    `version` is the version the rollout took its roles to (for a rollback, the one rolled back
    to) and `state` how it ended; `at` is each role's channel once it ended ('' for none), read
    back from Consul: what `fleet status` shows, so the line about a rollout that was rolled
    back names the version its roles are really on. `steps` counts the rollout's steps (for one
    rolled back, those of its rollback), including any taken before it was carried on.
    `carried_on`: the rollout was left unfinished by an earlier command and carried on by this
    one. `rollout` is '' when there was nothing to roll.
    """

    env: str
    version: str
    roles: tuple[str, ...]
    state: RolloutState
    rollout: str
    steps: int
    seconds: float
    detail: str = ""
    purpose: Purpose = Purpose.PROMOTE   # what the rollout was started for
    command: Purpose = Purpose.PROMOTE   # what this command asked for
    at: dict[str, str] = field(default_factory=dict)
    carried_on: bool = False

    def error(self) -> FleetError | None:
        """A rollout that had to be rolled back is a failure, unless the command asked for
        exactly that: `fleet rollback` undoing an unfinished promotion."""
        if self.state is not RolloutState.ROLLED_BACK or (
                self.command is Purpose.ROLLBACK and self.purpose is Purpose.PROMOTE):
            return None
        runs = ", ".join(f"{r} {v or '(none)'}" for r, v in self.at.items())
        if self.purpose is Purpose.ROLLBACK:
            what = f"rollback of {self.env} to {self.version} failed and was undone"
        else:
            what = f"promotion of {self.version} to {self.env} failed and was rolled back"
        return PromotionError(f"{what} ({self.detail}); {self.env} runs {runs}",
                              "see fleet history and the nodes' logs")
