"""What an image is made from: the files, the role's settings and the tools that decide it,
digested exactly alike by `fleet bake` and `fleet plan`; and the files fleet.toml names."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from fleet.adapters import packer
from fleet.errors import DependencyDown, FleetError
from fleet.model.definition import Fleet, Role, Target
from fleet.model.image import hashed_inputs_digest, inputs_digest
from fleet.model.migrations import Kind, Migration, carried_sql
from fleet.services import baseimage, memo
from fleet.services.context import Context

LIB_DIR = "packer/scripts/lib"  # the helpers every role script sources from UPLOADED
UPLOADED = "/tmp/fleet"          # where a bake (stage_upload) and a converge put them
MIGRATIONS = "role-migrations"   # in a bake's upload: copied to /opt/fleet/migrations


def image_repository(fleet: str, role: str) -> str:
    """fleet-FLEET-ROLE: one repository per fleet and role, so two fleets never share a tag.

    Tags are for people; fleet itself always runs images by id, so a missing image is never
    looked for in a registry.
    """
    return f"fleet-{fleet}-{role}"


def packer_version(ctx: Context) -> str:
    """Packer's version, an input of every image (cached by the binary's stat)."""
    binary = shutil.which("packer")
    if binary is None:
        raise DependencyDown("packer is not installed", "run scripts/setup.sh")
    return memo.by_stat(ctx.state_dir / "cache", Path(binary), packer.version)


def template_for(ctx: Context, target: Target, role: Role) -> Path:
    path = ctx.root / "packer" / f"{target.kind}-{role.provisioner.kind}.pkr.hcl"
    if not path.is_file():
        raise FleetError(f"no Packer template for {role.provisioner.kind} on target "
                         f"{target.name}: {path.relative_to(ctx.root)} does not exist",
                         "use a provisioner this target supports")
    return path


def cookbooks(ctx: Context, role: Role) -> list[Path]:
    names = {e[len("recipe["):-1].split("::")[0] for e in role.provisioner.run_list}
    return [ctx.root / "cookbooks" / name for name in sorted(names)]


class Reading:
    """One look at the files images are made from, shared by the roles digested together
    (wanted_digests): each directory listed and each file read and hashed once, where every
    role's digest used to read the same lib files again. Made per call and never kept, so the
    next call sees the files as they are then; used by one thread."""

    def __init__(self) -> None:
        self._listed: dict[tuple[Path, str, bool], list[Path]] = {}
        self._hashed: dict[Path, bytes] = {}

    def listed(self, where: Path, pattern: str, tree: bool = False) -> list[Path]:
        """The files (not directories) under WHERE matching PATTERN, sorted; with tree, at
        any depth."""
        key = (where, pattern, tree)
        if key not in self._listed:
            found = where.rglob(pattern) if tree else where.glob(pattern)
            self._listed[key] = sorted(p for p in found if p.is_file())
        return self._listed[key]

    def sha256(self, path: Path) -> bytes:
        """The file's sha256 (raw bytes)."""
        if path not in self._hashed:
            self._hashed[path] = hashlib.sha256(path.read_bytes()).digest()
        return self._hashed[path]


def files(ctx: Context, role: Role, reading: Reading | None = None) -> dict[str, Path]:
    """Every file the image is made from, by a stable name."""
    seen = reading or Reading()
    files = {f"lib/{p.name}": p for p in seen.listed(ctx.root / LIB_DIR, "*")}
    files.update({f"script/{s}": ctx.root / s for s in role.provisioner.scripts})
    for book in cookbooks(ctx, role):
        files.update({f"cookbook/{p.relative_to(ctx.root / 'cookbooks')}": p
                      for p in seen.listed(book, "*", tree=True)})
    files.update({f"migrations/{kind}/{p.name}": p
                  for kind, found in migration_files(ctx, role, seen).items() for p in found})
    return files


