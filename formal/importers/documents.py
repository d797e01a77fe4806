"""Reading one input file of the trace importers, and telling what it is by
its content: a Flight Recorder dump (pickle or JSON) or a profiler trace
(Chrome trace JSON), gzip-compressed or not.

The file name says nothing here: a job's dump directory may hold dumps and
traces side by side, under any names.  What decides:

* a pickle (protocol 2 or later: it starts with ``\\x80``) is a Flight
  Recorder dump (``_dump_fr_trace()`` returns one); torch writes no profiler
  trace as a pickle;
* JSON with ``traceEvents`` (or a JSON array: the Chrome trace's array form)
  is a profiler trace;
* other JSON with ``version``, ``entries``, ``pg_config`` or ``pg_status``
  is a Flight Recorder dump (``_dump_fr_trace_json()``; a dump that lacks
  the others is then reported as such);
* anything else is an error naming the file.

Untrusted bytes, bounded work:

* the file is read by :func:`syncproof.inputs.read_bytes` (regular files only,
  a size limit) and JSON parsed by :func:`syncproof.inputs.parse_json` (depth,
  over-long integers, NaN);
* gzip is decompressed in bounded chunks, up to :data:`MAX_UNCOMPRESSED_BYTES`;
* pickles are loaded by an unpickler that refuses every class and callable
  (``find_class`` and ``persistent_load`` always fail), so no code from the
  file runs, and only dict, list, tuple, str, bytes, int, float, bool and
  None come out; then the object is walked once, without recursion, counting
  every value reached (a value reached twice through the pickle's memo counts
  twice): past :func:`value_budget` values (proportional to the file's size)
  or :data:`MAX_DEPTH` levels the file is refused, so a memo bomb (a list of
  references to a list of references to ...) costs at most that walk.

No torch import here; nothing here executes code from the input.
"""

from __future__ import annotations

import io
import json
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ScheduleError
from ..inputs import decode_text, parse_json, read_bytes

#: The most bytes a gzip-compressed input may expand to.
MAX_UNCOMPRESSED_BYTES = 2 * 1024**3
#: The deepest nesting of containers accepted in an unpickled dump (real dumps nest 5 deep).
MAX_DEPTH = 32
#: The highest rank number accepted (in a file name, a trace header or a dump's group table).
MAX_RANK = (1 << 17) - 1
#: The largest count, size, id or time accepted in a record (a signed 64-bit integer).
MAX_COUNT = (1 << 63) - 1

FR = "flight-recorder"
TRACE = "profiler"


@dataclass(frozen=True)
class Document:
    path: str
    kind: str  # FR | TRACE
    fmt: str  # pickle | json
    doc: Any


def fail(path: Path | str, msg: str, hint: str = "") -> ScheduleError:
    return ScheduleError(msg, str(path), hint)


def brief(v: Any, limit: int = 60) -> str:
    """A short rendering of an untrusted value: bounded in length, depth and
    work (no ``repr`` of a huge or deeply nested object, no decimal
    conversion of an integer of thousands of digits)."""
    out: list[str] = []
    size = 0
    stack: list[tuple[Any, int] | str] = [(v, 0)]
    while stack and size <= limit:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            size += len(item)
            continue
        x, depth = item
        if isinstance(x, bool) or x is None:
            s = repr(x)
        elif isinstance(x, int):
            s = repr(x) if x.bit_length() <= 64 else f"<an integer of {x.bit_length()} bits>"
        elif isinstance(x, float):
            s = repr(x)
        elif isinstance(x, str | bytes):
            s = repr(x[: limit + 1])
        elif isinstance(x, list | tuple | dict):
            if depth >= 4:
                s = "[...]" if not isinstance(x, dict) else "{...}"
            else:
                open_, close = ("{", "}") if isinstance(x, dict) else ("(", ")") if isinstance(x, tuple) else "[]"
                parts: list[tuple[Any, int] | str] = [open_]
                items = list(x.items())[:8] if isinstance(x, dict) else list(x[:8])
                for j, it in enumerate(items):
                    if j:
                        parts.append(", ")
                    if isinstance(x, dict):
                        parts += [(it[0], depth + 1), ": ", (it[1], depth + 1)]
                    else:
                        parts.append((it, depth + 1))
                if len(x) > 8:
                    parts.append(", ...")
                parts.append(close)
                stack.extend(reversed(parts))
                continue
        else:
            s = f"<{type(x).__name__}>"
        out.append(s)
        size += len(s)
    text = "".join(out)
    return text if len(text) <= limit and not stack else text[:limit] + "..."


