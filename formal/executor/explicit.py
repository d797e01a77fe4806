"""An explicit-state executor: the reference semantics, by brute force.

It enumerates every reachable state of a (small) schedule and records which
properties some transition violates.  It shares no code with the z3 engine or
with ``syncproof.semantics``: matching, enabling, memory and the property
rules are all re-derived here from the schedule IR, so that the two can be
cross-checked against each other.

A state is the status of every op (not started / active / ended) plus the
contents of the memory points that some read expects a value in.  Every op has
a start event and an end event:

- ``start(o)``: the previous op on o's stream has ended;
- ``end(o)``: o has started and, for a wait linked to its record, the record
  has ended; for a matched recv, its send has started; for a matched send, its
  recv has started (unless p2p is eager); for a matched collective, every op
  of its instance has started.  An unmatched send, recv or collective never
  ends.

Memory is modelled with explicit integer points: per rank and buffer, one
coordinate per axis, over a per-axis universe ``[min_lo - 1, max_hi + 1)`` of
the finite intervals the schedule uses (``{0}`` when it uses none); a full
axis covers the whole universe.

Properties, checked on every transition of every reachable state:

- ``matching``: some send, recv or collective is unmatched, or a matched
  send/recv pair disagrees on size (decided without running; when it is
  violated the other properties are left undecided, ``None``);
- ``dataflow``: at ``start(o)`` a point o reads holds another value than o
  expects, or while o is active another op's end writes another value there;
- ``race``: an op starts while a conflicting op of its rank is active;
- ``phase``: a decode op with an SP partition, two ops of one decode step and
  sequence with different tokens, or a start that breaks the phase order
  (see :func:`phase_order`);
- ``deadlock``: a reachable state with nothing enabled and some op not ended,
  or an op starting before the previous op of its comm FIFO on its rank (the
  collectives of one group, the sends to one peer and channel, the recvs from
  one peer and channel, in issue order) has ended.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import compress, product, repeat
from operator import attrgetter, is_, lt
from typing import Any

from ..errors import SyncproofError
from ..ir import Kind, Op, Region, Schedule
from ..ir.region import FULL_LO
from ..result import PROPERTIES

NOT_STARTED = 0
ACTIVE = 1
ENDED = 2

NOTHING = "<nothing>"
"""How a point that holds no value is shown in observations."""

Point = tuple[int, str, tuple[int, ...]]
"""A memory point: (rank, buffer, one coordinate per axis in buffer order)."""

Status = tuple[int, ...]
Mem = tuple[str | None, ...]


# Enum members bound once: ``Kind.SEND`` and ``kind.is_collective`` are
# descriptor calls, which add up over hundreds of thousands of ops.
_SEND = Kind.SEND
_RECV = Kind.RECV
_RECORD = Kind.RECORD
_WAIT = Kind.WAIT
_COLLECTIVES = frozenset(k for k in Kind if k.is_collective)
_P2P = frozenset({_SEND, _RECV})
_COMM = _COLLECTIVES | _P2P

_kind_of = attrgetter("kind")
_id_of = attrgetter("id")
_reads_of = attrgetter("reads")
_writes_of = attrgetter("writes")
_index_of = attrgetter("index")
_rank_event = attrgetter("rank", "event")
_rank_group = attrgetter("rank", "group")
_signature = attrgetter("kind", "size", "root", "dtype")


class StateLimitExceeded(SyncproofError):
    """The schedule has more reachable states than the executor may visit."""


# ------------------------------------------------------------------ memory
def _is_full(lo: int) -> bool:
    return lo == FULL_LO


def _distinct_regions(schedule: Schedule) -> list[Region]:
    """Every region the schedule's accesses and init entries use, each object
    once (schedules share access tuples and regions between ops)."""
    ops = schedule.ops
    tuples = list(map(_reads_of, ops))
    tuples.extend(map(_writes_of, ops))
    distinct = dict(zip(map(id, tuples), tuples, strict=True))
    seen: dict[int, Region] = {}
    for accs in distinct.values():
        for acc in accs:
            seen[id(acc.region)] = acc.region
    for init in schedule.init:
        seen[id(init.region)] = init.region
    return list(seen.values())


def axis_universes(schedule: Schedule) -> dict[tuple[str, str], tuple[int, int]]:
    """``(buffer, axis) -> (lo, hi)``: the half-open range of coordinates the
    executor models for that axis."""
    los: dict[tuple[str, str], int] = {}
    his: dict[tuple[str, str], int] = {}
    for region in _distinct_regions(schedule):
        bname = region.buffer
        for axis, iv in region.box:
            lo = iv.lo
            if lo == FULL_LO:
                continue
            key = (bname, axis)
            cur = los.get(key)
            if cur is None:
                los[key] = lo
                his[key] = iv.hi
            else:
                if lo < cur:
                    los[key] = lo
                if iv.hi > his[key]:
                    his[key] = iv.hi
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for buf in schedule.buffers:
        for axis in buf.axis_names:
            key = (buf.name, axis)
            out[key] = (los[key] - 1, his[key] + 1) if key in los else (0, 1)
    return out


def region_points(
    schedule: Schedule, universes: dict[tuple[str, str], tuple[int, int]], rank: int, region: Region
) -> list[Point]:
    """Every modelled point of ``region`` on ``rank`` (clipped to the universe)."""
    buf = schedule.buffer_map[region.buffer]
    ranges: list[range] = []
    for axis in buf.axis_names:
        ulo, uhi = universes[(buf.name, axis)]
        iv = region.interval(axis)
        if _is_full(iv.lo):
            ranges.append(range(ulo, uhi))
        else:
            ranges.append(range(max(iv.lo, ulo), min(iv.hi, uhi)))
    return [(rank, buf.name, coords) for coords in product(*ranges)]


def schedule_region_points(model: Model, rank: int, region: Region) -> list[Point]:
    """:func:`region_points` of a region of the schedule (an access or init
    entry).  Every finite interval of one lies inside its axis's universe,
    which is built from them, so only full axes need the universe."""
    buf = model.schedule.buffer_map[region.buffer]
    ranges: list[range] = []
    for axis in buf.axis_names:
        iv = region.interval(axis)
        if iv.lo == FULL_LO:
            ulo, uhi = model.universes[(buf.name, axis)]
            ranges.append(range(ulo, uhi))
        else:
            ranges.append(range(iv.lo, iv.hi))
    return [(rank, buf.name, coords) for coords in product(*ranges)]


def initial_memory(
    schedule: Schedule, universes: dict[tuple[str, str], tuple[int, int]]
) -> dict[Point, str]:
    """Initial contents: init entries in order, later ones overriding earlier."""
    mem: dict[Point, str] = {}
    for init in schedule.init:
        for rank in schedule.ranks:
            if init.applies_to(rank):
                for pt in region_points(schedule, universes, rank, init.region):
                    mem[pt] = init.value
    return mem


# ---------------------------------------------------------------- matching
@dataclass
class Matching:
    """The result of matching a schedule's communication and events."""

    # comm op id -> every op of its match (a p2p pair or a collective
    # instance), itself included; only for matched ops.
    instance: dict[int, tuple[int, ...]] = field(default_factory=dict)
    unmatched: set[int] = field(default_factory=set)
    # wait op id -> record op id, only when the record was issued earlier.
    record_of: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def compute_matching(schedule: Schedule) -> Matching:
    return _match(schedule).matching


