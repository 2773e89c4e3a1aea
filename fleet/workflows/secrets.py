"""Secrets from Vault: policies and AppRoles (sync), what is missing (check), writing a value
(put), new credentials for running nodes (rotate), the hand-over to a new node (deliver), and
the search for leaked values (scan).

Boot-time delivery, the lab's way: Terraform's create provisioners (terraform/lab/cattle and
terraform/lab/machines; the Vagrantfile's trigger for local nodes) run
`fleet secrets deliver NODE ROLE ENV` once the node's container runs. That mints the node's own
Consul ACL token (fleet/model/acl.py: it may register itself and its role's services and read
what it watches, nothing more) and, for a role with secrets, asks Vault for a SecretID of the
node's AppRole, response-wrapped (single-use, WRAP_TTL); then it pipes a small bundle (the
Consul token; Vault's address, RoleID, the wrapping token, where the secrets are) into
`fleet-node login` on the node over `docker exec` stdin. The node unwraps, logs in, renders its
secrets 0600 on its tmpfs, revokes its Vault token and hands its agent the Consul token. So no
credential is in Terraform's state (the provisioner's inputs hold none), in an argv, a
container's environment (`docker inspect`), an image or a log; and since the provisioner
belongs to the node's creation, an apply that a killed fleet leaves running still delivers, and
one cut short delivers on the next apply, which adopts the node. The tokens of nodes whose
containers are gone are removed at each delivery.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from fleet.adapters import docker
from fleet.adapters.consul import Consul
from fleet.adapters.vault import Vault
from fleet.errors import ConfigError, FleetError
from fleet.model import acl, secretscan
from fleet.model import secrets as model
from fleet.model.definition import Role
from fleet.model.secret import Secret
from fleet.services import cattle, credentials, leaks, topology
from fleet.services.catalog import Catalog
from fleet.services.context import Context
from fleet.services.credentials import hand_over, vault, vault_part


def templates(ctx: Context) -> dict[str, str]:
    """secrets-policy/ROLE.hcl beside fleet.toml: role -> policy template."""
    directory = ctx.root / "secrets-policy"
    try:
        return {p.stem: p.read_text() for p in sorted(directory.glob("*.hcl"))}
    except OSError as exc:
        raise ConfigError(f"{directory} cannot be read: {exc}") from exc


def role(ctx: Context, name: str, env: str) -> Role:
    """A role that declares secrets, in an environment of the fleet."""
    ctx.fleet.environment(env)
    found = ctx.fleet.role(name)
    if not found.secrets:
        raise ConfigError(f"role {name} declares no secrets",
                          fix=f"list them in roles.{name}.secrets")
    return found


# ---- sync -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SyncReport:
    changes: tuple[model.Change, ...]
    enabled: tuple[str, ...]      # engines and auth methods enabled now
    copied: tuple[str, ...] = ()  # ROLE/ENV: KEY copied from the lender (pets_from)

    @property
    def changed(self) -> int:
        return sum(1 for c in self.changes if c.action is not model.Action.UNCHANGED) + len(
            self.copied)


def copy_borrowed(ctx: Context, client: Vault) -> tuple[str, ...]:
    """Every borrowed secret (pets_from) made equal to its lender's value, at the borrower's
    own path (see fleet/model/secrets.py): 'ROLE/ENV: KEY' for each one written or removed."""
    done = []
    for r in model.roles_with_secrets(ctx.fleet):
        for env in ctx.fleet.env_names():
            if model.runs_in(r, env):
                done += [f"{r.name}/{env}: {k}" for k in credentials.mirror(ctx, client, r, env)]
    return tuple(done)


def sync(ctx: Context) -> SyncReport:
    """Write each role's policy and AppRole per environment, and the borrowers' copies of
    their lenders' secrets; idempotent. Every policy is rendered and checked before anything
    is written."""
    want = model.desired(ctx.fleet, templates(ctx))
    client = vault(ctx)
    enabled = []
    if client.ensure_kv(ctx.fleet.secrets_mount):
        enabled.append(f"kv-v2 at {ctx.fleet.secrets_mount}/")
    if client.ensure_auth("approle", model.APPROLE_MOUNT):
        enabled.append(f"approle at auth/{model.APPROLE_MOUNT}/")
    prefix = f"{ctx.fleet.name}-"
    changes = model.diff(want, client.policies(prefix),
                         client.approles(prefix, model.APPROLE_MOUNT))
    by_name = {a.name: a for a in want}
    for change in changes:
        if change.action is model.Action.UNCHANGED:
            continue
        access = by_name[change.name]
        if change.kind == "policy":
            client.put_policy(access.name, access.policy)
        else:
            client.put_approle(access.name, dict(access.approle), model.APPROLE_MOUNT)
    return SyncReport(tuple(changes), tuple(enabled), copy_borrowed(ctx, client))


# ---- check and put ----------------------------------------------------------------------

@dataclass(frozen=True)
class CheckReport:
    checked: int                      # declared secrets looked for
    missing: tuple[model.Missing, ...]
    unsynced: tuple[str, ...]         # AppRoles not in Vault: `fleet secrets sync` first
    stale: tuple[model.Stale, ...] = ()  # borrowed copies unlike the lender's (pets_from)

    def error(self) -> FleetError | None:
        if self.unsynced:
            return FleetError(f"{len(self.unsynced)} AppRole(s) missing in Vault, first "
                              f"{self.unsynced[0]}", "run `fleet secrets sync`")
        if self.missing:
            first = self.missing[0]
            return FleetError(f"{len(self.missing)} declared secret(s) missing in Vault, first "
                              f"{first}", f"fleet secrets put {first.role} {first.key} --env {first.env}")
        if self.stale:
            return FleetError(f"{len(self.stale)} secret(s) differ from the value they share "
                              f"(a pets_from lender's, or the pet's they log in to), first "
                              f"{self.stale[0]}",
                              "put the pet's value again (`fleet secrets put PET KEY --env ENV` "
                              "writes it for the roles sharing it too) or run `fleet secrets "
                              "sync` for a lender's copy; then `fleet secrets rotate` for the "
                              "running nodes")
        return None


def check(ctx: Context, env: str | None = None) -> CheckReport:
    """Every secret each role declares, in each environment it runs in (or only env): present?
    A borrowed one (pets_from) is looked for at the lender's path, and its copy in the
    borrower's compared with it. Values are read only to compare; none leaves this function."""
    if env is not None:
        ctx.fleet.environment(env)
    client = vault(ctx)
    mount = ctx.fleet.secrets_mount
    approles = client.approles(f"{ctx.fleet.name}-", model.APPROLE_MOUNT)
    values: dict[tuple[str, str], dict[str, str]] = {}

    def read(role: str, e: str) -> dict[str, str]:
        if (role, e) not in values:
            values[(role, e)] = client.kv_get(mount, model.kv_path(role, e)) or {}
        return values[(role, e)]

    checked = 0
    unsynced: list[str] = []
    stale: list[model.Stale] = []
    for r in model.roles_with_secrets(ctx.fleet):
        for e in ctx.fleet.env_names():
            if (env is None or e == env) and model.runs_in(r, e):
                mine = read(r.name, e)
                lender = ctx.fleet.environment(e).pets_env
                for key in model.borrowed_keys(ctx.fleet, r, e):
                    lent = read(r.name, lender)
                    if key in lent and mine.get(key) != lent[key]:
                        stale.append(model.Stale(r.name, e, key, lender))
                named = {(s.role, s.env, s.key) for s in stale}
                for key, pet in model.shared_with(ctx.fleet, r).items():  # one password
                    unlike = model.unlike(ctx.fleet, r, e, key, mine, read(pet, lender))
                    if unlike is not None and (r.name, e, key) not in named:
                        stale.append(unlike)
                checked += len(r.secrets)
                if model.name(ctx.fleet.name, r.name, e) not in approles:
                    unsynced.append(model.name(ctx.fleet.name, r.name, e))
    stored = {where: set(found) for where, found in values.items()}
    found = [m for m in model.missing(ctx.fleet, stored) if env is None or m.needed_in(env)]
    return CheckReport(checked, tuple(found), tuple(unsynced), tuple(stale))


