"""`fleet`: the console script. One error boundary turns every failure into one line and an exit code.

The click group and its options live here; each family of commands lives in a module of its
own (validate, lab, bake, images, promote, release, status, verify, secrets, plan, remote) and
registers itself on the group; how results are shown is fleet/cli/views.py.

Exit codes: 0 ok; 1 a failure (bad config, a dependency down, a command that failed);
2 usage error; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import gc
import signal
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import click

from fleet import __version__
from fleet.cli.meta import Session, json_option
from fleet.errors import FleetError

__all__ = ["Session", "cli", "json_option", "main"]


# Each command family's module (fleet/cli/<family>.py) and the commands it registers. Only the
# family of the command being run is imported: `fleet status` needs none of the other sixteen
# (~7 ms of its start, issue 19); listing the commands (`fleet --help`), or a name that is no
# command (for click's "did you mean"), imports them all.
FAMILIES = {
    "validate": ("validate", "schema"), "lab": ("lab",), "bake": ("bake",),
    "images": ("images", "revoke"), "promote": ("promote", "rollback"), "release": ("release",),
    "status": ("status", "history"), "verify": ("verify",), "secrets": ("secrets",),
    "plan": ("plan", "apply"), "remote": ("run", "converge"), "env": ("env",),
    "review": ("review",), "snapshot": ("snapshot",), "db": ("db",), "move": ("move",),
    "reconcile": ("reconcile",),
}
FAMILY_OF = {command: family for family, commands in FAMILIES.items() for command in commands}


class Commands(click.Group):
    """The group, registering each family's commands when one of them is first asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.registered: set[str] = set()

    def register(self, *families: str) -> None:
        from importlib import import_module

        for family in families:
            if family not in self.registered:
                self.registered.add(family)
                import_module(f"fleet.cli.{family}").register(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.register(*FAMILIES)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self.register(*([FAMILY_OF[cmd_name]] if cmd_name in FAMILY_OF else FAMILIES))
        return super().get_command(ctx, cmd_name)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-f", "--file", type=click.Path(path_type=Path), default="fleet.toml",
              envvar="FLEET_FILE", show_default=True, help="The fleet definition.")
@click.version_option(__version__, prog_name="fleet")
@click.pass_context
def cli(ctx: click.Context, file: Path) -> None:
    """Bake, catalog and promote immutable images; Terraform for every machine."""
    ctx.obj = Session(file)


def every_command() -> MutableMapping[str, click.Command]:
    """Every command of the group, each family's module imported (as `fleet --help` does)."""
    assert isinstance(cli, Commands)
    cli.register(*FAMILIES)
    return cli.commands


def _internal_error() -> Path:
    """Write the traceback where the user can find it; return the path."""
    import traceback  # only here: ~2 ms of every command's start

    log_dir = Path.cwd() / ".fleet" / "log"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        import tempfile

        log_dir = Path(tempfile.gettempdir())
    path = log_dir / "fleet-internal-error.log"
    with path.open("a") as handle:
        handle.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} fleet {' '.join(sys.argv[1:])}\n")
        handle.write(traceback.format_exc())
    return path


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, `timeout`, a CI job cancelled, systemd's stop), taken as a Ctrl-C is:
    what runs unwinds (locks released, a Terraform apply in flight waited for, see
    adapters.process.run), nothing more starts, and a rerun carries on what was cut short."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


def main() -> None:
    """Entry point of the console script: the one error boundary."""
    # SIGTERM's default would end the process at once, no `finally` run (the reconciler's
    # watch sets its own: it resigns first)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        code = cli.main(prog_name="fleet", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:  # click wraps the interrupt
        terminated = isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated)
        click.echo(f"fleet: {'terminated' if terminated else 'interrupted'}", err=True)
        code = 143 if terminated else 130
    except click.ClickException as exc:  # usage errors: exit 2
        exc.show()
        code = exc.exit_code
    except FleetError as exc:
        click.echo(f"fleet: error: {exc.line()}", err=True)
        code = 1
    except Exception as exc:  # the last resort: never a traceback in front of a user
        path = _internal_error()
        click.echo(f"fleet: internal error: {type(exc).__name__}: {exc} "
                   f"(traceback in {path}; please report it)", err=True)
        code = 1
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # done: no interrupt to raise past here
    # The command is done. What the process holds is frozen, so that the interpreter's last
    # collections at exit walk none of it (~35 ms of `fleet plan` at 10,000 nodes: issue 19).
    # Its memory is freed by reference counting as ever when the modules are torn down; a
    # reference cycle left over is the operating system's to free, and no output waits on
    # one: what fleet writes is flushed by the block that writes it.
    gc.freeze()
    sys.exit(code if isinstance(code, int) else 0)
