"""Large answers decoded at once, with the cyclic garbage collector paused.

Decoding a 10,000-node fleet's health (tens of thousands of dicts and lists, none in a
cycle) otherwise wakes the collector every 700 objects made, and its older generations' passes
walk everything the process holds: ~5 ms of `fleet status` and of `fleet plan` at that size.
Nothing is skipped: what becomes garbage meanwhile is freed by reference counting as ever, and
the collector runs again as soon as the read is done.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


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