@dataclass
class _Matched:
    """:func:`compute_matching`'s result with what building the model reuses."""

    matching: Matching
    comm: list[int]                    # every send, recv and collective
    pairs: list[tuple[int, int]]       # matched (send, recv), sizes agreeing or not
    instances: list[tuple[int, ...]]   # matched collective instances


# stands for a missing record: issued after every wait
_NO_RECORD = Op(id=-1, rank=-1, index=2**62, stream="", kind=_RECORD)


def _match(schedule: Schedule) -> _Matched:
    m = Matching()
    label = schedule.label
    ops = schedule.ops
    # pick the ops of each kind at C speed: most ops are computes, records and waits
    kinds = list(map(_kind_of, ops))
    comm = list(compress(range(len(ops)), map(_COMM.__contains__, kinds)))

    # point to point: FIFO per (src, dst, channel), in issue order (the
    # schedule lists each rank's ops in its issue order).
    sends: dict[tuple[int, int, str], list[Op]] = defaultdict(list)
    recvs: dict[tuple[int, int, str], list[Op]] = defaultdict(list)
    for op in compress(ops, map(_P2P.__contains__, kinds)):
        assert op.peer is not None
        if op.kind is _SEND:
            sends[(op.rank, op.peer, op.channel)].append(op)
        else:
            recvs[(op.peer, op.rank, op.channel)].append(op)
    instance = m.instance
    pairs: list[tuple[int, int]] = []
    for key in sorted(set(sends) | set(recvs)):
        ss, rr = sends.get(key, []), recvs.get(key, [])
        for snd, rcv in zip(ss, rr, strict=False):
            pair = (snd.id, rcv.id)
            instance[snd.id] = pair
            instance[rcv.id] = pair
            pairs.append(pair)
            if snd.size is not None and rcv.size is not None and snd.size != rcv.size:
                m.problems.append(f"{label(snd)} sends size {snd.size} but {label(rcv)} expects {rcv.size}")
                # a size-mismatched transfer never completes (NCCL hangs or aborts)
                m.unmatched |= {snd.id, rcv.id}
        for extra in ss[len(rr):] + rr[len(ss):]:
            other = "recv" if extra.kind is _SEND else "send"
            m.unmatched.add(extra.id)
            m.problems.append(f"{label(extra)} has no matching {other}")
    # collectives: the k-th on a group of every member forms instance k.
    colls: dict[tuple[int, str | None], list[Op]] = defaultdict(list)
    coll_ops = list(compress(ops, map(_COLLECTIVES.__contains__, kinds)))
    for op, rank_group in zip(coll_ops, map(_rank_group, coll_ops), strict=True):
        colls[rank_group].append(op)
    instances: list[tuple[int, ...]] = []
    for gname, members in schedule.groups:
        per_rank = {r: colls.get((r, gname), []) for r in members}
        lists = [per_rank[r] for r in members]
        longest = max(map(len, lists), default=0)
        bad = min(map(len, lists), default=0)  # the first instance some member lacks
        # below ``bad`` every member has its k-th
        for k, inst in enumerate(zip(*lists, strict=False)):
            if len(set(map(_signature, inst))) != 1:
                bad = k
                break
            ids = tuple(map(_id_of, inst))
            instance.update(dict.fromkeys(ids, ids))
            instances.append(ids)
        if bad < longest:
            k = bad
            missing = [r for r in members if k >= len(per_rank[r])]
            why = (f"rank(s) {', '.join(map(str, missing))} never issue it" if missing
                   else "members disagree on kind, size, root or dtype")
            m.problems.append(f"collective #{k} on group {gname!r} does not match: {why}")
            for r in members:
                for op in per_rank[r][k:]:
                    m.unmatched.add(op.id)
    # events: a wait links to its record only if the record was issued before;
    # the record of (rank, event) is the rank's last one.
    records_l = list(compress(ops, map(is_, kinds, repeat(_RECORD))))
    records: dict[tuple[int, str | None], Op] = dict(zip(map(_rank_event, records_l), records_l, strict=True))
    waits = list(compress(ops, map(is_, kinds, repeat(_WAIT))))
    # (at C speed: a schedule has about as many waits as ops of other kinds)
    recs = list(map(records.get, map(_rank_event, waits), repeat(_NO_RECORD)))
    issued_before = map(lt, map(_index_of, recs), map(_index_of, waits))
    m.record_of.update(compress(zip(map(_id_of, waits), map(_id_of, recs), strict=True), issued_before))
    return _Matched(m, comm, pairs, instances)


