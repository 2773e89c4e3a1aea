"""Packer through `packer build -machine-readable`: build argv, run, parse the CSV stream strictly
(the format is in fleet/adapters/machinereadable.py)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleet.adapters import machinereadable, process
from fleet.adapters.machinereadable import Line as Line  # re-exported: build() hands these out
from fleet.errors import CommandFailed

VarValue = str | list[str] | dict[str, str]
COMMA = "%!(PACKER_COMMA)"


def version() -> str:
    """'1.6.6' from 'Packer v1.6.6'."""
    out = process.run(["packer", "version"], timeout=30).stdout.split()
    return out[1].lstrip("v")


@dataclass(frozen=True)
class Artifact:
    target: str
    builder_id: str
    id: str


@dataclass(frozen=True)
class BuildOutput:
    artifacts: tuple[Artifact, ...]
    errors: tuple[str, ...]       # the per-build `error` lines: why a build failed
    ui_errors: tuple[str, ...]    # what Packer showed in red, provisioner stderr included
    stray: tuple[str, ...]        # lines outside the format (a crash, a stray print)


def parse_line(raw: str) -> Line | None:
    return machinereadable.parse_line(raw, COMMA)


def parse_build(text: str) -> BuildOutput:
    """Artifacts and errors of one `packer build -machine-readable` run."""
    fields: dict[tuple[str, str], dict[str, str]] = {}
    errors: list[str] = []
    ui_errors: list[str] = []
    stray: list[str] = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        line = parse_line(raw)
        if line is None:
            stray.append(raw)
            continue
        if line.kind == "artifact" and len(line.data) >= 3:
            # artifact,INDEX,KEY,VALUE (string values may hold commas, already unescaped)
            fields.setdefault((line.target, line.data[0]), {})[line.data[1]] = ",".join(line.data[2:])
        elif line.kind == "error" and line.target:
            errors.append(line.data[0].strip())
        elif line.kind == "ui" and line.data[0] == "error":
            ui_errors.append(",".join(line.data[1:]).strip())
    artifacts = tuple(
        Artifact(target, values["builder-id"], values["id"])
        for (target, _), values in sorted(fields.items())
    )
    return BuildOutput(artifacts, tuple(errors), tuple(ui_errors), tuple(stray))


def var_args(variables: Mapping[str, VarValue]) -> list[str]:
    """-var NAME=VALUE; lists and maps go as HCL/JSON literals."""
    out: list[str] = []
    for name, value in variables.items():
        text = value if isinstance(value, str) else json.dumps(value)
        out += ["-var", f"{name}={text}"]
    return out


def build_argv(template: Path, variables: Mapping[str, VarValue]) -> list[str]:
    return ["packer", "build", "-machine-readable", *var_args(variables), str(template)]


def validate_argv(template: Path, variables: Mapping[str, VarValue]) -> list[str]:
    return ["packer", "validate", *var_args(variables), str(template)]


def failure_tail(output: BuildOutput, context: int = 3) -> str:
    """Why the build failed: the last lines a provisioner printed in red, then Packer's reason."""
    prefixed = (re.match(r"^==> [\w.-]+: (.*)$", line) for line in output.ui_errors
                if "\n" not in line)
    said = [m.group(1).strip() for m in prefixed if m]
    reasons = [" ".join(e.split()) for e in output.errors] or [
        " ".join(line.split()) for line in output.stray[-context:]]
    return " | ".join([*[s for s in said if s][-context:], *dict.fromkeys(reasons)])


def build(template: Path, variables: Mapping[str, VarValue], *, log: Path,
          on_line: Callable[[Line], None], cwd: Path, pass_fds: Sequence[int] = (),
          stop: threading.Event | None = None) -> BuildOutput:
    """Run a build; CommandFailed with the tail of Packer's error lines if it fails.
    pass_fds: descriptors Packer inherits; stop: set, Packer cancels (process.stream)."""
    argv = build_argv(template, variables)

    def each(raw: str) -> None:
        line = parse_line(raw)
        if line is not None:
            on_line(line)

    # Packer dies with the thread that started it: a fleet killed (kill -9) mid-bake would
    # leave it building an image nobody records. SIGTERM lets it cancel the build and remove
    # its container as it does on Ctrl-C. (setpriv, util-linux: PR_SET_PDEATHSIG, which a
    # preexec_fn could set too, but not safely with the bake's threads.)
    result = process.stream(["setpriv", "--pdeathsig", "TERM", "--", *argv], on_line=each,
                            log=log, cwd=cwd, pass_fds=pass_fds, stop=stop)
    output = parse_build(result.stdout)
    if result.returncode != 0 or not output.artifacts:
        raise CommandFailed(argv, result.returncode, failure_tail(output) or result.stdout[-500:],
                            f"the whole log is in {log}")
    return output


def validate(template: Path, variables: Mapping[str, VarValue], *, cwd: Path) -> str:
    """`packer validate`; CommandFailed with Packer's reason if the template is invalid."""
    result = process.run(validate_argv(template, variables), check=False, cwd=cwd, timeout=120)
    if result.returncode != 0:
        raise CommandFailed(validate_argv(template, variables)[:3], result.returncode,
                            result.stdout + result.stderr, "fix the template or the role's settings")
    return result.stdout.strip()
