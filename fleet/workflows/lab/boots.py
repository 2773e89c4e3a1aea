"""The lab's part of a reboot: a node that comes back gets its credentials again.

A node's credentials (its Consul token, its rendered secrets) live on its /run/fleet tmpfs, so
a reboot — `docker restart`, dockerd restarted, a restart policy bringing a crashed node back —
leaves it without them: its agent is denied registration and the node stays out of service. A
cloud instance re-authenticates at boot through its platform's identity (on AWS, the signed
instance identity document with Vault's aws auth method); nothing secret is baked into its
image. In the lab, Docker is the platform, and this watcher plays that part: `fleet lab up`
starts it in the background for the fleet (`fleet lab boots`, its PID in .fleet/lab), and it
follows `docker events` for the fleet's nodes. When one of them starts again — a start long
after the container was created, or a restart — and shows no token on its tmpfs after a short
settling time, it hands the node its credentials as at its creation
(fleet.services.credentials.deliver), and logs one line per node. A first start is left to
whoever created the node (Terraform's create provisioner, the Vagrantfile's trigger), so two
deliveries never race.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fleet.adapters import docker, process
from fleet.errors import FleetError
from fleet.services import credentials, topology
from fleet.services.context import Context
from fleet.services.topology import Paths
from fleet.workflows.lab import processes
from fleet.workflows.lab.parts import Part, PartState

FIRST_START = 30.0  # seconds from create to start below which a start is the node's first
SETTLE = 3.0        # seconds a restarted node is given before its tmpfs is looked at
TRIES = 5           # deliveries tried (Vault sealed or Consul busy: a reboot waits it out)


def is_reboot(event: docker.Event, since_created: float | None) -> bool:
    """A restart, or a start long after the container was created: not a first boot."""
    if since_created is None:
        return False  # gone meanwhile
    return event.action == "restart" or (event.action == "start"
                                         and since_created >= FIRST_START)


def rebooted(ctx: Context, event: docker.Event) -> bool:
    """Whether the event is a reboot of one of this fleet's nodes."""
    role, env = event.labels.get("fleet.role"), event.labels.get("fleet.env")
    if not (role and env and topology.owns(ctx, event.container,
                                           event.labels.get("fleet.name", ""))):
        return False  # another fleet's node, or no fleet node at all
    found = docker.times(event.container)
    return is_reboot(event, found[1] - found[0] if found else None)


def recover(ctx: Context, event: docker.Event, say: Callable[[str], None]) -> str | None:
    """Give a rebooted node its credentials again, unless it has them; what was done."""
    node, role, env = (event.container, event.labels["fleet.role"], event.labels["fleet.env"])
    time.sleep(SETTLE)
    for attempt in range(1, TRIES + 1):
        try:
            said = credentials.restore(ctx, node, role, env)
            if said is None:
                return None  # it kept them (or someone delivered meanwhile)
            say(f"{node} rebooted: {said}")
            return said
        except FleetError as exc:
            say(f"{node} rebooted; credentials not handed over (try {attempt}/{TRIES}): "
                f"{exc.line()}")
            time.sleep(2.0 * attempt)
    return None


def watch(ctx: Context, say: Callable[[str], None]) -> None:
    """Follow the lab's container events until stopped (or dockerd goes away: `lab up`
    starts the watcher again). Nodes that reboot together are recovered side by side, each
    node by one handler at a time: `docker restart` says both start and restart."""
    argv = docker.events_argv("fleet.lab=1", ("start", "restart"))
    busy: set[str] = set()
    lock = threading.Lock()

    def once(event: docker.Event) -> None:
        if not rebooted(ctx, event):
            return
        with lock:
            if event.container in busy:
                return
            busy.add(event.container)
        try:
            recover(ctx, event, say)
        finally:
            with lock:
                busy.discard(event.container)

    say(f"watching {ctx.fleet.name}'s nodes for reboots")
    with ThreadPoolExecutor(max_workers=4) as pool, process.reading(argv) as stream:
        for line in stream:
            try:
                event = docker.parse_event(line.decode())
            except (ValueError, KeyError) as exc:
                say(f"an event docker printed could not be read ({exc}): skipped")
                continue
            pool.submit(once, event)


def argv(ctx: Context) -> list[str]:
    """The watcher as a background process of the lab (`fleet lab boots`)."""
    return [sys.executable, "-m", "fleet", "-f", str(ctx.file), "lab", "boots"]


# what the watcher's PID runs, for processes.alive: the interpreter's own file, the same
# whether a `lab up` was run as python or python3 (each once started a watcher of its own)
EXE = os.path.basename(os.path.realpath(sys.executable))


def part(p: Paths) -> Part:
    """The watcher as `fleet lab status` shows it."""
    pid = processes.recorded_pid(p, "boots", EXE)
    if pid is None:
        return Part("reboot watcher", PartState.DOWN,
                    detail=f"not running; run `fleet lab up` (log: {p.log('boots')})")
    return Part("reboot watcher", PartState.UP, detail=f"pid {pid}, log {p.log('boots')}")