def missing(ctx: Context, envs: Iterable[str]) -> dict[tuple[str, str], tuple[str, ...]]:
    """For `fleet plan`: (env, role) -> the declared secrets Vault lacks there."""
    wanted = set(envs)
    found: dict[tuple[str, str], tuple[str, ...]] = {}
    for m in check(ctx).missing:
        env = m.shown_in(wanted)
        if env is not None:
            found[(env, m.role)] = (*found.get((env, m.role), ()), m.key)
    return found


def put(ctx: Context, role_name: str, key: str, env: str, value: Secret) -> str:
    """Store one secret of a role; the other keys at its path stay. Returns where. A pet's
    secret that cattle share (postgres's db_password, with which web logs in) is written at
    theirs in env too, and their pets_from borrowers' copies follow (model.shared_with)."""
    found = role(ctx, role_name, env)
    if key not in found.secrets:
        raise ConfigError(f"role {role_name} does not declare the secret {key!r}",
                          fix=f"declared: {', '.join(found.secrets)}; add it to "
                              f"roles.{role_name}.secrets first")
    lender = model.source(ctx.fleet, found, env, key)
    if lender != env:
        raise ConfigError(f"{env} takes {role_name}'s {key} from {lender}, whose pets it uses "
                          f'(pets_from = "{lender}")',
                          fix=f"store {lender}'s value: fleet secrets put {role_name} {key} "
                              f"--env {lender}")
    if not value.reveal():
        raise FleetError("the secret's value is empty", "give the value on stdin or the prompt")
    path = model.kv_path(role_name, env)
    client = vault(ctx)
    client.kv_set(ctx.fleet.secrets_mount, path, key, value)
    for borrower in ctx.fleet.borrowers(env):  # their copies follow the lender's value
        if model.runs_in(found, borrower):
            credentials.mirror(ctx, client, found, borrower)
    for sharer in model.sharers(ctx.fleet, found, key):  # one database, one password
        borrowers = [b for b in ctx.fleet.borrowers(env) if model.runs_in(sharer, b)]
        if model.runs_in(sharer, env) or borrowers:
            client.kv_set(ctx.fleet.secrets_mount, model.kv_path(sharer.name, env), key, value)
        for borrower in borrowers:
            credentials.mirror(ctx, client, sharer, borrower)
    return f"{ctx.fleet.secrets_mount}/{path}"


