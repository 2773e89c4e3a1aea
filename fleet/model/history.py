"""The history's filters: `fleet history --since DURATION|TIME`. Pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fleet.errors import FleetError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION = re.compile(r"(?:\d+[smhdw])+")


def since(text: str, now: datetime) -> datetime:
    """When `--since TEXT` starts: a duration back from now (`90s`, `30m`, `1h30m`, `2d`, `1w`),
    or a time in ISO 8601 (`2026-05-14`, `2026-05-14T10:00`, with an offset or `Z`). The
    history is kept in UTC, and so is a time without an offset (not the local zone, which
    would make the same command mean different things on different machines)."""
    text = text.strip()
    if DURATION.fullmatch(text):
        return now - timedelta(seconds=sum(int(n) * UNITS[u]
                                           for n, u in re.findall(r"(\d+)([smhdw])", text)))
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise FleetError(f'--since "{text}" is neither a duration nor a time',
                         "give a duration back from now (30m, 1h, 2d) or an ISO 8601 time "
                         "(2026-05-14T10:00, UTC unless it says otherwise)") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
