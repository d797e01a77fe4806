"""The compact form of a schedule file: a table of distinct op documents and
one integer column naming each op's document.

A generated schedule repeats itself: the ranks of a tensor-parallel group
issue the same ops, and a million-op schedule holds about a tenth as many
distinct op documents.  The compact form stores each distinct op document
once (the JSON object of the JSON form, as text) and, per op, the number of
its document, as little-endian uint32 in a numpy-readable column.  Loading
parses each distinct document once and hands the loader one shared object
per document (:class:`~syncproof.ir.fileformat.SharedOps`), so the loader
checks and builds each distinct op once and copies it for the others; the
checks are the JSON form's, by the same code.

Layout (all integers little-endian; ``docs/format.md`` section "Compact form"):

====== ================ ===================================================
offset size             content
====== ================ ===================================================
0      8                :data:`MAGIC` (``\\x89SPZ\\r\\n\\x1a\\n``: never the start of JSON text)
8      4                the compact form's version, uint32 (:data:`COMPACT_VERSION`)
12     4                ``H``: the header's length in bytes, uint32
16     H                the header: a UTF-8 JSON object (below)
       0-7              zero padding to a multiple of 8
       8 x (D + 1)      uint64 offsets of the D documents in the blob; the first 0, the last the blob's length
       offsets[D]       the blob: the D op documents, JSON objects, one after the other
       0-3              zero padding to a multiple of 4
       4 x N            uint32: for each op, in rank order then issue order, its document's number
====== ================ ===================================================

The header is ``{"schedule": {...}, "ranks": [["0", n0], ["1", n1], ...],
"docs": D, "ops": N}``: the JSON form's top-level fields but ``"ranks"``,
the rank keys in file order with their numbers of ops (summing to N), and
the two sizes.  Every size is checked against the file's length before
anything is allocated from it; nothing is unpickled or executed.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path
from typing import Any

from ..errors import ScheduleError
from ..gcpause import gc_paused
from .schedule import Schedule

MAGIC = b"\x89SPZ\r\n\x1a\n"
COMPACT_VERSION = 2
READS_COMPACT_VERSIONS = (1, 2)
#: The largest header accepted, in bytes (its choices and groups; the ops are not in it).
MAX_HEADER_BYTES = 64 * 1024**2
_HEADER_KEYS = {1: ("schedule", "ranks", "docs", "ops"), 2: ("schedule", "ranks", "strings", "sizes", "ops")}


def _pad(n: int, to: int) -> int:
    return (-n) % to


def compact_bytes(s: Schedule) -> bytes:
    """The compact form of a schedule (version 2: typed columns, see :mod:`syncproof.ir.columnar`)."""
    from .columnar import SECTIONS, Encoder
    from .fileformat import schedule_to_dict

    with gc_paused():
        top = schedule_to_dict(dataclasses.replace(s, ops=()))
        top.pop("ranks", None)
        enc = Encoder(s)
        ranks: list[list[Any]] = []
        for r in s.ranks:
            mine = s.by_rank[r]
            ranks.append([str(r), len(mine)])
            for op in mine:
                enc.op(op)
        sections = enc.sections()
    header = json.dumps({"schedule": top, "ranks": ranks, "strings": enc.strings,
                         "sizes": {name: int(sections[name].size) for name, _ in SECTIONS}, "ops": len(enc.column)},
                        separators=(",", ":")).encode("utf-8")
    parts = [MAGIC, struct.pack("<II", COMPACT_VERSION, len(header)), header]
    at = 16 + len(header)
    for name, _ in SECTIONS:
        parts.append(b"\0" * _pad(at, 8))
        at += _pad(at, 8)
        raw = sections[name].tobytes()
        parts.append(raw)
        at += len(raw)
    return b"".join(parts)


def compact_bytes_v1(s: Schedule) -> bytes:
    """The compact form of version 1 (the distinct op documents as JSON text), still read."""
    import numpy as np

    from .fileformat import op_texts, schedule_to_dict

    with gc_paused():
        top = schedule_to_dict(dataclasses.replace(s, ops=()))
        top.pop("ranks", None)
        doc_of: dict[str, int] = {}
        blobs: list[bytes] = []
        column: list[int] = []
        ranks: list[list[Any]] = []
        for r, texts in op_texts(s):
            ranks.append([str(r), len(texts)])
            for text in texts:
                j = doc_of.get(text)
                if j is None:
                    j = doc_of[text] = len(blobs)
                    blobs.append(text.encode("utf-8"))
                column.append(j)
    header = json.dumps({"schedule": top, "ranks": ranks, "docs": len(blobs), "ops": len(column)},
                        separators=(",", ":")).encode("utf-8")
    offsets = np.zeros(len(blobs) + 1, dtype="<u8")
    if blobs:
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
    blob = b"".join(blobs)
    parts = [MAGIC, struct.pack("<II", 1, len(header)), header,
             b"\0" * _pad(16 + len(header), 8), offsets.tobytes(), blob]
    at = sum(map(len, parts))
    parts.append(b"\0" * _pad(at, 4))
    parts.append(np.asarray(column, dtype="<u4").tobytes())
    return b"".join(parts)


def save_compact(s: Schedule, path: str | Path) -> None:
    Path(path).write_bytes(compact_bytes(s))


def _bad(where: str, what: str) -> ScheduleError:
    return ScheduleError(f"not a valid compact schedule file: {what}", where)


def _header(data: bytes, where: str) -> tuple[dict[str, Any], int, int]:
    """The parsed header and the offset just after it."""
    from .jsonread import strict_parse

    if len(data) < 16:
        raise _bad(where, f"the file is {len(data)} bytes, shorter than the 16-byte preamble")
    if data[:8] != MAGIC:
        raise _bad(where, "wrong magic bytes (expected \\x89SPZ\\r\\n\\x1a\\n)")
    version, hlen = struct.unpack_from("<II", data, 8)
    if version not in READS_COMPACT_VERSIONS:
        raise ScheduleError(f"compact form version {version} is not supported (this syncproof reads version"
                            f" {', '.join(map(str, READS_COMPACT_VERSIONS))})", where)
    if hlen > MAX_HEADER_BYTES or 16 + hlen > len(data):
        raise _bad(where, f"the header claims {hlen} bytes, but the file has {len(data) - 16} after the preamble"
                   if 16 + hlen > len(data) else f"the header claims {hlen} bytes, over the limit of"
                   f" {MAX_HEADER_BYTES}")
    try:
        header = strict_parse(data[16:16 + hlen], f"{where}: header")
    except ScheduleError as exc:
        raise _bad(where, f"the header is not valid JSON ({exc})") from None
    if type(header) is not dict:
        raise _bad(where, "the header is not a JSON object")
    for key in header:
        if key not in _HEADER_KEYS[version]:
            raise _bad(where, f"unknown header field {key!r}")
    for key in _HEADER_KEYS[version]:
        if key not in header:
            raise _bad(where, f"the header has no {key!r}")
    return header, 16 + hlen, version


def _size(header: dict[str, Any], key: str, most: int, where: str) -> int:
    v = header[key]
    if type(v) is not int or not 0 <= v <= most:
        raise _bad(where, f"header field {key!r} is {str(v)[:40]!r}: not an integer from 0 to {most}, as the file's"
                   " length allows")
    return v


def compact_document(data: bytes, where: str) -> dict[str, Any]:
    """The JSON form's document of a compact file, its ops lists holding one
    shared object per distinct document; every malformation is a ScheduleError."""
    import numpy as np

    from .fileformat import SharedOps
    from .jsonread import _line_object, refuse_lone_surrogates

    header, at, version = _header(data, where)
    if version == 2:
        return _document_v2(data, header, at, where)
    n = len(data)
    at += _pad(at, 8)
    # sizes: checked against what the file holds before anything is made from them
    n_docs = _size(header, "docs", max(0, (n - at) // 8 - 1), where)
    end_offsets = at + 8 * (n_docs + 1)
    if end_offsets > n:
        raise _bad(where, f"the file ends inside the document offsets ({n_docs} documents)")
    offsets = np.frombuffer(data, dtype="<u8", count=n_docs + 1, offset=at)
    blob_len = int(offsets[-1])
    if offsets[0] != 0 or (n_docs and bool((np.diff(offsets.astype(np.int64)) < 0).any())) \
            or blob_len > n - end_offsets or int(offsets.max()) != blob_len:
        raise _bad(where, "the document offsets are not increasing from 0 within the file")
    col_at = end_offsets + blob_len
    col_at += _pad(col_at, 4)
    n_ops = _size(header, "ops", max(0, (n - col_at) // 4), where)
    if col_at + 4 * n_ops != n:
        raise _bad(where, f"the op column of {n_ops} ops would end at byte {col_at + 4 * n_ops}, but the file has"
                   f" {n} bytes (truncated, or the sizes disagree)")
    if n_docs > n_ops:
        raise _bad(where, f"{n_docs} documents for {n_ops} ops")
    column = np.frombuffer(data, dtype="<u4", count=n_ops, offset=col_at)
    if n_ops and int(column.max()) >= n_docs:
        bad = int(np.flatnonzero(column >= n_docs)[0])
        raise _bad(where, f"op {bad} names document {int(column[bad])}, but there are {n_docs}")
    ranks_raw, top = _ranks_and_top(header, n_ops, where)
    off = offsets.tolist()
    base = end_offsets
    docs: list[Any] = []
    for j in range(n_docs):
        d = _line_object(data[base + off[j]:base + off[j + 1]])
        if d is None:
            raise _bad(where, f"document {j} is not a JSON object (without duplicate keys)")
        docs.append(d)
    ranks: dict[str, list[Any]] = {}
    idx = column.tolist()
    pos = 0
    for key, count in ranks_raw:
        if key in ranks:
            raise ScheduleError(f"rank {key} is listed twice", where)
        ranks[key] = SharedOps.numbered(docs, idx[pos:pos + count])
        pos += count
    doc = {**top, "ranks": ranks}
    refuse_lone_surrogates(data, {**top, "docs": docs}, where)
    return doc


def _ranks_and_top(header: dict[str, Any], n_ops: int, where: str) -> tuple[list[list[Any]], dict[str, Any]]:
    ranks_raw = header["ranks"]
    if type(ranks_raw) is not list or not all(type(x) is list and len(x) == 2 and type(x[0]) is str
                                              and type(x[1]) is int and x[1] >= 0 for x in ranks_raw):
        raise _bad(where, "header field 'ranks' is not a list of [rank key, number of ops]")
    if sum(x[1] for x in ranks_raw) != n_ops:
        raise _bad(where, f"the ranks' numbers of ops sum to {sum(x[1] for x in ranks_raw)}, not {n_ops}")
    top = header["schedule"]
    if type(top) is not dict:
        raise _bad(where, "header field 'schedule' is not an object")
    if "ranks" in top:
        raise _bad(where, "header field 'schedule' holds 'ranks'; the ops are in the column")
    return ranks_raw, top


def _document_v2(data: bytes, header: dict[str, Any], at: int, where: str) -> dict[str, Any]:
    """The JSON form's document of a version-2 file: its ops lists hold shape
    numbers (:class:`~syncproof.ir.columnar.ColumnOps`) that the loader builds
    from the shared tables."""
    import numpy as np

    from .columnar import SECTIONS, ColumnOps, Tables
    from .jsonread import refuse_lone_surrogates

    strings = header["strings"]
    if type(strings) is not list or not all(type(x) is str for x in strings):
        raise _bad(where, "header field 'strings' is not a list of strings")
    sizes = header["sizes"]
    names = [name for name, _ in SECTIONS]
    if type(sizes) is not dict or list(sizes) != names:
        raise _bad(where, f"header field 'sizes' must give, in order, the sizes of {', '.join(names)}")
    n = len(data)
    sec: dict[str, Any] = {}
    for name, dtype in SECTIONS:
        at += _pad(at, 8)
        width = np.dtype(dtype).itemsize
        count = _size(sizes, name, max(0, (n - at) // width), where)
        sec[name] = np.frombuffer(data, dtype=dtype, count=count, offset=at)
        at += count * width
    if at != n:
        raise _bad(where, f"the sections end at byte {at}, but the file has {n} bytes (the sizes disagree)")
    n_ops = _size(header, "ops", len(sec["column"]), where)
    if n_ops != len(sec["column"]):
        raise _bad(where, f"the header says {n_ops} ops, but the column holds {len(sec['column'])}")
    ranks_raw, top = _ranks_and_top(header, n_ops, where)
    refuse_lone_surrogates(data, {**top, "strings": strings}, where)
    tables = Tables(where, strings, sec)
    column = sec["column"].tolist()
    ranks: dict[str, list[Any]] = {}
    pos = 0
    for key, count in ranks_raw:
        if key in ranks:
            raise ScheduleError(f"rank {key} is listed twice", where)
        ops = ColumnOps(column[pos:pos + count])
        ops.tables = tables
        ranks[key] = ops
        pos += count
    return {**top, "ranks": ranks}


def schedule_from_compact(data: bytes, source: str = "<compact>") -> Schedule:
    """A schedule from the bytes of a compact file, checked as the JSON form is."""
    from .fileformat import schedule_from_dict

    with gc_paused():
        doc = compact_document(data, source)
        return schedule_from_dict(doc, source)


def load_compact(path: str | Path) -> Schedule:
    from ..inputs import read_bytes

    return schedule_from_compact(read_bytes(path, "a compact syncproof schedule"), str(path))


def is_compact(data: bytes) -> bool:
    return data.startswith(MAGIC)