@dataclass
class Enabling:
    """What each event waits for, in bulk: the model's ``prev_on_stream`` and
    ``end_deps`` are built from this, and replay checks a whole run against
    it at once.  Lists of one name pair up index by index."""

    # start(stream_after[i]) needs end(stream_before[i]): consecutive ops of a stream
    stream_before: list[int]
    stream_after: list[int]
    # end(o) never happens: unmatched sends, recvs and collectives
    never_end: list[int]
    # end(waits[i]) needs end(records[i]): a wait linked to its record
    waits: list[int]
    records: list[int]
    # end(p2p[i]) needs start(peers[i]): a matched recv, and a matched send
    # unless p2p is eager
    p2p: list[int]
    peers: list[int]
    # end of a member needs the start of every other member: matched collectives
    instances: list[tuple[int, ...]]

    def prev_on_stream(self, n: int) -> list[int | None]:
        prev: list[int | None] = [None] * n
        for before, after in zip(self.stream_before, self.stream_after, strict=True):
            prev[after] = before
        return prev

    def end_deps(self, n: int) -> list[tuple[tuple[int, int], ...] | None]:
        """For each op, the (op, minimal status) pairs end(o) needs; None: never."""
        deps: list[tuple[tuple[int, int], ...] | None] = [()] * n
        for o in self.never_end:
            deps[o] = None
        for w, rec in zip(self.waits, self.records, strict=True):
            deps[w] = ((rec, ENDED),)
        for o, peer in zip(self.p2p, self.peers, strict=True):
            deps[o] = ((peer, ACTIVE),)
        for ids in self.instances:
            need = [(p, ACTIVE) for p in ids]
            distinct = len(set(ids)) == len(ids)
            for i, o in enumerate(ids):
                deps[o] = (tuple(need[:i] + need[i + 1:]) if distinct
                           else tuple([(p, ACTIVE) for p in ids if p != o]))
        return deps

    def waiting(self) -> list[int]:
        """Every op whose end needs another op's event."""
        out = self.waits + self.p2p
        for ids in self.instances:
            out.extend(ids)
        return out