def migration_files(ctx: Context, role: Role,
                    reading: Reading | None = None) -> dict[Kind, list[Path]]:
    """The .sql files of the role's two migrations directories ([roles.ROLE.migrations]; a
    directory that does not exist yet holds none), by kind, sorted by name."""
    decl = role.migrations
    if decl is None:
        return {}
    seen = reading or Reading()
    where = {Kind.REGULAR: decl.regular, Kind.POST_DEPLOYMENT: decl.post_deployment}
    return {kind: seen.listed(ctx.root / path, "*.sql") for kind, path in where.items()}


def carried(ctx: Context, role: Role) -> tuple[Migration, ...]:
    """The migrations an image of the role baked now carries (in the order they run)."""
    found = migration_files(ctx, role)
    return carried_sql(*({p.name: p.read_bytes() for p in found.get(kind, [])}
                         for kind in (Kind.REGULAR, Kind.POST_DEPLOYMENT)))


def stage_migrations(ctx: Context, role: Role, into: Path) -> Path:
    """A directory holding regular/ and post_deployment/ with the role's migration files
    (both empty for a role without): what the bake uploads to /opt/fleet/migrations."""
    shutil.rmtree(into, ignore_errors=True)
    found = migration_files(ctx, role)
    for kind in (Kind.REGULAR, Kind.POST_DEPLOYMENT):
        (into / kind.value).mkdir(parents=True)
        for path in found.get(kind, []):
            shutil.copy2(path, into / kind.value / path.name)
    return into


def script_uploads(ctx: Context, role: Role) -> tuple[list[tuple[Path, str]],
                                                     list[tuple[Path, str]]]:
    """The files of packer/scripts/lib and the role's scripts (role-N-NAME, in their order),
    each with the path it has on the machine: what a bake and a converge upload."""
    lib = [(p, f"{UPLOADED}/{p.name}") for p in Reading().listed(ctx.root / LIB_DIR, "*")]
    return lib, [(ctx.root / s, f"{UPLOADED}/role-{i}-{Path(s).name}")
                 for i, s in enumerate(role.provisioner.scripts)]


def stage_upload(ctx: Context, role: Role, into: Path) -> tuple[Path, list[str]]:
    """What a lab bake uploads: a folder holding script_uploads (the scripts made executable)
    and the role's migrations (MIGRATIONS/, stage_migrations), which the build container
    mounts read-only and its scripts find at UPLOADED; and the paths the role's scripts have
    there."""
    shutil.rmtree(into, ignore_errors=True)
    stage_migrations(ctx, role, into / MIGRATIONS)
    lib, scripts = script_uploads(ctx, role)
    for path, remote in lib:
        shutil.copy2(path, into / Path(remote).name)
    for path, remote in scripts:
        shutil.copyfile(path, into / Path(remote).name)
        (into / Path(remote).name).chmod(0o755)
    return into, [remote for _, remote in scripts]


def role_document(role: Role) -> bytes:
    """The role's settings that shape its image, canonically."""
    return json.dumps({
        "name": role.name, "base": role.base, "class": role.cls.value,
        "provisioner": {"kind": role.provisioner.kind, "scripts": list(role.provisioner.scripts),
                        "run_list": list(role.provisioner.run_list),
                        "attributes": dict(role.provisioner.attributes)},
        "services": [[s.name, s.port, s.check.kind] for s in role.services],
        "settings": dict(role.settings),
    }, sort_keys=True).encode()


def digest_of(ctx: Context, target: Target, role: Role, base_id: str, packer_version: str,
              reading: Reading | None = None) -> str:
    """The image's inputs digest: inputs_digest of its files, platform and role document
    (hashed_inputs_digest of their hashes, which is the same; a shared reading hashes a file
    once for all the roles that use it)."""
    seen = reading or Reading()
    hashes = {name: seen.sha256(path) for name, path in files(ctx, role, seen).items()}
    hashes["template"] = seen.sha256(template_for(ctx, target, role))
    hashes.update({name: hashlib.sha256(value).digest()
                   for name, value in _made_on(target, base_id, packer_version).items()})
    hashes["role"] = hashlib.sha256(role_document(role)).digest()
    return hashed_inputs_digest(hashes)


def _platform(ctx: Context, target: Target, role: Role, base_id: str,
              packer_version: str) -> dict[str, bytes]:
    return {"template": template_for(ctx, target, role).read_bytes(),
            **_made_on(target, base_id, packer_version)}


