"""fleet bake: immutable, content-addressed role images with Packer, recorded in the catalog.

What a bake does, for each role:
1. digest every input that decides the image (template, scripts, cookbooks, base image id,
   the role's settings, Packer's version, the target);
2. decide, against the catalog: reuse an image with the same digest ("cached"), refuse to
   change an existing ROLE:VERSION, or build;
3. build with `packer build -machine-readable` on the lab's base image;
4. scan the image's files and the bake log for the lab's secret values, private keys and
   Vault tokens; a finding removes the image and fails the bake;
5. record the image in the catalog with check-and-set, then tag it fleet-ROLE:VERSION.
A failure at any step leaves no record and no tagged image. What is checked without building
(chef-solo roles, the aws template) is in `aws.py`.

Choices: `--all` means every role the target can bake, whatever its class: on the lab that is
every role with shell provisioners — cattle, pets and snowflakes alike, exactly the roles whose
images `fleet plan` asks for (fleet.services.bakeinputs.bakeable) — so after `bake --all` the
plan wants no bake. A chef-solo role is then listed as skipped, with why: no Chef Infra Client
package is reachable from here, and its nodes run the base image in the lab. Named on its own,
a chef-solo role is checked (ruby -c, run_list, packer validate of the aws template) and then
refused in the lab. `--target aws` renders and validates the aws template of every role (of
chef-solo ones too) and records nothing: an AMI is built in a real account.
A ROLE:VERSION that `fleet images prune` pruned is built anew when it is baked again with the
same inputs (its record is rewritten with the new image, check-and-set); with other inputs it
is refused like any existing version.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from fleet.adapters import docker, git, packer
from fleet.errors import DependencyDown, FleetError
from fleet.model.definition import Role, Target
from fleet.model.image import Action, Decision, ImageError, ImageRecord, decide
from fleet.model.migrations import to_record
from fleet.model.spec import did_you_mean
from fleet.services import bakeinputs, baseimage, inuse
from fleet.services.bakeinputs import (
    bakeable,
    digest_of,
    image_repository,
    packer_version,
    script_environment,
    template_for,
)
from fleet.services.catalog import Catalog
from fleet.services.context import Context, who
from fleet.services.leaks import scan_build, secret_needles
from fleet.workflows.bake import logs
from fleet.workflows.bake.aws import check_chef, validate_aws
from fleet.workflows.bake.report import BakeReport as BakeReport  # re-exported: views, apply
from fleet.workflows.bake.report import Outcome as Outcome
from fleet.workflows.bake.report import RoleBake

Say = Callable[[str, str], None]  # (role, what is happening)


@dataclass(frozen=True)
class Selection:
    """The roles a bake builds, and those `--all` leaves out, each with why."""

    roles: tuple[Role, ...]
    skipped: tuple[RoleBake, ...] = ()


CHEF_IN_LAB = ("provisioned by chef-solo, which cannot run in the lab (no Chef Infra Client "
               "package is reachable here)")


def target(ctx: Context, name: str) -> Target:
    if name not in ctx.fleet.targets:
        raise FleetError(f'unknown target "{name}"{did_you_mean(name, ctx.fleet.targets)}',
                         f"targets: {', '.join(ctx.fleet.targets)}")
    return ctx.fleet.targets[name]


def select_roles(ctx: Context, names: Iterable[str], all_roles: bool,
                 target_name: str = "lab") -> Selection:
    """The roles a bake names, or with all_roles every role the target can bake (on the lab,
    the roles `fleet plan` wants images of; chef-solo ones are skipped, saying why); unknown
    names are one clear error."""
    names = list(names)
    if all_roles and names:
        raise FleetError("name roles or pass --all, not both")
    if not all_roles:
        if not names:
            raise FleetError("no role named", "name one or more roles, or pass --all")
        return Selection(tuple(ctx.fleet.role(n) for n in dict.fromkeys(names)))
    every = list(ctx.fleet.roles.values())
    if target(ctx, target_name).kind != "lab":
        return Selection(tuple(every))
    return Selection(tuple(r for r in every if bakeable(r)), tuple(
        RoleBake(r.name, Outcome.SKIPPED,
                 detail=f"{CHEF_IN_LAB}: its {r.cls.value} nodes run the base image here; "
                        f"fleet bake {r.name} --target aws checks it")
        for r in every if not bakeable(r)))


class Bakery:
    """What every role's bake shares: the catalog, Packer's version, git, the secret needles."""

    def __init__(self, ctx: Context, target: Target) -> None:
        self.ctx = ctx
        self.target = target
        self.packer_version = packer_version(ctx)
        self._revision: git.Revision | None = None
        self._needles: dict[bytes, str] | None = None
        self._lock = threading.Lock()
        self.scan_lock = threading.Lock()  # one base scan at a time
        self.stopping = threading.Event()  # the command was interrupted: Packers cancel
        self.catalog: Catalog | None = None
        if target.kind == "lab":
            consul = ctx.consul()
            consul.leader()  # fail before building if the catalog cannot be written
            self.catalog = Catalog(consul, ctx.fleet.kv_prefix)

    @property
    def revision(self) -> git.Revision:
        """The fleet's git commit: asked only when a bake needs it (build or derived version)."""
        with self._lock:
            if self._revision is None:
                self._revision = git.revision(self.ctx.root)
            return self._revision

    def needles(self) -> dict[bytes, str]:
        """The lab's secret values, read once from Vault; the scan fails closed without them."""
        with self._lock:
            if self._needles is None:
                self._needles = secret_needles(self.ctx)
            return self._needles

    def tag(self, role: str, version: str, artifact: str) -> str:
        """Tag an image fleet-FLEET-ROLE:VERSION for people; return the tag.

        The image the tag is taken from goes, if the catalog records it under no version and it
        is left with no name: one a catalog wiped since left behind (`fleet lab reset` keeps
        Docker's images), which would otherwise stay nameless for good. Never forced: Docker
        keeps it while a container uses it."""
        name = f"{image_repository(self.ctx.fleet.name, role)}:{version}"
        held = docker.image(name)
        docker.tag(artifact, name)
        if (held is None or held.id == artifact or any(t != name for t in held.tags)
                or self.catalog is None
                or any(r.artifact == held.id for r in self.catalog.records(role))):
            return name
        with contextlib.suppress(FleetError):  # refused: a container still uses it
            docker.delete_image(held.id, ())
        return name

    def scrub(self, log: Path) -> None:
        """A failed bake's log stays, unless it holds a secret (logs.scrub)."""
        logs.scrub(log, self.needles if self.ctx.vault_token is not None else None)


