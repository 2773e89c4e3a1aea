"""Terraform through its CLI: init with the consul backend, apply with a JSON var file.

Each working state gets its own TF_DATA_DIR under .fleet, so the module directory in the repo
stays clean and several environments can be applied from one module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.adapters import process
from fleet.errors import CommandFailed


def cli_env(state_dir: Path) -> dict[str, str]:
    """Point TF_CLI_CONFIG_FILE at an empty file: no provider mirrors, no credentials helpers."""
    config = state_dir / "terraformrc"
    if not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text("")
    return {"TF_CLI_CONFIG_FILE": str(config), "TF_IN_AUTOMATION": "1"}


def version(state_dir: Path) -> str:
    result = process.run(["terraform", "version", "-json"], env=cli_env(state_dir), timeout=30)
    return str(json.loads(result.stdout)["terraform_version"])


@dataclass(frozen=True)
class Workspace:
    """One Terraform state: a module, its data dir, and where its state lives in Consul."""

    module: Path
    data_dir: Path          # TF_DATA_DIR plus the var file
    consul_address: str     # host:port
    state_path: str         # KV path of the state (the backend locks it at path/.lock)
    state_dir: Path         # .fleet, for the CLI config

    def env(self) -> dict[str, str]:
        return {**cli_env(self.state_dir), "TF_DATA_DIR": str(self.data_dir / ".terraform")}

    def run(self, *args: str, timeout: float = 900) -> process.Result:
        argv = ["terraform", f"-chdir={self.module}", *args]
        # output to files: a fleet killed mid-apply must not take Terraform down with it
        output = self.data_dir / "output"
        result = process.run(argv, check=False, env=self.env(), timeout=timeout, outlive=output)
        if result.returncode != 0:
            raise CommandFailed(argv[:3], result.returncode, diagnostics(result.stderr),
                                _fix(result.stderr, output))
        return result

    def init(self) -> None:
        """Once per workspace: the consul backend, locked, at state_path."""
        marker = self.data_dir / ".terraform" / "terraform.tfstate"
        if marker.exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.run("init", "-input=false", "-no-color",
                 f"-backend-config=address={self.consul_address}",
                 f"-backend-config=path={self.state_path}",
                 "-backend-config=lock=true", "-reconfigure")

    def apply(self, variables: Mapping[str, Any], *, refresh: bool = True) -> dict[str, Any]:
        """Apply the module with these variables; return its outputs.

        refresh=False skips reading the real resources first: right for a module of
        terraform_data only (lab cattle), whose refresh reads nothing outside the state.
        """
        self.init()
        var_file = self.data_dir / "fleet.auto.tfvars.json"
        var_file.write_text(json.dumps(variables, indent=1, sort_keys=True))
        # a killed fleet may leave its terraform child finishing an apply: wait for its lock
        self.run("apply", "-input=false", "-no-color", "-auto-approve", "-lock-timeout=300s",
                 f"-refresh={str(refresh).lower()}", f"-var-file={var_file}")
        outputs = json.loads(self.run("output", "-json", "-no-color").stdout)
        return {name: value["value"] for name, value in outputs.items()}


def diagnostics(stderr: str) -> str:
    """Each `Error:` diagnostic as one line: its summary, the resource it names and its
    detail (the paragraph after the source snippet), without box drawing or line wrapping.

    Terraform's human diagnostics: "Error: SUMMARY", a blank line, "  with ADDRESS,",
    "  on FILE line N...:" and the source lines, a blank line, then the DETAIL paragraphs.
    """
    blocks: list[list[str]] = []
    for raw in stderr.splitlines():
        line = raw.strip(" │╷╵").rstrip()
        if line.startswith("Error:"):
            blocks.append([line])
        elif blocks:
            blocks[-1].append(raw.lstrip("│╷╵").rstrip())
    picked = []
    for summary, *rest in blocks:
        address = next((x.strip().removeprefix("with ").rstrip(",") for x in rest
                        if x.strip().startswith("with ")), "")
        detail = " ".join(x.strip() for x in rest if x.strip() and not x.startswith("  ")
                          and not x.strip().startswith(("with ", "on ")))
        if "Output:" in detail:  # a failed local-exec: the command's own words matter
            detail = detail[detail.rindex("exit status"):] if "exit status" in detail else detail
        picked.append(" ".join(part for part in (summary, f"({address})" if address else "",
                                                 detail) if part))
    return "\n".join(picked) or stderr


def _fix(stderr: str, output: Path) -> str:
    if "Error acquiring the state lock" in stderr:
        holder = next((line.strip(" │") for line in stderr.splitlines() if "Who:" in line), "")
        return f"another apply holds the state lock ({holder.strip()}); wait for it or see " \
               "`terraform force-unlock` if it died"
    return f"see Terraform's whole output in {output}"


