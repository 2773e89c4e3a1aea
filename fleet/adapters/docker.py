"""Docker through its CLI (image inspection through the Engine API first: docker_engine):
daemon info, networks, images, lab containers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.adapters import docker_engine, process
from fleet.errors import DependencyDown


@dataclass(frozen=True)
class Image:
    id: str
    tags: tuple[str, ...]
    created: str
    labels: dict[str, str]
    layers: tuple[Path, ...]  # overlay2: every layer's directory, newest first; () elsewhere

    @property
    def top_layer(self) -> Path | None:
        """overlay2: the directory holding what the newest layer changed."""
        return self.layers[0] if self.layers else None

    @property
    def layers_on_disk(self) -> bool:  # overlay2: every layer a directory, read in place
        return bool(self.layers) and all(d.is_dir() for d in self.layers)

def server_version() -> str | None:
    """The daemon's version, None when no daemon answers."""
    result = process.run(["docker", "version", "--format", "{{.Server.Version}}"],
                         check=False, timeout=10)
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None

def network_gateway(name: str) -> str | None:
    """The gateway address of a network, None if the network does not exist."""
    result = process.run(["docker", "network", "inspect", name], check=False, timeout=10)
    if result.returncode != 0:
        return None
    data = json.loads(result.stdout)
    return str(data[0]["IPAM"]["Config"][0]["Gateway"])

def create_network(name: str, subnet: str, gateway: str, bridge: str) -> None:
    process.run(["docker", "network", "create", "--driver", "bridge", "--subnet", subnet,
                 "--gateway", gateway, "--opt", f"com.docker.network.bridge.name={bridge}",
                 "--label", "fleet.lab=1", name], timeout=30,
                fix=f"another network may use {subnet}: change targets.lab.subnet in fleet.toml")

def remove_network(name: str) -> None:
    process.run(["docker", "network", "rm", name], check=False, timeout=30)

DAEMON_DOWN = "Cannot connect to the Docker daemon"


def image(ref: str) -> Image | None:
    """Inspect an image; None if it does not exist. Asks the local daemon's Engine API, or
    when that cannot be asked (docker_engine.NoAnswer), the CLI."""
    try:
        data = docker_engine.image(ref)
    except docker_engine.NoAnswer:
        result = process.run(["docker", "image", "inspect", ref], check=False, timeout=10)
        if result.returncode != 0 and DAEMON_DOWN in result.stderr:
            raise DependencyDown("dockerd is not running",
                                 "run `fleet lab up` to start it") from None
        data = json.loads(result.stdout)[0] if result.returncode == 0 else None
    if data is None:
        return None
    labels = data["Config"]["Labels"] or {}
    driver = data["GraphDriver"]
    return Image(data["Id"], tuple(data["RepoTags"]), data["Created"], dict(labels),
                 docker_engine.layers(driver))


def container_layer(name: str) -> Path | None:
    """overlay2: the directory of what a container changed over its image; None elsewhere or
    for a container that is gone."""
    result = process.run(["docker", "container", "inspect", name], check=False, timeout=10)
    if result.returncode != 0:
        return None
    layers = docker_engine.layers(json.loads(result.stdout)[0]["GraphDriver"])
    return layers[0] if layers else None

def import_tarball(tarball: Path, ref: str, changes: list[str]) -> str:
    """docker import a root filesystem tarball; return the image id."""
    argv = ["docker", "import"]
    for change in changes:
        argv += ["--change", change]
    result = process.run([*argv, str(tarball), ref], timeout=600)
    return result.stdout.strip()

def tag(source: str, target: str) -> None:
    process.run(["docker", "tag", source, target], timeout=30)

def lab_containers(network: str = "") -> list[str]:
    """Names of the containers the lab created (label fleet.lab=1), on network if named."""
    result = process.run(["docker", "ps", "-a", "--filter", "label=fleet.lab=1",
                          *(["--filter", f"network={network}"] if network else []),
                          "--format", "{{.Names}}"], timeout=30)
    return [line for line in result.stdout.splitlines() if line]

