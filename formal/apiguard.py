"""Argument guards for the public Python API.

A public function given an argument of the wrong type (an int for a path, a
dict for a schedule, a str for ``max_cex``, ``None``) must not fail with an
``AttributeError`` deep inside syncproof.  The entry points call these
guards first; a wrong argument raises :class:`~syncproof.errors.UsageError`
(a :class:`~syncproof.errors.UserError`, so the CLI turns it into exit 2)
whose message names the function, the argument, what it takes and what it
got::

    >>> load(3)
    syncproof.errors.UsageError: load(): path must be a file path (str or os.PathLike), got int 3

``UsageError`` rather than ``TypeError``: one exception family for every
mistake a caller can fix, caught by ``except syncproof.UserError``.

No solver import here, and nothing beyond the standard library and
:mod:`syncproof.errors`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .errors import UsageError

T = TypeVar("T")

#: How much of a wrong value an error message shows.
REPR_LIMIT = 60


def short_repr(value: object, limit: int = REPR_LIMIT) -> str:
    """``repr(value)``, cut to ``limit`` characters (a huge string or a
    10^5-digit integer must not flood the message)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** limit:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001  a hostile __repr__ must not hide the real error
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _got(value: object) -> str:
    return "None" if value is None else f"{type(value).__name__} {short_repr(value)}"


def fail(func: str, name: str, wants: str, value: object) -> UsageError:
    """The error for argument ``name`` of ``func``: it takes ``wants``."""
    return UsageError(f"{func}(): {name} must be {wants}, got {_got(value)}")


def instance(value: object, types: type[T] | tuple[type[T], ...], func: str, name: str, wants: str = "") -> T:
    """``value`` itself when it is an instance of ``types`` (a bool is never
    accepted where an int is wanted)."""
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in _tuple(types))
    if not ok:
        what = wants or " or ".join(t.__name__ for t in _tuple(types))
        raise fail(func, name, what, value)
    return value  # type: ignore[return-value]


def _tuple(types: type[Any] | tuple[type[Any], ...]) -> tuple[type[Any], ...]:
    return types if isinstance(types, tuple) else (types,)


def path(value: object, func: str, name: str = "path") -> Path:
    """A file path: a non-empty ``str`` or ``os.PathLike`` without NUL."""
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)):
        raise fail(func, name, "a file path (str or os.PathLike)", value)
    text = os.fspath(value)
    if not isinstance(text, str):
        raise fail(func, name, "a file path given as text (not bytes)", value)
    if not text or "\x00" in text:
        raise fail(func, name, "a non-empty file path without NUL characters", value)
    return Path(text)


def text(value: object, func: str, name: str, *, empty: bool = True) -> str:
    """A ``str`` (non-empty unless ``empty``)."""
    if not isinstance(value, str) or (not empty and not value):
        raise fail(func, name, "a string" if empty else "a non-empty string", value)
    return value


def optional_text(value: object, func: str, name: str) -> str | None:
    return None if value is None else text(value, func, name)


def integer(value: object, func: str, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """An ``int`` (not a bool) in ``lo..hi``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(func, name, "an integer", value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise fail(func, name, f"an integer in {lo if lo is not None else '...'}..{hi if hi is not None else '...'}",
                   value)
    return value


def optional_integer(value: object, func: str, name: str, lo: int | None = None, hi: int | None = None) -> int | None:
    return None if value is None else integer(value, func, name, lo, hi)


def number(value: object, func: str, name: str, *, positive: bool = True, hi: float | None = None) -> float:
    """A finite ``int`` or ``float`` (not a bool), > 0 when ``positive``, at most ``hi``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(func, name, "a number", value)
    v = float(value) if not isinstance(value, int) or abs(value) < 2**1023 else math.inf
    if not math.isfinite(v) or (positive and v <= 0) or (hi is not None and v > hi):
        wants = "a finite number" + (" > 0" if positive else "") + (f" of at most {hi:g}" if hi is not None else "")
        raise fail(func, name, wants, value)
    return v


def optional_number(value: object, func: str, name: str, *, positive: bool = True,
                    hi: float | None = None) -> float | None:
    return None if value is None else number(value, func, name, positive=positive, hi=hi)


def flag(value: object, func: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise fail(func, name, "True or False", value)
    return value


def choice(value: object, options: Iterable[str], func: str, name: str) -> str:
    opts = tuple(options)
    if not isinstance(value, str) or value not in opts:
        raise fail(func, name, "one of " + ", ".join(repr(o) for o in opts), value)
    return value


def strings(value: object, func: str, name: str, options: Iterable[str] | None = None) -> tuple[str, ...]:
    """An iterable of strings (a list, tuple, set, generator; not one bare
    string and not a mapping), each among ``options`` when given."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise fail(func, name, "a list of strings", value)
    opts = tuple(options) if options is not None else None
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or (opts is not None and item not in opts):
            wants = "a list of strings" if opts is None else "a list drawn from " + ", ".join(opts)
            raise fail(func, name, wants, item)
        out.append(item)
    return tuple(out)