# ---- delivery and rotation --------------------------------------------------------------

@dataclass(frozen=True)
class RotateReport:
    approle: str
    destroyed: int                    # outstanding SecretIDs destroyed
    nodes: tuple[tuple[str, str], ...]  # (node, what it said) for each running node
    failed: tuple[tuple[str, str], ...]

    def error(self, role: str, env: str) -> FleetError | None:  # as the rotation named them
        return FleetError(f"{len(self.failed)} node(s) of {role} in {env} did not log in again: "
                          f"{self.failed[0][1]}") if self.failed else None


def rotate(ctx: Context, role_name: str, env: str) -> RotateReport:
    """A new RoleID, every outstanding SecretID destroyed, and each running node of the role
    in env handed new credentials, with which it logs in again and re-renders its secrets."""
    r = role(ctx, role_name, env)
    client = vault(ctx)
    name = model.name(ctx.fleet.name, role_name, env)
    if name not in client.approles(name, model.APPROLE_MOUNT):
        raise FleetError(f"no AppRole {name} in Vault", "run `fleet secrets sync`")
    running = set(docker.lab_containers())
    health = cattle.health(ctx, [s.name for s in r.services], env, role_name)
    nodes = sorted(n for n in {**health.passing, **health.failing} if n in running)
    credentials.mirror(ctx, client, r, env)  # a borrower's nodes get the lender's values
    client.new_role_id(name, model.APPROLE_MOUNT)
    destroyed = client.destroy_secret_ids(name, model.APPROLE_MOUNT)
    done, failed = [], []
    for node in nodes:  # per node: one failure does not hide the others' results
        try:
            done.append((node, hand_over(node, {"vault": vault_part(ctx, client, r, env)})))
        except FleetError as exc:
            failed.append((node, exc.line()))
    return RotateReport(name, destroyed, tuple(done), tuple(failed))


def deliver(ctx: Context, node: str, role_name: str, env: str) -> str:
    """`fleet secrets deliver NODE ROLE ENV`, which the lab modules' create provisioners run:
    the node's credentials (fleet.services.credentials.deliver)."""
    return credentials.deliver(ctx, node, role_name, env)


# ---- scan ---------------------------------------------------------------------------------

SCAN_FILE_LIMIT = 50 << 20  # a larger file under .fleet is named as not scanned


@dataclass(frozen=True)
class ScanReport:
    values: int                      # secret values looked for
    images: tuple[str, ...]          # ROLE:VERSION of every image scanned
    nodes: tuple[str, ...]           # the fleet's lab nodes scanned (not their tmpfs)
    files: int                       # files under .fleet scanned
    keys: int                        # Consul KV entries scanned (Terraform states among them)
    skipped: tuple[str, ...]         # files too large to scan
    findings: tuple[secretscan.Finding, ...]

    def error(self) -> FleetError | None:
        if not self.findings:
            return None
        return FleetError(f"{len(self.findings)} secret(s) found, first {self.findings[0].what} in "
                          f"{self.findings[0].where}", "remove it there and rotate the secret "
                          "(fleet secrets put, then fleet secrets rotate)")