def _enabling(schedule: Schedule, matched: _Matched) -> Enabling:
    before: list[int] = []
    after: list[int] = []
    for seq in schedule.streams.values():
        ids = list(map(_id_of, seq))
        before.extend(ids[:-1])
        after.extend(ids[1:])
    matching = matched.matching
    instance = matching.instance
    unmatched = matching.unmatched
    never = [o for o in matched.comm if o in unmatched or o not in instance]
    p2p: list[int] = []
    peers: list[int] = []
    eager = schedule.p2p == "eager"
    for snd, rcv in matched.pairs:
        if snd not in unmatched and not eager:
            p2p.append(snd)
            peers.append(rcv)
        if rcv not in unmatched:
            p2p.append(rcv)
            peers.append(snd)
    # (a matched collective is never unmatched: matching stops at a group's
    # first bad instance)
    return Enabling(before, after, never, list(matching.record_of), list(matching.record_of.values()),
                    p2p, peers, matched.instances)


# ------------------------------------------------------------------ phases
def _seq_keys(op: Op) -> tuple[object, ...]:
    return tuple(op.meta.seqs) if op.meta.seqs else ("*",)


def _phase_group(op: Op) -> int | None:
    if op.meta.phase == "prefill":
        return -1
    if op.meta.phase == "decode" and op.meta.step is not None:
        return op.meta.step
    return None


def meta_problems(schedule: Schedule) -> list[tuple[str, int, int | None]]:
    """Phase rules that need no run: (sentence, op a, op b or None)."""
    out: list[tuple[str, int, int | None]] = []
    decode = [op for op in schedule.ops if op.meta.phase == "decode"]
    for op in decode:
        if op.meta.sp is not None:
            out.append((f"{schedule.label(op)} is a decode op with an SP partition", op.id, None))
    for i, a in enumerate(decode):
        for b in decode[i + 1:]:
            if (a.meta.step == b.meta.step and set(_seq_keys(a)) & set(_seq_keys(b))
                    and a.meta.tokens is not None and b.meta.tokens is not None
                    and a.meta.tokens != b.meta.tokens):
                out.append((f"{schedule.label(a)} and {schedule.label(b)} are one decode step of one"
                            " sequence but compute different tokens", a.id, b.id))
    return out


