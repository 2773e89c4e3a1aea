"""fleet validate, fleet schema: the fleet definition and its grammar."""

from __future__ import annotations

import click

from fleet.cli import render, views
from fleet.cli.meta import Session, json_option, raise_if


@click.command()
@json_option
@click.pass_obj
def validate(session: Session, as_json: bool) -> None:
    """Check fleet.toml and report every problem at once."""
    from fleet.workflows.validate import validate as run

    result = run(session.file)
    views.VALIDATION.show(result, as_json)
    raise_if(result.error())


@click.command()
@json_option
def schema(as_json: bool) -> None:
    """Print the JSON Schema of fleet.toml (it is JSON either way)."""
    from fleet.model.grammar import json_schema

    render.emit_json(json_schema())


def register(group: click.Group) -> None:
    group.add_command(validate)
    group.add_command(schema)
