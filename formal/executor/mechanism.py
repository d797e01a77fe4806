"""The runtime mechanism of DESIGN.md §2b, operationally: when each event of
each op may happen.

Every op has a start event and an end event.  Event codes: ``o`` is the start
of op ``o`` and ``n + o`` its end.  The mechanism:

- **the host** thread of each rank issues its ops in issue order.  Device
  work is issued asynchronously; work on the ``"host"`` stream (a host
  compute, a gloo collective, a host ``sync``, the allocator's calls) the host
  runs itself, synchronously: it starts when the host reaches it, after the
  previous host work ended, and the host issues nothing more until it ended,
  so every op issued after it starts after it ended.  A ``sync`` ends only
  after what it waits for ended: its event's latest record before it
  (``event.synchronize()``), the last unit issued on its ``target`` stream
  before it (``stream.synchronize()``), the latest op named ``of`` before it
  (``work.wait()``, ``.item()``), or the last unit of every device stream
  (``torch.cuda.synchronize()``);
- **the caching allocator**: ``alloc(b, reuses=x)`` gives b the block x held
  (memory is modelled per block, see the model); ``free(x)`` returns it to the
  pool of its allocation stream, and after ``record_stream(x, s)`` the block
  is handed out again only once the work issued on s before the free ended:
  the reusing alloc (host work) ends after it;
- **streams**: each (rank, stream) is a FIFO of *units*; a unit is one op, or
  a whole group call (ops of one rank with one ``batch`` id, consecutive in
  issue order, on one stream).  A unit's ops start only once every op of the
  stream's previous unit has ended;
- **group calls**: the parts of one start together and are unordered among
  themselves: no part ends before every part has started;
- **communicators**: each (rank, communicator) is a queue of the units that
  use the communicator, in issue order whatever their stream (NCCL
  ``enqueue.cc``): a unit starts only once the previous unit of each of its
  communicators on its rank has ended.  Comm ops on the host stream are not
  NCCL (gloo, CPU collectives): they are in no communicator or progress
  queue (the host orders them);
- **progress**: *serial* (NCCL does not promise that two communicators'
  kernels progress side by side): a communication unit also waits for the
  previous communication unit issued on its rank, whatever its communicator;
  *concurrent*: it does not;
- **events**: each event holds the state its latest record captured; a record
  issued later overwrites it.  A wait binds to the state at its issue (the
  latest record issued before it on its rank) and ends only after that
  record has ended (so the next op on the wait's stream starts after it); a
  wait with no earlier record does nothing (CUDA ``cudaStreamWaitEvent``:
  "the most recently captured state at the time of the call");
- **point to point**: a FIFO per (communicator, source, destination).  A recv
  ends only after its send has started (the data exist).  With message
  capacity 0 a send ends only after its recv has started (nowhere to put the
  data: an NCCL send larger than its connection buffer, 4 MiB by default,
  waits for the recv; gloo blocks even at 16 B); with unbounded capacity the
  message is buffered and the send may end first;
- **collectives**: all_reduce, all_gather, reduce_scatter, all_to_all and
  barrier: no member ends before every member has started.  broadcast and
  scatter are a pipeline from the root: a member ends only after the root has
  started; at capacity 0 also nobody ends before everyone has started.
  reduce and gather, mirrored: the root ends only after every member has
  started; at capacity 0, all pairs;
- **one-sided** (NVSHMEM put with signal, NCCL PutSignal/WaitSignal): a put
  writes the target rank's memory (see the model), with no wait on the
  target; a wait_signal ends only after its bound put has ended;
- unmatched sends, recvs, collectives and wait_signals never end.

A *setting* fixes the two switches: message capacity (per message: 0 or
unbounded) and progress (serial or concurrent).  ``deadlock`` is explored at
capacity 0, except messages the schedule makes eager, and serial progress
unless the schedule says ``"progress": "concurrent"``; ``dataflow``, ``race``
and ``phase`` at unbounded capacity, except messages made rendezvous, and
concurrent progress (v2 contract, "Operational executor").

Every condition is "some event has happened", and events only accumulate, so
an enabled event stays enabled until it fires: every maximal run ends the
same ops (see :func:`fire_all`).
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import attrgetter
from typing import Any, TypeAlias

import numpy as np

from ..ir import HOST_STREAM, Kind, Op, Schedule
from .matching import COLLECTIVE_KINDS, COMM_KINDS, Matching

DEADLOCK = "deadlock"
DATA = "data"
SETTINGS = (DEADLOCK, DATA)

Codes: TypeAlias = "array[int]"  # event codes, typecode "q"

# reasons, for the messages that say why an event is not enabled
STREAM, COMM, PROGRESS, EVENT, MESSAGE, BLOCKING, COLLECTIVE, BATCH, SIGNAL, HOST, SYNC, REUSE = range(12)

_ALL_PAIRS = frozenset({Kind.ALL_REDUCE, Kind.ALL_GATHER, Kind.REDUCE_SCATTER, Kind.ALL_TO_ALL, Kind.BARRIER})
_FROM_ROOT = frozenset({Kind.BROADCAST, Kind.SCATTER})
_TO_ROOT = frozenset({Kind.REDUCE, Kind.GATHER})

_batch_of = attrgetter("batch")
_kind_of = attrgetter("kind")
_id_of = attrgetter("id")


def setting_for(prop: str) -> str:
    """The setting a property is explored (and its counterexample replayed) under."""
    return DEADLOCK if prop == "deadlock" else DATA


def message_mode(schedule: Schedule, members: Iterable[Op]) -> str:
    """``"rendezvous"``, ``"eager"`` or ``"any"`` for one message (a p2p pair
    or a rooted collective instance): an override on any of its ops wins;
    overrides that contradict each other (eager and rendezvous) assert
    nothing, so the message may block or not ("any"); else the schedule's mode."""
    modes = {op.p2p for op in members if op.p2p is not None}
    if len(modes) > 1:
        return "any"
    return modes.pop() if modes else schedule.p2p


