"""Terraform through its CLI: init with the consul backend, apply with a JSON var file, plan
to a file, read it back with `terraform show -json`, and apply that saved plan.

Each working state gets its own TF_DATA_DIR under .fleet, so the module directory in the repo
stays clean and several environments can be applied from one module.

The plan's JSON is parsed strictly into frozen types (format: "JSON Output Format" of the
Terraform docs, format_version 1.x): a key the format always writes is read with data[key],
so a missing one is an error; keys the format leaves out when empty (resource_changes,
resource_drift, prior_state, index, action_reason) are read through `_omitted`, which says so.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from fleet.adapters import process
from fleet.errors import CommandFailed, FleetError


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
        for _ in range(3):  # Consul electing a leader as the run began or while it ran
            if (result.returncode == 0 or only_unlock_failed(result.stderr)
                    or not cut_by_election(result.stderr)):
                break
            time.sleep(2)
            result = process.run(argv, check=False, env=self.env(), timeout=timeout, outlive=output)
        if result.returncode != 0 and only_unlock_failed(result.stderr):
            return result  # done; its lock's session frees it within its TTL (15 s)
        if result.returncode != 0:
            addresses = prevented(result.stderr)
            if addresses:
                raise DestroyPrevented(addresses)
            raise CommandFailed(argv[:3], result.returncode, diagnostics(result.stderr),
                                _fix(result.stderr, output))
        return result

    def init(self) -> None:
        """Once per workspace: the consul backend, locked, at state_path."""
        marker = self.data_dir / ".terraform" / "terraform.tfstate"
        if _backend_address(marker) == self.consul_address:
            return  # initialised, at the same server (another one of a cluster: init again)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.run("init", "-input=false", "-no-color",
                 f"-backend-config=address={self.consul_address}",
                 f"-backend-config=path={self.state_path}",
                 "-backend-config=lock=true", "-reconfigure")

    def apply(self, variables: Mapping[str, Any], *, refresh: bool = True,
              replace: Sequence[str] = (), outputs: bool = True) -> dict[str, Any]:
        """Apply the module with these variables; return its outputs (outputs=False: {},
        without the second Terraform run that reads them).

        refresh=False skips reading the real resources first: right for a module of
        terraform_data only (lab cattle), whose refresh reads nothing outside the state.
        replace: addresses to destroy and create again (-replace; unlike `terraform taint`,
        their destroy-time provisioners run).
        """
        self.init()
        var_file = self.data_dir / "fleet.auto.tfvars.json"
        var_file.write_text(json.dumps(variables, indent=1, sort_keys=True))
        # a killed fleet may leave its terraform child finishing an apply: wait for its lock
        self.run("apply", "-input=false", "-no-color", "-auto-approve", "-lock-timeout=300s",
                 f"-refresh={str(refresh).lower()}", f"-var-file={var_file}",
                 *(f"-replace={a}" for a in replace))
        return self.outputs() if outputs else {}

    def outputs(self) -> dict[str, Any]:
        outputs = json.loads(self.run("output", "-json", "-no-color").stdout)
        return {name: value["value"] for name, value in outputs.items()}

    def plan(self, variables: Mapping[str, Any], out: Path, *, replace: Sequence[str] = (),
             targets: Sequence[str] = (), lock_timeout: str = "10s") -> Plan:
        """Plan the module with these variables (refreshing first) into the file `out`, and
        return that saved plan as `terraform show -json` describes it; `targets` limits it to
        those resources (and what they depend on), as `-target` does."""
        self.init()
        out.parent.mkdir(parents=True, exist_ok=True)
        var_file = out.with_suffix(".tfvars.json")
        var_file.write_text(json.dumps(variables, indent=1, sort_keys=True))
        self.run("plan", "-input=false", "-no-color", f"-lock-timeout={lock_timeout}",
                 f"-out={out}", f"-var-file={var_file}", *(f"-replace={a}" for a in replace),
                 *(f"-target={a}" for a in targets))
        return self.show(out)

    def state(self) -> dict[str, Any]:
        """address -> attribute values of every resource in the state (`show -json`)."""
        self.init()
        text = self.run("show", "-json", "-no-color").stdout
        try:
            data = json.loads(text)
            if not str(data["format_version"]).startswith("1."):
                raise ValueError(f"format_version {data['format_version']} is not 1.x")
            return _prior(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise PlanFormatError(f"terraform show -json printed a state fleet cannot read "
                                  f"({type(exc).__name__}: {exc})") from exc

    def forget(self, addresses: Sequence[str]) -> None:
        """Drop resources from the state (`state rm`): what was created by hand is gone."""
        self.init()
        self.run("state", "rm", "-lock-timeout=60s", *addresses)

    def show(self, planfile: Path) -> Plan:
        return parse_plan(self.run("show", "-json", "-no-color", str(planfile)).stdout)

    def apply_saved(self, planfile: Path, *, lock_timeout: str = "60s") -> dict[str, Any]:
        """Apply a saved plan exactly; Terraform refuses one made stale by a newer state."""
        self.init()
        self.run("apply", "-input=false", "-no-color", f"-lock-timeout={lock_timeout}",
                 str(planfile))
        return self.outputs()


# ---- `terraform show -json PLANFILE` -------------------------------------------------------

class Change(StrEnum):
    """What a plan does to one resource instance, from its `actions` list."""

    NOOP = "no-op"
    CREATE = "create"
    READ = "read"
    UPDATE = "update"           # in place
    REPLACE = "replace"         # ["delete","create"] or ["create","delete"]
    DELETE = "delete"
    FORGET = "forget"           # removed from state, left running (a `removed` block)


_ACTIONS: dict[tuple[str, ...], Change] = {
    ("no-op",): Change.NOOP, ("create",): Change.CREATE, ("read",): Change.READ,
    ("update",): Change.UPDATE, ("delete",): Change.DELETE, ("forget",): Change.FORGET,
    ("delete", "create"): Change.REPLACE, ("create", "delete"): Change.REPLACE,
}


@dataclass(frozen=True)
class ResourceChange:
    """One element of resource_changes (or resource_drift)."""

    address: str                   # terraform_data.pet["gitaly-01"]
    type: str
    name: str
    key: str | int | None          # the for_each key or count index; None for a single one
    change: Change
    before: Any                    # the resource's attributes before, None when created
    after: Any                     # after (unknown values absent), None when deleted
    reason: str                    # action_reason: replace_because_triggered_by, ... or ''


@dataclass(frozen=True)
class Plan:
    """A saved plan as `terraform show -json` reads it."""

    terraform_version: str
    changes: tuple[ResourceChange, ...]
    drift: tuple[ResourceChange, ...]       # what the refresh found changed outside Terraform
    prior: Mapping[str, Any]                # address -> attribute values in the prior state
    applyable: bool

    @property
    def actionable(self) -> tuple[ResourceChange, ...]:
        """The changes an apply would make (no-ops and reads left out)."""
        return tuple(c for c in self.changes if c.change not in (Change.NOOP, Change.READ))


def _omitted(data: Mapping[str, Any], key: str, empty: Any) -> Any:
    """A key the format leaves out when it is empty (Go's omitempty): absent means empty."""
    return data.get(key, empty)


def _resource_change(item: Mapping[str, Any]) -> ResourceChange:
    change = item["change"]
    actions = tuple(change["actions"])
    if actions not in _ACTIONS:
        raise ValueError(f"unknown actions {actions} for {item['address']}")
    return ResourceChange(
        address=item["address"], type=item["type"], name=item["name"],
        key=_omitted(item, "index", None), change=_ACTIONS[actions],
        before=change["before"], after=change["after"],
        reason=_omitted(item, "action_reason", ""),
    )


def _prior(state: Mapping[str, Any]) -> dict[str, Any]:
    values = _omitted(state, "values", {})
    module = _omitted(values, "root_module", {})
    return {r["address"]: r["values"] for r in _omitted(module, "resources", [])}


def parse_plan(text: str) -> Plan:
    """Parse `terraform show -json PLANFILE`; a malformed document raises PlanFormatError."""
    try:
        data = json.loads(text)
        if not str(data["format_version"]).startswith("1."):
            raise ValueError(f"format_version {data['format_version']} is not 1.x")
        return Plan(
            terraform_version=data["terraform_version"],
            changes=tuple(_resource_change(c) for c in _omitted(data, "resource_changes", [])),
            drift=tuple(_resource_change(c) for c in _omitted(data, "resource_drift", [])),
            prior=_prior(_omitted(data, "prior_state", {})),
            applyable=bool(data["applyable"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise PlanFormatError(f"terraform show -json printed a plan fleet cannot read "
                              f"({type(exc).__name__}: {exc})",
                              "check that Terraform is 1.x (terraform version)") from exc


class PlanFormatError(FleetError):
    """`terraform show -json` printed something that is not a plan of the documented format."""


_PREVENTED = re.compile(r"Resource (\S+) has lifecycle\.prevent_destroy set")


def prevented(stderr: str) -> list[str]:
    """The addresses a failed plan wanted to destroy despite their prevent_destroy."""
    return sorted(set(_PREVENTED.findall(" ".join(stderr.replace("│", " ").split()))))


class DestroyPrevented(FleetError):
    """The plan would destroy resources whose lifecycle has prevent_destroy."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        super().__init__(f"Terraform refuses to destroy {', '.join(addresses)} "
                         "(lifecycle.prevent_destroy)", "keep it in fleet.toml")


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


# What Consul answers while its servers elect a leader (a follower still forwarding to the
# dead one, or holding no leader): Terraform's consul backend does not retry them.
ELECTION = ("No cluster leader", "rpc error getting client", "failed to get conn",
            "leadership lost")


def unlocked_for_election(stderr: str) -> bool:
    """Whether Terraform failed to take its state lock because Consul was electing a leader:
    nothing was read or changed, so the same run may simply be made again."""
    return "Error acquiring the state lock" in stderr and any(e in stderr for e in ELECTION)


def cut_by_election(stderr: str) -> bool:
    """Whether a run failed because Consul had no leader for a moment: as it began (its lock
    not taken: nothing done yet), or while it ran (its state not saved; a node's agent
    refusing the token it was just handed, which no server could resolve, fails that node's
    create). The same run made again finishes the work: Terraform adopts what it made and
    replaces what failed (the module's create provisioner adopts a node running its image)."""
    return any(e in stderr for e in ELECTION)


def only_unlock_failed(stderr: str) -> bool:
    """Whether the run did its work and only failed to release its state lock (Consul electing
    a leader then, or the server it asked going away mid-request, whatever its message): the
    lock's session (TTL 15 s) frees it by itself, and the next run waits for it
    (-lock-timeout)."""
    errors = [line.strip(" │") for line in stderr.splitlines()
              if line.strip(" │").startswith("Error:")]
    return bool(errors) and all("Error releasing the state lock" in e for e in errors)


def _fix(stderr: str, output: Path) -> str:
    if unlocked_for_election(stderr):
        return "Consul had no leader to take Terraform's state lock: run it again once it has " \
               "one (`fleet lab status`)"
    if "Error acquiring the state lock" in stderr:
        holder = next((line.strip(" │") for line in stderr.splitlines() if "Who:" in line), "")
        return f"another Terraform run holds the state lock ({holder.strip()}); wait for it or " \
               "see `terraform force-unlock` if it died"
    return f"see Terraform's whole output in {output}"


def _backend_address(marker: Path) -> str | None:
    """The consul backend's address as `terraform init` recorded it (None before init)."""
    try:
        return str(json.loads(marker.read_text())["backend"]["config"]["address"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