# ------------------------------------------------------------------- model
@dataclass
class Model:
    """Everything about a schedule that does not depend on the state."""

    schedule: Schedule
    matching: Matching
    # axis_universes(schedule); None until first asked for (see ``universes``)
    known_universes: dict[tuple[str, str], tuple[int, int]] | None
    prev_on_stream: list[int | None]
    # (op, minimal status) pairs that must hold for end(o); None: never.
    end_deps: list[tuple[tuple[int, int], ...] | None]
    # every point each op reads (value or None) / writes (value)
    read_pts: list[list[tuple[Point, str | None]]]
    write_pts: list[list[tuple[Point, str]]]
    conflicts: list[tuple[int, ...]]       # ops on the same rank that race with o
    clobbers: list[tuple[int, ...]]        # ops whose expected reads o's writes break
    phase_before: list[tuple[int, ...]]    # ops that must have ended before o starts (phase)
    phase_samplers: list[tuple[tuple[int, ...], ...]]  # o starts after one of each set has ended
    fifo_pred: list[int | None]            # previous op of o's comm FIFO on its rank
    meta: list[tuple[str, int, int | None]]
    # relevant memory (points some read expects a value in)
    slot_of: dict[Point, int]
    read_expect: list[tuple[tuple[int, str], ...]]
    write_slots: list[tuple[tuple[int, str], ...]]
    init_mem: Mem
    # prev_on_stream and end_deps in bulk
    enabling: Enabling

    @property
    def n(self) -> int:
        return len(self.schedule.ops)

    @property
    def universes(self) -> dict[tuple[str, str], tuple[int, int]]:
        """:func:`axis_universes` of the schedule, computed when first needed."""
        if self.known_universes is None:
            self.known_universes = axis_universes(self.schedule)
        return self.known_universes

    def label(self, op: int) -> str:
        return self.schedule.label(op)

    def can_start(self, status: Sequence[int], o: int) -> bool:
        prev = self.prev_on_stream[o]
        return status[o] == NOT_STARTED and (prev is None or status[prev] == ENDED)

    def can_end(self, status: Sequence[int], o: int) -> bool:
        if status[o] != ACTIVE:
            return False
        deps = self.end_deps[o]
        return deps is not None and all(status[p] >= need for p, need in deps)

    def why_not(self, status: Sequence[int], event: str, o: int) -> str:
        """Why ``event`` of op ``o`` is not enabled in ``status`` (for messages)."""
        if event == "start":
            if status[o] != NOT_STARTED:
                return "it has already started"
            prev = self.prev_on_stream[o]
            if prev is None:
                return ""
            return f"the previous op on its stream, {self.label(prev)}, has not ended"
        if status[o] == NOT_STARTED:
            return "it has not started"
        if status[o] == ENDED:
            return "it has already ended"
        deps = self.end_deps[o]
        if deps is None:
            return "it is unmatched and can never end"
        for p, need in deps:
            if status[p] < need:
                return f"{self.label(p)} has not {'started' if need == ACTIVE else 'ended'}"
        return ""


def phase_order(schedule: Schedule, rule: str = "per-rank"
                ) -> tuple[list[tuple[int, ...]], list[tuple[tuple[int, ...], ...]]]:
    """For each op: the ops that must have ended before it starts, and sets
    of samplers of which at least one must have ended, under the phase rules.

    Each sequence key (an entry of ``seqs``, or ``"*"``, the batch) orders its
    groups: prefill (-1), then decode steps by number.

    - ``"per-rank"`` (docs/format.md): for consecutive groups t0 < t1 of a
      key, on each rank every op of t0 ends before any op of t1 starts; and if
      t0 has ops marked ``sample``, every op of t1 (any rank) starts after one
      of them has ended.  Recv, wait and record ops of t1 are exempt: they
      only wait, so starting early does no harm; and sends of t0 may still be
      draining (their input is protected by dataflow and race).
    - ``"global"``: every op of any earlier group of the key, on any rank,
      ends before an op of a later group starts.
    """
    if rule not in ("per-rank", "global"):
        raise ValueError(f"unknown phase rule {rule!r}")
    ops = schedule.ops
    groups = [_phase_group(op) for op in ops]
    members: dict[tuple[object, int], list[Op]] = defaultdict(list)
    for op in ops:
        g = groups[op.id]
        if g is not None:
            for q in _seq_keys(op):
                members[(q, g)].append(op)
    steps: dict[object, list[int]] = defaultdict(list)
    for q, g in sorted(members, key=lambda k: (str(k[0]), k[1])):
        steps[q].append(g)
    before: list[tuple[int, ...]] = []
    samplers: list[tuple[tuple[int, ...], ...]] = []
    for op in ops:
        g = groups[op.id]
        must: set[int] = set()
        some: set[tuple[int, ...]] = set()
        # A recv, wait or record only waits: posting it early is harmless, so it
        # is never the op that starts too early (rule "per-rank").
        waits_only = rule == "per-rank" and op.kind in (Kind.RECV, Kind.WAIT, Kind.RECORD)
        if g is not None and not waits_only:
            for q in _seq_keys(op):
                earlier = [t for t in steps[q] if t < g]
                if rule == "global":
                    must |= {p.id for t in earlier for p in members[(q, t)]}
                elif earlier:
                    t0 = earlier[-1]
                    must |= {p.id for p in members[(q, t0)] if p.rank == op.rank and p.kind is not Kind.SEND}
                    smp = tuple(sorted(p.id for p in members[(q, t0)] if p.meta.sample))
                    if smp:
                        some.add(smp)
        must.discard(op.id)
        before.append(tuple(sorted(must)))
        samplers.append(tuple(sorted(some)))
    return before, samplers


