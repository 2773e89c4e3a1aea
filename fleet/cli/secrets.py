"""fleet secrets sync|check|put|rotate|deliver|scan: secrets in Vault."""

from __future__ import annotations

import sys
from typing import TypedDict

import click

from fleet.cli import views
from fleet.cli.meta import Session, json_option, raise_if


class Stored(TypedDict):
    """What `secrets put` did: where the value went (never the value)."""

    role: str
    key: str
    env: str
    path: str


class Delivered(TypedDict):
    """What `secrets deliver` did: what the node said."""

    node: str
    result: str


@click.group()
def secrets() -> None:
    """Secrets in Vault: per-role policies and AppRoles, checks, values, rotation."""


@secrets.command(name="sync")
@json_option
@click.pass_obj
def secrets_sync(session: Session, as_json: bool) -> None:
    """Write every role's policy and AppRole per environment (secrets-policy/); idempotent."""
    from fleet.workflows import secrets as workflow

    views.SYNC.show(workflow.sync(session.live_context()), as_json)


@secrets.command(name="check")
@click.argument("env", required=False)
@json_option
@click.pass_obj
def secrets_check(session: Session, env: str | None, as_json: bool) -> None:
    """Every secret each role declares exists in Vault (names only, never values)."""
    from fleet.workflows import secrets as workflow

    report = workflow.check(session.live_context(), env)
    views.CHECK.show(report, as_json)
    raise_if(report.error())


@secrets.command(name="put")
@click.argument("role")
@click.argument("key")
@click.option("--env", required=True, help="The environment the value is for.")
@json_option
@click.pass_obj
def secrets_put(session: Session, role: str, key: str, env: str, as_json: bool) -> None:
    """Store ROLE's secret KEY for ENV; the value comes from stdin or a hidden prompt, never
    the command line."""
    from fleet.model.secret import Secret
    from fleet.workflows import secrets as workflow

    ctx = session.live_context()
    if sys.stdin.isatty():
        value = click.prompt(f"{role}/{env} {key}", hide_input=True, confirmation_prompt=True,
                             err=True)
    else:
        value = sys.stdin.read().removesuffix("\n")
    where = workflow.put(ctx, role, key, env, Secret(value))
    views.STORED.show(Stored(role=role, key=key, env=env, path=where), as_json)


@secrets.command(name="rotate")
@click.argument("role")
@click.option("--env", required=True, help="The environment whose credentials rotate.")
@json_option
@click.pass_obj
def secrets_rotate(session: Session, role: str, env: str, as_json: bool) -> None:
    """New AppRole credentials for ROLE in ENV; its running nodes log in again with them."""
    from fleet.workflows import secrets as workflow

    report = workflow.rotate(session.live_context(), role, env)
    views.ROTATE.show(report, as_json)
    raise_if(report.error(role, env))


@secrets.command(name="deliver", hidden=True)
@click.argument("node")
@click.argument("role")
@click.argument("env")
@json_option
@click.pass_obj
def secrets_deliver(session: Session, node: str, role: str, env: str, as_json: bool) -> None:
    """Hand a node just created its Consul token and Vault login (run by its provisioner)."""
    from fleet.workflows import secrets as workflow

    said = workflow.deliver(session.live_context(), node, role, env)
    views.DELIVERED.show(Delivered(node=node, result=said), as_json)


@secrets.command(name="scan")
@json_option
@click.pass_obj
def secrets_scan(session: Session, as_json: bool) -> None:
    """Look for every lab secret value in every image, log, Terraform state and Consul KV."""
    from fleet.workflows import secrets as workflow

    report = workflow.scan(session.live_context())
    views.SCAN.show(report, as_json)
    raise_if(report.error())


def register(group: click.Group) -> None:
    group.add_command(secrets)