def remove_containers(names: list[str]) -> None:
    if names:
        process.run(["docker", "rm", "-f", *names], timeout=120)


@dataclass(frozen=True)
class LabNode:
    """A container the lab made (label fleet.lab=1), as its labels describe it."""

    name: str
    fleet: str      # its fleet.name label; "" on a node made before nodes carried one
    role: str
    env: str
    running: bool


LAB_NODE_FORMAT = ('{{.Names}}\t{{.Label "fleet.name"}}\t{{.Label "fleet.role"}}\t'
                   '{{.Label "fleet.env"}}\t{{.State}}')


def parse_lab_nodes(text: str) -> list[LabNode]:
    """`docker ps --format LAB_NODE_FORMAT` output, one container a line."""
    found = []
    for line in text.splitlines():
        if not line:
            continue
        name, fleet, role, env, state = line.split("\t")
        found.append(LabNode(name, fleet, role, env, state == "running"))
    return found


def lab_nodes(network: str = "") -> list[LabNode]:
    """Every container the lab made, running or not, whichever fleet it belongs to; only
    those on network if named (a node on another network is another lab's)."""
    result = process.run(["docker", "ps", "-a", "--filter", "label=fleet.lab=1",
                          *(["--filter", f"network={network}"] if network else []),
                          "--format", LAB_NODE_FORMAT], timeout=30)
    return parse_lab_nodes(result.stdout)


def fleet_containers(fleet: str) -> list[str]:
    """Names of one fleet's containers, running or not: label fleet.name=FLEET (a name prefix
    would not do: fleet `a`'s nodes `a-…` would take in fleet `a-b`'s)."""
    return containers(f"fleet.name={fleet}")


def stop_and_remove_all(names: list[str]) -> None:
    """Stop containers gracefully side by side (each node leaves Consul), then remove them."""
    if names:
        process.run(["docker", "stop", "--time", "10", *names], check=False, timeout=120)
        process.run(["docker", "rm", "-f", *names], timeout=120)


def volumes(label: str) -> list[str]:
    """Names of the volumes carrying a label (KEY or KEY=VALUE)."""
    result = process.run(["docker", "volume", "ls", "--quiet", "--filter", f"label={label}"],
                         timeout=30)
    return [line for line in result.stdout.splitlines() if line]


def remove_volumes(names: list[str]) -> None:
    """Remove volumes (a pet's data): refused by Docker while a container still uses one."""
    if names:
        process.run(["docker", "volume", "rm", *names], timeout=120)

def require_daemon() -> str:
    version = server_version()
    if version is None:
        raise DependencyDown("dockerd is not running", "run `fleet lab up` to start it")
    return version


def remove_image(ref: str) -> None:
    """Remove an image we made; quietly nothing if it is already gone."""
    process.run(["docker", "image", "rm", "--force", ref], check=False, timeout=120)


def images(repository: str) -> list[tuple[str, str]]:
    """(tag, image id) of every image in a repository."""
    result = process.run(["docker", "images", "--no-trunc", "--format", "{{.Tag}} {{.ID}}",
                          repository], timeout=30)
    pairs = [line.split(" ", 1) for line in result.stdout.splitlines() if " " in line]
    return [(tag, image_id) for tag, image_id in pairs]


def create_container(image_id: str) -> str:
    """A stopped container of an image (for `docker export`); returns its id."""
    return process.run(["docker", "create", image_id], timeout=60).stdout.strip()


def remove_container(container: str) -> None:
    process.run(["docker", "rm", "--force", container], check=False, timeout=60)


def mount_source(path: Path) -> str:
    """`source=PATH` of a `docker run --mount` value, a CSV record: quoted (its quotes doubled)
    where PATH holds a comma, a quote or a newline (`-v` splits at colons, which PATH may hold)."""
    field = f"source={path}"
    return f'"{field.replace(chr(34), 2 * chr(34))}"' if set(',"\n') & set(field) else field


def export_argv(container: str) -> list[str]:
    return ["docker", "export", container]