class _LazyPoints:
    """Per-op points, computed when first asked for (replay of big runs
    touches only a few ops)."""

    def __init__(self, fn: Callable[[int], list[Any]]) -> None:
        self.fn = fn
        self.cache: dict[int, list[Any]] = {}

    def __getitem__(self, o: int) -> list[Any]:
        got = self.cache.get(o)
        if got is None:
            got = self.cache[o] = self.fn(o)
        return got


def build_model(schedule: Schedule, phase_rule: str = "per-rank", light: bool = False) -> Model:
    """The model of ``schedule``.  ``light`` (for replay) builds only what a
    single run needs: stream order, matching and enabling, with each op's
    points and the axis universes computed on demand; no all-pairs tables
    (conflicts, clobbers, phase rules, metadata rules), which replay asks for
    op by op."""
    ops = schedule.ops
    n = len(ops)
    matched = _match(schedule)
    matching = matched.matching
    enabling = _enabling(schedule, matched)
    prev_on_stream = enabling.prev_on_stream(n)
    end_deps = enabling.end_deps(n)

    if light:
        def reads_of(o: int) -> list[Any]:
            op = ops[o]
            return [(pt, acc.value) for acc in op.reads
                    for pt in schedule_region_points(model, op.rank, acc.region)]

        def writes_of(o: int) -> list[Any]:
            op = ops[o]
            return [(pt, acc.value) for acc in op.writes if acc.value is not None
                    for pt in schedule_region_points(model, op.rank, acc.region)]

        model = Model(
            schedule=schedule, matching=matching, known_universes=None, prev_on_stream=prev_on_stream,
            end_deps=end_deps, read_pts=_LazyPoints(reads_of), write_pts=_LazyPoints(writes_of),  # type: ignore[arg-type]
            conflicts=[], clobbers=[], phase_before=[], phase_samplers=[], fifo_pred=[], meta=[],
            slot_of={}, read_expect=[], write_slots=[], init_mem=(), enabling=enabling,
        )
        return model

    universes = axis_universes(schedule)
    read_pts: list[list[tuple[Point, str | None]]] = []
    write_pts: list[list[tuple[Point, str]]] = []
    for op in ops:
        read_pts.append([(pt, acc.value) for acc in op.reads
                         for pt in region_points(schedule, universes, op.rank, acc.region)])
        write_pts.append([(pt, acc.value) for acc in op.writes if acc.value is not None
                          for pt in region_points(schedule, universes, op.rank, acc.region)])

    rset = [{pt for pt, _ in r} for r in read_pts]
    wset = [{pt for pt, _ in w} for w in write_pts]
    conflicts: list[list[int]] = [[] for _ in range(n)]
    for rank in schedule.ranks:
        rops = [op.id for op in schedule.by_rank[rank]]
        for i, a in enumerate(rops):
            for b in rops[i + 1:]:
                if (wset[a] & (rset[b] | wset[b])) or (rset[a] & wset[b]):
                    conflicts[a].append(b)
                    conflicts[b].append(a)

    expects: dict[Point, list[tuple[int, str]]] = defaultdict(list)
    for op in ops:
        for pt, v in read_pts[op.id]:
            if v is not None:
                expects[pt].append((op.id, v))
    clobbers: list[tuple[int, ...]] = []
    for op in ops:
        victims = {r for pt, val in write_pts[op.id]
                   for r, v in expects.get(pt, ()) if r != op.id and v != val}
        clobbers.append(tuple(sorted(victims)))

    phase_before, phase_samplers = phase_order(schedule, phase_rule)

    fifo_pred: list[int | None] = [None] * n
    last: dict[tuple[object, ...], int] = {}
    for rank in schedule.ranks:
        for op in schedule.by_rank[rank]:
            key: tuple[object, ...] | None = None
            if op.kind.is_collective:
                key = (rank, "coll", op.group)
            elif op.kind is Kind.SEND:
                key = (rank, "send", op.peer, op.channel)
            elif op.kind is Kind.RECV:
                key = (rank, "recv", op.peer, op.channel)
            if key is not None:
                fifo_pred[op.id] = last.get(key)
                last[key] = op.id

    slots = sorted(expects)
    slot_of = {pt: i for i, pt in enumerate(slots)}
    read_expect = [tuple((slot_of[pt], v) for pt, v in read_pts[op.id] if v is not None) for op in ops]
    write_slots = [tuple((slot_of[pt], v) for pt, v in write_pts[op.id] if pt in slot_of) for op in ops]
    mem0 = initial_memory(schedule, universes)
    init_mem: Mem = tuple(mem0.get(pt) for pt in slots)

    return Model(
        schedule=schedule, matching=matching, known_universes=universes, prev_on_stream=prev_on_stream,
        end_deps=end_deps, read_pts=read_pts, write_pts=write_pts,
        conflicts=[tuple(c) for c in conflicts], clobbers=clobbers, phase_before=phase_before,
        phase_samplers=phase_samplers,
        fifo_pred=fifo_pred, meta=meta_problems(schedule), slot_of=slot_of,
        read_expect=read_expect, write_slots=write_slots, init_mem=init_mem, enabling=enabling,
    )


