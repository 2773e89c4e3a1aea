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
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from fleet.adapters.consul_checks import TaggedNodes
    from fleet.services.context import Context

T = TypeVar("T")


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

    def __init__(self, read: Callable[[], T]) -> None:
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


def fleet_nodes(ctx: Context) -> Early[TaggedNodes]:
    """Every node of the fleet by its services' tags, and the members' serfHealth
    (Consul.nodes_by_tags: fleet plan's one large read), begun now: a command begins it before
    it imports the code that will use it (fleet plan: ~75 ms of imports at 10,000 nodes, while
    Consul works out its ~50 ms answer; issue 19)."""
    consul, tag = ctx.consul(), f"fleet:{ctx.fleet.name}"

    def read() -> TaggedNodes:
        with decoding():
            return consul.nodes_by_tags(tag)

    return Early(read)