def container_exists(name: str) -> bool:
    result = process.run(["docker", "container", "inspect", "--format", "{{.Id}}", name],
                         check=False, timeout=30)
    return result.returncode == 0


def stop_and_remove(name: str) -> None:
    """Stop a container gracefully (its node leaves Consul), then remove it."""
    process.run(["docker", "stop", "--time", "10", name], check=False, timeout=60)
    remove_container(name)


def read_file(container: str, path: str) -> str:
    """A small text file inside a running container."""
    return process.run(["docker", "exec", container, "cat", path], timeout=30).stdout


def addresses(names: list[str], network: str) -> dict[str, str]:
    """name -> IP address on the network, for the running containers among names."""
    if not names:
        return {}
    result = process.run(["docker", "inspect", "--type", "container", "--format",
                          "{{.Name}} {{.State.Running}} {{with index .NetworkSettings.Networks \""
                          + network + "\"}}{{.IPAddress}}{{end}}", *names],
                         check=False, timeout=60)
    found = {}
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] == "true":
            found[fields[0].lstrip("/")] = fields[2]
    return found


def has_file(container: str, path: str) -> bool:
    """Whether a running container has a non-empty file at path."""
    return process.run(["docker", "exec", container, "test", "-s", path], check=False,
                       timeout=30).returncode == 0


def containers(label: str) -> list[str]:
    """Names of the containers (running or not) carrying a label (KEY=VALUE)."""
    result = process.run(["docker", "ps", "-a", "--filter", f"label={label}",
                          "--format", "{{.Names}}"], timeout=30)
    return [line for line in result.stdout.splitlines() if line]


# ---- events (`docker events --format '{{json .}}'`, one JSON object a line) ---------------

@dataclass(frozen=True)
class Event:
    """One container event: what happened (start, restart, die …) to which container."""

    action: str
    container: str                 # the container's name
    labels: dict[str, str]         # its labels (Docker folds them into the actor's attributes)


def parse_event(line: str) -> Event:
    """One line of `docker events --format '{{json .}}'` about a container."""
    data = json.loads(line)
    if data["Type"] != "container":
        raise ValueError(f"not a container event: {data['Type']}")
    attributes = {str(k): str(v) for k, v in data["Actor"]["Attributes"].items()}
    name = attributes.pop("name")
    attributes.pop("image", None)  # the image a container runs is an attribute, not a label
    return Event(str(data["Action"]), name, attributes)


def events_argv(label: str, actions: tuple[str, ...]) -> list[str]:
    """`docker events` for containers carrying label (KEY=VALUE), limited to actions."""
    argv = ["docker", "events", "--format", "{{json .}}", "--filter", "type=container",
            "--filter", f"label={label}"]
    for action in actions:
        argv += ["--filter", f"event={action}"]
    return argv


def times(name: str) -> tuple[float, float] | None:
    """(created, last started) of a container as time.time() values (a first start follows
    the creation at once, a restart does not); None once it is gone. Docker prints RFC 3339
    with nanoseconds and a Z: cut to microseconds for Python."""
    from datetime import datetime

    result = process.run(["docker", "inspect", "--type", "container", "--format",
                          "{{.Created}} {{.State.StartedAt}}", name], check=False, timeout=30)
    if result.returncode != 0:
        return None
    created, started = (datetime.fromisoformat(s[:26].rstrip("Z") + "+00:00").timestamp()
                        for s in result.stdout.split())
    return created, started


def image_ids(label: str = "") -> frozenset[str]:
    """The id of every image Docker has (intermediate ones too), or of those with a label
    (KEY=VALUE; an image inherits the labels of the image it was built on)."""
    argv = ["docker", "image", "ls", "--all", "--quiet", "--no-trunc"]
    result = process.run([*argv, "--filter", f"label={label}"] if label else argv, timeout=30)
    return frozenset(result.stdout.split())