def followers(model: Model) -> tuple[list[int | None], dict[int, list[int]]]:
    """For each op, the next op on its stream; and for each op, the ops whose
    end waits on its status: what an event of the op can enable."""
    prev = model.prev_on_stream
    next_on_stream: list[int | None] = [None] * model.n
    for o, p in enumerate(prev):
        if p is not None:
            next_on_stream[p] = o
    waiters: dict[int, list[int]] = defaultdict(list)
    deps = model.end_deps
    for o in model.enabling.waiting():
        d = deps[o]
        if d:
            for p, _ in d:
                waiters[p].append(o)
    return next_on_stream, waiters


def quiesce(model: Model, status: Status) -> Status:
    """Fire enabled events until none is left.  Enabling is monotone (an
    event stays enabled until it fires), so the ops that end are the same
    whatever order this picks; this one re-examines an op only when
    something its events wait for has changed."""
    st = list(status)
    prev = model.prev_on_stream
    deps = model.end_deps
    next_on_stream, waiters = followers(model)
    todo = list(range(model.n - 1, -1, -1))
    while todo:
        o = todo.pop()
        so = st[o]
        if so == NOT_STARTED:
            p = prev[o]
            if p is not None and st[p] != ENDED:
                continue
            st[o] = so = ACTIVE
            if o in waiters:
                todo.extend(waiters[o])
        if so == ACTIVE:
            d = deps[o]
            if d is None:
                continue
            for p, need in d:
                if st[p] < need:
                    break
            else:
                st[o] = ENDED
                nxt = next_on_stream[o]
                if nxt is not None:
                    todo.append(nxt)
                if o in waiters:
                    todo.extend(waiters[o])
    return tuple(st)


# ---------------------------------------------------------------- explore
@dataclass(frozen=True)
class ExecResult:
    """What exploration found.

    ``violated`` maps each property to True / False, or None when it is not
    decided (every property but matching when matching is violated).
    ``witnesses`` holds one sentence per violated property; ``blocked`` the
    ops a maximal run never ends; ``states`` the number of states visited.
    """

    violated: dict[str, bool | None]
    witnesses: dict[str, str] = field(default_factory=dict)
    states: int = 0
    blocked: tuple[int, ...] = ()
    unmatched: tuple[int, ...] = ()


