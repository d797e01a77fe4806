"""The schedule file format, version 2 (version 1 still loads): load and
save, losslessly.

The format is documented in ``docs/format.md`` and described by the JSON
Schema ``syncproof/schema/schedule-v2.schema.json``.  Every error names the
file, the rank and op index and the field, and is a :class:`ScheduleError`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ScheduleError
from ..gcpause import gc_paused
from ..inputs import read_bytes
from .choices import Choice, OpChoice, choice_to_dict, choices_from_dict
from .expr import Expr, Lit, parse_expr
from .jsonread import parse_schedule_json
from .ops import ALLOCATOR_KINDS, HOST_ONLY, HOST_STREAM, P2P_MODES_OP, Access, Kind, Meta, Op
from .rankcopy import EventColumns, LaterRecords, add_records, copy_rank
from .region import FULL_HI, Interval, Region, RegionSyntaxError, parse_region_parts
from .schedule import Buffer, InitValue, Schedule, op_features
from .validate import PreChecked, accesses_are_fine, check_op, meta_is_fine, region_fits, suggest, validate

FORMAT_VERSION = 2
#: The most digits of a rank number (ranks are small; the bound keeps every integer of a schedule in 64 bits).
MAX_RANK_DIGITS = 9
#: Every other integer of a schedule (sizes, counts, steps, interval bounds) lies strictly inside
#: (-LIMIT, LIMIT): far beyond any real size, and clear of the bounds that stand for a whole axis.
INT_LIMIT = FULL_HI
READS_VERSIONS = (1, 2)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")

TOP_KEYS = ("syncproof", "name", "description", "p2p", "progress", "groups", "buffers", "init", "choices", "selected",
            "ranks")
META_KEYS = ("phase", "step", "layer", "mb", "seqs", "tokens", "sp", "sample")
_COMMON = ("op", "stream", "name") + META_KEYS
_KIND_KEYS: dict[Kind, tuple[str, ...]] = {
    Kind.COMPUTE: ("reads", "writes"),
    Kind.SEND: ("to", "channel", "reads", "size", "dtype"),
    Kind.RECV: ("from", "channel", "writes", "size", "dtype"),
    Kind.RECORD: ("event",),
    Kind.WAIT: ("event",),
}
for _k in (Kind.ALL_REDUCE, Kind.ALL_GATHER, Kind.REDUCE_SCATTER, Kind.ALL_TO_ALL, Kind.BARRIER):
    _KIND_KEYS[_k] = ("group", "reads", "writes", "size", "dtype")
_KIND_KEYS[Kind.BROADCAST] = ("group", "root", "reads", "writes", "size", "dtype")
# What format version 2 adds, per kind (a version-1 file may not use these).
_V2_KEYS: dict[Kind, tuple[str, ...]] = {
    Kind.SEND: ("comm", "p2p", "batch"),
    Kind.RECV: ("comm", "p2p", "batch"),
    Kind.PUT: ("to", "reads", "writes", "size", "dtype", "signal"),
    Kind.WAIT_SIGNAL: ("from", "signal"),
}
for _k in (Kind.ALL_REDUCE, Kind.BARRIER):
    _V2_KEYS[_k] = ("comm", "batch", "completion")
for _k in (Kind.ALL_GATHER, Kind.REDUCE_SCATTER):
    _V2_KEYS[_k] = ("comm", "batch", "completion", "counts")
_V2_KEYS[Kind.ALL_TO_ALL] = ("comm", "batch", "completion", "counts", "recv_counts")
_V2_KEYS[Kind.BROADCAST] = ("comm", "batch", "completion", "p2p")
for _k in (Kind.REDUCE, Kind.GATHER, Kind.SCATTER):
    _KIND_KEYS[_k] = ()
    _V2_KEYS[_k] = ("group", "root", "reads", "writes", "size", "dtype", "comm", "batch", "completion", "p2p")
_KIND_KEYS[Kind.PUT] = ()
_KIND_KEYS[Kind.WAIT_SIGNAL] = ()
# the host and the caching allocator (issue 12): host-only kinds
_V2_KEYS[Kind.SYNC] = ("event", "target", "of")
_V2_KEYS[Kind.ALLOC] = ("buffer", "target", "reuses")
_V2_KEYS[Kind.FREE] = ("buffer",)
_V2_KEYS[Kind.RECORD_STREAM] = ("buffer", "target")
for _k in (Kind.SYNC, Kind.ALLOC, Kind.FREE, Kind.RECORD_STREAM):
    _KIND_KEYS[_k] = ()
for _k in Kind:  # a guard on any op (DESIGN.md section 2c): format v2
    _V2_KEYS[_k] = _V2_KEYS.get(_k, ()) + ("when",)
_V1_ALLOWED = {k: frozenset(_COMMON + v) for k, v in _KIND_KEYS.items()}
_ALLOWED = {k: frozenset(_COMMON + v + _V2_KEYS.get(k, ())) for k, v in _KIND_KEYS.items()}
COMPLETIONS = ("weak",)
_KINDS = {k.value: k for k in Kind}
_META_KEYS = frozenset(META_KEYS)


# ---------------------------------------------------------------- helpers
# The loader makes millions of frozen dataclass objects; it fills their fields
# directly (object.__new__, then the instance dict, in field order), as the
# generated __init__ would one frozen __setattr__ at a time.
_op_new = object.__new__


def _want(cond: bool, msg: str, where: str, hint: str = "") -> None:
    if not cond:
        raise ScheduleError(msg, where, hint)


def _int(v: Any, what: str, where: str) -> int:
    if type(v) is int and -INT_LIMIT < v < INT_LIMIT:  # the messages below only when something is wrong
        return v
    _want(isinstance(v, int) and not isinstance(v, bool), f"{what} must be an integer, got {_short(v)}", where)
    _want(-INT_LIMIT < v < INT_LIMIT, f"{what} {_short(v)} is out of range (integers lie strictly between -2^62 and"
          " 2^62)", where)
    return int(v)


def _short(v: Any) -> str:
    """``repr(v)``, cut short: a message quotes a value, not a whole document or a 4000-digit number."""
    try:
        text = repr(v) if not isinstance(v, int) or -10**30 < v < 10**30 else f"an integer of {len(str(abs(v)))} digits"
    except ValueError:  # an int too long to print
        text = "an integer of more than 4300 digits"
    return text if len(text) <= 80 else text[:77] + "..."


def _str(v: Any, what: str, where: str) -> str:
    _want(isinstance(v, str) and v != "", f"{what} must be a non-empty string, got {v!r}", where)
    return str(v)


def resolve_region(text: Any, buffers: dict[str, Buffer], where: str) -> Region:
    """Parse a region string and normalise it: every axis of the buffer, in
    declared order, the ones not named covering the whole axis."""
    _want(isinstance(text, str), f"a region must be a string like 'kv[token=0:512]', got {text!r}", where)
    cached = _REGION_CACHE.get((text, id(buffers)))
    if cached is not None and cached[0] is buffers:
        return cached[1]
    region = _resolve_region(text, buffers, where)
    if len(_REGION_CACHE) > 1 << 18:
        _REGION_CACHE.clear()
    _REGION_CACHE[(text, id(buffers))] = (buffers, region)
    return region


_REGION_CACHE: dict[tuple[str, int], tuple[dict[str, Buffer], Region]] = {}


def _resolve_region(text: str, buffers: dict[str, Buffer], where: str) -> Region:
    try:
        name, parts = parse_region_parts(text)
    except RegionSyntaxError as exc:
        raise ScheduleError(str(exc), where, exc.hint) from None
    buf = buffers.get(name)
    if buf is None:
        raise ScheduleError(
            f"buffer {name!r} is not declared", where,
            f"add it to \"buffers\"; {suggest(name, buffers)}",
        )
    given = dict(parts)
    for axis in given:
        if axis not in buf.axis_names:
            raise ScheduleError(
                f"axis {axis!r} is not declared for buffer {name!r}"
                f" (its axes: {', '.join(buf.axis_names) or 'none'})",
                where,
                suggest(axis, buf.axis_names) if buf.axes else f"declare it: \"{name}\": [\"{axis}\"]",
            )
    # an axis left out covers the whole axis: 0:extent when the extent is declared
    region = _op_new(Region)  # Region(name, box), without the frozen __setattr__ per field
    f = region.__dict__
    f["buffer"] = name
    f["box"] = tuple([(a, given.get(a, whole)) for a, whole in buf.whole])
    return region


def _accesses(v: Any, what: str, buffers: dict[str, Buffer], where: str, writes: bool) -> tuple[Access, ...]:
    _want(isinstance(v, dict), f"{what!r} must map regions to values, e.g. {{\"x[layer=0]\": \"h0\"}}", where)
    out: list[Access] = []
    for reg, val in v.items():
        w = f"{where}, {what} {reg!r}"
        region = resolve_region(reg, buffers, w)
        if val is None:
            _want(not writes, "a write must name the value it writes", w)
        else:
            _want(isinstance(val, str) and val != "", f"value must be a non-empty string, got {val!r}", w)
        for prev in out:
            if prev.region == region:
                raise ScheduleError(f"region {region} is listed twice in {what}", w, "list each region once")
            if prev.region.overlaps(region) and (writes or (prev.value != val and None not in (prev.value, val))):
                raise ScheduleError(
                    f"{what} {prev.region} and {region} overlap"
                    + ("" if writes else f" but expect different values ({prev.value!r}, {val!r})"),
                    w, "give each location one value per op")
        out.append(Access(region, val))
    return tuple(out)


def _parse_tokens(v: Any, where: str) -> Interval:
    if isinstance(v, int) and not isinstance(v, bool):
        _want(-INT_LIMIT < v < INT_LIMIT - 1, f"tokens {_short(v)} is out of range", where)
        return Interval(v, v + 1)
    _want(isinstance(v, str) and ":" in v, f"tokens must be 'lo:hi' or an integer, got {v!r}", where)
    m = re.fullmatch(r"\s*(-?[0-9]{1,19})\s*:\s*(-?[0-9]{1,19})\s*", str(v))
    if m is None:
        raise ScheduleError(f"tokens must be 'lo:hi' with integers, got {v!r}", where)
    lo, hi = int(m.group(1)), int(m.group(2))
    _want(lo > -INT_LIMIT and hi < INT_LIMIT, f"tokens interval {v!r} is out of range", where)
    _want(lo < hi, f"tokens interval {v!r} is empty or reversed", where,
          f"did you mean '{hi}:{lo}'?" if hi < lo else "")
    return Interval(lo, hi)


def _parse_sp(v: Any, where: str) -> tuple[int, int]:
    ok = isinstance(v, str) and v.count("/") == 1
    if ok:
        a, b = str(v).split("/")
        ok = all(x.strip().isascii() and x.strip().isdigit() and len(x.strip()) <= 9 for x in (a, b))
    _want(ok, f"sp must be 'index/count' such as '1/4' (ASCII digits), got {_short(v)}", where)
    a, b = str(v).split("/")
    return int(a), int(b)


_NO_META = Meta()


def _meta(d: dict[str, Any], where: str) -> Meta:
    if _META_KEYS.isdisjoint(d):
        return _NO_META
    seqs: tuple[int, ...] = ()
    if "seqs" in d:
        s = d["seqs"]
        if isinstance(s, list):
            seqs = tuple(_int(x, "seqs entry", where) for x in s)
        else:
            seqs = (_int(s, "seqs", where),)
    phase = d.get("phase")
    if phase is not None:
        phase = _str(phase, "phase", where)
    for key in ("layer", "mb"):
        if key in d:
            _want(_int(d[key], key, where) >= 0, f"{key} {d[key]} is negative", where)
    if "step" in d:
        _want(phase == "decode", "\"step\" is a decode step number, but the op is not in the decode phase",
              where, "add \"phase\": \"decode\" or drop \"step\"")
    sample = d.get("sample", False)
    _want(isinstance(sample, bool), f"sample must be true or false, got {sample!r}", where)
    return Meta(
        phase=phase,
        step=_int(d["step"], "step", where) if "step" in d else None,
        layer=_int(d["layer"], "layer", where) if "layer" in d else None,
        mb=_int(d["mb"], "mb", where) if "mb" in d else None,
        seqs=seqs,
        tokens=_parse_tokens(d["tokens"], where) if "tokens" in d else None,
        sp=_parse_sp(d["sp"], where) if "sp" in d else None,
        sample=sample,
    )


def _op(d: Any, rank: int, index: int, op_id: int, buffers: dict[str, Buffer], src: str,
        version: int = FORMAT_VERSION) -> Op:
    where = f"{src}: rank {rank}, op {index}"
    _want(isinstance(d, dict), f"an op must be an object, got {d!r}", where)
    if "op" not in d:
        raise ScheduleError("op has no \"op\" field (its kind)", where, f"one of {', '.join(k.value for k in Kind)}")
    kind = _KINDS.get(d["op"]) if isinstance(d["op"], str) else None
    if kind is None:
        raise ScheduleError(f"unknown op kind {d['op']!r}", where,
                            suggest(d["op"], [k.value for k in Kind]))
    where = f"{where} ({kind})"
    allowed = _ALLOWED[kind]
    if not allowed.issuperset(d):
        key = next(k for k in d if k not in allowed)
        raise ScheduleError(f"field {key!r} does not belong on {_a(kind)} op", where,
                            suggest(key, _COMMON + _KIND_KEYS[kind] + _V2_KEYS.get(kind, ())))
    if version < 2 and (not _KIND_KEYS[kind] or not _V1_ALLOWED[kind].issuperset(d)):
        # a kind of version 2 has no version-1 fields of its own
        what = f"{_a(kind)} op" if not _KIND_KEYS[kind] else \
            f"field {next(k for k in d if k not in _V1_ALLOWED[kind])!r}"
        raise ScheduleError(f"{what} needs format version 2", where, "write \"syncproof\": 2 at the top")
    if kind in HOST_ONLY:  # host API calls: they run on the host thread
        stream = d.get("stream", HOST_STREAM)
        _want(stream == HOST_STREAM, f"{_a(kind)} runs on the host, so its stream is {HOST_STREAM!r}, got {stream!r}",
              where, f"drop \"stream\" or write \"stream\": \"{HOST_STREAM}\"; name the device stream in"
              " \"target\"")
    else:
        _want("stream" in d, "op has no \"stream\"", where, "e.g. \"stream\": \"compute\"")
        stream = _str(d["stream"], "stream", where)
    where = f"{src}: rank {rank}, op {index} ({kind} on {stream})"
    peer = None
    if kind is Kind.SEND or kind is Kind.PUT:
        _want("to" in d, f"{_a(kind)} needs \"to\": the destination rank", where)
        peer = _int(d["to"], "to", where)
    if kind is Kind.RECV or kind is Kind.WAIT_SIGNAL:
        _want("from" in d, f"{_a(kind)} needs \"from\": the source rank", where)
        peer = _int(d["from"], "from", where)
    channel = d.get("channel", "0")
    if isinstance(channel, int) and not isinstance(channel, bool):
        channel = str(channel)
    channel = _str(channel, "channel", where)
    name = d.get("name", "")
    _want(isinstance(name, str), f"name must be a string, got {name!r}", where)
    group = _str(d["group"], "group", where) if "group" in d else None
    event = _str(d["event"], "event", where) if "event" in d else None
    if kind in (Kind.RECORD, Kind.WAIT):
        _want(event is not None, f"{_a(kind)} needs \"event\"", where)
    if kind.is_collective:
        _want(group is not None, f"{kind} needs \"group\"", where)
    if kind is Kind.BARRIER:
        _want("reads" not in d and "writes" not in d, "a barrier moves no data", where,
              "drop \"reads\"/\"writes\", or use all_reduce if data is reduced")
    dtype = _str(d["dtype"], "dtype", where) if "dtype" in d else None
    if kind.is_rooted:
        _want("root" in d, f"{_a(kind)} needs \"root\": the rank it is rooted at", where)
    comm = _str(d["comm"], "comm", where) if "comm" in d else None
    p2p = None
    if "p2p" in d:
        p2p = d["p2p"]
        _want(isinstance(p2p, str) and p2p in P2P_MODES_OP,
              f"p2p on an op must be \"eager\" (a message known to fit the transport's buffer) or"
              f" \"rendezvous\" (one known to block until its receiver posts), got {p2p!r}", where)
    batch = _str(d["batch"], "batch", where) if "batch" in d else None
    signal = _str(d["signal"], "signal", where) if "signal" in d else None
    if kind is Kind.WAIT_SIGNAL:
        _want(signal is not None, "a wait_signal needs \"signal\": the signal it waits for", where)
    completion = None
    if "completion" in d:
        completion = d["completion"]
        _want(completion in COMPLETIONS, f"completion must be \"weak\" (a custom collective without an end"
              f" barrier), got {completion!r}", where)
    target = _str(d["target"], "target", where) if "target" in d else None
    of = _str(d["of"], "of", where) if "of" in d else None
    buffer = _str(d["buffer"], "buffer", where) if "buffer" in d else None
    reuses = _str(d["reuses"], "reuses", where) if "reuses" in d else None
    if kind is Kind.SYNC:
        _want(sum(x is not None for x in (event, target, of)) <= 1, "a sync waits for one thing: an \"event\""
              " (event.synchronize()), a \"target\" stream (stream.synchronize()) or the op named in \"of\""
              " (work.wait(), .item()); none of them is torch.cuda.synchronize()", where)
    if kind in ALLOCATOR_KINDS:
        _want(buffer is not None, f"{_a(kind)} needs \"buffer\": the tensor's buffer", where)
        if buffer not in buffers:  # the hint only when it is needed: captures have thousands of these ops
            raise ScheduleError(f"buffer {buffer!r} is not declared", where, suggest(buffer, buffers))
    if kind is Kind.ALLOC or kind is Kind.RECORD_STREAM:
        _want(target is not None, f"{_a(kind)} needs \"target\": the device stream"
              + (" it allocates on (its pool)" if kind is Kind.ALLOC else " that uses the tensor"), where)
    if reuses is not None and reuses not in buffers:
        raise ScheduleError(f"buffer {reuses!r} is not declared", where, suggest(reuses, buffers))
    when = parse_expr(d["when"], where + ", when") if "when" in d else None
    size_expr = None
    if isinstance(d.get("size"), str):
        size_expr = parse_expr(d["size"], where + ", size")
        d = {k: v for k, v in d.items() if k != "size"}
    counts_expr = recv_expr = None
    if isinstance(d.get("counts"), list) and any(isinstance(x, str) for x in d["counts"]):
        counts_expr = _count_exprs(d["counts"], "counts", where)
        d = {k: v for k, v in d.items() if k != "counts"}
    if isinstance(d.get("recv_counts"), list) and any(isinstance(x, str) for x in d["recv_counts"]):
        recv_expr = _count_exprs(d["recv_counts"], "recv_counts", where)
        d = {k: v for k, v in d.items() if k != "recv_counts"}
    choice = None
    if when is not None or size_expr is not None or counts_expr is not None or recv_expr is not None:
        choice = OpChoice(when, size_expr, counts_expr, recv_expr)
    counts = _counts(d["counts"], "counts", where) if "counts" in d else None
    recv_counts = _counts(d["recv_counts"], "recv_counts", where) if "recv_counts" in d else None
    return Op(
        id=op_id, rank=rank, index=index, stream=stream, kind=kind, name=name,
        peer=peer, channel=channel, group=group, event=event,
        root=_int(d["root"], "root", where) if "root" in d else None,
        size=_int(d["size"], "size", where) if "size" in d else None,
        dtype=dtype,
        reads=_accesses(d.get("reads", {}), "reads", buffers, where, writes=False),
        writes=_accesses(d.get("writes", {}), "writes", buffers, where, writes=True),
        meta=_meta(d, where),
        comm=comm, p2p=p2p, batch=batch, signal=signal, counts=counts, recv_counts=recv_counts,
        completion=completion, target=target, of=of, buffer=buffer, reuses=reuses, choice=choice,
    )


def _count_exprs(v: list[Any], what: str, where: str) -> tuple[Expr, ...]:
    out: list[Expr] = []
    for i, x in enumerate(v):
        if isinstance(x, str):
            out.append(parse_expr(x, f"{where}, {what}[{i}]"))
        else:
            _want(type(x) is int and 0 <= x < INT_LIMIT, f"{what}[{i}] must be a non-negative integer or an expression,"
                  f" got {x!r}", where)
            out.append(Lit(x))
    return tuple(out)


def _a(kind: Kind) -> str:
    """``a send``, ``an alloc``: the kind with its article."""
    return f"an {kind}" if kind.value[0] in "aeiou" else f"a {kind}"


def _counts(v: Any, what: str, where: str) -> tuple[int, ...]:
    _want(isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < INT_LIMIT
                                      for x in v),
          f"{what} must be a list of non-negative integers (one per group member, in member order), got {v!r}",
          where)
    return tuple(v)


# ---------------------------------------------------------------- the fast path
# ``_op`` above is the reference: it checks an op field by field and names
# the field in every message.  Building those messages eagerly and checking
# one field per call dominated the load time of large schedules, so
# ``_load_ops`` first tries a fast path on each op: the same checks, in line,
# on exact types only (``type(v) is int``: never a bool or an int subclass),
# with the op's metadata and access lists looked up in caches of raw values
# already checked.  Whenever anything is unusual (a missing or mistyped
# field, a value not seen before that fails its check, any exception at all)
# the fast path declines and ``_op`` handles the op: it raises the exact
# error, or builds the op.  So the fast path only ever decides the easy case
# "this op is fine", and builds the very objects ``_op`` would.
#
# The fast path also runs validate's per-op checks (validate._check_op) on
# the op it built; when every op passes them, ``validate`` is told so and
# skips its own pass over the ops.  Otherwise validate checks every op as
# usual, after the whole file is read, so errors come in the same order.


class _Decline(Exception):
    """The fast path leaves this op to ``_op``.  (Raised as a new instance each
    time: re-raising one instance would chain up its tracebacks.)"""


class _Missing:
    __slots__ = ()


_MISSING: Any = _Missing()
_STR_T = frozenset({str})
_VALUE_T = frozenset({str, type(None)})
_INT_T = frozenset({int})
_P2P_PEER = {Kind.SEND: "to", Kind.RECV: "from"}
_COLL_KINDS = frozenset(k for k in Kind if k.is_collective)

_AccessCache = dict[tuple[tuple[Any, Any], ...], tuple[tuple[Access, ...], bool]]


def op_checker(ranks: list[int], groups: tuple[tuple[str, tuple[int, ...]], ...], buffers: dict[str, Buffer],
               src: str, recorded: dict[tuple[int, str], Op]) -> Callable[[Op], bool]:
    """A predicate: does validate's per-op check pass an op ``_op`` built?  It
    registers the op's record in ``recorded``, as validate would."""
    rank_set = set(ranks)
    context: list[Schedule] = []

    def passes(op: Op) -> bool:
        if not context:
            context.append(Schedule(name="-", ranks=tuple(ranks), groups=groups, buffers=tuple(buffers.values()),
                                    ops=(), source=src))
        try:
            check_op(context[0], op.id, op, rank_set, recorded)
        except ScheduleError:
            return False
        return True

    return passes