def blocks(mode: str, setting: str) -> bool:
    """Does a message of ``mode`` have capacity 0 under ``setting``?"""
    return mode != "eager" if setting == DEADLOCK else mode == "rendezvous"


def serial_progress(schedule: Schedule, setting: str) -> bool:
    return setting == DEADLOCK and schedule.progress != "concurrent"


# ------------------------------------------------------------------ units
def units_of(seq: Sequence[Op]) -> list[tuple[int, ...]]:
    """``seq`` (ops of one rank in issue order) cut into units: each op
    alone, or a run of consecutive ops with one batch id."""
    out: list[tuple[int, ...]] = []
    cur: list[int] = []
    cur_batch: str | None = None
    for op in seq:
        b = op.batch
        if b is not None and b == cur_batch:
            cur.append(op.id)
            continue
        if cur:
            out.append(tuple(cur))
        cur = [op.id]
        cur_batch = b
    if cur:
        out.append(tuple(cur))
    return out


# --------------------------------------------------------------- enabling
@dataclass
class Enabling:
    """When events may happen under one setting.

    - ``pairs[reason] = (before, after)``: event ``after[i]`` needs event
      ``before[i]`` to have happened;
    - barrier ``k``: each event of ``bar_deps[k]`` needs every event of
      ``bar_members[k]`` to have happened;
    - ``never``: end events that never happen;
    - implicitly, the end of an op needs its start.
    """

    n: int
    setting: str
    pairs: dict[int, tuple[Codes, Codes]]
    bar_members: list[tuple[int, ...]]
    bar_deps: list[tuple[int, ...]]
    bar_why: list[int]
    never: list[int]
    _index: Index | None = field(default=None, repr=False)

    def index(self) -> Index:
        if self._index is None:
            self._index = Index(self)
        return self._index


def _csr(keys: np.ndarray[Any, Any], vals: np.ndarray[Any, Any], size: int) -> tuple[Codes, Codes]:
    """Group ``vals`` by ``keys`` (in ``range(size)``): ``flat[offs[k]:offs[k+1]]``,
    in their order within a key."""
    flat = vals[np.argsort(keys, kind="stable")]
    offs = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=size), out=offs[1:])
    return array("q", offs.tobytes()), array("q", flat.tobytes())


def _np(codes: Codes) -> np.ndarray[Any, Any]:
    return np.frombuffer(codes, dtype=np.int64) if len(codes) else np.zeros(0, dtype=np.int64)


