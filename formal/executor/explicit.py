"""The explicit-state executor: an operational model of the v2 runtime, by
brute force.

It simulates the mechanism of DESIGN.md §2b (see :mod:`.mechanism`): a host
thread per rank issuing its ops in issue order and running host-stream work
(host computes, gloo collectives, host syncs, allocator calls) itself,
synchronously, each stream a FIFO of units (an op or a whole group call),
each communicator a queue on its rank, serial or concurrent progress across
communicators, point-to-point FIFOs whose messages have capacity 0 or are
buffered, broadcasts and scatters as pipelines from their root, reduces and
gathers into it, puts landing in the target rank's memory, CUDA events with
a recorded state that later records overwrite, and a caching allocator
handing freed blocks to later allocations.  It shares no code with the z3 engine or with
``syncproof.semantics``: matching (:mod:`.matching`), enabling, memory and the
property rules are all derived here from the schedule IR, so that the two can
be cross-checked against each other.

A state is the status of every op (not started / active / ended) plus the
contents of the memory points that some read expects a value in.  Memory is
modelled with explicit integer points: per rank and buffer, one coordinate per
axis, over a per-axis universe ``[min_lo - 1, max_hi + 1)`` of the finite
intervals the schedule uses (``{0}`` when it uses none); a full axis covers
the whole universe.  Memory is per *block*: a buffer that an ``alloc``
with ``reuses`` gives a freed buffer's block is that block (named by the
first buffer that owned it), so its accesses touch the old tensor's memory.
An op reads its read regions (on its own rank) during
``[start, end]`` and writes its write regions at its end; a put's write
regions are in its target rank's memory; a recv (a non-root broadcast member)
writes the values its message carried; a collective declared
``"completion": "weak"`` is still read by its peers after its own end, until
every member of its instance has ended.

Properties:

- ``matching``: some send, recv, collective or wait_signal is unmatched, or a
  matched send/recv pair disagrees on size (decided without running; when it
  is violated the other properties are left undecided, ``None``);
- ``deadlock``: a maximal run at the deadlock setting (messages of capacity 0
  unless eager, serial progress unless the schedule asserts concurrent
  progress) leaves some op unfinished.  Enabling is monotone, so every maximal
  run ends the same ops and firing events greedily decides it;
- ``dataflow``, ``race``, ``phase``: checked on every transition of every
  reachable state at the data setting (buffered messages unless rendezvous,
  concurrent progress).  When a maximal run at that setting cannot finish
  (the runtime could hang whatever the message sizes) they are undecided,
  ``None``.

  - ``dataflow``: a recv (a non-root broadcast member) declares other values
    than its message carried; at ``start(o)`` a point o reads holds another
    value than o expects; or while o reads it another op's end writes another
    value there;
  - ``race``: an op starts while a conflicting access of another op (on any
    rank: a put writes its target's memory) is in progress;
  - ``phase``: a decode op with an SP partition, two ops of one decode step and
    sequence with different tokens, or a start that breaks the phase order
    (see :func:`phase_order`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product
from operator import attrgetter
from typing import Any

from ..errors import SyncproofError
from ..ir import Kind, Op, Region, Schedule
from ..ir.region import FULL_LO
from ..result import PROPERTIES
from .matching import Matching, Message, landed_values, match, message_of, messages
from .mechanism import DATA, DEADLOCK, Enabling, build_enabling, fire_all

NOT_STARTED = 0
ACTIVE = 1
ENDED = 2

NOTHING = "<nothing>"
"""How a point that holds no value is shown in observations."""

Point = tuple[int, str, tuple[int, ...]]
"""A memory point: (rank, buffer, one coordinate per axis in buffer order)."""

Status = tuple[int, ...]
Mem = tuple[str | None, ...]

_reads_of = attrgetter("reads")
_writes_of = attrgetter("writes")
_PUT = Kind.PUT
_RECV = Kind.RECV
_BROADCAST = Kind.BROADCAST
_ALLOC = Kind.ALLOC


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


def memory_blocks(schedule: Schedule) -> dict[tuple[int, str], str]:
    """``(rank, buffer) -> block`` for every buffer that an ``alloc`` with
    ``reuses`` gives another buffer's block (the caching allocator hands the
    freed block of x to b: b's memory is x's).  A block is named by the first
    buffer that owned it; a buffer not listed is its own block."""
    out: dict[tuple[int, str], str] = {}
    if "alloc" not in schedule.features:
        return out
    for op in schedule.ops:
        if op.kind is _ALLOC and op.reuses is not None and op.buffer is not None:
            out[(op.rank, op.buffer)] = out.get((op.rank, op.reuses), op.reuses)
    return out


def axis_universes(schedule: Schedule) -> dict[tuple[str, str], tuple[int, int]]:
    """``(buffer, axis) -> (lo, hi)``: the half-open range of coordinates the
    executor models for that axis.  Buffers that share a block on some rank
    share their universes (the union of their intervals), so that points of
    one block are the same whichever buffer names them."""
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
    blocks = memory_blocks(schedule)
    if blocks:
        # one class per set of buffers sharing a block on any rank
        parent: dict[str, str] = {}

        def find(b: str) -> str:
            while parent.get(b, b) != b:
                b = parent[b]
            return b

        for (_, b), blk in blocks.items():
            rb, rk = find(b), find(blk)
            if rb != rk:
                parent[rb] = rk
        members: dict[str, list[str]] = defaultdict(list)
        for buf in schedule.buffers:
            members[find(buf.name)].append(buf.name)
        for names in members.values():
            if len(names) < 2:
                continue
            for axis in schedule.buffer_map[names[0]].axis_names:
                keys = [(b, axis) for b in names if (b, axis) in los]
                if keys:
                    lo = min(los[k] for k in keys)
                    hi = max(his[k] for k in keys)
                    for b in names:
                        los[(b, axis)] = lo
                        his[(b, axis)] = hi
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for buf in schedule.buffers:
        for axis in buf.axis_names:
            key = (buf.name, axis)
            out[key] = (los[key] - 1, his[key] + 1) if key in los else (0, 1)
    return out


def region_points(
    schedule: Schedule, universes: dict[tuple[str, str], tuple[int, int]], rank: int, region: Region,
    blocks: dict[tuple[int, str], str] | None = None,
) -> list[Point]:
    """Every modelled point of ``region`` on ``rank`` (clipped to the
    universe), in the block that holds the region's buffer on that rank
    (``blocks``, see :func:`memory_blocks`)."""
    buf = schedule.buffer_map[region.buffer]
    name = blocks.get((rank, buf.name), buf.name) if blocks else buf.name
    ranges: list[range] = []
    for axis in buf.axis_names:
        ulo, uhi = universes[(buf.name, axis)]
        iv = region.interval(axis)
        if _is_full(iv.lo):
            ranges.append(range(ulo, uhi))
        else:
            ranges.append(range(max(iv.lo, ulo), min(iv.hi, uhi)))
    return [(rank, name, coords) for coords in product(*ranges)]


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
    blocks = model.blocks
    name = blocks.get((rank, buf.name), buf.name) if blocks else buf.name
    return [(rank, name, coords) for coords in product(*ranges)]


def initial_memory(
    schedule: Schedule, universes: dict[tuple[str, str], tuple[int, int]],
    blocks: dict[tuple[int, str], str] | None = None,
) -> dict[Point, str]:
    """Initial contents: init entries in order, later ones overriding earlier
    (an entry for a reused buffer fills its block)."""
    mem: dict[Point, str] = {}
    for init in schedule.init:
        for rank in schedule.ranks:
            if init.applies_to(rank):
                for pt in region_points(schedule, universes, rank, init.region, blocks):
                    mem[pt] = init.value
    return mem


# ------------------------------------------------------------------ phases
def sequence_keys(schedule: Schedule) -> Callable[[Op], tuple[object, ...]]:
    """The sequences each op belongs to in the phase rules: its ``seqs``; an
    op without ``seqs`` belongs to every sequence of the batch (every entry of
    ``seqs`` on an op with a phase), or to the one batch-wide sequence ``"*"``
    when no op with a phase names a sequence."""
    every = sorted({q for op in schedule.ops if op.meta.phase is not None for q in op.meta.seqs})
    batch: tuple[object, ...] = tuple(every) if every else ("*",)

    def keys(op: Op) -> tuple[object, ...]:
        return tuple(op.meta.seqs) if op.meta.seqs else batch

    return keys


_WAITS_ONLY = frozenset({Kind.RECV, Kind.WAIT, Kind.RECORD, Kind.WAIT_SIGNAL, Kind.SYNC, Kind.ALLOC, Kind.FREE,
                         Kind.RECORD_STREAM})


def waits_only(op: Op) -> bool:
    """Does ``op`` only wait (so posting it early does no harm, phase rule
    "per-rank")?  A recv, wait, record, wait_signal, host sync, allocator
    call, or a non-root member of a broadcast or scatter (it only waits for
    the root's data, like a recv)."""
    k = op.kind
    return k in _WAITS_ONLY or ((k is Kind.BROADCAST or k is Kind.SCATTER) and op.rank != op.root)


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
    _seq_keys = sequence_keys(schedule)
    for op in decode:
        if op.meta.sp is not None:
            out.append((f"{schedule.label(op)} is a decode op with an SP partition", op.id, None))
    for i, a in enumerate(decode):
        for b in decode[i + 1:]:
            if (a.meta.step is not None and a.meta.step == b.meta.step and set(_seq_keys(a)) & set(_seq_keys(b))
                    and a.meta.tokens is not None and b.meta.tokens is not None
                    and a.meta.tokens != b.meta.tokens):
                out.append((f"{schedule.label(a)} and {schedule.label(b)} are one decode step of one"
                            " sequence but compute different tokens", a.id, b.id))
    return out


def phase_order(schedule: Schedule, rule: str = "per-rank"
                ) -> tuple[list[tuple[int, ...]], list[tuple[tuple[int, ...], ...]]]:
    """For each op: the ops that must have ended before it starts, and sets
    of samplers of which at least one must have ended, under the phase rules.

    Each sequence key (an entry of ``seqs``, or ``"*"``, the batch) orders its
    groups: prefill (-1), then decode steps by number.

    - ``"per-rank"`` (docs/format.md): for consecutive groups t0 < t1 of a
      key, on each rank every op of t0 ends before any op of t1 starts; and if
      t0 has ops marked ``sample``, every op of t1 (any rank) starts after one
      of them has ended.  Ops of t1 that only wait are exempt (recv, wait,
      record, wait_signal, host syncs, allocator calls, non-root members of a
      broadcast or scatter; see :func:`waits_only`): starting early does no
      harm; and sends of t0 may still be draining (their input is protected
      by dataflow and race).  An op without ``seqs`` is in every sequence
      (:func:`sequence_keys`).
    - ``"global"``: every op of any earlier group of the key, on any rank,
      ends before an op of a later group starts.
    """
    if rule not in ("per-rank", "global"):
        raise ValueError(f"unknown phase rule {rule!r}")
    ops = schedule.ops
    _seq_keys = sequence_keys(schedule)
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
        # An op that only waits (see waits_only): posting it early is harmless,
        # so it is never the op that starts too early (rule "per-rank").
        early = rule == "per-rank" and waits_only(op)
        if g is not None and not early:
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



# ------------------------------------------------------------------- model
def written_rank(op: Op) -> int:
    """The rank whose memory ``op``'s writes land in: a put's target, else its own."""
    if op.kind is _PUT:
        assert op.peer is not None
        return op.peer
    return op.rank


def effective_writes(schedule: Schedule, matching: Matching, o: int) -> list[tuple[int, Region, str]]:
    """``(rank, region, value)`` of each write of op ``o`` as it lands: in the
    target's memory for a put; the values its message carried for a recv or a
    non-root broadcast member."""
    op = schedule.ops[o]
    rank = written_rank(op)
    values: list[str] = [str(acc.value) for acc in op.writes]
    if op.kind is _RECV or op.kind is _BROADCAST:
        msg = message_of(schedule, matching, o)
        if msg is not None:
            values = landed_values(msg, op)
    return [(rank, acc.region, v) for acc, v in zip(op.writes, values, strict=True)]


@dataclass
class Model:
    """Everything about a schedule that does not depend on the state."""

    schedule: Schedule
    matching: Matching
    # axis_universes(schedule); None until first asked for (see ``universes``)
    known_universes: dict[tuple[str, str], tuple[int, int]] | None
    # every point each op reads (value or None) / writes (value), as it lands
    read_pts: list[list[tuple[Point, str | None]]]
    write_pts: list[list[tuple[Point, str]]]
    # start(o) races with p when p's write is in progress (race_w) or p's read (race_r)
    race_w: list[tuple[int, ...]]
    race_r: list[tuple[int, ...]]
    clobbers: list[tuple[int, ...]]        # ops whose expected reads o's writes break
    phase_before: list[tuple[int, ...]]    # ops that must have ended before o starts (phase)
    phase_samplers: list[tuple[tuple[int, ...], ...]]  # o starts after one of each set has ended
    meta: list[tuple[str, int, int | None]]
    # relevant memory (points some read expects a value in)
    slot_of: dict[Point, int]
    read_expect: list[tuple[tuple[int, str], ...]]
    write_slots: list[tuple[tuple[int, str], ...]]
    init_mem: Mem
    # weak collectives: their instance (their input is read until every member ends)
    weak: dict[int, tuple[int, ...]]
    # messages whose receiver declares other values than they carried
    bad_messages: list[Message]
    # (rank, buffer) -> the block it holds, for buffers that reuse a freed block
    blocks: dict[tuple[int, str], str] = field(default_factory=dict)
    _enablings: dict[str, Enabling] = field(default_factory=dict, repr=False)
    _finals: dict[str, bytearray] = field(default_factory=dict, repr=False)

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

    def enabling(self, setting: str) -> Enabling:
        """When each event may happen under ``setting`` (DEADLOCK or DATA)."""
        en = self._enablings.get(setting)
        if en is None:
            en = self._enablings[setting] = build_enabling(self.schedule, self.matching, setting)
        return en

    def final(self, setting: str) -> bytearray:
        """The events of a maximal run under ``setting`` (the same set for every maximal run)."""
        got = self._finals.get(setting)
        if got is None:
            got = self._finals[setting] = fire_all(self.enabling(setting), bytearray(2 * self.n))
        return got

    def stuck(self, setting: str) -> list[int]:
        """The ops a maximal run under ``setting`` never ends."""
        n = self.n
        fin = self.final(setting)
        return [o for o in range(n) if not fin[n + o]]


def build_model(schedule: Schedule, phase_rule: str = "per-rank", light: bool = False) -> Model:
    """The model of ``schedule``.  ``light`` (for replay) builds only what a
    single run needs: matching, with each op's points and the axis universes
    computed on demand and the enabling of a setting when first asked for;
    no all-pairs tables (conflicts, clobbers, phase rules, metadata rules),
    which replay asks for op by op."""
    ops = schedule.ops
    n = len(ops)
    matching = match(schedule)
    weak = {o: inst for o, inst in matching.instance.items()
            if ops[o].completion == "weak" and ops[o].kind.is_collective}
    blocks = memory_blocks(schedule)

    if light:
        def reads_of(o: int) -> list[Any]:
            op = ops[o]
            return [(pt, acc.value) for acc in op.reads
                    for pt in schedule_region_points(model, op.rank, acc.region)]

        def writes_of(o: int) -> list[Any]:
            return [(pt, v) for rank, region, v in effective_writes(schedule, matching, o)
                    for pt in schedule_region_points(model, rank, region)]

        model = Model(
            schedule=schedule, matching=matching, known_universes=None,
            read_pts=_LazyPoints(reads_of), write_pts=_LazyPoints(writes_of),  # type: ignore[arg-type]
            race_w=[], race_r=[], clobbers=[], phase_before=[], phase_samplers=[], meta=[],
            slot_of={}, read_expect=[], write_slots=[], init_mem=(), weak=weak, bad_messages=[], blocks=blocks,
        )
        return model

    universes = axis_universes(schedule)
    read_pts: list[list[tuple[Point, str | None]]] = []
    write_pts: list[list[tuple[Point, str]]] = []
    for op in ops:
        read_pts.append([(pt, acc.value) for acc in op.reads
                         for pt in region_points(schedule, universes, op.rank, acc.region, blocks)])
        write_pts.append([(pt, v) for rank, region, v in effective_writes(schedule, matching, op.id)
                          for pt in region_points(schedule, universes, rank, region, blocks)])

    rset = [{pt for pt, _ in r} for r in read_pts]
    wset = [{pt for pt, _ in w} for w in write_pts]
    race_w: list[list[int]] = [[] for _ in range(n)]
    race_r: list[list[int]] = [[] for _ in range(n)]
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            if wset[a] & wset[b] or rset[a] & wset[b]:
                race_w[a].append(b)   # a starting while b's write is in progress
            if wset[a] & rset[b]:
                race_r[a].append(b)   # a starting while b's read is in progress

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

    slots = sorted(expects)
    slot_of = {pt: i for i, pt in enumerate(slots)}
    read_expect = [tuple((slot_of[pt], v) for pt, v in read_pts[op.id] if v is not None) for op in ops]
    write_slots = [tuple((slot_of[pt], v) for pt, v in write_pts[op.id] if pt in slot_of) for op in ops]
    mem0 = initial_memory(schedule, universes, blocks)
    init_mem: Mem = tuple(mem0.get(pt) for pt in slots)

    return Model(
        schedule=schedule, matching=matching, known_universes=universes,
        read_pts=read_pts, write_pts=write_pts,
        race_w=[tuple(c) for c in race_w], race_r=[tuple(c) for c in race_r], clobbers=clobbers,
        phase_before=phase_before, phase_samplers=phase_samplers, meta=meta_problems(schedule),
        slot_of=slot_of, read_expect=read_expect, write_slots=write_slots, init_mem=init_mem,
        weak=weak, bad_messages=[msg for msg in messages(schedule, matching) if msg.mismatch], blocks=blocks,
    )


def status_of(n: int, happened: Sequence[int]) -> list[int]:
    """Per op: NOT_STARTED, ACTIVE or ENDED, from the events that happened."""
    return [ENDED if happened[n + o] else ACTIVE if happened[o] else NOT_STARTED for o in range(n)]


def reading(model: Model, status: Sequence[int], p: int) -> bool:
    """Is op ``p``'s read of its input in progress?  While it runs; for a weak
    collective, also after its end until every member of its instance ends."""
    sp = status[p]
    if sp == ACTIVE:
        return True
    inst = model.weak.get(p)
    return sp == ENDED and inst is not None and any(status[m] != ENDED for m in inst)


def message_sentence(model: Model, msg: Message) -> str:
    label = model.label
    declared = ", ".join(msg.declared) or "no value"
    carried = ", ".join(msg.carried or ()) or "no value"
    what = "its matched send" if model.schedule.ops[msg.receiver].kind is _RECV else "the root"
    return f"{label(msg.receiver)} declares {declared}; {what} {label(msg.sender)} carried {carried}"


# ---------------------------------------------------------------- explore
@dataclass(frozen=True)
class ExecResult:
    """What exploration found.

    ``violated`` maps each property to True / False, or None when it is not
    decided (every property but matching when matching is violated; dataflow,
    race and phase when no run can finish at the data setting).
    ``witnesses`` holds one sentence per violated property; ``blocked`` the
    ops a maximal run at the deadlock setting never ends; ``states`` the
    number of states visited at the data setting.
    """

    violated: dict[str, bool | None]
    witnesses: dict[str, str] = field(default_factory=dict)
    states: int = 0
    blocked: tuple[int, ...] = ()
    unmatched: tuple[int, ...] = ()


def _event_deps(model: Model, setting: str) -> tuple[list[tuple[tuple[int, int], ...]],
                                                     list[tuple[tuple[int, int], ...] | None]]:
    """For each op, the (op, minimal status) pairs its start needs, and its
    end needs (None: never), at ``setting``."""
    n = model.n
    ix = model.enabling(setting).index()
    en = ix.en

    def deps(c: int) -> tuple[tuple[int, int], ...]:
        codes = set(ix.preds(c))
        for k in ix.bars_of(c):
            codes.update(en.bar_members[k])
        return tuple(sorted((d, ACTIVE) if d < n else (d - n, ENDED) for d in codes))

    starts = [deps(o) for o in range(n)]
    ends: list[tuple[tuple[int, int], ...] | None] = [None if n + o in ix.never else deps(n + o)
                                                      for o in range(n)]
    return starts, ends


def explore(schedule: Schedule, max_states: int = 200_000, phase_rule: str = "per-rank") -> ExecResult:
    """Decide every property of ``schedule`` by running its mechanism: report
    which properties some run violates.  Raises :class:`StateLimitExceeded`
    when more than ``max_states`` states would be visited.  ``phase_rule``
    selects the phase ordering rule, see :func:`phase_order`."""
    model = build_model(schedule, phase_rule)
    n = model.n
    label = model.label
    blocked = tuple(model.stuck(DEADLOCK))
    unmatched = tuple(sorted(model.matching.unmatched))
    if not model.matching.ok:
        verdicts: dict[str, bool | None] = {p: None for p in PROPERTIES}
        verdicts["matching"] = True
        return ExecResult(verdicts, {"matching": model.matching.problems[0]}, 0, blocked, unmatched)

    witnesses: dict[str, str] = {}
    if blocked:
        witnesses["deadlock"] = ("a run gets stuck with " + "; ".join(label(o) for o in blocked)
                                 + " unfinished (messages of capacity 0"
                                 + (", serial progress)" if schedule.progress != "concurrent" else ")"))
    found: dict[str, bool | None] = {p: p in witnesses for p in PROPERTIES}
    data_stuck = model.stuck(DATA)
    if data_stuck:
        # the runtime can hang whatever the message sizes: no complete run to judge
        for prop in ("dataflow", "race", "phase"):
            found[prop] = None
        return ExecResult(found, witnesses, 0, blocked, unmatched)
    if model.bad_messages:
        witnesses["dataflow"] = message_sentence(model, model.bad_messages[0])
    if model.meta:
        witnesses["phase"] = model.meta[0][0]

    start_deps, end_deps = _event_deps(model, DATA)
    weak = model.weak
    start: tuple[Status, Mem] = ((NOT_STARTED,) * n, model.init_mem)
    visited: set[tuple[Status, Mem]] = {start}
    stack = [start]
    while stack:
        status, mem = stack.pop()
        for o in range(n):
            so = status[o]
            if so == NOT_STARTED:
                if any(status[p] < need for p, need in start_deps[o]):
                    continue
                if "race" not in witnesses:
                    for p in model.race_w[o]:
                        if status[p] == ACTIVE:
                            witnesses["race"] = f"{label(o)} starts while {label(p)} runs and they conflict"
                            break
                    else:
                        for p in model.race_r[o]:
                            if reading(model, status, p):
                                still = "runs" if status[p] == ACTIVE else "may still be read by its peers"
                                witnesses["race"] = f"{label(o)} starts while {label(p)} {still} and they conflict"
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
                succ = (status[:o] + (ACTIVE,) + status[o + 1:], mem)
            elif so == ACTIVE:
                d = end_deps[o]
                if d is None or any(status[p] < need for p, need in d):
                    continue
                new_status = status[:o] + (ENDED,) + status[o + 1:]
                if "dataflow" not in witnesses:
                    for p in model.clobbers[o]:
                        # (a weak collective's own end may be the one that ends its read)
                        if status[p] == ACTIVE or (p in weak and reading(model, new_status, p)):
                            witnesses["dataflow"] = f"{label(o)} overwrites what {label(p)} is reading"
                            break
                new_mem = mem
                if model.write_slots[o]:
                    lm = list(mem)
                    for slot, val in model.write_slots[o]:
                        lm[slot] = val
                    new_mem = tuple(lm)
                succ = (new_status, new_mem)
            else:
                continue
            if succ not in visited:
                if len(visited) >= max_states:
                    raise StateLimitExceeded(
                        f"{schedule.name}: more than {max_states} states; the explicit executor is for"
                        " small schedules")
                visited.add(succ)
                stack.append(succ)

    found = {p: p in witnesses for p in PROPERTIES}
    return ExecResult(found, witnesses, len(visited), blocked, unmatched)
