"""The shape of the code, asserted over its import graph so it stays true (README: Architecture).

- Imports point inward: cli -> workflows -> services -> adapters / model; model is pure.
- A use case (a module or package directly under fleet/workflows) imports no other use case,
  except a composing one calling the public entry points of those it composes.
- No module imports a private name (a leading underscore) from another module.
- No module of fleet/ is over 400 lines.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

FLEET = Path(__file__).resolve().parents[2] / "fleet"

# composing use case -> the use cases whose public entry points it calls
COMPOSERS = {
    "apply": {"bake", "promote", "remote", "plan", "secrets"},  # carries a plan out
    "plan": {"secrets"},  # shows everything that would change, secrets missing in Vault too
    "release": {"promote"},  # walks a version through the chain, promoting it env by env
    # makes an ephemeral environment: its Vault access, its pets, its cattle at a version
    "environments": {"secrets", "apply", "promote", "refresh"},
    "review": {"bake", "environments"},  # a review app: the checkout baked, then deployed
    "refresh": {"snapshots"},  # an environment's pet data: snapshots taken, then restored
    "rebuild": {"plan", "promote"},  # every node again: Terraform's -replace, cattle batches
    "move": {"plan"},  # a pet's target made and its source decommissioned as apply would
    # one pass: the plan read, cattle repaired as apply does, pets converged, envs expired
    "reconcile": {"plan", "apply", "remote", "environments"},
}
# layer -> the layers of fleet it may import
LAYERS = {
    "model": {"model", "errors"},
    "adapters": {"adapters", "model", "errors"},
    "services": {"services", "adapters", "model", "errors"},
    "workflows": {"workflows", "services", "adapters", "model", "errors"},
    "cli": {"cli", "workflows", "services", "model", "errors"},
}
MAX_LINES = 400


@dataclass(frozen=True)
class Import:
    source: str        # the importing module, e.g. fleet.workflows.status
    target: str        # the imported module, e.g. fleet.services.cattle
    names: tuple[str, ...]
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(FLEET.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(FLEET.rglob("*.py"))}


def imports() -> list[Import]:
    """Every import of a fleet module by a fleet module, at any depth (lazy ones too)."""
    known = modules()
    found = []
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [Import(name, a.name, (), node.lineno) for a in node.names
                          if a.name.startswith("fleet")]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1],
                                     *([base] if base else [])])
                if not base.startswith("fleet"):
                    continue
                # `from fleet.workflows import bake` imports the module fleet.workflows.bake
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in known:
                        found.append(Import(name, sub, (), node.lineno))
                    else:
                        found.append(Import(name, base, (alias.name,), node.lineno))
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def use_case(module: str) -> str | None:
    """The use case a module belongs to: fleet.workflows.lab.parts -> lab."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "workflows" else None


def test_the_graph_is_read() -> None:
    """The checks below see real imports (a broken reader would pass them vacuously)."""
    graph = imports()
    assert len(graph) > 100
    assert any(i.source == "fleet.workflows.apply" and i.target == "fleet.workflows.bake"
               for i in graph)


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_imports_point_inward(kind: str) -> None:
    wrong = [f"{i.source}:{i.line} imports {i.target}" for i in imports()
             if layer(i.source) == kind and layer(i.target) not in LAYERS[kind]
             and layer(i.target) not in ("", "__main__")]
    assert not wrong, f"{kind} may import only {sorted(LAYERS[kind])}: " + "; ".join(wrong)


def test_no_use_case_imports_another() -> None:
    wrong = []
    for i in imports():
        mine, theirs = use_case(i.source), use_case(i.target)
        if mine is None or theirs is None or mine == theirs:
            continue
        if theirs in COMPOSERS.get(mine, set()) and i.target == f"fleet.workflows.{theirs}":
            continue  # a composing use case calling the public entry points of another
        wrong.append(f"{i.source}:{i.line} imports {i.target}")
    assert not wrong, "use cases stand alone over shared services: " + "; ".join(wrong)


def test_no_module_imports_a_private_name() -> None:
    wrong = [f"{i.source}:{i.line} imports {i.target}.{n}" for i in imports() for n in i.names
             if n.startswith("_") and not n.startswith("__")]
    wrong += [f"{i.source}:{i.line} imports the private module {i.target}" for i in imports()
              if any(p.startswith("_") and not p.startswith("__") for p in i.target.split("."))]
    assert not wrong, "; ".join(wrong)


def test_no_module_is_over_the_limit() -> None:
    long = {str(p.relative_to(FLEET.parent)): n for p in FLEET.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
