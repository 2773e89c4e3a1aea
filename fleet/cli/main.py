"""`fleet`: the console script. One error boundary turns every failure into one line and an exit code.

The click group and its options live here; each family of commands lives in a module of its
own (validate, lab, bake, images, promote, release, status, verify, secrets, plan, remote) and
registers itself on the group; how results are shown is fleet/cli/views.py.

Exit codes: 0 ok; 1 a failure (bad config, a dependency down, a command that failed);
2 usage error; 130 interrupted.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

import click

from fleet import __version__
from fleet.cli import (
    bake,
    db,
    env,
    images,
    lab,
    move,
    plan,
    promote,
    reconcile,
    release,
    remote,
    review,
    secrets,
    snapshot,
    status,
    validate,
    verify,
)
from fleet.cli.meta import Session, json_option
from fleet.errors import FleetError

__all__ = ["Session", "cli", "json_option", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-f", "--file", type=click.Path(path_type=Path), default="fleet.toml",
              envvar="FLEET_FILE", show_default=True, help="The fleet definition.")
@click.version_option(__version__, prog_name="fleet")
@click.pass_context
def cli(ctx: click.Context, file: Path) -> None:
    """Bake, catalog and promote immutable images; Terraform for every machine."""
    ctx.obj = Session(file)


validate.register(cli)
lab.register(cli)
bake.register(cli)
images.register(cli)
promote.register(cli)
release.register(cli)
status.register(cli)
verify.register(cli)
secrets.register(cli)
plan.register(cli)
remote.register(cli)
env.register(cli)
review.register(cli)
snapshot.register(cli)
db.register(cli)
move.register(cli)
reconcile.register(cli)


def _internal_error() -> Path:
    """Write the traceback where the user can find it; return the path."""
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


def main() -> None:
    """Entry point of the console script: the one error boundary."""
    try:
        code = cli.main(prog_name="fleet", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("fleet: interrupted", err=True)
        code = 130
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
    sys.exit(code if isinstance(code, int) else 0)