class Index:
    """Per-event views of an :class:`Enabling`: what each event waits for
    (with the reason) and what waits for it."""

    def __init__(self, en: Enabling) -> None:
        size = 2 * en.n
        before: Codes = array("q")
        after: Codes = array("q")
        whys: list[np.ndarray[Any, Any]] = []
        for reason, (b, a) in en.pairs.items():
            before.extend(b)
            after.extend(a)
            whys.append(np.full(len(b), reason, dtype=np.int64))
        why = np.concatenate(whys) if whys else np.zeros(0, dtype=np.int64)
        self.size = size
        nb, na = _np(before), _np(after)
        self.pred_offs, self.pred = _csr(na, nb, size)
        _, self.pred_why = _csr(na, why, size)
        self.succ_offs, self.succ = _csr(nb, na, size)
        bk: list[int] = []
        bd: list[int] = []
        mk: list[int] = []
        mb: list[int] = []
        for k, (mem, deps) in enumerate(zip(en.bar_members, en.bar_deps, strict=True)):
            bd.extend(deps)
            bk.extend(repeat(k, len(deps)))
            mk.extend(mem)
            mb.extend(repeat(k, len(mem)))
        self.bars_offs, self.bars = _csr(np.asarray(bd, dtype=np.int64), np.asarray(bk, dtype=np.int64), size)
        self.member_offs, self.member_of = _csr(np.asarray(mk, dtype=np.int64), np.asarray(mb, dtype=np.int64),
                                                size)
        self.never = set(en.never)
        self.en = en

    def preds(self, c: int) -> Codes:
        return self.pred[self.pred_offs[c]:self.pred_offs[c + 1]]

    def pred_reasons(self, c: int) -> list[tuple[int, int]]:
        lo, hi = self.pred_offs[c], self.pred_offs[c + 1]
        return list(zip(self.pred[lo:hi], self.pred_why[lo:hi], strict=True))

    def bars_of(self, c: int) -> Codes:
        return self.bars[self.bars_offs[c]:self.bars_offs[c + 1]]

    def needs(self) -> list[int]:
        """For each event, how many of its conditions are unmet at the start
        (its predecessors, its barriers and, for an end, its own start); a
        never-event gets one more that nothing meets."""
        n = self.en.n
        po = _np(self.pred_offs)
        bo = _np(self.bars_offs)
        need = np.diff(po) + np.diff(bo)
        need[n:] += 1
        if self.never:
            need[np.fromiter(self.never, dtype=np.int64, count=len(self.never))] += 1
        out: list[int] = need.tolist()
        return out


def fire_all(en: Enabling, happened: bytearray) -> bytearray:
    """Fire every event that can still happen after the events ``happened``
    (which must be an admissible prefix), in any order: the ops that end are
    the same in every maximal run, as no event is ever disabled."""
    ix = en.index()
    n = en.n
    size = ix.size
    need = ix.needs()
    left = [len(m) for m in en.bar_members]
    bar_deps = en.bar_deps
    succ, so = ix.succ, ix.succ_offs
    memb, mo = ix.member_of, ix.member_offs
    out = bytearray(happened)

    def release(c: int, ready: list[int]) -> None:
        for d in succ[so[c]:so[c + 1]]:
            need[d] -= 1
            if need[d] == 0 and not out[d]:
                ready.append(d)
        for k in memb[mo[c]:mo[c + 1]]:
            left[k] -= 1
            if left[k] == 0:
                for d in bar_deps[k]:
                    need[d] -= 1
                    if need[d] == 0 and not out[d]:
                        ready.append(d)
        if c < n:
            need[n + c] -= 1
            if need[n + c] == 0 and not out[n + c]:
                ready.append(n + c)

    sink: list[int] = []
    for c in compress(range(size), out):
        release(c, sink)
    ready = [c for c in range(size) if need[c] == 0 and not out[c]]
    while ready:
        c = ready.pop()
        if out[c]:
            continue
        out[c] = 1
        release(c, ready)
    return out


# ---------------------------------------------------------------- building
class _Builder:
    def __init__(self, n: int) -> None:
        self.n = n
        self.pairs: dict[int, tuple[Codes, Codes]] = defaultdict(lambda: (array("q"), array("q")))
        self.bar_members: list[tuple[int, ...]] = []
        self.bar_deps: list[tuple[int, ...]] = []
        self.bar_why: list[int] = []

    def pair(self, reason: int, before: int, after: int) -> None:
        b, a = self.pairs[reason]
        b.append(before)
        a.append(after)

    def bar(self, reason: int, members: tuple[int, ...], deps: tuple[int, ...]) -> None:
        if len(members) == 1:
            for d in deps:
                self.pair(reason, members[0], d)
        elif len(deps) == 1:
            for m in members:
                self.pair(reason, m, deps[0])
        else:
            self.bar_members.append(members)
            self.bar_deps.append(deps)
            self.bar_why.append(reason)

    def unit_after(self, reason: int, prev: tuple[int, ...], nxt: tuple[int, ...]) -> None:
        """Every op of unit ``nxt`` starts after every op of ``prev`` has ended."""
        n = self.n
        self.bar(reason, tuple(n + p for p in prev), nxt)


