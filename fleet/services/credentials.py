"""Credentials for a node: the hand-over at its creation (its own Consul token; for a role with
secrets, a response-wrapped single-use Vault SecretID), again when it comes back without them
(a reboot empties its tmpfs), and fleet's own Vault client. See fleet/workflows/secrets.py for
the whole delivery story."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from fleet.adapters import docker
from fleet.adapters.consul import Consul
from fleet.adapters.vault import Vault
from fleet.errors import DependencyDown, FleetError
from fleet.model import acl
from fleet.model import secrets as model
from fleet.model.definition import Role
from fleet.model.grammar import LOCAL_ENVS
from fleet.model.nodes import upstream_services
from fleet.model.secret import Secret
from fleet.services import environments, topology
from fleet.services.access import DockerExec
from fleet.services.context import Context

NODE_LOGIN = ["/usr/local/sbin/fleet-node", "login"]


def vault(ctx: Context) -> Vault:
    """fleet's own Vault client, refusing early when Vault is sealed or down."""
    if ctx.vault_token is None:
        raise DependencyDown("no Vault token", "set VAULT_TOKEN (fleet's operator token is "
                             "used by default once `fleet lab up` has run here)")
    client = ctx.vault()
    client.require_unsealed()
    return client


def vault_part(ctx: Context, client: Vault, r: Role, env: str) -> dict[str, object]:
    """What a node of role r in env needs to log in to Vault once. It holds the wrapping
    token: it goes to the node's stdin and nowhere else."""
    name = model.name(ctx.fleet.name, r.name, env)
    role_id = client.role_id(name, model.APPROLE_MOUNT)
    wrapped = client.wrapped_secret_id(name, model.APPROLE_MOUNT, model.WRAP_TTL)
    return {
        "vault": node_address(ctx, client), "approle_mount": model.APPROLE_MOUNT,
        "role_id": role_id, "wrapped_secret_id": wrapped.reveal(),
        "mount": ctx.fleet.secrets_mount, "path": model.kv_path(r.name, env),
        "keys": list(r.secrets),
    }


def node_address(ctx: Context, client: Vault) -> str:
    """Where a lab node reaches Vault: the node fleet's client has just found active, on the
    lab network's gateway (fleet/model/servers.py gives each OpenBao node its own port there)."""
    nodes = topology.openbao_servers(ctx)
    live = next((n for n in nodes if n.http == client.address), nodes[0])
    return f"http://{live.gateway}:{live.port(live.http_port)}"


def mirror(ctx: Context, client: Vault, r: Role, env: str) -> tuple[str, ...]:
    """Make r's borrowed secrets in env (model.secrets.borrowed_keys: those of the pets it
    uses through pets_from) equal to the lender's values, at env's own path, which is all its
    nodes may read; a copy whose lender has no value any more is removed. Returns the keys
    written or removed (never a value). Nothing to do where env has pets of its own."""
    keys = model.borrowed_keys(ctx.fleet, r, env)
    if not keys:
        return ()
    mount = ctx.fleet.secrets_mount
    mine = model.kv_path(r.name, env)
    lender = client.kv_get(mount, model.kv_path(r.name, ctx.fleet.environment(env).pets_env))
    current = client.kv_get(mount, mine)
    change = model.mirror(keys, lender, current)
    if not change:
        return ()
    if change.drop:  # a whole new version without them: kv-v2 has no per-key delete
        kept = {k: v for k, v in (current or {}).items() if k not in change.drop}
        client.kv_put(mount, mine, {**kept, **change.write})
    else:
        for key, value in change.write.items():
            client.kv_set(mount, mine, key, Secret(value))
    return (*change.write, *change.drop)


def hand_over(node: str, bundle: dict[str, object]) -> str:
    """Pipe the bundle into fleet-node login on the node; what it says (never a value)."""
    result = DockerExec(node).run(NODE_LOGIN, input_text=json.dumps(bundle))
    if result.returncode != 0:
        raise FleetError(f"node {node} could not log in: "
                         f"{(result.stderr.strip().splitlines() or ['no output'])[-1]}",
                         "see `fleet secrets check` and `fleet lab status`")
    return result.stdout.strip()