def scan_needles(ctx: Context, consul: Consul) -> dict[bytes, str]:
    """Every value under the fleet's Vault mount, the Vault token, and the Consul tokens:
    fleet's own, every node's, and the tokens the lab keeps (Consul's management token,
    OpenBao's root token, fleet's Vault operator token)."""
    found = leaks.secret_needles(ctx)
    tokens = [("the Consul token fleet uses", ctx.consul_token), *topology.lab_tokens(ctx)]
    for token in consul.tokens():
        node = acl.node_of(token.description)
        if node is not None:
            tokens.append((f"the Consul token of {node}", consul.token_secret(token.accessor)))
    return {**found, **secretscan.needles([(n, t.reveal()) for n, t in tokens if t is not None])}


def _values(findings: Iterable[secretscan.Finding]) -> list[secretscan.Finding]:
    """The findings of secret values, without those of mere formats (private keys)."""
    return [f for f in findings if f.what.startswith(secretscan.VALUE)]


def scan(ctx: Context, consul: Consul | None = None, also: Iterable[Path] = ()) -> ScanReport:
    """Look for every lab secret value in every catalog image, the disk of every lab node of
    the fleet (what it wrote over its image; its tmpfs, where rendered secrets and its token
    live, is not on disk), every file under .fleet and the directories `also` (bake,
    Terraform and run logs; not the lab's own stores and key files), and every Consul KV
    entry (Terraform's states among them).
    consul: a client that sees every key (the lab's management token); by default fleet's
    own, which sees the fleet/ prefix, where all of the fleet's data lives."""
    consul = consul or ctx.consul()
    needles = scan_needles(ctx, consul)
    findings: list[secretscan.Finding] = []
    images: list[str] = []
    layers: dict[Path, str] = {}  # layer directory -> the first image that has it
    for record in Catalog(consul, ctx.fleet.kv_prefix).records():
        image = docker.image(record.artifact)
        if image is None:
            continue  # an AMI, or removed from Docker: nothing of it here
        images.append(record.ref)
        if image.layers_on_disk:
            for layer in image.layers:  # overlay2: a layer images share is read once
                layers.setdefault(layer, record.ref)
        else:
            findings += [replace(f, where=f"{record.ref}:{f.where}")
                         for f in leaks.scan_image(record.artifact, needles)]
    for layer, ref in layers.items():
        findings += [replace(f, where=f"{ref}:{f.where}") for f in leaks.scan_tree(layer, needles)]
    nodes = []
    for node in [n.name for n in docker.lab_nodes() if topology.owns(ctx, n.name, n.fleet)]:
        if node.endswith(".draining"):
            continue
        own = docker.container_layer(node)  # what the node wrote; its image is scanned above
        try:
            found = (leaks.scan_tree(own, needles) if own is not None and own.is_dir()
                     else leaks.scan_container(node, needles))
        except FleetError:
            if docker.container_exists(node):
                raise
            continue  # removed meanwhile (a rollout's drain): nothing left to leak
        nodes.append(node)
        # values only: a node's SSH host keys, made at boot, are private keys on purpose
        findings += [replace(f, where=f"{node}:{f.where}") for f in _values(found)]
    files, skipped = 0, []
    tops = [ctx.state_dir, *also]
    kept = [k for top in tops for k in topology.Paths(top / "lab").kept]
    paths = [p for top in tops if top.is_dir() for p in sorted(top.rglob("*"))]
    for path in paths:
        if not path.is_file() or path.is_symlink() or any(path.is_relative_to(k) for k in kept):
            continue
        if path.stat().st_size > SCAN_FILE_LIMIT:
            skipped.append(str(path))
            continue
        files += 1
        # values only: the lab's SSH key for local nodes is a private key on purpose
        findings += _values(secretscan.scan(str(path), path.read_bytes(), needles))
    entries = consul.list("")
    for entry in entries:
        findings += secretscan.scan(f"consul kv {entry.key}", entry.value, needles)
    return ScanReport(len(needles), tuple(images), tuple(nodes), files, len(entries),
                      tuple(skipped), tuple(findings))
