"""Leaving the ``syncproof`` process without freeing a big schedule.

At 10^6 ops, freeing the schedule object by object when ``check`` is done
takes about half a second to a second: its op objects, their field
dictionaries, the engine's tables.  The operating system reclaims all of it
at once when the process ends.  So the console command (and only it: the
Python API and ``cli.main`` called in-process free as usual) keeps big
schedules alive here and ends with ``os._exit`` after flushing its output.

``os._exit`` skips ``atexit`` handlers.  The commands that hold a schedule
(``check``) start no process pool, thread or Ray client that one would need;
a command that does must not call :func:`hold`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn

#: Schedules with more ops than this are held (below it, freeing them costs nothing worth saving).
HOLD_MIN_OPS = 100_000

_held: list[object] = []
_enabled = False


def enable() -> None:
    """Called by the console entry point: from now on :func:`hold` keeps what it is given."""
    global _enabled
    _enabled = True


def hold(obj: object, n_ops: int) -> None:
    """Keep ``obj`` (a schedule of ``n_ops`` ops, or what refers to one) alive until the process ends."""
    if _enabled and n_ops > HOLD_MIN_OPS:
        _held.append(obj)


def leave(code: int) -> NoReturn:
    """End the process with ``code``: at once when something is held, else as usual."""
    if _held:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing more to say
                stream.flush()
        os._exit(code)
    sys.exit(code)
