"""Pause Python's cyclic garbage collector around bulk work.

Loading, importing and checking a schedule build millions of small objects
with no cycles among them.  Collections triggered by the allocation count
alone then cost more than the work itself (20-50% of a check, and growing
with the heap); reference counting still frees everything.  One helper for
every such place.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
