"""What each step of a pet's move does to the world (the driver is this package's __init__).

- **The pet's side** is its image's `fleet-data` (a role that can move installs one: gitaly's
  is packer/scripts/lib/fleet-gitaly): `read-only on|off`, `drain` (waits for writes in
  flight), `checksums` (JSON: each repository's refs checksum, `git fsck`'s errors, each
  other file's sha256). A pet whose image has none cannot be made read-only: it is refused
  at plan.
- **Weights and the readonly tag** are set on the node's own agent (`fleet-node weigh`, in the
  base image), where the agent keeps them until it reloads or reboots; then the declared
  registration is back (a target's is held back: no traffic), and the next run of the move
  sets them again.
- **The copy** is rsync over SSH, pulled by the target from the source: fleet makes a key for
  the move, the source accepts it from its tmpfs (/run/fleet/authorized_keys, see
  packer/base/finish.sh) only for `rrsync -ro` of its data path and only for an hour
  (expiry-time: a move killed mid-copy leaves no lasting grant), and the target trusts only
  the source's own host key, which the same session reads. The key is taken away by the
  verify that follows (in the session that checksums the source), by a copy that fails, and by
  --abort. SSH's cipher for the copy is AES-GCM (aes128-gcm@openssh.com), which the CPU
  does in hardware, not the default chacha20-poly1305: on the lab the copy is CPU-bound.
  rsync -a --delete sends only what differs, so a copy cut short is finished by the next;
  after a failed verify it compares contents (-c), not sizes and times, and so mends what the
  verify found (-c on every copy would read all the data twice more).
- **Terraform** creates the target and decommissions the source as `fleet apply` would, but
  aimed (-target) at those instances only, with the moves' placement (fleet/model/moved.py)
  in its variables, so other pending changes of the environment are not applied on the way.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

from fleet.adapters import docker, ssh
from fleet.errors import FleetError
from fleet.model.cutover import (
    NO_NEW_WORK,
    READONLY,
    Weights,
    differences,
    summary,
    weights_for,
)
from fleet.model.image import current
from fleet.model.move import Move, MoveError, Outcome, Step
from fleet.model.plan import Options, data_path
from fleet.services import cattle, topology
from fleet.services.access import lab_hosts
from fleet.services.catalog import Catalog
from fleet.services.context import Context
from fleet.workflows.plan import machine_vars, workspace

Say = Callable[[str], None]
DATA = "/usr/local/sbin/fleet-data"
WEIGH = "/usr/local/sbin/fleet-node weigh"
KEYS = "/run/fleet/authorized_keys"
MOVE_KEY = "/run/fleet/move.key"   # on the target's tmpfs while it copies
GRANT_TTL = 3600       # seconds the source accepts the move's key (the copy's log-in)
CIPHER = "aes128-gcm@openssh.com"
PASS_TIMEOUT = 120.0   # seconds a new or replaced target has to pass in Consul
DRAIN_TIMEOUT = 60     # seconds writes in flight have to finish once the source is read-only
RATE = 100e6           # bytes per second the plan's estimate assumes for the copy


def container(ctx: Context, instance: str) -> str:
    return topology.container(ctx, instance)


def on(ctx: Context, instance: str, command: str, what: str, timeout: float = 600,
       uploads: tuple[tuple[Path, str], ...] = ()) -> str:
    """command on the instance over SSH (after uploading files: local path, remote path); its
    stdout, or one FleetError saying what failed."""
    name = container(ctx, instance)
    hosts, down = lab_hosts(ctx, [name])
    if down:
        raise FleetError(f"{what}: {instance} cannot be reached ({down[0].error})",
                         f"start it (docker start {name}) and run the move again")
    [result] = ssh.run_group(hosts, command, uploads=uploads, timeout=timeout)
    if not result.ok or result.exit_code != 0:
        said = (result.stderr.strip() or result.stdout.strip() or result.error).splitlines()
        raise FleetError(f"{what} failed on {instance}: {said[-1] if said else result.exit_code}")
    return result.stdout


def survey(ctx: Context, move: Move, *, fresh: bool) -> int:
    """What the plan step checks: the source runs and can be made read-only, and a target
    that runs already holds nothing a copy with --delete would wipe; the bytes to copy."""
    source = container(ctx, move.source)
    if not running(ctx, move.source):
        raise MoveError(f"{move.source} is not running: a move copies a pet that runs",
                        f"start it (docker start {source}, or fleet apply), then move it")
    path = data_path(ctx.fleet.role(move.role))
    found = on(ctx, move.source, f"test -x {DATA} && du -sb {shlex.quote(path)} | cut -f1 || "
                                 "echo none", "reading the source's data")
    if found.strip() == "none":
        raise MoveError(f"{move.source}'s image has no {DATA}: a {move.role} cannot be made "
                        "read-only, so it cannot move without losing writes",
                        f"bake {move.role} with a fleet-data of its own (see packer/scripts/lib/"
                        "fleet-gitaly)")
    if fresh and docker.status(container(ctx, move.target)) is not None:
        held = on(ctx, move.target, f"ls -A {shlex.quote(path)} | head -3", "reading the target")
        if held.strip():
            raise MoveError(f"{move.target} already holds data in {path} "
                            f"({', '.join(held.split())}): the copy would replace it",
                            "move to a new instance, or empty that one first")
    return int(found.split()[0])


def estimate(size: int) -> float:
    return round(size / RATE, 1)


def terraform(ctx: Context, move: Move, instances: list[str], planfile: Path) -> None:
    """Terraform, aimed at these instances of the move's environment, with the moves'
    placement as it is recorded now."""
    ws = workspace(ctx, move.env)
    ws.init()
    prior = ws.state()
    records = Catalog(ctx.consul(), ctx.fleet.kv_prefix).records()   # one read for all roles
    images = {r: current(x for x in records if x.role == r) for r in ctx.fleet.roles}
    variables = machine_vars(ctx, move.env, prior, images, (), Options())
    ws.plan(variables, planfile, targets=[f'terraform_data.pet["{i}"]' for i in instances])
    ws.apply_saved(planfile)


def forget_volume(ctx: Context, move: Move, instance: str) -> None:
    """Take the instance's data volume out of Terraform's state (prevent_destroy guards it
    there); the volume itself stays."""
    ws = workspace(ctx, move.env)
    address = f'terraform_data.pet_data["{instance}"]'
    if address in ws.state():
        ws.forget([address])


def held_back(ctx: Context, move: Move) -> bool:
    """Whether the target's container still runs with its held-back registration (finishing
    replaces it with one registered as declared)."""
    found = workspace(ctx, move.env).state().get(f'terraform_data.pet["{move.target}"]')
    return found is None or NO_NEW_WORK in found["input"]["services"]


def running(ctx: Context, instance: str) -> bool:
    state = docker.status(container(ctx, instance))
    return state is not None and state[0] == "running"


def stop(ctx: Context, instance: str) -> None:
    """Stop the instance's container (it takes its services out and leaves the cluster) and
    wait until Consul has no trace of it: a container made again under the same node name
    while the leader still reaps the old one loses its registration to that reap, and passes
    only at its agent's next anti-entropy sync, minutes later."""
    name = container(ctx, instance)
    if docker.status(name) is not None:
        docker.stop(name)
    cattle.out_of_consul(ctx.consul(), name)


