"""fleet validate: every problem in fleet.toml at once, including files it names that are missing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleet.errors import ConfigError, FleetError
from fleet.model.definition import parse, render
from fleet.services.bakeinputs import missing_files
from fleet.services.context import read_text


@dataclass(frozen=True)
class Validation:
    file: Path
    problems: tuple[str, ...]
    roles: dict[str, str]           # role -> class
    environments: tuple[str, ...]   # in promotion order

    @property
    def ok(self) -> bool:
        return not self.problems

    def error(self) -> FleetError | None:
        if self.ok:
            return None
        return FleetError(f"{self.file.name} has {len(self.problems)} problem(s)",
                          "fix them and run `fleet validate` again")


def validate(file: Path) -> Validation:
    text = read_text(file)
    try:
        fleet = parse(text, file.name)
    except ConfigError as exc:
        return Validation(file, tuple(exc.problems), {}, ())
    found = [render(file.name, text, path, msg) for path, msg in missing_files(fleet, file.parent)]
    return Validation(file, tuple(found), {r.name: r.cls.value for r in fleet.roles.values()},
                      fleet.env_names())