def container_images() -> dict[str, str]:
    """container name -> the id of the image it was made from, for every container (running
    or not, the lab's or not)."""
    ids = process.run(["docker", "ps", "--all", "--quiet", "--no-trunc"], timeout=30).stdout.split()
    if not ids:
        return {}
    # check=False: a container removed meanwhile fails the inspect, the others still answer
    result = process.run(["docker", "container", "inspect", "--format",
                          "{{.Name}}\t{{.Image}}", *ids], check=False, timeout=60)
    rows = [line.split("\t") for line in result.stdout.splitlines() if "\t" in line]
    return {name.lstrip("/"): image_id for name, image_id in rows}


def delete_image(image_id: str, tags: tuple[str, ...]) -> None:
    """Remove an image by id, never forced: Docker then refuses (CommandFailed) while any
    container, running or stopped, uses it or another image is built on it. `docker rmi ID`
    refuses an image with several names, so all but one are untagged first, and put back if
    the removal is refused."""
    untagged = []
    try:
        for name in tags[1:]:
            process.run(["docker", "image", "rm", name], timeout=60)
            untagged.append(name)
        process.run(["docker", "image", "rm", image_id], timeout=120,
                    fix="the image is still in use: prune again once that is over")
    except BaseException:
        for name in untagged:
            process.run(["docker", "tag", image_id, name], check=False, timeout=30)
        raise


# ---- pets' data: pause, stop, and one-shot containers on their volumes ------------------------

def status(name: str) -> tuple[str, str] | None:
    """A container's state (running, paused, exited …) and its image's id; None if gone."""
    result = process.run(["docker", "container", "inspect", "--format",
                          "{{.State.Status}} {{.Image}}", name], check=False, timeout=30)
    found = result.stdout.split()
    return (found[0], found[1]) if result.returncode == 0 and len(found) == 2 else None


def pause(name: str) -> None:
    """Freeze every process of a container (the cgroup freezer): nothing it runs writes."""
    process.run(["docker", "pause", name], timeout=60)


def unpause(name: str) -> None:
    process.run(["docker", "unpause", name], timeout=60, fix=f"by hand: docker unpause {name}")


def stop(name: str, grace: int = 10) -> None:
    """Stop a container gracefully (a node's agent leaves Consul); it keeps its volumes."""
    process.run(["docker", "stop", "--time", str(grace), name], timeout=grace + 60)


def start(name: str) -> None:
    process.run(["docker", "start", name], timeout=60, fix=f"by hand: docker start {name}")


def volume_exists(name: str) -> bool:
    return process.run(["docker", "volume", "inspect", name], check=False,
                       timeout=30).returncode == 0


def create_volume(name: str, labels: dict[str, str]) -> None:
    process.run(["docker", "volume", "create", *(f"--label={k}={v}" for k, v in
                                                 sorted(labels.items())), name], timeout=60)


def throwaway_argv(image: str, command: list[str], *, volumes: dict[str, str] | None = None,
                   binds: dict[Path, str] | None = None,
                   env: dict[str, str] | None = None) -> list[str]:
    """`docker run --rm` of a one-shot container running command (as its entrypoint: never
    the image's fleet-init) with no network at all: volumes (name -> mount point, `:ro`
    allowed), read-only bind mounts of host files (by --mount: a host path may hold a colon),
    environment."""
    argv = ["docker", "run", "--rm", "--pull", "never", "--network", "none",
            "--label", "fleet.throwaway=1", "--entrypoint", command[0]]
    argv += [f"--volume={n}:{t}" for n, t in sorted((volumes or {}).items())]
    argv += [f"--mount=type=bind,{mount_source(p)},target={t},readonly"
             for p, t in sorted((binds or {}).items())]
    argv += [f"--env={k}={v}" for k, v in sorted((env or {}).items())]
    return [*argv, image, *command[1:]]


def throwaway(image: str, command: list[str], *, timeout: float = 1800, fix: str = "",
              **mounts: Any) -> process.Result:
    """Run a one-shot container (throwaway_argv) to completion; CommandFailed if it fails."""
    return process.run(throwaway_argv(image, command, **mounts), timeout=timeout, fix=fix)