def wait_passing(ctx: Context, move: Move, instance: str, timeout: float = PASS_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if passing(ctx, move, instance):
            return
        time.sleep(1)
    raise FleetError(f"{instance} does not pass its checks in Consul after {timeout:.0f}s",
                     f"see docker logs {container(ctx, instance)}, then run the move again")


def passing(ctx: Context, move: Move, instance: str) -> bool:
    service = ctx.fleet.role(move.role).services[0].name
    name = container(ctx, instance)
    return any(i.node == name and i.passing for i in
               ctx.consul().instances(service, f"fleet:{ctx.fleet.name}"))


def weigh(ctx: Context, instance: str, weights: Weights | None, readonly: bool) -> None:
    """The instance's registration: these weights (None: as declared) and tags."""
    if weights is None:
        command = f"{WEIGH} --declared"
    else:
        tags = [READONLY] if readonly else []
        command = f"{WEIGH} {weights.passing} {weights.warning} {' '.join([*tags, *weights.tags])}"
    on(ctx, instance, command, "setting its weights in Consul")


def shares(ctx: Context, move: Move, share: int) -> None:
    """Source and target take (100 - share) and share percent of the pet's traffic."""
    weigh(ctx, move.source, weights_for(100 - share), readonly=True)
    weigh(ctx, move.target, weights_for(share), readonly=True)


def read_only(ctx: Context, move: Move, say: Say) -> None:
    on(ctx, move.source, f"{DATA} read-only on", "making the source read-only")
    weigh(ctx, move.source, weights_for(100), readonly=True)
    say(f"{move.source} is read-only; waiting for writes in flight")
    on(ctx, move.source, f"{DATA} drain --timeout {DRAIN_TIMEOUT}", "draining writes in flight",
       timeout=DRAIN_TIMEOUT + 30)


def mended(move: Move) -> bool:
    """Whether this copy mends one that failed its verify: it compares contents (-c), not
    sizes and times, which a byte changed in place keeps."""
    return any(e.step is Step.VERIFY and e.outcome is Outcome.FAILED for e in move.history)


def copy(ctx: Context, move: Move, say: Say) -> None:
    """rsync over SSH from source to target (see the module's doc)."""
    path = data_path(ctx.fleet.role(move.role))
    work = ctx.state_dir / "moves" / move.source
    work.mkdir(parents=True, exist_ok=True)
    key = work / "key"
    key.unlink(missing_ok=True)
    key.with_suffix(".pub").unlink(missing_ok=True)
    ssh.keygen(key, f"fleet move {move.source}")
    public = key.with_suffix(".pub").read_text().strip()
    source = container(ctx, move.source)
    address = docker.addresses([source], topology.network(ctx).name).get(source)
    if address is None:
        raise FleetError(f"{move.source} has no address on the lab network",
                         f"start it (docker start {source}) and run the move again")
    until = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() + GRANT_TTL))
    grant = f'restrict,expiry-time="{until}",command="rrsync -ro {path}" {public}'
    host_key = on(ctx, move.source, f"umask 077; printf '%s\\n' {shlex.quote(grant)} > {KEYS}"
                                    " && cat /etc/ssh/ssh_host_ed25519_key.pub",
                  "letting the target read the source's data").split()
    known = f"{address} {host_key[0]} {host_key[1]}"
    transport = (f"ssh -i {MOVE_KEY} -o UserKnownHostsFile={MOVE_KEY}.known_hosts "
                 f"-o StrictHostKeyChecking=yes -o BatchMode=yes -c {CIPHER}")
    again = " -c" if mended(move) else ""
    say(f"copying {path} from {move.source} to {move.target} (rsync over SSH)")
    try:   # one session on the target: the key in (its tmpfs), the copy, the key out
        on(ctx, move.target, f"trap 'rm -f {MOVE_KEY} {MOVE_KEY}.known_hosts' EXIT; "
                             f"chmod 0600 {MOVE_KEY} && printf '%s\\n' {shlex.quote(known)} > "
                             f"{MOVE_KEY}.known_hosts && rsync -a{again} --delete -H "
                             f"--numeric-ids -e {shlex.quote(transport)} root@{address}:./ "
                             f"{shlex.quote(path)}/", "the copy", timeout=7200,
           uploads=((key, MOVE_KEY),))
    except FleetError:
        revoke(ctx, move, say)
        raise
    finally:
        key.unlink(missing_ok=True)
        key.with_suffix(".pub").unlink(missing_ok=True)