def node_token(ctx: Context, node: str, r: Role | None) -> Secret:
    """Mint the node's own Consul token (its policy rewritten, any earlier token of the same
    node removed), and remove the tokens of nodes whose containers are gone."""
    consul = ctx.consul()
    services = [s.name for s in r.services] if r else []
    upstreams = upstream_services(ctx.fleet, r) if r else []
    listed = consul.policies()
    consul.put_policy(acl.node_policy(node), acl.node_rules(node, services, upstreams),
                      f"fleet node {node}: itself, its services, what it watches", listed)
    _sweep(consul, node, listed)
    return consul.create_token(acl.node_description(node), [acl.node_policy(node)])


def sweep(ctx: Context) -> int:
    """Remove the Consul tokens and policies of nodes whose containers are gone; how many
    tokens went."""
    consul = ctx.consul()
    return _sweep(consul, "", consul.policies())


def _sweep(consul: Consul, node: str, listed: Mapping[str, str]) -> int:
    """The gone nodes' tokens and policies (listed: every policy, name -> ID), and NODE's
    own earlier tokens ("" for none)."""
    tokens = [(t, acl.node_of(t.description)) for t in consul.tokens()]
    policies = {acl.policy_node(name): pid for name, pid in listed.items()}
    owners = {n for _, n in tokens} | set(policies)
    gone = acl.gone({n for n in owners if n and n != node}, docker.lab_containers())
    removed = 0
    for token, owner in tokens:
        if (node and owner == node) or owner in gone:
            consul.delete_token(token.accessor)
            removed += 1
    for owner in gone:
        if owner in policies:
            consul.delete_policy(policies[owner])
    return removed


def deliver(ctx: Context, node: str, role_name: str, env: str) -> str:
    """Give a node just created its credentials: its Consul token, and for a role with
    secrets its Vault login, with which it renders them."""
    if env not in ctx.fleet.env_names() and env not in LOCAL_ENVS:  # an ephemeral one's
        ctx = environments.live(ctx)
    r = ctx.fleet.roles.get(role_name)  # a role gone from fleet.toml: only the token
    bundle: dict[str, object] = {}
    note = ""
    if r is not None and r.secrets and env in ctx.fleet.env_names():
        client = vault(ctx)
        name = model.name(ctx.fleet.name, role_name, env)
        if name in client.approles(name, model.APPROLE_MOUNT):
            mirror(ctx, client, r, env)  # what it borrows (pets_from) is the lender's now
            bundle["vault"] = vault_part(ctx, client, r, env)
        else:
            # the node boots without secrets, as one whose role was never synced would: not
            # an apply's failure, but `fleet secrets check` (and `fleet plan`) name it
            note = f"; no AppRole {name} in Vault, so no secrets: run `fleet secrets sync`"
    bundle["consul_token"] = node_token(ctx, node, r).reveal()
    return f"{node}: {hand_over(node, bundle)}{note}"


NODE_TOKEN_FILE = "/run/fleet/consul/acl.json"  # where fleet-node login puts it (tmpfs)


def restore(ctx: Context, node: str, role_name: str, env: str) -> str | None:
    """A node that came back without its credentials (a reboot empties its tmpfs) gets them
    again, as at its creation; None when it still has them."""
    if DockerExec(node).has(NODE_TOKEN_FILE):
        return None
    return deliver(ctx, node, role_name, env)


def redeliver(ctx: Context, say: Callable[[str], None]) -> list[str]:
    """After the lab's dockerd restarted (its containers with it): each running node of the
    fleet that came back without its credentials (its tmpfs went with the restart) gets them
    again, as at its creation, the way a cloud instance re-authenticates at boot. One line
    per node, its failure included: one node does not hide the others."""
    said = []
    for found in docker.lab_nodes():
        node, role_name, env = found.name, found.role, found.env
        if not found.running or not role_name or not topology.owns(ctx, node, found.fleet):
            continue
        try:
            done = restore(ctx, node, role_name, env)
            if done is not None:
                say(f"handed {node} its credentials again")
                said.append(done)
        except FleetError as exc:
            said.append(f"{node}: not handed its credentials: {exc.line()}")
    return said