def _made_on(target: Target, base_id: str, packer_version: str) -> dict[str, bytes]:
    """The platform's inputs that are no file (_platform adds the template)."""
    return {"base": base_id.encode(), "packer": packer_version.encode(),
            "target": target.kind.encode()}


def platform_digest(ctx: Context, target: Target, role: Role, base_id: str,
                    packer_version: str) -> str:
    """What an image is made on, which no converge changes: its base image, Packer, the
    template and the target. A pet whose image differs from its role's newest in this needs a
    new container (`fleet plan` offers a move); one that differs in its provisioner only is
    converged in place (provision_digest)."""
    return inputs_digest(_platform(ctx, target, role, base_id, packer_version))


def provision_digest(ctx: Context, role: Role) -> str:
    """What `fleet converge` runs on a pet or snowflake in place: the role's scripts, the lib
    files they use and their environment (settings included). Narrower than the image's
    digest (no base, template or Packer): it says whether a running instance has had the
    provisioner as it is now. Recorded on the image at bake and per instance at converge."""
    inputs = {name: path.read_bytes() for name, path in files(ctx, role).items()
              if name.startswith(("lib/", "script/"))}
    inputs["env"] = "\n".join(script_environment(role)).encode()
    return inputs_digest(inputs)


def script_environment(role: Role) -> list[str]:
    """NAME=VALUE for the provisioning scripts: role, services, settings. Never a secret."""
    services = " ".join(f"{s.name}:{s.check.kind}:{s.port}" for s in role.services)
    env = [f"FLEET_ROLE={role.name}", f"FLEET_SERVICES={services}"]
    env += [f"FLEET_SETTING_{k.upper()}={v}" for k, v in sorted(role.settings.items())]
    return env


def bakeable(role: Role) -> bool:
    """Whether the lab bakes the role: every role with shell provisioners, whatever its class
    (cattle, pet, snowflake). chef-solo roles run the base image here (see README). One rule
    for both sides: `fleet bake --all` bakes exactly these, and `fleet plan` wants an image
    of each of these (wanted_digests), so after `bake --all` the plan wants no bake."""
    return role.provisioner.kind == "shell"


def wanted_digests(ctx: Context) -> dict[str, str]:
    """Each lab-bakeable role's inputs digest (cattle, pets and snowflakes), computed exactly
    as `fleet bake` does."""
    target = ctx.fleet.lab_target()
    version = packer_version(ctx)
    digests: dict[str, str] = {}
    base_ids: dict[str, str] = {}
    reading = Reading()  # the lib files, the template: read once for all the roles
    for role in ctx.fleet.roles.values():
        if not bakeable(role):
            continue
        if role.base not in base_ids:
            base_ids[role.base] = base_image(ctx, role.base)
        digests[role.name] = digest_of(ctx, target, role, base_ids[role.base], version, reading)
    return digests


def base_image(ctx: Context, base: str) -> str:
    ref, image = baseimage.current(ctx.fleet.bases[base], ctx.root / "packer" / "base",
                                   ctx.state_dir / "cache")
    if image is None:
        raise DependencyDown(f"base image {ref} is not built", "run `fleet lab up`")
    return image.id


def missing_files(fleet: Fleet, root: Path) -> list[tuple[str, str]]:
    """Provisioner scripts that do not exist; run_list entries with no recipe in cookbooks/."""
    found = []
    for role in fleet.roles.values():
        where = f"roles.{role.name}.provisioner"
        for i, script in enumerate(role.provisioner.scripts):
            if not (root / script).is_file():
                found.append((f"{where}.scripts[{i}]", f"script {script} does not exist"))
        for i, entry in enumerate(role.provisioner.run_list):
            cookbook, _, recipe = entry[len("recipe["):-1].partition("::")
            path = Path("cookbooks") / cookbook / "recipes" / f"{recipe or 'default'}.rb"
            if not (root / path).is_file():
                found.append((f"{where}.run_list[{i}]",
                              f"{entry} resolves to no recipe: {path} does not exist"))
    return found