def value_budget(n_bytes: int) -> int:
    """How many values an unpickled dump of ``n_bytes`` may contain, counted
    with repetition (real dumps: about one value per two bytes)."""
    return 8 * n_bytes + 10_000


def check_size(obj: Any, budget: int, where: str) -> None:
    """Walk ``obj`` (iteratively) and refuse it when it holds more than
    ``budget`` values, counted with repetition, or nests deeper than MAX_DEPTH."""
    n = 0
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        x, depth = stack.pop()
        n += 1
        if n > budget:
            raise fail(where, f"the pickle expands to more than {budget} values (its memo repeats objects;"
                       " a Flight Recorder dump of this size holds far fewer): refused")
        if isinstance(x, dict):
            if depth >= MAX_DEPTH:
                raise fail(where, f"the pickle nests more than {MAX_DEPTH} levels deep: not a Flight Recorder dump")
            for k, val in x.items():
                stack.append((k, depth + 1))
                stack.append((val, depth + 1))
        elif isinstance(x, list | tuple):
            if depth >= MAX_DEPTH:
                raise fail(where, f"the pickle nests more than {MAX_DEPTH} levels deep: not a Flight Recorder dump")
            stack.extend((v, depth + 1) for v in x)
        elif not isinstance(x, str | bytes | int | float | bool) and x is not None:
            raise fail(where, f"the pickle holds a {type(x).__name__}: not a Flight Recorder dump")