def revoke(ctx: Context, move: Move, say: Say) -> None:
    """The move's key taken away from the source (the copy's grant)."""
    try:
        on(ctx, move.source, f"rm -f {KEYS}", "taking the move's key away")
    except FleetError as exc:
        say(f"warning: {exc.what}")


def verify(ctx: Context, move: Move) -> int:
    """Both sides checksummed; the number of repositories and files that match, or one
    MoveError listing what differs. The source's session first takes the copy's grant away."""
    with ThreadPoolExecutor(max_workers=2) as pool:   # both sides at once; fsck on the copy
        reading = [pool.submit(on, ctx, i, f"{command}{DATA} checksums{flags}",
                               f"checksumming {i}")
                   for i, command, flags in ((move.source, f"rm -f {KEYS} && ", " --no-fsck"),
                                             (move.target, "", ""))]
        src, dst = (json.loads(r.result()) for r in reading)
    found = differences(src["repositories"], dst["repositories"], src["files"], dst["files"],
                        dst.get("fsck", {}))
    if found:
        raise MoveError(f"{summary(found)}; {move.source} stays read-only and intact",
                        f"see what differs, then run fleet move {move.source} (it copies "
                        f"again) or fleet move {move.source} --abort")
    return len(src["repositories"]) + len(src["files"])


def soak(ctx: Context, move: Move, share: int, say: Say) -> None:
    """Hold the weights for the move's soak with the target passing; on a failing target the
    source takes all the traffic back and the step fails."""
    shares(ctx, move, share)
    say(f"{share}% of {move.role}'s traffic on {move.target}; holding {move.soak_seconds}s")
    deadline = time.monotonic() + move.soak_seconds
    while True:
        if not passing(ctx, move, move.target):
            weigh(ctx, move.source, weights_for(100), readonly=True)
            with suppress(FleetError):   # a failing target may not answer SSH either
                weigh(ctx, move.target, weights_for(0), readonly=True)
            raise FleetError(f"{move.target} failed its health check at {share}% of the "
                             f"cut-over: all traffic is back on {move.source}",
                             f"see docker logs {container(ctx, move.target)}; then run fleet "
                             f"move {move.source} (it cuts over again) or --abort")
        if time.monotonic() >= deadline:
            return
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

