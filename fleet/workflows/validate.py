"""fleet validate: every problem in fleet.toml at once, including files it names that are missing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleet.errors import ConfigError
from fleet.model.definition import Fleet, parse, render
from fleet.workflows.context import read_text


@dataclass(frozen=True)
class Validation:
    file: Path
    problems: tuple[str, ...]
    roles: dict[str, str]           # role -> class
    environments: tuple[str, ...]   # in promotion order

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(file: Path) -> Validation:
    text = read_text(file)
    try:
        fleet = parse(text, file.name)
    except ConfigError as exc:
        return Validation(file, tuple(exc.problems), {}, ())
    found = [render(file.name, text, path, msg) for path, msg in missing_files(fleet, file.parent)]
    return Validation(file, tuple(found), {r.name: r.cls.value for r in fleet.roles.values()},
                      fleet.env_names())


def missing_files(fleet: Fleet, root: Path) -> list[tuple[str, str]]:
    """Provisioner scripts that do not exist; run_list entries with no recipe in cookbooks/."""
    found = []
    for role in fleet.roles.values():
        where = f"roles.{role.name}.provisioner"
        for i, script in enumerate(role.provisioner.scripts):
            if not (root / script).is_file():
                found.append((f"{where}.scripts[{i}]", f"script {script} does not exist"))
        for i, entry in enumerate(role.provisioner.run_list):
            cookbook, _, recipe = entry[len("recipe["):-1].partition("::")
            path = Path("cookbooks") / cookbook / "recipes" / f"{recipe or 'default'}.rb"
            if not (root / path).is_file():
                found.append((f"{where}.run_list[{i}]",
                              f"{entry} resolves to no recipe: {path} does not exist"))
    return found