# ---- one role ----------------------------------------------------------------------------

def bake_role(b: Bakery, role: Role, version: str | None, rebake: bool, say: Say) -> RoleBake:
    started = time.monotonic()
    try:
        result = _bake_role(b, role, version, rebake, say)
    except FleetError as exc:
        return RoleBake(role.name, Outcome.FAILED, version or "", seconds=_since(started),
                        detail=exc.line())
    return replace(result, seconds=_since(started))


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _bake_role(b: Bakery, role: Role, version: str | None, rebake: bool, say: Say) -> RoleBake:
    ctx = b.ctx
    if role.provisioner.kind == "chef-solo":
        say(role.name, "checking chef-solo inputs (run_list, ruby -c)")
        check_chef(ctx, role)
    if b.target.kind == "aws":
        digest = digest_of(ctx, b.target, role, "aws", b.packer_version)
        chosen = version or f"{b.revision.describe}-{digest[:8]}"
        name = validate_aws(ctx, b.target, role, chosen, digest)
        return RoleBake(role.name, Outcome.VALIDATED, chosen, digest,
                        detail=f"{name} passes packer validate; AMIs are built in a real account")
    if role.provisioner.kind == "chef-solo":
        aws = [t for t in ctx.fleet.targets.values() if t.kind == "aws"]
        checked = "run_list and ruby -c pass"
        if aws:
            validate_aws(ctx, aws[0], role, version or "check", "check")
            checked += ", the aws template passes packer validate"
        raise FleetError(f"{role.name} is {CHEF_IN_LAB}; {checked}",
                         f"bake it with --target {aws[0].name if aws else 'aws'} in a real account")
    assert b.catalog is not None  # a lab Bakery always has one
    base = ctx.fleet.bases[role.base]
    base_ref, base_image = baseimage.current(base, ctx.root / "packer" / "base", ctx.state_dir / "cache")
    if base_image is None:
        raise DependencyDown(f"base image {base_ref} is not built", "run `fleet lab up`")
    digest = digest_of(ctx, b.target, role, base_image.id, b.packer_version)
    decision = decide(b.catalog.records(role.name), digest, version, rebake,
                      lambda: b.revision.describe)
    if decision.action is not Action.BUILD:
        return _reuse(b, role, decision, say)
    return _build(b, role, decision.version, digest, base_ref, base_image.id, say,
                  rebuild=decision.existing is not None)


