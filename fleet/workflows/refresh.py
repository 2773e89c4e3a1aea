"""fleet env refresh ENV --from SRC: ENV's pet data replaced by a scrubbed copy of SRC's.

Data flows only down the chain (production -> staging; model.snapshot.check_direction): the
other way is refused before anything is touched, as is an environment that uses another's
pets (it has none of its own). ENV's pets are matched to SRC's by role (and by position
within a role). For each pair: a snapshot of SRC's pet (snapshots.create: its volume is only
read, while the pet is paused), restored into ENV's pet (snapshots.put), with the role's
`scrub` script run on the copy first.

Where the scrub runs, and why there: in a one-shot container of the ENV pet's own image
(so it has the role's tools: a PostgreSQL scrub can start the server on a Unix socket), with
no network at all (`--network none`), on the scratch volume that holds the copy, mounted where
the pet keeps its data. At that moment ENV's pet still runs on its old data and has not seen
the copy; the copy reaches the pet's volume only once the scrub succeeded. So nothing in ENV
can ever connect to unscrubbed data, and a failed scrub leaves ENV's pet as it was (the copy
is dropped with its scratch volume). The script gets FLEET_DATA (where the data is),
FLEET_ROLE, FLEET_ENV and FLEET_SOURCE_ENV; a non-zero exit fails the refresh.

The refresh holds ENV's lock throughout (each snapshot holds SRC's briefly) and is recorded in
the history, as are its snapshots and restores.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleet.adapters import docker
from fleet.errors import FleetError
from fleet.model.definition import Role
from fleet.model.snapshot import SnapshotError, check_direction, pairs
from fleet.services.context import Context, who
from fleet.services.state import FleetState
from fleet.workflows import snapshots

Say = Callable[[str], None]


@dataclass(frozen=True)
class Refreshed:
    """One pet of ENV, refreshed from its match in SRC."""

    role: str
    source: str          # SRC's pet instance
    target: str          # ENV's pet instance
    snapshot: str        # the snapshot taken of SRC's pet
    sha256: str
    scrub: str           # the script run on the copy ("" for a role without one)


@dataclass(frozen=True)
class RefreshReport:
    env: str
    source: str
    pets: tuple[Refreshed, ...]
    seconds: float


def scrub_script(ctx: Context, role: Role) -> Path | None:
    """The role's scrub script, refused unless it is an executable file."""
    if not role.scrub:
        return None
    path = (ctx.root / role.scrub).resolve()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise SnapshotError(f"roles.{role.name}.scrub: {role.scrub} is not an executable file",
                            f"create it and chmod +x {role.scrub}")
    return path


def scrubber(script: Path, env: str, source: str, say: Say) -> snapshots.Prepare:
    """Run the scrub on the copy: the pet's image, no network, before the pet sees it."""
    def scrub(target: snapshots.Pet, scratch: str) -> None:
        found = docker.status(target.container)
        if found is None:
            raise SnapshotError(f"{target.container} is gone", f"fleet apply {env}")
        say(f"{target.name}: scrubbing the copy with {script.name} (no network; the pet "
            "has not seen it)")
        try:
            docker.throwaway(found[1], ["/fleet/scrub"],
                             volumes={scratch: f"{target.data_path}:nocopy"},
                             binds={script: "/fleet/scrub"},
                             env={"FLEET_DATA": target.data_path,
                                  "FLEET_ROLE": target.instance.role.name, "FLEET_ENV": env,
                                  "FLEET_SOURCE_ENV": source})
        except FleetError as exc:
            raise SnapshotError(f"the scrub of {target.name}'s copy failed ({exc.what}): the "
                                f"copy was dropped, {target.name} keeps its own data",
                                f"fix {script.name} and refresh again") from exc
    return scrub


def refresh(ctx: Context, env_name: str, source_name: str, say: Say) -> RefreshReport:
    """Replace ENV's pet data with a scrubbed copy of SRC's (see the module's doc)."""
    started = time.monotonic()
    fleet = ctx.fleet
    env, source = fleet.environment(env_name), fleet.environment(source_name)
    check_direction(fleet, env, source)
    work = [(role, snapshots.locate(ctx, s), snapshots.locate(ctx, t), scrub_script(ctx, role))
            for role, s, t in pairs(fleet, env.name, source.name)]
    for _, s, t, _ in work:  # every pet there before anything is touched
        for p in (s, t):
            if docker.status(p.container) is None:
                raise SnapshotError(f"{p.name} has no container {p.container}",
                                    f"create it first: fleet apply {p.instance.env}")
    history = FleetState(ctx.consul(), fleet.kv_prefix)
    done: list[Refreshed] = []
    with snapshots.held(ctx, env.name):
        for role, s, t, script in work:
            try:
                snap = snapshots.create(ctx, s.name, say)
                prepare = scrubber(script, env.name, source.name, say) if script else None
                snapshots.put(ctx, snap, t, say, prepare)
            except FleetError as exc:
                with contextlib.suppress(FleetError):  # the failure is what must be said
                    history.record({"event": "refresh", "env": env.name, "who": who(),
                                    "from": source.name, "failed": t.name,
                                    "refreshed": [d.target for d in done]})
                so_far = f"; refreshed before it: {', '.join(d.target for d in done)}" if done else ""
                raise FleetError(f"refresh of {env.name} stopped at {t.name}: {exc.what}{so_far}",
                                 exc.fix or f"fleet env refresh {env.name} --from {source.name}"
                                 ) from exc
            done.append(Refreshed(role.name, s.name, t.name, snap.id, snap.sha256,
                                  role.scrub if script else ""))
        history.record({"event": "refresh", "env": env.name, "who": who(),
                        "from": source.name, "pets": [d.target for d in done],
                        "snapshots": [d.snapshot for d in done],
                        "scrubbed": [d.target for d in done if d.scrub]})
    return RefreshReport(env.name, source.name, tuple(done), round(time.monotonic() - started, 1))