def build_enabling(schedule: Schedule, m: Matching, setting: str) -> Enabling:
    ops = schedule.ops
    n = len(ops)
    bld = _Builder(n)
    batched = any(map(_batch_of, ops))

    # streams: FIFO of units
    if not batched:
        before, after = bld.pairs[STREAM]
        for seq in schedule.streams.values():
            ids = list(map(_id_of, seq))
            before.extend(map(n.__add__, ids[:-1]))
            after.extend(ids[1:])
    else:
        for seq in schedule.streams.values():
            units = units_of(seq)
            for prev, nxt in zip(units, units[1:], strict=False):
                bld.unit_after(STREAM, prev, nxt)

    # communicators, and progress
    serial = serial_progress(schedule, setting)
    comm_of = attrgetter("communicator")
    if not batched:
        cb, ca = bld.pairs[COMM]
        pb, pa = bld.pairs[PROGRESS]
        for rank in schedule.ranks:
            last: dict[str | None, int] = {}
            prev_any = -1
            seq = schedule.by_rank[rank]
            for op in compress(seq, map(COMM_KINDS.__contains__, map(_kind_of, seq))):
                if op.stream == HOST_STREAM:
                    continue  # not NCCL (gloo, a CPU collective): the host orders it
                o = op.id
                same = last.get(c := op.communicator, -1)
                if same >= 0:
                    cb.append(n + same)
                    ca.append(o)
                if serial and prev_any >= 0 and prev_any != same:
                    pb.append(n + prev_any)
                    pa.append(o)
                last[c] = prev_any = o
    for rank in schedule.ranks if batched else ():
        comm_ops = [op for op in schedule.by_rank[rank] if op.kind in COMM_KINDS]
        last_of: dict[str | None, tuple[int, ...]] = {}
        last_any: tuple[int, ...] | None = None
        units = units_of(comm_ops)
        for unit in units:
            if ops[unit[0]].stream == HOST_STREAM:
                continue  # not NCCL (gloo, a CPU collective): the host orders it
            comms = set(map(comm_of, (ops[o] for o in unit)))
            prevs = {last_of[c] for c in comms if c in last_of}
            for prev in prevs:
                bld.unit_after(COMM, prev, unit)
            if serial and last_any is not None and last_any not in prevs:
                bld.unit_after(PROGRESS, last_any, unit)
            for c in comms:
                last_of[c] = unit
            last_any = unit
        # group calls: all parts start before any ends
        for unit in units:
            if len(unit) > 1:
                bld.bar(BATCH, unit, tuple(n + o for o in unit))

    # the host thread, host syncs and the caching allocator
    if any(op.stream == HOST_STREAM for op in ops):
        _host(schedule, bld)

    # events (and event syncs): the latest record issued before the wait
    for w, rec in m.record_of.items():
        bld.pair(EVENT, n + rec, n + w)

    # point to point
    unmatched = m.unmatched
    p2p_mode = schedule.p2p
    for snd, rcv in m.pairs:
        if snd in unmatched:
            continue
        bld.pair(MESSAGE, snd, n + rcv)
        mode = p2p_mode if ops[snd].p2p is None and ops[rcv].p2p is None \
            else message_mode(schedule, (ops[snd], ops[rcv]))
        if blocks(mode, setting):
            bld.pair(BLOCKING, rcv, n + snd)

    # collectives
    for inst in m.instances:
        first = ops[inst[0]]
        kind = first.kind
        ends = tuple(n + o for o in inst)
        if kind in _ALL_PAIRS:
            bld.bar(COLLECTIVE, inst, ends)
            continue
        assert kind in COLLECTIVE_KINDS and first.root is not None
        if blocks(message_mode(schedule, (ops[o] for o in inst)), setting):
            bld.bar(BLOCKING, inst, ends)
            continue
        root = next(o for o in inst if ops[o].rank == first.root)
        if kind in _FROM_ROOT:
            for o in inst:
                if o != root:
                    bld.pair(COLLECTIVE, root, n + o)
        else:
            assert kind in _TO_ROOT
            for o in inst:
                if o != root:
                    bld.pair(COLLECTIVE, o, n + root)

    # one-sided
    for ws, put in m.put_of.items():
        bld.pair(SIGNAL, n + put, n + ws)

    kinds = list(map(_kind_of, ops))
    comm_like = COMM_KINDS | {Kind.WAIT_SIGNAL}
    never = [n + o for o in compress(range(n), map(comm_like.__contains__, kinds))
             if o in unmatched or (o not in m.instance and o not in m.put_of)]
    return Enabling(n, setting, dict(bld.pairs), bld.bar_members, bld.bar_deps, bld.bar_why, never)