def _reuse(b: Bakery, role: Role, decision: Decision, say: Say) -> RoleBake:
    assert b.catalog is not None and decision.existing is not None
    existing = decision.existing
    tag = f"{image_repository(b.ctx.fleet.name, role.name)}:{decision.version}"
    tagged = docker.image(tag)
    if decision.action is Action.CACHED and tagged is not None and tagged.id == existing.artifact:
        say(role.name, "cached (same inputs)")
        return RoleBake(role.name, Outcome.CACHED, decision.version, existing.digest,
                        existing.artifact, detail="same inputs")
    if docker.image(existing.artifact) is None:
        raise ImageError(f"the catalog records {existing.ref} as {existing.artifact[:19]}, "
                         "but docker has no such image",
                         "bake a new version (--rebake) to make it again")
    detail = "same inputs"
    if decision.action is Action.ALIAS:
        record = replace(existing, version=decision.version, baked_at=_now(), baked_by=who())
        if not b.catalog.create(record):
            return _lost_race(b, role, decision.version, existing.digest, existing.artifact)
        detail = f"same inputs as {existing.ref}"
    b.tag(role.name, decision.version, existing.artifact)
    say(role.name, f"cached ({detail})")
    return RoleBake(role.name, Outcome.CACHED, decision.version, existing.digest,
                    existing.artifact, detail=detail)


def _build(b: Bakery, role: Role, version: str, digest: str, base_ref: str, base_id: str,
           say: Say, *, rebuild: bool = False) -> RoleBake:
    """Build, scan, record (with rebuild: over the pruned record of this version), tag."""
    assert b.catalog is not None
    ctx = b.ctx
    log = logs.new_log(ctx.state_dir, role.name)
    again = ", again: its image was pruned" if rebuild else ""
    say(role.name, f"building {role.name}:{version} (digest {digest[:12]}{again})")
    carried = to_record(bakeinputs.carried(ctx, role))  # a misnamed migration fails here
    staged, scripts = bakeinputs.stage_upload(ctx, role, logs.upload_folder(log))
    variables: dict[str, packer.VarValue] = {
        "base_image": base_id, "role": role.name, "digest": digest,
        "uploads": docker.mount_source(staged),  # mounted read-only in the build container
        "scripts": [shlex.quote(s) for s in scripts],  # commands
        "environment": script_environment(role),
    }

    def on_line(line: packer.Line) -> None:
        if line.kind == "ui" and len(line.data) > 1 and line.data[0] in ("say", "error"):
            text = line.data[1].strip().removeprefix("==> ").removeprefix("docker.role: ")
            if text.startswith("Provisioning with shell script: "):  # the one inline step
                text = f"running {', '.join(role.provisioner.scripts)}"
            if text:
                say(role.name, text.splitlines()[0])

    try:
        with inuse.marked(staged) as mark:  # held by Packer too, were we killed (logs.py)
            output = packer.build(template_for(ctx, b.target, role), variables, log=log,
                                  on_line=on_line, cwd=ctx.root, pass_fds=[mark],
                                  stop=b.stopping)
    except FleetError:
        b.scrub(log)
        raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    artifact = output.artifacts[0].id
    if b.stopping.is_set():  # interrupted as Packer finished: the image is not recorded
        docker.remove_image(artifact)
        raise FleetError(f"{role.name}: interrupted; the image was built but not recorded")
    try:
        say(role.name, "scanning the image and the bake log for secrets")
        _scan(b, role, artifact, base_id, log)
        record = ImageRecord(
            role=role.name, version=version, digest=digest, artifact=artifact, target="lab",
            builder="docker", base_ref=base_ref, base_id=base_id,
            git_commit=b.revision.commit, git_dirty=b.revision.dirty,
            packer_version=b.packer_version, baked_at=_now(), baked_by=who(),
            migrations=tuple(carried), provision_digest=bakeinputs.provision_digest(ctx, role),
            platform_digest=bakeinputs.platform_digest(ctx, b.target, role, base_id,
                                                       b.packer_version))
        written = b.catalog.replace_pruned(record) if rebuild else b.catalog.create(record)
        if not written:
            docker.remove_image(artifact)
            return _lost_race(b, role, version, digest, None)
    except BaseException:
        docker.remove_image(artifact)  # nothing recorded: leave no image either
        raise
    say(role.name, f"built {b.tag(role.name, version, artifact)}")
    return RoleBake(role.name, Outcome.BUILT, version, digest, artifact, log=str(log))


