"""Sharing the semantics of one schedule between passes that run together.

The redundancy pass (``engine/redundant.py``) checks a schedule and then
decides each of its syncs on the same matching, precedence, memory view and
obligations the check just computed.  Inside :func:`sharing`, the functions
decorated with :func:`shared` remember their last result per function and
return it again when called with the very same argument objects (identity,
not equality: a schedule is immutable, and the arguments are kept alive so
that their ids cannot be reused).  Outside it they compute as always, and
nothing is kept: the cache is emptied when the outermost ``sharing`` ends.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_depth = 0
_last: dict[str, tuple[tuple[Any, ...], Any]] = {}


@contextmanager
def sharing() -> Iterator[None]:
    """Remember the last result of every :func:`shared` function until the block ends."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            _last.clear()


def shared(fn: F) -> F:
    name = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        if _depth == 0:
            return fn(*args, **kw)
        key = (*args, *(x for kv in sorted(kw.items()) for x in kv))
        hit = _last.get(name)
        if hit is not None and len(hit[0]) == len(key) and all(
                a is b or (type(a) is str and a == b) for a, b in zip(hit[0], key, strict=True)):
            return hit[1]
        out = fn(*args, **kw)
        _last[name] = (key, out)
        return out

    return wrapper  # type: ignore[return-value]
