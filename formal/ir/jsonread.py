"""Reading a schedule file's JSON fast, as strictly as the standard library.

Two ways, tried in turn; each gives the very document the strict parse
would, or hands over to the next:

1. **The canonical layout** that :func:`syncproof.ir.dumps` writes: the
   top-level fields one per line, then ``"ranks"`` with one op per line.
   Each distinct op line is parsed once (the ranks of a tensor-parallel
   group issue the same ops, line for line) by the strict parser, so a
   duplicate key in any line is still found; identical lines share one
   document object, which the loader builds one op from and copies
   (:class:`~syncproof.ir.fileformat.SharedOps`).  A file that departs from
   the layout anywhere is read by (2).
2. **Any other layout**: the standard library's parser with a hook
   refusing duplicate keys, through :func:`syncproof.inputs.parse_json`
   (large files skip its character-by-character depth pre-scan: the
   parser's own recursion guard, lowered for the parse, stands in).  The reference, and the one whose error messages are
   reported.

orjson was measured as the parser of (2) (issue 16): about 1.9x the
standard library's speed on a 175 MB file, but it keeps the last of
duplicate keys silently, and finding them after it (counting the colons
outside strings) cost more than it saved; (1) makes a dependency
unnecessary.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from ..errors import ScheduleError
from ..gcpause import gc_paused
from ..inputs import MAX_JSON_DEPTH, parse_json


class DuplicateKey(Exception):  # not a ValueError: parse_json would turn it into "not valid JSON"
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):  # rare: find the first key seen twice
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise DuplicateKey(k)
            seen.add(k)
    return out


def _bad_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _where_duplicate(text: str, key: str) -> str:
    """Best effort: the line (and rank/op, for one-op-per-line files) where
    ``key`` appears twice; JSON parsers give no position for this."""
    pat = re.compile(r'"' + re.escape(key) + r'"\s*:')
    rank, op_index = None, -1
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r'\s*"(\d+)"\s*:\s*\[', line)
        if m:
            rank, op_index = int(m.group(1)), -1
        elif rank is not None and line.lstrip().startswith("{"):
            op_index += 1
        if len(pat.findall(line)) > 1:
            at = f" at line {n}"
            if rank is not None and line.lstrip().startswith("{"):
                at += f" (rank {rank}, op {op_index})"
            return at
    return ""


def strict_parse(data: str | bytes, where: str) -> Any:
    """The reference parse: the standard library, duplicate keys refused."""
    try:
        return parse_json(data, where, object_pairs_hook=no_duplicate_keys)
    except DuplicateKey as exc:
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        raise ScheduleError(f"key {exc.key!r} appears twice in one object (JSON would keep only the last)"
                            + _where_duplicate(text, exc.key), where) from None


# ---------------------------------------------------------------- (1) the canonical layout
_RANK_LINE = re.compile(rb'    "([0-9]{1,18})": \[')
_OP_INDENT = b"      {"


_DECODER = json.JSONDecoder(object_pairs_hook=no_duplicate_keys, parse_constant=_bad_constant)


def _line_object(raw: bytes) -> Any:
    """One line parsed strictly, or None for anything but a JSON object."""
    try:
        v = _DECODER.decode(raw.decode("utf-8"))
    except (ValueError, RecursionError, DuplicateKey):  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        return None
    return v if type(v) is dict else None


def _rank_lines(data: bytes, at: int, n_lines: int) -> list[int]:
    """The numbers of the lines that start with 4 spaces and a quote among the
    ``n_lines`` lines of ``data`` from offset ``at`` (the start of a line)."""
    out: list[int] = []
    line, pos = 0, at
    if data.startswith(b'    "', at) and n_lines:
        out.append(0)
    while True:
        nxt = data.find(b'\n    "', pos)
        if nxt < 0:
            break
        line += data.count(b"\n", pos, nxt) + 1  # the line that starts after this newline
        if line >= n_lines:
            break
        out.append(line)
        pos = nxt + 1
    return out


def parse_canonical(data: bytes, where: str) -> dict[str, Any] | None:
    """The document of a file in the canonical layout, or None if the file
    is in any other layout (or not valid JSON at all).  Works a line at a
    time in bulk (comprehensions, ``dict.fromkeys``): a million lines take
    about as long as splitting them."""
    from .fileformat import SharedOps

    if not data.startswith(b"{\n"):
        return None
    lines = data.split(b"\n")
    try:
        k = lines.index(b'  "ranks": {', 0, 4096)
    except ValueError:
        return None
    if len(lines) < k + 4 or lines[-1] != b"" or lines[-2] != b"}" or lines[-3] != b"  }":
        return None
    head = b"\n".join(lines[:k]) + b'\n  "ranks": {}\n}'
    if head.count(b"[") + head.count(b"{") > MAX_JSON_DEPTH:
        return None  # perhaps nested too deeply: the reference path says so
    top = _line_object(head)
    if top is None or top.get("ranks") != {}:
        return None
    body = lines[k + 1:-3]
    # the rank lines ("N": [) and the ends of their lists (], or ] for the last): the lines of the body
    # that start with 4 spaces and a quote, found in the bytes (an op line has a sixth space there)
    starts = _rank_lines(data, sum(map(len, lines[:k + 1])) + k + 1, len(body))
    if not starts or starts[0] != 0:
        return None if body else {**top, "ranks": {}}
    ranks: dict[str, list[Any]] = {}
    ends = starts[1:] + [len(body)]
    segs: list[tuple[str, list[bytes]]] = []
    indent, next_op, comma_next_op = _OP_INDENT, b"\n" + _OP_INDENT, b",\n" + _OP_INDENT
    for s, e in zip(starts, ends, strict=True):
        m = _RANK_LINE.fullmatch(body[s])
        if m is None or e - s < 2 or body[e - 1] != (b"    ]," if e < len(body) else b"    ]"):
            return None
        seg = body[s + 1:e - 1]
        if seg:
            # every op line is the indent, one JSON object and a comma, but the last has none: lines hold
            # no newline, so counting what follows (and precedes) each newline of the joined lines says it
            joined, n = b"\n".join(seg), len(seg) - 1
            if (not joined.startswith(indent) or seg[-1].endswith(b",") or joined.count(next_op) != n
                    or joined.count(comma_next_op) != n):
                return None
            del joined
        key = m.group(1).decode("ascii")
        if key in ranks:
            return None
        ranks[key] = []
        segs.append((key, seg))
    # each distinct line parsed once, and a line and its twin without the comma (the last op of a rank)
    # are one document: the same number, so a rank ending in an op seen before is still all alike
    lines_seen: dict[bytes, None] = {}
    for _, seg in segs:
        lines_seen.update(dict.fromkeys(seg))
    number: dict[bytes, int] = {}
    of_raw: dict[bytes, int] = {}
    docs: list[Any] = []
    for line in lines_seen:
        raw = line[6:-1] if line.endswith(b",") else line[6:]
        j = of_raw.get(raw)
        if j is None:
            # (a line shorter than the depth limit cannot nest deeper)
            if len(raw) > MAX_JSON_DEPTH - 3 and raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH - 3:
                return None
            d = _line_object(raw)
            if d is None:
                return None
            j = of_raw[raw] = len(docs)
            docs.append(d)
        number[line] = j
    del lines_seen, of_raw
    of_line = number.__getitem__
    for key, seg in segs:
        ranks[key] = SharedOps.numbered(docs, list(map(of_line, seg)))
    top["ranks"] = ranks
    return top  # type: ignore[no-any-return]


# ---------------------------------------------------------------- (2) any other layout
#: Above this size, :func:`syncproof.inputs.parse_json`'s character-by-character scan for deep
#: nesting would cost more than the parse; the parser's own recursion guard stands in for it.
_SCAN_DEPTH_BELOW = 4 * 1024**2


def _stack_depth() -> int:
    f, n = sys._getframe(), 0
    while f is not None:
        f, n = f.f_back, n + 1  # type: ignore[assignment]
    return n


def _parse_big(data: bytes, where: str) -> Any:
    """The strict parse of a large file, without the depth pre-scan: the
    parser counts its nesting against the recursion limit, which is lowered
    for the parse to about :data:`MAX_JSON_DEPTH` levels above the caller
    (a RecursionError, caught, then says the input nests too deeply)."""
    old = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(_stack_depth() + MAX_JSON_DEPTH + 8)
        return json.loads(data, object_pairs_hook=no_duplicate_keys, parse_constant=_bad_constant)
    except RecursionError:
        raise ScheduleError("not valid input: nested too deeply", where) from None
    except DuplicateKey as exc:
        raise ScheduleError(f"key {exc.key!r} appears twice in one object (JSON would keep only the last)"
                            + _where_duplicate(data.decode("utf-8", "replace"), exc.key), where) from None
    except json.JSONDecodeError as exc:
        raise ScheduleError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", where) from None
    except UnicodeDecodeError as exc:
        raise ScheduleError(f"not UTF-8 text (byte {exc.start}: {exc.reason})", where) from None
    except ValueError as exc:
        raise ScheduleError(f"not valid JSON: {exc}", where) from None
    finally:
        sys.setrecursionlimit(old)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def refuse_lone_surrogates(raw: bytes, doc: Any, where: str) -> None:
    """JSON may escape half of a UTF-16 pair (``"\\ud800"``); Python reads
    it into a string that cannot be written out as UTF-8 (every message and
    report would fail).  Such a string is an error here.  Cheap: only a text
    with such an escape is looked at further."""
    if _SURROGATE_ESCAPE.search(raw) is None:
        return
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        half = exc.object[exc.start:exc.end]
        raise ScheduleError(f"not valid input: a string holds a lone UTF-16 surrogate ({half!a}), which is no"
                            " character", where) from None


def parse_schedule_json(data: bytes | str, where: str) -> Any:
    """The JSON document of a schedule file, as the strict parser reads it."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    with gc_paused():  # millions of acyclic objects: the collector would walk them again and again
        doc = parse_canonical(raw, where)
        if doc is None:
            doc = _parse_big(raw, where) if len(raw) > _SCAN_DEPTH_BELOW else strict_parse(data, where)
        refuse_lone_surrogates(raw, doc, where)
        return doc