def _host(schedule: Schedule, bld: _Builder) -> None:
    """The host thread of each rank, which issues the rank's ops in issue
    order and runs its host-stream ops itself, synchronously:

    - a host unit (an op on the host stream, or a whole group call there)
      starts when the host reaches it (its stream order: after the previous
      host work ended) and the host issues nothing more until it has ended:
      every op issued after it starts after it ended;
    - a ``sync`` is host work that ends only after what it waits for ended:
      the last unit issued on its ``target`` stream before it
      (``stream.synchronize()``: the stream's queue drained up to there), the
      latest op named ``of`` issued before it (``work.wait()``, ``.item()``),
      or, with neither (nor an ``event``, bound with the waits), the last unit
      issued before it on every device stream (``torch.cuda.synchronize()``);
    - the caching allocator: ``free(x)`` returns x's block to the pool of its
      allocation stream; at the free, for every stream s that
      ``record_stream(x, s)`` marked, the allocator records an event on s
      (the work issued on s up to the free), and hands the block out again,
      to the alloc that reuses it, only once those events completed: that
      alloc (host work) ends after the last unit issued on s before the free.
      Memory of the reusing buffer is the block's (see the model).
    """
    ops = schedule.ops
    n = bld.n
    _SYNC, _ALLOC, _FREE, _RECORD_STREAM = Kind.SYNC, Kind.ALLOC, Kind.FREE, Kind.RECORD_STREAM
    for rank in schedule.ranks:
        seq = schedule.by_rank[rank]
        if not any(op.stream == HOST_STREAM for op in seq):
            continue
        host: tuple[int, ...] | None = None       # the last host unit issued
        last_unit: dict[str, tuple[int, ...]] = {}  # per stream: its last unit issued so far
        named: dict[str, int] = {}                # per name: the latest op issued with it
        marked: dict[str, list[str]] = defaultdict(list)   # buffer -> streams record_stream marked
        pending: dict[str, tuple[int, ...]] = {}  # freed buffer -> the work its block waits for
        for unit in units_of(seq):
            first = ops[unit[0]]
            if host is not None:
                bld.unit_after(HOST, host, unit)
            if first.stream == HOST_STREAM:
                o = first.id
                k = first.kind
                if k is _SYNC and first.event is None:
                    if first.of is not None:
                        if first.of in named:
                            bld.pair(SYNC, n + named[first.of], n + o)
                    else:
                        streams = [first.target] if first.target is not None else \
                            [st for st in last_unit if st != HOST_STREAM]
                        for st in streams:
                            for p in last_unit.get(st, ()):
                                bld.pair(SYNC, n + p, n + o)
                elif k is _RECORD_STREAM and first.buffer is not None and first.target is not None:
                    marked[first.buffer].append(first.target)
                elif k is _FREE and first.buffer is not None:
                    pending[first.buffer] = tuple(p for st in marked.pop(first.buffer, ())
                                                  for p in last_unit.get(st, ()))
                elif k is _ALLOC and first.reuses is not None:
                    for p in pending.get(first.reuses, ()):
                        bld.pair(REUSE, n + p, n + o)
                host = unit
            last_unit[first.stream] = unit
            for p in unit:
                name = ops[p].name
                if name:
                    named[name] = p


REASON_TEXT = {
    STREAM: "the previous op on its stream",
    COMM: "the previous op of its communicator on its rank",
    PROGRESS: "the previous communication issued on its rank (serial progress: communicators do not"
              " run side by side)",
    EVENT: "the record it waits for",
    MESSAGE: "the send of its message",
    BLOCKING: "a receiver of its message (capacity 0: the message cannot be buffered)",
    COLLECTIVE: "a member of its collective instance",
    BATCH: "a part of its group call",
    SIGNAL: "the put whose signal it waits for",
    HOST: "host work issued before it (the host thread runs it synchronously and issues nothing meanwhile)",
    SYNC: "the work its host synchronize waits for",
    REUSE: "work on a stream that record_stream marked before the block was freed (the allocator hands the"
           " block out only after it)",
}
