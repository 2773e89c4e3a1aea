"""Where a cattle node's CPU goes: K web nodes made at once, then removed, on a throwaway copy of
the example fleet (own KV prefix), with the host's CPU-seconds broken down by process.

- Every process that exits meanwhile (ssh-keygen, fleet-node, runc, docker, sh, terraform...)
  is counted by the kernel's process accounting (acct(2), BSD v3 records, which cover the
  containers' processes too), grouped by command name.
- Long-lived ones (dockerd, containerd, the shims, the lab's Consul servers and OpenBao, each
  node's consul agent, fleet-init and the role's service) by /proc/PID/stat, before and after.
- Each node's container: its cgroup's cpuacct.usage (everything inside it, docker exec'd
  processes included).
- The host: /proc/stat's busy ticks, less the same span's share of an idle measurement taken
  first (the example fleet and the lab's servers idling beside the benchmark).

"made": `cattle.apply` of K nodes until Consul has every check of each passing, plus --settle
seconds (what a node does just after it passes: its watches' first runs); "removed": the apply
of none until every container (renamed .draining ones included) is gone.

Needs root (acct) and the lab up. Usage: .venv/bin/python bench/node_cpu.py [K] [--settle S]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import os
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from figures import example_copy, remove_copy  # noqa: E402  (bench/ is the script's dir)

from fleet.model.nodes import group  # noqa: E402
from fleet.services import cattle  # noqa: E402
from fleet.services.catalog import Catalog  # noqa: E402
from fleet.services.context import Context, load, token_environ  # noqa: E402
from fleet.workflows import bake  # noqa: E402

TCK = os.sysconf("SC_CLK_TCK")
CGROUP = "/sys/fs/cgroup/cpuacct/docker"
LONG_LIVED = ("dockerd", "containerd", "containerd-shim", "consul", "bao", "fleet-init",
              "fleet-service", "sshd")
# Commands only the lab's nodes and their provisioners run (other users of the host, as
# other engineers' tests, run python, git, ruff...): counted whoever their parent.
LAB_TOOLS = {"docker", "consul", "sh", "awk", "sleep", "python3", "runc", "exe", "terraform",
             "containerd-shim", "fleet-node", "fleet-init", "ssh-keygen", "sshd"}


def busy() -> float:
    """CPU-seconds the host has been busy (all but idle and iowait)."""
    with open("/proc/stat") as stat:
        ticks = [int(t) for t in stat.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TCK


def stats() -> Iterator[tuple[int, str, int, float]]:
    """(pid, command, parent's pid, CPU-seconds of itself) of every process (/proc/PID/stat)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                text = handle.read()
        except OSError:
            continue  # gone meanwhile
        fields = text[text.rindex(")") + 2:].split()
        yield (int(pid), text[text.index("(") + 1:text.rindex(")")], int(fields[1]),
               (int(fields[11]) + int(fields[12])) / TCK)


def processes(parents: dict[int, int] | None = None) -> dict[int, tuple[str, float]]:
    """pid -> (command, CPU-seconds of itself) for the long-lived processes; every process's
    parent into `parents`."""
    found = {}
    for pid, comm, ppid, cpu in stats():
        if parents is not None:
            parents[pid] = ppid
        if comm.startswith(LONG_LIVED):
            found[pid] = (comm, cpu)
    return found


def grown(before: dict[int, tuple[str, float]],
          parents: dict[int, int]) -> collections.Counter[str]:
    """CPU-seconds each long-lived command spent since `before` (new processes: all, marked
    "new")."""
    spent: collections.Counter[str] = collections.Counter()
    for pid, (comm, cpu) in processes(parents).items():
        old = before.get(pid)
        new = not (old and old[0] == comm)
        spent[f"{comm} ({'new' if new else 'running'})"] += cpu - (0.0 if new else old[1])
    return spent


# What the project does not write: Docker (its daemons, their re-execs and runc), the kernel's
# own threads (network namespaces made and torn down, among others) and Consul (the lab's
# servers and every node's agent).
OUTSIDE_LONG_LIVED = ("dockerd", "containerd", "consul")  # by prefix: containerd-shim too
# exited: short-lived, so spent within the span (a shim lives as long as its container)
OUTSIDE_EXITED = {"exe": "docker", "runc": "docker"}


def outside() -> dict[int, tuple[str, float]]:
    """pid -> (part, CPU-seconds of itself) of the long-lived processes the project does not
    write and of the kernel's threads (children of kthreadd, pid 2)."""
    found = {}
    for pid, comm, ppid, cpu in stats():
        if pid == 2 or ppid == 2:
            found[pid] = ("kernel", cpu)
        elif comm.startswith(OUTSIDE_LONG_LIVED):
            found[pid] = ("consul" if comm == "consul" else "docker", cpu)
    return found


def outside_spent(before: dict[int, tuple[str, float]],
                  acct: Path | None) -> collections.Counter[str]:
    """CPU-seconds each part the project does not write spent since `before`: docker, kernel,
    consul. With acct (process accounting over the same span), Docker's processes that
    exited meanwhile too. An exited consul is left out (an old node's agent counts its whole
    life at exit, and the provisioners' consul CLI calls are the project's), so this is a
    floor: those parts spent at least this."""
    spent: collections.Counter[str] = collections.Counter()
    for pid, (part, cpu) in outside().items():
        old = before.get(pid)
        spent[part] += cpu - (old[1] if old and old[0] == part else 0.0)
    if acct is not None:
        short, _, _ = exited(acct, {}, set())
        for comm, part in OUTSIDE_EXITED.items():
            spent[part] += short.get(comm, 0.0)
    return spent


def comp_t(value: int) -> float:
    return ((value & 0x1FFF) << (3 * (value >> 13))) / 100  # AHZ ticks


def exited(path: Path, parents: dict[int, int], roots: set[int]
           ) -> tuple[collections.Counter[str], collections.Counter[str], float]:
    """command -> CPU-seconds, and command -> count, of the acct v3 records in path of the
    processes descending from roots (this benchmark, the nodes' shims and containers); and the
    CPU-seconds of the others (other users of the host)."""
    records = []
    data = path.read_bytes()
    for off in range(0, len(data) - 63, 64):
        rec = data[off:off + 64]
        pid, ppid = struct.unpack_from("<II", rec, 16)
        utime, stime = struct.unpack_from("<HH", rec, 32)
        comm = rec[48:64].split(b"\0")[0].decode(errors="replace")
        parents.setdefault(pid, ppid)
        records.append((pid, comm, comp_t(utime) + comp_t(stime)))

    def ours(pid: int, comm: str) -> bool:
        if comm in LAB_TOOLS:  # a drain's, setsid: its parent is gone before it exits
            return True
        for _ in range(64):
            if pid in roots:
                return True
            if pid <= 1 or pid not in parents:
                return False
            pid = parents[pid]
        return False

    cpu: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    others = 0.0
    for pid, comm, spent in records:
        if pid == os.getpid():  # this benchmark's own (its whole run so far): not a node's
            continue
        if ours(pid, comm):
            if spent > 0.3 and os.environ.get("NODE_CPU_DEBUG"):
                chain, up = [], pid
                while up in parents and len(chain) < 8:
                    chain.append(up)
                    up = parents[up]
                print(f"  debug: {comm} pid {pid} {spent:.2f} CPU-s, ancestors {chain}; "
                      f"roots {sorted(roots)}")
            cpu[comm] += spent
            count[comm] += 1
        else:
            others += spent
    return cpu, count, others


class Accounting:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.libc = ctypes.CDLL(None, use_errno=True)

    def __enter__(self) -> Accounting:
        self.path.write_bytes(b"")
        if self.libc.acct(str(self.path).encode()) != 0:
            sys.exit(f"node_cpu: acct failed: {os.strerror(ctypes.get_errno())} (needs root)")
        return self

    def __exit__(self, *exc: object) -> None:
        self.libc.acct(None)


def roots(ids: dict[str, str], parents: dict[int, int]) -> set[int]:
    """The nodes' init processes and their shims."""
    found = set()
    for cid in ids.values():
        out = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", cid],
                             capture_output=True, text=True).stdout.strip()
        if out.isdigit() and int(out) > 0:
            found |= {int(out), parents.get(int(out), 0)}
    return found - {0, 1}