def explore(schedule: Schedule, max_states: int = 200_000, phase_rule: str = "per-rank") -> ExecResult:
    """Enumerate every reachable state of ``schedule`` and report which
    properties some transition violates.  Raises :class:`StateLimitExceeded`
    when more than ``max_states`` states would be visited.  ``phase_rule``
    selects the phase ordering rule, see :func:`phase_order`."""
    model = build_model(schedule, phase_rule)
    n = model.n
    final = quiesce(model, (NOT_STARTED,) * n)
    blocked = tuple(o for o in range(n) if final[o] != ENDED)
    unmatched = tuple(sorted(model.matching.unmatched))
    if not model.matching.ok:
        verdicts: dict[str, bool | None] = {p: None for p in PROPERTIES}
        verdicts["matching"] = True
        return ExecResult(verdicts, {"matching": model.matching.problems[0]}, 0, blocked, unmatched)

    witnesses: dict[str, str] = {}
    if model.meta:
        witnesses["phase"] = model.meta[0][0]

    label = model.label
    start: tuple[Status, Mem] = ((NOT_STARTED,) * n, model.init_mem)
    visited: set[tuple[Status, Mem]] = {start}
    stack = [start]
    while stack:
        status, mem = stack.pop()
        stuck = True
        for o in range(n):
            so = status[o]
            if so == NOT_STARTED:
                if not model.can_start(status, o):
                    continue
                stuck = False
                if "race" not in witnesses:
                    for p in model.conflicts[o]:
                        if status[p] == ACTIVE:
                            witnesses["race"] = f"{label(o)} starts while {label(p)} runs and they conflict"
                            break
                if "dataflow" not in witnesses:
                    for slot, v in model.read_expect[o]:
                        if mem[slot] != v:
                            got = mem[slot] if mem[slot] is not None else NOTHING
                            witnesses["dataflow"] = f"{label(o)} expects {v} but finds {got} at start"
                            break
                if "phase" not in witnesses:
                    for p in model.phase_before[o]:
                        if status[p] != ENDED:
                            witnesses["phase"] = (f"{label(o)} starts before {label(p)}"
                                                  " of an earlier phase ends")
                            break
                    for smp in model.phase_samplers[o]:
                        if "phase" not in witnesses and all(status[p] != ENDED for p in smp):
                            witnesses["phase"] = (f"{label(o)} starts before the previous step's token"
                                                  f" is sampled ({label(smp[0])})")
                if "deadlock" not in witnesses:
                    fp = model.fifo_pred[o]
                    if fp is not None and status[fp] != ENDED:
                        witnesses["deadlock"] = (f"{label(o)} starts before {label(fp)},"
                                                 " issued before it, ends")
                succ = (status[:o] + (ACTIVE,) + status[o + 1:], mem)
            elif so == ACTIVE:
                if not model.can_end(status, o):
                    continue
                stuck = False
                if "dataflow" not in witnesses:
                    for p in model.clobbers[o]:
                        if status[p] == ACTIVE:
                            witnesses["dataflow"] = f"{label(o)} overwrites what {label(p)} is reading"
                            break
                new_mem = mem
                if model.write_slots[o]:
                    lm = list(mem)
                    for slot, val in model.write_slots[o]:
                        lm[slot] = val
                    new_mem = tuple(lm)
                succ = (status[:o] + (ENDED,) + status[o + 1:], new_mem)
            else:
                continue
            if succ not in visited:
                if len(visited) >= max_states:
                    raise StateLimitExceeded(
                        f"{schedule.name}: more than {max_states} states; the explicit executor is for"
                        " small schedules")
                visited.add(succ)
                stack.append(succ)
        if stuck and "deadlock" not in witnesses and any(s != ENDED for s in status):
            stuck_ops = [label(o) for o in range(n) if status[o] != ENDED]
            witnesses["deadlock"] = "a run gets stuck with " + "; ".join(stuck_ops) + " unfinished"

    found: dict[str, bool | None] = {p: p in witnesses for p in PROPERTIES}
    return ExecResult(found, witnesses, len(visited), blocked, unmatched)