def _lost_race(b: Bakery, role: Role, version: str, digest: str, artifact: str | None) -> RoleBake:
    """Another bake recorded ROLE:VERSION between our read and our write."""
    assert b.catalog is not None
    winner = b.catalog.require(role.name, version).record
    if winner.pruned:
        raise ImageError(f"{winner.ref} was pruned again while it was being rebuilt",
                         "bake it again")
    if winner.digest != digest:
        raise ImageError(f"{winner.ref} was just recorded by another bake with other inputs",
                         "bake a new version")
    b.tag(role.name, version, winner.artifact)
    return RoleBake(role.name, Outcome.CACHED, version, digest, winner.artifact,
                    detail="another bake of the same inputs recorded it first")


def _scan(b: Bakery, role: Role, artifact: str, base_id: str, log: Path) -> None:
    """Scan the bake log and the new image (fleet.services.leaks.scan_build); a finding fails
    the bake, and a log that holds a secret is removed."""
    findings = scan_build(b.ctx, artifact, base_id, log, b.needles(), b.scan_lock)
    if findings:
        if any(f.where == log.name for f in findings):
            log.unlink(missing_ok=True)  # the log itself holds a secret: it must not stay
        first = findings[0]
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        raise FleetError(f"{role.name} would ship a secret: {first.where} holds {first.what}{more}; "
                         "the image was removed",
                         "secrets come from Vault at boot: remove it from the role's scripts")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---- the command -------------------------------------------------------------------------

def bake(ctx: Context, names: Iterable[str], *, all_roles: bool = False,
         version: str | None = None, rebake: bool = False, target_name: str = "lab",
         parallel: int = 2, say: Say) -> BakeReport:
    """Bake roles concurrently (at most `parallel` at once); one role's failure hides no other.
    Results follow fleet.toml's order of roles, the skipped ones among them."""
    chosen = target(ctx, target_name)
    selection = select_roles(ctx, names, all_roles, target_name)
    if parallel < 1:
        raise FleetError("--parallel must be at least 1")
    roles = selection.roles
    results: list[RoleBake] = []
    if roles:
        bakery = Bakery(ctx, chosen)
        logs.sweep(ctx.state_dir, bakery.scrub)  # what killed bakes left
        logs.prune(ctx.state_dir)  # each role's newest logs stay
        pool = ThreadPoolExecutor(max_workers=min(parallel, len(roles)))
        try:
            futures = [pool.submit(bake_role, bakery, r, version, rebake, say) for r in roles]
            while wait(futures, timeout=0.25).not_done:
                pass  # a timed wait: SIGINT is seen here even when a worker thread received it
            results = [f.result() for f in futures]
        except BaseException:
            # Interrupted (Ctrl-C, or SIGINT sent to fleet alone): no role not yet begun is
            # begun, each running Packer is told to cancel (it cleans up as on its own Ctrl-C)
            # and an image it finished anyway is not recorded; a role already recording its
            # image finishes that (check-and-set). The command returns once they are done.
            bakery.stopping.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
    order = list(ctx.fleet.roles)
    every = sorted([*results, *selection.skipped], key=lambda r: order.index(r.role))
    return BakeReport(tuple(every))
