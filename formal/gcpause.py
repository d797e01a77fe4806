"""Pause Python's cyclic garbage collector around bulk work.

Loading, importing and checking a schedule build millions of small objects
with no cycles among them.  Collections triggered by the allocation count
alone then cost more than the work itself (20-50% of a check, and growing
with the heap); reference counting still frees everything.  One helper for
every such place.

Re-enabling the collector is not free either: the next collection walks
every object allocated during the pause (seconds for a 10^6-op schedule),
and two more collections walk them again as they age.  So when an outermost
pause leaves at least :data:`FREEZE_AT` new container objects alive (a big
schedule, report or graph that lives on), they are moved to the collector's
permanent generation (``gc.freeze()``) before it is re-enabled: reference
counting still frees them, but a reference cycle among objects alive then is
no longer collected.  Smaller pauses (every test, every small check) never
freeze.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: The number of new container objects left alive by a pause from which they are frozen.
FREEZE_AT = 1_000_000


@contextmanager
def gc_paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            if gc.get_count()[0] >= FREEZE_AT:
                gc.freeze()
            gc.enable()
