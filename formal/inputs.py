"""Reading untrusted input: one place that every surface uses.

Every input surface (schedule files, proofs TOML, result JSON for
``render``, torch-pp CSV/JSON, Flight Recorder dumps, profiler traces,
durations files) reads its file through :func:`read_bytes` or
:func:`read_text` and parses JSON through :func:`parse_json`, so that the
same malformed inputs give the same clear :class:`~syncproof.errors.ScheduleError`
naming the file:

* only regular files are read: a FIFO with no writer would block forever,
  ``/dev/zero`` or ``/dev/urandom`` would never end;
* a file larger than the limit is refused before it is read;
* JSON nested deeper than :data:`MAX_JSON_DEPTH` is refused: by a scan
  before parsing, or for a text over :data:`SCAN_DEPTH_BELOW` by the
  parser's own recursion guard, lowered for the parse (the stdlib parser
  would otherwise raise ``RecursionError`` deep inside);
* integers of more digits than Python converts (its ``ValueError``),
  invalid UTF-8 and ``NaN``/``Infinity`` literals are errors, not
  tracebacks;
* :func:`ascii_int` reads an integer written with ASCII digits only
  (``int("²")`` raises, ``int("٣")`` silently gives 3).

No solver import here; nothing here executes code from the input.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

from .errors import ScheduleError

#: The largest input file read, in bytes (a 10^6-op schedule is about 175 MB of JSON).
MAX_INPUT_BYTES = 4 * 1024**3
#: The deepest nesting of arrays and objects accepted in a JSON input.
MAX_JSON_DEPTH = 200
#: Above this size the exact nesting pre-scan costs more than the parse; the parser's own
#: recursion guard, lowered to about MAX_JSON_DEPTH levels, stands in for it.
SCAN_DEPTH_BELOW = 4 * 1024**2
#: The most digits of an integer in an input (far above any real size or time).
MAX_INT_DIGITS = 40


def finite_number(v: Any) -> bool:
    """An ``int`` or ``float`` (not a bool) that is finite.  Any int is: asking
    ``math.isfinite`` about one above 2^1024 raises OverflowError instead."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    return isinstance(v, int) or math.isfinite(v)


def read_bytes(path: str | Path, expected: str, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular input file.  A missing, unreadable, special
    (FIFO, device, directory), oversized or empty file is a ScheduleError
    naming it; ``expected`` says what the file should hold."""
    p = Path(path)
    where = str(p)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ScheduleError("no such file", where) from None
    except IsADirectoryError:
        raise ScheduleError(f"is a directory, not a file (expected {expected})", where) from None
    except OSError as exc:
        raise ScheduleError(f"cannot read: {exc.strerror or exc}", where) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ScheduleError(f"is a directory, not a file (expected {expected})", where)
        if not stat.S_ISREG(st.st_mode):
            raise ScheduleError(f"not a regular file (a pipe or device; expected {expected})", where)
        if st.st_size > max_bytes:
            raise ScheduleError(f"the file is {st.st_size} bytes, over the limit of {max_bytes}", where)
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            # read what the file holds (a read of the limit would reserve it all up front),
            # then whatever it grew by, up to the limit
            data = f.read(st.st_size + 1)
            if len(data) > st.st_size:
                data += f.read(max_bytes + 1 - len(data))
    except OSError as exc:
        raise ScheduleError(f"cannot read: {exc.strerror or exc}", where) from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_bytes:
        raise ScheduleError(f"the file grew over the limit of {max_bytes} bytes while read", where)
    if not data.strip():
        raise ScheduleError(f"the file is empty (expected {expected})", where)
    return data


def decode_text(data: bytes, where: str) -> str:
    """UTF-8 text (a BOM is skipped); invalid bytes are a ScheduleError giving their offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScheduleError(f"not UTF-8 text (byte {exc.start}: {exc.reason})", where) from None


def read_text(path: str | Path, expected: str, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """:func:`read_bytes`, decoded as UTF-8."""
    return decode_text(read_bytes(path, expected, max_bytes), str(path))


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth_error(text: str | bytes) -> str | None:
    """Why ``text`` nests too deeply for :func:`parse_json`, or None.  The
    strings are cut out and the brackets that remain are counted with array
    operations (a Python loop over a 175 MB file took 20 s)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return None
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    if not brackets:
        return None
    import numpy as np

    codes = np.frombuffer(brackets, dtype=np.uint8)
    depth = np.cumsum(np.where((codes == ord("[")) | (codes == ord("{")), 1, -1))
    if int(depth.max()) > MAX_JSON_DEPTH:
        return f"nested more than {MAX_JSON_DEPTH} levels deep"
    return None


def _bad_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes, where: str, *, object_pairs_hook: Any = None) -> Any:
    """Parse JSON input.  Syntax errors name line and column; too deep a
    nesting, over-long integers and NaN/Infinity are ScheduleErrors too."""
    big = len(text) > SCAN_DEPTH_BELOW
    why = None if big else json_depth_error(text)
    if why is not None:
        raise ScheduleError(f"not valid input: {why}", where)
    old_limit = sys.getrecursionlimit()
    try:
        if big:  # the parser counts its nesting against the recursion limit: lower it for the parse
            sys.setrecursionlimit(_stack_depth() + MAX_JSON_DEPTH + 8)
        return json.loads(text, object_pairs_hook=object_pairs_hook, parse_constant=_bad_constant)
    except json.JSONDecodeError as exc:
        raise ScheduleError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", where) from None
    except UnicodeDecodeError as exc:
        raise ScheduleError(f"not UTF-8 text (byte {exc.start}: {exc.reason})", where) from None
    except RecursionError:
        raise ScheduleError("not valid input: nested too deeply", where) from None
    except ValueError as exc:
        raise ScheduleError(f"not valid JSON: {exc}", where) from None
    finally:
        sys.setrecursionlimit(old_limit)


def _stack_depth() -> int:
    f, n = sys._getframe(), 0
    while f is not None:
        f, n = f.f_back, n + 1  # type: ignore[assignment]
    return n


def ascii_int(text: str, where: str, what: str = "an integer") -> int:
    """An integer written in ASCII digits (an optional leading ``-``), of at
    most :data:`MAX_INT_DIGITS` digits; anything else is a ScheduleError."""
    body = text[1:] if text.startswith("-") else text
    if not body or not body.isascii() or not body.isdigit():
        raise ScheduleError(f"{text!r} is not {what} (ASCII digits only)", where)
    if len(body) > MAX_INT_DIGITS:
        raise ScheduleError(f"{what} of {len(body)} digits (at most {MAX_INT_DIGITS})", where)
    return int(text)