class _SafeUnpickler(pickle.Unpickler):
    """Builds only built-in containers and scalars: every GLOBAL/STACK_GLOBAL/
    INST (a class or function to call; REDUCE, BUILD and NEWOBJ need one)
    and every persistent id is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refuses to load {module}.{name}: a Flight Recorder dump holds only"
                                     " dicts, lists, tuples, strings and numbers")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refuses a persistent id")


def safe_loads(data: bytes) -> Any:
    """Unpickle ``data`` without running any code from it (no size check: see :func:`load_pickle`)."""
    return _SafeUnpickler(io.BytesIO(data)).load()


def load_pickle(data: bytes, where: str) -> Any:
    """The object in a pickle, refused (a ScheduleError) when it is truncated,
    names a class or callable, or expands past :func:`value_budget`."""
    try:
        obj = safe_loads(data)
    except EOFError:
        raise fail(where, f"truncated pickle: the data ends before the dump does ({len(data)} bytes)",
                   "the dump was cut off while it was written; take it again") from None
    except pickle.UnpicklingError as exc:
        msg = str(exc)[:200]
        if "truncated" in msg or "ran out" in msg:
            raise fail(where, f"truncated pickle ({msg})", "take the dump again") from None
        raise fail(where, f"not a Flight Recorder pickle: {msg}") from None
    except RecursionError:
        raise fail(where, "not a valid pickle: nested too deeply") from None
    except MemoryError:
        raise fail(where, "not a valid pickle: it asks for more memory than there is") from None
    except Exception as exc:  # any other failure of the C unpickler on malformed opcodes
        raise fail(where, f"not a valid pickle: {type(exc).__name__}: {str(exc)[:120]}") from None
    check_size(obj, value_budget(len(data)), where)
    return obj


def gunzip(data: bytes, where: str, limit: int | None = None) -> bytes:
    """Decompress gzip data (every member), refusing more than ``limit``
    (default :data:`MAX_UNCOMPRESSED_BYTES`) bytes of output."""
    if limit is None:
        limit = MAX_UNCOMPRESSED_BYTES
    out: list[bytes] = []
    total = 0
    rest = data
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = d.decompress(rest, limit - total + 1)
            while True:
                total += len(chunk)
                out.append(chunk)
                if total > limit:
                    raise fail(where, f"the gzip data expands to more than {limit} bytes: refused")
                if not d.unconsumed_tail:
                    break
                chunk = d.decompress(d.unconsumed_tail, limit - total + 1)
            tail = d.flush()
        except zlib.error as exc:
            raise fail(where, f"not a readable gzip file ({exc}); truncated?") from None
        total += len(tail)
        out.append(tail)
        if total > limit:
            raise fail(where, f"the gzip data expands to more than {limit} bytes: refused")
        if not d.eof:
            raise fail(where, "not a readable gzip file (it ends early); truncated?")
        rest = d.unused_data.lstrip(b"\x00")  # members may be followed by zero padding
        if rest and rest[:2] != b"\x1f\x8b":
            raise fail(where, "not a readable gzip file (bytes after the end of the data)")
    return b"".join(out)


def _parse(text: str, where: str) -> Any:
    """:func:`parse_json`, saying so when the JSON ends before it is complete (a truncated file)."""
    try:
        return parse_json(text, where)
    except ScheduleError as exc:
        if exc.message.startswith("not valid JSON"):
            try:
                json.loads(text)
            except json.JSONDecodeError as jexc:
                if jexc.pos >= len(text.rstrip()) - 1:
                    raise fail(where, f"{exc.message}: the file ends early (truncated?)",
                               "the file was cut off while it was written; take it again") from None
            except (ValueError, RecursionError):
                pass
        raise


def _fr_json_keys(doc: dict[Any, Any]) -> bool:
    return bool({"version", "entries", "pg_config", "pg_status"} & set(doc))


def load_document(path: str | Path) -> Document:
    """Read ``path`` and tell what it is by its content (see the module docstring)."""
    p = Path(path)
    where = str(p)
    data = read_bytes(p, "a Flight Recorder dump or a profiler trace")
    if data[:2] == b"\x1f\x8b":
        data = gunzip(data, where)
        if not data.strip():
            raise fail(where, "the gzip data is empty")
    if data[:1] == b"\x80":
        doc = load_pickle(data, where)
        if not isinstance(doc, dict):
            raise fail(where, f"a Flight Recorder dump is a dict/object, this pickle holds a {type(doc).__name__}")
        return Document(where, FR, "pickle", doc)
    head = data.lstrip()[:1]
    if head not in (b"{", b"["):
        raise fail(where, f"neither a Flight Recorder dump (pickle or JSON) nor a profiler trace (JSON): it"
                   f" starts with {data[:16]!r}",
                   "give the bytes that _dump_fr_trace() or _dump_fr_trace_json() returned, or the JSON that"
                   " prof.export_chrome_trace() writes; move other files out of the directory")
    text = decode_text(data, where)
    doc = _parse(text, where)
    if isinstance(doc, list):
        return Document(where, TRACE, "json", doc)  # the Chrome trace's array form
    if not isinstance(doc, dict):
        raise fail(where, f"neither a Flight Recorder dump nor a profiler trace: the JSON holds a"
                   f" {type(doc).__name__}")
    if "traceEvents" in doc:
        return Document(where, TRACE, "json", doc)
    if _fr_json_keys(doc):
        return Document(where, FR, "json", doc)
    keys = ", ".join(brief(k, 30) for k in list(doc)[:8]) or "none"
    raise fail(where, f"neither a Flight Recorder dump (keys version, entries, pg_config) nor a profiler"
               f" trace (key traceEvents): its keys are {keys}",
               "move files other than dumps and traces out of the directory")