def op_template(op: Op, group_map: dict[str, tuple[int, ...]]
                ) -> tuple[dict[str, Any], tuple[int, ...] | None, int | None]:
    """What the loaders copy an op's alike ops from: its fields, id, rank and
    index among them (see Op: copied first, then overwritten); and what its checks depend on the
    rank by: the group's members (a collective) and the peer (point to point,
    put, wait_signal)."""
    return (lean_fields(op.__dict__), *rank_dependence(op, group_map))


def rank_dependence(op: Op, group_map: dict[str, tuple[int, ...]]) -> tuple[tuple[int, ...] | None, int | None]:
    """What an op's checks depend on the rank by: the members of its group
    (a collective; the rank must be one) and its peer (point to point, put,
    wait_signal; the rank must not be it)."""
    k = op.kind
    members = group_map.get(op.group or "") if k.is_collective else None
    peer_of = op.peer if (k.is_p2p or k is Kind.PUT or k is Kind.WAIT_SIGNAL) else None
    return members, peer_of


#: The fields of an op that have a default other than a factory: the class attribute stands for them.
_CLASS_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Op) if f.default is not dataclasses.MISSING}


def lean_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` without the entries that hold their class default itself
    (None, the empty tuple of no reads): an op copied from the rest reads the
    same attributes, with fewer entries to copy and keep (see Op).  Told by
    identity, so a value merely equal to its default stays."""
    get = _CLASS_DEFAULTS.get
    return {k: v for k, v in fields.items() if v is not get(k, _NO_DEFAULT)}


_NO_DEFAULT = object()


def op_shape_key(op: Op) -> tuple[Any, ...]:
    """Ops alike but for their id, rank and index have equal keys: told alike
    by their fields, the access lists, metadata and choice by identity (the
    loaders share those objects between alike ops; objects not shared only
    miss a cache)."""
    return (op.peer, op.stream, op.kind, op.name, op.channel, op.group, op.event, op.root, op.size, op.dtype,
            id(op.reads), id(op.writes), id(op.meta), op.comm, op.p2p, op.batch, op.signal, op.counts,
            op.recv_counts, op.completion, op.target, op.of, op.buffer, op.reuses, id(op.choice))


def _load_ops(ranked: list[tuple[int, Any]], buffers: dict[str, Buffer], src: str,
              groups: tuple[tuple[str, tuple[int, ...]], ...], ranks: list[int],
              version: int = FORMAT_VERSION) -> tuple[list[Op], PreChecked | None]:
    """The ops of every rank, in order; and, when every op passed validate's
    per-op checks on the way, what validate needs to skip them."""
    from .columnar import ColumnOps, Tables

    if ranked and all(type(lst) is ColumnOps for _, lst in ranked):  # a compact file of version 2
        tables: Tables = ranked[0][1].tables
        return tables.build(ranked, buffers, src, groups, ranks, version)
    ops: list[Op] = []
    append = ops.append
    recorded: dict[tuple[int, str], Op] = {}
    waits: list[Op] = []
    checked = True  # every op so far passed validate's per-op checks
    meta_cache: dict[tuple[Any, ...], tuple[Meta, bool]] = {}
    reads_cache: _AccessCache = {}
    writes_cache: _AccessCache = {}
    group_map, rank_set = dict(groups), set(ranks)
    # the fast path takes version-1 fields only: an op with any v2 field goes to _op
    kinds, allowed, peer_key, collectives = _KINDS, _V1_ALLOWED, _P2P_PEER, _COLL_KINDS
    compute, record, wait, broadcast, barrier = Kind.COMPUTE, Kind.RECORD, Kind.WAIT, Kind.BROADCAST, Kind.BARRIER
    missing = _MISSING
    str_t, value_t, int_t, op_new = _STR_T, _VALUE_T, _INT_T, _op_new

    reads_one: dict[tuple[str, str | None], tuple[tuple[Access, ...], bool]] = {}
    writes_one: dict[tuple[str, str | None], tuple[tuple[Access, ...], bool]] = {}
    one_access: dict[tuple[str, str | None], Access] = {}  # (region text, value) -> Access

    def one(item: tuple[str, str | None], writes: bool) -> tuple[tuple[Access, ...], bool]:
        """What _accesses does with a map of one region (of exact types), without
        its messages; and whether validate passes it.  Raises to decline."""
        text, value = item
        if value == "" or (value is None and writes):
            raise _Decline
        acc = one_access.get(item)
        if acc is None:
            acc = _op_new(Access)
            f = acc.__dict__
            f["region"] = resolve_region(text, buffers, "")
            f["value"] = value
            one_access[item] = acc
        return (acc,), region_fits(buffers, acc.region)  # (accesses_are_fine of one access)

    def accesses(v: dict[Any, Any], cache: _AccessCache, writes: bool) -> tuple[tuple[Access, ...], bool]:
        """The accesses of a map of several regions and whether validate passes
        them; raises to decline."""
        if not (str_t.issuperset(map(type, v)) and value_t.issuperset(map(type, v.values()))):
            raise _Decline
        key = tuple(v.items())
        got = cache.get(key)
        if got is None:
            accs = _accesses(v, "writes" if writes else "reads", buffers, "", writes)
            got = cache[key] = (accs, accesses_are_fine(buffers, accs, writes))
        return got

    def access_map(v: Any, one_cache: dict[tuple[str, str | None], tuple[tuple[Access, ...], bool]],
                   cache: _AccessCache, writes: bool) -> tuple[tuple[Access, ...], bool]:
        """The accesses of an op's "reads" or "writes" map and whether validate
        passes them, looked up by their raw items (most maps hold one region);
        raises to decline."""
        if v is missing:
            return (), True
        if type(v) is not dict:
            raise _Decline
        if len(v) == 1:
            (item,) = v.items()
            if type(item[0]) is not str or not (type(item[1]) is str or (item[1] is None and not writes)):
                raise _Decline
            got = one_cache.get(item)
            if got is None:
                got = one_cache[item] = one(item, writes)
            return got
        return accesses(v, cache, writes) if v else ((), True)

    # ops read from one shared document object (identical lines of a canonical
    # file, see _parse_canonical): built once, copied for the other ranks
    # (with what the copies need beyond the fields, or None: see the copy below)
    templates: list[tuple[dict[str, Any], tuple[bool, tuple[int, ...] | None, int | None, Kind,
                                                frozenset[str]] | None] | None] = []
    # Schedule.features, tracked on the way when every op list is shared (a
    # few lookups per distinct op, instead of a pass over all ops later)
    track = all(type(lst) is SharedOps for _, lst in ranked)
    features: set[str] = set()

    passes_check_op = op_checker(ranks, groups, buffers, src, recorded)

    columns: EventColumns | None = None  # per document number, for the ranks copied in bulk
    later: LaterRecords = []  # the records of those ranks
    fresh: list[tuple[int, Kind | None, dict[str, Any] | None, bool]] = []  # templates not in columns yet

    for rank, lst in ranked:
        share = type(lst) is SharedOps and hasattr(lst, "numbers")  # (made by SharedOps.numbered)
        base = len(ops)
        bulk = share  # a shared rank: its new documents built here, then every op copied in bulk
        items: Iterable[tuple[int, Any]] = enumerate(lst)
        numbers = lst.numbers if share else []
        if share:
            if len(templates) < lst.n_docs:
                templates += [None] * (lst.n_docs - len(templates))
            # the first op of each document no earlier op showed, in issue order
            first_new: dict[int, int] = {}
            for i, t in enumerate([templates[j] for j in numbers]):
                if t is None:
                    first_new.setdefault(numbers[i], i)
            items = [(i, lst[i]) for i in first_new.values()]
        made: list[Op] = []  # (bulk) the ops built here: they take their places among the copies
        for index, d in items:
            op_id = base + index
            op: Op | None = None
            fine = False
            tf: dict[str, Any] | None = None
            try:
                if type(d) is not dict:
                    raise _Decline
                get = d.get
                kname = get("op")
                if type(kname) is not str:
                    raise _Decline
                kind = kinds[kname]
                if not allowed[kind].issuperset(d):
                    raise _Decline
                stream = get("stream")
                name = get("name", "")
                if type(stream) is not str or not stream or type(name) is not str:
                    raise _Decline
                fine = True
                peer = group = event = root = size = dtype = rkey = None
                channel = "0"
                if kind is compute:
                    pass
                elif kind is record or kind is wait:
                    event = get("event")
                    if type(event) is not str or not event:
                        raise _Decline
                    if kind is record:
                        rkey = (rank, event)
                elif kind in collectives:
                    group = get("group")
                    if type(group) is not str or not group:
                        raise _Decline
                    members = group_map.get(group)
                    fine = members is not None and rank in members
                    if kind is broadcast:
                        root = get("root", missing)
                        if type(root) is not int:
                            raise _Decline
                        fine = fine and root in members  # type: ignore[operator]
                    elif kind is barrier and ("reads" in d or "writes" in d):
                        raise _Decline
                else:  # send, recv
                    peer = get(peer_key[kind])
                    if type(peer) is not int:
                        raise _Decline
                    fine = peer in rank_set and peer != rank
                    channel = get("channel", "0")
                    if type(channel) is not str:
                        if type(channel) is not int:
                            raise _Decline
                        channel = str(channel)
                    if not channel:
                        raise _Decline
                if kind is not compute and kind is not record and kind is not wait:
                    size = get("size", missing)
                    if size is missing:
                        size = None
                    elif type(size) is not int or size >= INT_LIMIT:
                        raise _Decline
                    elif size < 0:
                        fine = False
                    dtype = get("dtype", missing)
                    if dtype is missing:
                        dtype = None
                    elif type(dtype) is not str or not dtype:
                        raise _Decline
                # the accesses: looked up by their raw items; most ops have one region per map
                reads, ok = access_map(get("reads", missing), reads_one, reads_cache, False)
                writes, ok2 = access_map(get("writes", missing), writes_one, writes_cache, True)
                fine = fine and ok and ok2
                # the metadata: looked up by its raw values, once their types are
                # known exactly (True == 1 and 1.0 == 1, but they are errors)
                phase = get("phase")
                step = get("step", missing)
                layer = get("layer", missing)
                mb = get("mb", missing)
                tokens = get("tokens", missing)
                sp = get("sp", missing)
                sample = get("sample", missing)
                seqs = get("seqs", missing)
                if not ((phase is None or type(phase) is str) and (step is missing or type(step) is int)
                        and (layer is missing or type(layer) is int) and (mb is missing or type(mb) is int)
                        and (tokens is missing or type(tokens) is int or type(tokens) is str)
                        and (sp is missing or type(sp) is str) and (sample is missing or type(sample) is bool)):
                    raise _Decline
                if type(seqs) is list:
                    if len(seqs) == 1 and type(seqs[0]) is int:
                        seqs = seqs[0]  # [s] and s give the same Meta
                    else:
                        seqs = tuple(seqs)  # hashable; a tuple in the document itself is an error
                        if not int_t.issuperset(map(type, seqs)):
                            raise _Decline
                elif seqs is not missing and type(seqs) is not int:
                    raise _Decline
                mkey = (phase, step, layer, mb, tokens, sp, sample, seqs)
                got_meta = meta_cache.get(mkey)
                if got_meta is None:
                    m = _meta(d, "")
                    got_meta = meta_cache[mkey] = (m, meta_is_fine(m))
                meta, ok = got_meta
                fine = fine and ok
                # what Op(...) does, without the keyword call and the frozen __setattr__ per field: the
                # fields that differ from their class defaults (the v2 ones are None: the defaults stand
                # for them, see Op), which are also the template of the op's copies
                tf = {"id": op_id, "rank": rank, "index": index, "stream": stream, "kind": kind, "meta": meta}
                if name:
                    tf["name"] = name
                if channel != "0":
                    tf["channel"] = channel
                if reads:
                    tf["reads"] = reads
                if writes:
                    tf["writes"] = writes
                if peer is not None:
                    tf["peer"] = peer
                if group is not None:
                    tf["group"] = group
                if event is not None:
                    tf["event"] = event
                if root is not None:
                    tf["root"] = root
                if size is not None:
                    tf["size"] = size
                if dtype is not None:
                    tf["dtype"] = dtype
                op = op_new(Op)
                op.__dict__.update(tf)
                if not bulk:  # (in bulk, the rank's records and waits are found below)
                    if rkey is not None:  # a record (recorded again: a wait binds to the latest)
                        recorded.setdefault(rkey, op)
                    elif kind is wait:
                        waits.append(op)
            except Exception:  # _Decline, or anything unexpected: _op reports it
                op = None
            if op is None:  # outside the handler, so that _op's error has no context
                tf = None
                op = _op(d, rank, index, op_id, buffers, src, version)
                fine = passes_check_op(op)
                if op.kind is wait and not bulk:
                    waits.append(op)
            checked = checked and fine
            if not bulk:
                append(op)
                continue
            # a template: its fields, and what its copies need beyond them, or None (fine on every rank,
            # no event, no features; what does not depend on the rank is done here, for every copy)
            of = op_features(op) if track else frozenset()
            features.update(of)
            if tf is not None:  # built above: its fields are the template already
                fields = tf
                members, peer_of = rank_dependence(op, group_map)
            else:
                fields, members, peer_of = op_template(op, group_map)
            k = op.kind
            dependent = members is not None or peer_of is not None
            templates[numbers[index]] = (fields, None if fine and not dependent and not of and k is not record
                                         and k is not wait else (fine, members, peer_of, k, of))
            if dependent or k is record or k is wait:  # (the columns' defaults stand for the others)
                fresh.append((numbers[index], k, fields, dependent))
            made.append(op)
        if not bulk:
            continue
        # every op of the rank copied from its document's template, then the rest in bulk (see rankcopy)
        copy_rank(ops, [t[0] for t in [templates[j] for j in numbers]], rank)  # type: ignore[index]
        for op in made:  # the ops built above stand in their places (validate's table may hold them)
            ops[op.id] = op
        if columns is None:
            columns = EventColumns(len(templates))
        columns.add(fresh)
        fresh.clear()
        for j in columns.rank_facts(numbers, rank, base, ops, features, later, waits):
            x = templates[j][1]  # type: ignore[index]
            assert x is not None
            if (x[1] is not None and rank not in x[1]) or x[2] == rank:
                checked = False
    if waits:  # validate checks these against the records of every rank (see rankcopy)
        add_records(later, ops, recorded)
    return ops, ((recorded, waits, frozenset(features) if track else None) if checked else None)


class SharedOps(list[Any]):
    """A rank's op documents in which one object may stand for several ops
    (identical lines of a file): the loader builds each object's op once.
    ``numbers`` gives each op's document number: the ``n_docs`` documents of
    one file are numbered once, for all of its ranks (the loader finds a
    document's template by its number, not by a dict lookup per op)."""

    numbers: list[int]
    n_docs: int

    @classmethod
    def numbered(cls, docs: list[Any], numbers: list[int]) -> SharedOps:
        """The ops whose documents are ``docs[j]`` for each ``j`` of ``numbers``."""
        out = cls(map(docs.__getitem__, numbers))
        out.numbers = numbers
        out.n_docs = len(docs)
        return out


def _buffers(v: Any, src: str) -> dict[str, Buffer]:
    _want(isinstance(v, dict), "\"buffers\" must map buffer names to axis lists", src,
          "e.g. \"buffers\": {\"kv\": [\"layer\", \"token\"]} or {\"kv\": {\"layer\": 4, \"token\": 1024}}")
    out: dict[str, Buffer] = {}
    for name, axes in v.items():
        where = f"{src}: buffer {name!r}"
        _want(bool(_IDENT.fullmatch(name)), "a buffer name must be an identifier (letters, digits, _ . -,"
              " not starting with a digit or -)", where)
        if isinstance(axes, list):
            for a in axes:
                _want(isinstance(a, str) and bool(_IDENT.fullmatch(a)), f"axis name {a!r} is not an identifier",
                      where)
            _want(len(set(axes)) == len(axes), "an axis is listed twice", where)
            out[name] = Buffer(name, tuple((a, None) for a in axes))
        elif isinstance(axes, dict):
            ax: list[tuple[str, int | None]] = []
            for a, ext in axes.items():
                _want(bool(_IDENT.fullmatch(a)), f"axis name {a!r} is not an identifier", where)
                if ext is not None:
                    ext = _int(ext, f"extent of axis {a!r}", where)
                    _want(ext > 0, f"extent of axis {a!r} must be positive", where)
                ax.append((a, ext))
            out[name] = Buffer(name, tuple(ax))
        else:
            raise ScheduleError("axes must be a list of names or an object of name: extent", where)
    return out


def schedule_from_dict(doc: Any, source: str = "<schedule>") -> Schedule:
    """Build and validate a schedule from a parsed JSON document."""
    with gc_paused():
        return _schedule_from_dict(doc, source)


def _schedule_from_dict(doc: Any, source: str) -> Schedule:
    src = source
    _want(isinstance(doc, dict), "a schedule file holds one JSON object", src)
    for key in doc:
        if key not in TOP_KEYS:
            raise ScheduleError(f"unknown top-level field {key!r}", src, suggest(key, TOP_KEYS))
    _want("syncproof" in doc, "missing \"syncproof\": the format version", src,
          f"add \"syncproof\": {FORMAT_VERSION}")
    version = doc["syncproof"]
    _want(isinstance(version, int) and not isinstance(version, bool) and version in READS_VERSIONS,
          f"format version {doc['syncproof']!r} is not supported (this syncproof reads versions"
          f" {' and '.join(map(str, READS_VERSIONS))})", src)
    name = doc.get("name", Path(source).stem if source != "<schedule>" else "schedule")
    name = _str(name, "name", src)
    description = doc.get("description", "")
    _want(isinstance(description, str), "description must be a string", src)
    # v1 files without "p2p" are read with the v2 default too: v1's implied
    # "rendezvous" claimed a blocking send that NCCL does not have (docs/format.md)
    p2p = doc.get("p2p", "any")
    _want(isinstance(p2p, str), "p2p must be \"any\", \"rendezvous\" or \"eager\"", src)
    progress = doc.get("progress", "any")
    _want(isinstance(progress, str), "progress must be \"any\" or \"concurrent\"", src)
    _want(version >= 2 or "progress" not in doc, "field 'progress' needs format version 2", src,
          "write \"syncproof\": 2 at the top")
    groups_raw = doc.get("groups", {})
    _want(isinstance(groups_raw, dict), "\"groups\" must map group names to rank lists", src,
          "e.g. \"groups\": {\"tp\": [0, 1]}")
    for g, mem in groups_raw.items():
        _want(isinstance(mem, list), f"group {g!r} must be a list of ranks, got {mem!r}", src,
              f"write \"{g}\": [{mem}]" if isinstance(mem, int) else "")
    groups = tuple(
        (g, tuple(_int(m, f"member of group {g!r}", src) for m in mem)) for g, mem in groups_raw.items()
    )
    buffers = _buffers(doc.get("buffers", {}), src)
    selected = doc.get("selected", "")
    _want(isinstance(selected, str), "selected must be a string: the assignment the schedule was selected by",
          src)
    choices: tuple[Choice, ...] = ()
    if "choices" in doc:
        _want(version >= 2, "field 'choices' needs format version 2", src, "write \"syncproof\": 2 at the top")
        choices = choices_from_dict(doc["choices"], dict(groups), src)
    _want("ranks" in doc, "missing \"ranks\": the ops of each rank in issue order", src,
          "e.g. \"ranks\": {\"0\": [...], \"1\": [...]}")
    ranks_raw = doc["ranks"]
    _want(isinstance(ranks_raw, dict), "\"ranks\" must map rank numbers to op lists", src)
    ranks: list[int] = []
    seen: dict[int, str] = {}
    for rk, lst in ranks_raw.items():
        _want(isinstance(rk, str) and rk.isascii() and rk.isdigit() and len(rk) <= MAX_RANK_DIGITS,
              f"rank key {rk!r} must be a non-negative integer (ASCII digits, at most {MAX_RANK_DIGITS})", src)
        rank = int(rk)
        _want(isinstance(lst, list), f"rank {rank}: ops must be a list", src)
        _want(rank not in seen, f"rank {rank} is listed twice in \"ranks\" (as {seen.get(rank)!r} and {rk!r})",
              src)
        seen[rank] = rk
        ranks.append(rank)
    ops, prechecked = _load_ops(sorted(zip(ranks, ranks_raw.values(), strict=True)), buffers, src, groups, ranks,
                                version)
    init: list[InitValue] = []
    init_raw = doc.get("init", {})
    if isinstance(init_raw, dict):
        for reg, val in init_raw.items():
            w = f"{src}: init {reg!r}"
            init.append(InitValue(resolve_region(reg, buffers, w), _str(val, "init value", w)))
    elif isinstance(init_raw, list):
        for i, item in enumerate(init_raw):
            w = f"{src}: init entry {i}"
            _want(isinstance(item, dict) and "region" in item and "value" in item,
                  "an init entry is {\"region\": ..., \"value\": ..., \"ranks\": [...]}", w)
            for k in item:
                _want(k in ("region", "value", "ranks"), f"unknown field {k!r}", w)
            rr = item.get("ranks")
            _want(rr is None or isinstance(rr, list), f"\"ranks\" must be a list of ranks, got {rr!r}", w)
            rtuple = None if rr is None else tuple(_int(r, "rank", w) for r in rr)
            init.append(InitValue(resolve_region(item["region"], buffers, w),
                                  _str(item["value"], "init value", w), rtuple))
    else:
        raise ScheduleError("\"init\" must map regions to values or be a list of entries", src)
    sched = Schedule(
        name=name, ranks=tuple(sorted(ranks)), groups=groups,
        buffers=tuple(buffers.values()), ops=tuple(ops), init=tuple(init),
        p2p=p2p, description=description, source=source, progress=progress, choices=choices,
        selected=selected,
    )
    if prechecked is not None and prechecked[2] is not None:
        sched.__dict__["features"] = prechecked[2]  # the cached property, as tracked by _load_ops
    # a selection (a counterexample's schedule) may keep a wait whose record a guard dropped: a no-op
    validate(sched, prechecked, selected=bool(selected) and not choices)
    return sched


def loads(text: str | bytes, source: str = "<string>") -> Schedule:
    """A schedule from the text of a file: JSON, or the compact form (told
    apart by its first bytes, see :mod:`syncproof.ir.compact`)."""
    from .. import apiguard
    from .compact import MAGIC, schedule_from_compact

    apiguard.instance(text, (str, bytes), "loads", "text", "schedule text (str)")
    apiguard.text(source, "loads", "source")

    if isinstance(text, bytes) and text.startswith(MAGIC):
        return schedule_from_compact(text, source)
    with gc_paused():  # one pause for the parse and the build: no collection walks the parsed documents between
        return schedule_from_dict(parse_schedule_json(text, source), source)


def load(path: str | Path) -> Schedule:
    """A schedule file, JSON or compact, read through :func:`syncproof.inputs.read_bytes`
    (regular files only, of bounded size)."""
    from .. import apiguard

    path = apiguard.path(path, "load")
    data = read_bytes(path, "a syncproof schedule (JSON or compact)")
    return loads(data, str(path))


# ---------------------------------------------------------------- saving
def _acc_dict(accs: tuple[Access, ...]) -> dict[str, str | None]:
    return {str(a.region): a.value for a in accs}


def op_to_dict(op: Op) -> dict[str, Any]:
    d: dict[str, Any] = {"op": op.kind.value, "stream": op.stream}
    if op.name:
        d["name"] = op.name
    if op.kind is Kind.SEND or op.kind is Kind.PUT:
        d["to"] = op.peer
    if op.kind is Kind.RECV or op.kind is Kind.WAIT_SIGNAL:
        d["from"] = op.peer
    if op.kind.is_p2p and op.channel != "0":
        d["channel"] = op.channel
    if op.group is not None:
        d["group"] = op.group
    if op.root is not None:
        d["root"] = op.root
    if op.event is not None:
        d["event"] = op.event
    if op.size is not None:
        d["size"] = op.size
    if op.dtype is not None:
        d["dtype"] = op.dtype
    if op.reads:
        d["reads"] = _acc_dict(op.reads)
    if op.writes:
        d["writes"] = _acc_dict(op.writes)
    for key in ("comm", "p2p", "batch", "signal", "completion", "target", "of", "buffer", "reuses"):
        v = getattr(op, key)
        if v is not None:
            d[key] = v
    if op.counts is not None:
        d["counts"] = list(op.counts)
    if op.recv_counts is not None:
        d["recv_counts"] = list(op.recv_counts)
    oc = op.choice
    if oc is not None:
        if oc.when is not None:
            d["when"] = str(oc.when)
        if oc.size is not None:
            d["size"] = str(oc.size)
        if oc.counts is not None:
            d["counts"] = [_expr_out(e) for e in oc.counts]
        if oc.recv_counts is not None:
            d["recv_counts"] = [_expr_out(e) for e in oc.recv_counts]
    m = op.meta
    if m.phase is not None:
        d["phase"] = m.phase
    if m.step is not None:
        d["step"] = m.step
    if m.layer is not None:
        d["layer"] = m.layer
    if m.mb is not None:
        d["mb"] = m.mb
    if m.seqs:
        d["seqs"] = list(m.seqs)
    if m.tokens is not None:
        d["tokens"] = f"{m.tokens.lo}:{m.tokens.hi}"
    if m.sp is not None:
        d["sp"] = f"{m.sp[0]}/{m.sp[1]}"
    if m.sample:
        d["sample"] = True
    return d


def _expr_out(e: Expr) -> int | str:
    return e.value if isinstance(e, Lit) and type(e.value) is int else str(e)


def schedule_to_dict(s: Schedule) -> dict[str, Any]:
    doc: dict[str, Any] = {"syncproof": FORMAT_VERSION, "name": s.name}
    if s.description:
        doc["description"] = s.description
    if s.p2p != "any":
        doc["p2p"] = s.p2p
    if s.progress != "any":
        doc["progress"] = s.progress
    doc["groups"] = {g: list(m) for g, m in s.groups}
    doc["buffers"] = {
        b.name: ({a: e for a, e in b.axes} if any(e is not None for _, e in b.axes) else [a for a, _ in b.axes])
        for b in s.buffers
    }
    if s.init:
        if all(i.ranks is None for i in s.init) and len({str(i.region) for i in s.init}) == len(s.init):
            doc["init"] = {str(i.region): i.value for i in s.init}
        else:
            doc["init"] = [
                {"region": str(i.region), "value": i.value, **({"ranks": list(i.ranks)} if i.ranks is not None else {})}
                for i in s.init
            ]
    if s.choices:
        doc["choices"] = {c.name: choice_to_dict(c) for c in s.choices}
    if s.selected:
        doc["selected"] = s.selected
    doc["ranks"] = {str(r): [op_to_dict(op) for op in s.by_rank[r]] for r in s.ranks}
    return doc


def op_texts(s: Schedule) -> Iterator[tuple[int, tuple[str, ...]]]:
    """Per rank, in order: the rank and the JSON text of each of its ops (as
    in :func:`dumps`).  Ops alike but for their id, rank and index (the ranks
    of a tensor-parallel group) are written once: they are told alike by
    their fields, the access lists, metadata and choice by identity (the
    loader shares those objects between alike ops; objects not shared only
    miss the cache)."""
    cache: dict[tuple[Any, ...], str] = {}
    dump = json.dumps
    with gc_paused():
        for r in s.ranks:
            out: list[str] = []
            for op in s.by_rank[r]:
                key = op_shape_key(op)
                text = cache.get(key)
                if text is None:
                    text = cache[key] = dump(op_to_dict(op))
                out.append(text)
            yield r, tuple(out)


def dumps(s: Schedule) -> str:
    """Canonical text: one top-level field per line and one op per line, so
    files diff well and stay readable."""
    import dataclasses

    from .. import apiguard

    apiguard.instance(s, Schedule, "dumps", "s", "a Schedule")

    doc = schedule_to_dict(dataclasses.replace(s, ops=()))
    doc.pop("ranks")
    lines = ["{"]
    for key, val in doc.items():
        lines.append(f"  {json.dumps(key)}: {json.dumps(val)},")
    lines.append('  "ranks": {')
    n_ranks = len(s.ranks)
    for ri, (rk, texts) in enumerate(op_texts(s)):
        lines.append(f'    "{rk}": [')
        if texts:
            lines.extend(["      " + t + "," for t in texts[:-1]])
            lines.append("      " + texts[-1])
        lines.append("    ]" + ("," if ri < n_ranks - 1 else ""))
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def save(s: Schedule, path: str | Path) -> None:
    from .. import apiguard

    apiguard.instance(s, Schedule, "save", "s", "a Schedule")
    path = apiguard.path(path, "save")
    Path(path).write_text(dumps(s), encoding="utf-8")
