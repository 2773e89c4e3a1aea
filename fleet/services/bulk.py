"""Large answers: read while the command does something else, and decoded at once with the
cyclic garbage collector paused.

A large read begun early (Early) runs in a thread of its own: while the server works out
its answer (~50 ms of Consul's for a 10,000-node fleet's health checks) and the thread waits
for it without the interpreter lock, the command goes on with its other reads and imports.

Decoding a 10,000-node fleet's health (tens of thousands of dicts and lists, none in a
cycle) otherwise wakes the collector every 700 objects made, and its older generations' passes
walk everything the process holds: ~5 ms of `fleet status` and of `fleet plan` at that size.
Nothing is skipped: what becomes garbage meanwhile is freed by reference counting as ever, and
the collector runs again as soon as the read is done.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from fleet.adapters.consul import Consul

if TYPE_CHECKING:
    from fleet.services.context import ConsulOf, Context

T = TypeVar("T")

# The large reads a command begins early (declared_read): every check of the fleet's services
# with each member's node checks (fleet status), every node by its services' tags (fleet plan)
FLEET_CHECKS = Consul.service_checks
FLEET_NODES = Consul.nodes_by_tags


@contextmanager
def decoding() -> Iterator[None]:
    """The block with the collector paused (left as it was found: paused by another thread's
    block begun meanwhile, it is that block's to start again)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Early(Generic[T]):
    """read() begun in a daemon thread at once; result() waits for it, and raises its error
    if it failed (a command that fails meanwhile does not wait: the thread ends with it)."""

    def __init__(self, read: Callable[[], T], of: ConsulOf | None = None) -> None:
        self.of = of  # the Consul and fleet it reads, if it reads one (fleet_read)
        self._found: list[T] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(read,), daemon=True)
        self._thread.start()

    def _run(self, read: Callable[[], T]) -> None:
        try:
            self._found.append(read())
        except BaseException as exc:  # handed to the thread that waits for it
            self._error = exc

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._found[0]


def fleet_read(of: ConsulOf, read: Callable[[Consul, str], T]) -> Early[T]:
    """read(consul, the fleet's tag) begun now on that Consul for that fleet, its answer
    decoded with the collector paused; result() raises what the read (or the client's making,
    as a bad address) raised."""
    addresses, token, name = of

    def run() -> T:
        consul = Consul(addresses, token)
        with decoding():
            return read(consul, f"fleet:{name}")

    return Early(run, of)


def declared_read(file: Path, read: Callable[[Consul, str], T]) -> Early[T] | None:
    """fleet_read begun with the Consul and fleet fleet.toml declares, before the file is
    loaded: the command's one large read (fleet status: every check of the fleet; fleet plan:
    every node by its tags) is worked out by Consul (~50 ms at 10,000 nodes) while the model's
    and the workflow's code is imported (~50 ms more). None when the file does not plainly say
    them (context.declared_consul)."""
    from fleet.services.context import declared_consul

    of = declared_consul(file)
    return fleet_read(of, read) if of is not None else None


def on(ctx: Context, begun: Early[T] | None, read: Callable[[Consul, str], T]) -> Early[T]:
    """begun, if it reads ctx's Consul for ctx's fleet (its file may have changed since), else
    read begun now."""
    if begun is not None and begun.of == ctx.consul_of:
        return begun
    return fleet_read(ctx.consul_of, read)