def containers(prefix: str) -> dict[str, str]:
    out = subprocess.run(["docker", "ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.ID}}"],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split() for line in out.splitlines() if line.startswith(prefix))


def cgroup_cpu(ids: dict[str, str]) -> float:
    total = 0.0
    for cid in ids.values():
        with contextlib.suppress(OSError):
            total += int(Path(f"{CGROUP}/{cid}/cpuacct.usage").read_text()) / 1e9
    return total


def phase(title: str, k: int, run: Callable[[], float], idle_rate: float, acct: Path,
          node_roots: set[int]) -> None:
    parents: dict[int, int] = {}
    before, cpu0, self0, t0 = processes(parents), busy(), time.process_time(), time.monotonic()
    with Accounting(acct):
        inside = run()
    span = time.monotonic() - t0
    host = busy() - cpu0 - idle_rate * span
    mine = time.process_time() - self0
    long_lived = grown(before, parents)
    short, counts, others = exited(acct, parents, node_roots | {os.getpid()})
    print(f"\n== {title}: {k} nodes, {span:.1f} s; host {host:.2f} CPU-s over idle "
          f"= {host / k:.2f} per node (of which other users' exited processes {others:.2f}); "
          f"inside the containers {inside:.2f} = {inside / k:.2f} per node; this "
          f"benchmark's own process {mine:.2f}; its exited descendants and the nodes' "
          f"{sum(short.values()):.2f}")
    rows = [(cpu, f"{comm} (exited x{counts[comm]})") for comm, cpu in short.items()]
    rows += [(cpu, comm) for comm, cpu in long_lived.items()]
    for cpu, what in sorted(rows, reverse=True)[:22]:
        if cpu >= 0.01:
            print(f"  {cpu:6.2f} CPU-s  {cpu / k:5.3f}/node  {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("k", type=int, nargs="?", default=5, help="nodes made at once")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after passing")
    args = parser.parse_args()
    lab = load(ROOT / "fleet.toml")
    name = f"cpu{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        text = example_copy(root, name)
        (root / "fleet.toml").write_text(text)
        ctx: Context = load(root / "fleet.toml", {**os.environ, **token_environ(lab)})
        try:
            report = bake.bake(ctx, ["web"], version="v1", say=lambda *_: None)
            if not report.ok:
                sys.exit(f"node_cpu: bake failed: {report.results[0].detail}")
            image = Catalog(ctx.consul(), ctx.fleet.kv_prefix).get("web", "v1")
            assert image is not None
            nodes = group(ctx.fleet.name, ctx.fleet.roles["web"], "staging", "v1",
                          image.record.artifact, args.k, 100)
            time.sleep(2)
            cpu0, t0 = busy(), time.monotonic()
            time.sleep(8)
            idle_rate = (busy() - cpu0) / (time.monotonic() - t0)
            print(f"idle lab: {idle_rate:.2f} CPU-s per second ({idle_rate / os.cpu_count():.0%}"
                  f" of {os.cpu_count()} cores), subtracted below")
            prefix = f"{name}-web-staging-"
            made: dict[str, str] = {}

            def make() -> float:
                cattle.apply(ctx, "staging", nodes)
                want = {n.name for n in nodes}
                while not want <= set(cattle.health(ctx, ["web"], "staging", "web").passing):
                    time.sleep(0.2)
                time.sleep(args.settle)
                made.update(containers(prefix))
                node_roots.update(roots(made, parents_now()))
                return cgroup_cpu(made)

            def remove() -> float:
                last = cgroup_cpu(made)
                cattle.apply(ctx, "staging", [])
                while containers(prefix):
                    last = max(last, cgroup_cpu(containers(prefix)))  # renamed: same ids
                    time.sleep(0.2)
                return last - inside_made[0]

            node_roots: set[int] = set()

            def parents_now() -> dict[int, int]:
                found: dict[int, int] = {}
                processes(found)
                return found

            with tempfile.TemporaryDirectory() as acct_dir:
                acct = Path(acct_dir) / "acct"
                inside_made: list[float] = []
                phase("made", args.k, lambda: inside_made.append(make()) or inside_made[0],
                      idle_rate, acct, node_roots)
                phase("removed", args.k, remove, idle_rate, acct, node_roots)
        finally:
            remove_copy(ctx, lab, name)


if __name__ == "__main__":
    main()
