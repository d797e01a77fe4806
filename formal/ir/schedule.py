"""The schedule: ranks, groups, buffers, initial contents and ops."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from itertools import compress, repeat
from operator import attrgetter, eq

from .choices import Choice
from .ops import ALLOCATOR_KINDS, HOST_STREAM, Kind, Op
from .region import FULL, Interval, Region, shared_interval

P2P_MODES = ("any", "rendezvous", "eager")
_STREAM = attrgetter("stream")
_FEW_STREAMS = 8  # above this many streams on a rank, one pass that appends to each stream's list
# The kinds seq_numbers numbers: collectives, sends, recvs, puts and signal waits.
_NUMBERED = frozenset(k for k in Kind if k.is_collective or k in (Kind.SEND, Kind.RECV, Kind.PUT, Kind.WAIT_SIGNAL))
PROGRESS_MODES = ("any", "concurrent")


@dataclass(frozen=True)
class Buffer:
    """A named buffer that exists on every rank, with its axes in order.
    An axis extent of ``None`` means unbounded."""

    name: str
    axes: tuple[tuple[str, int | None], ...] = ()

    @cached_property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(a for a, _ in self.axes)

    @cached_property
    def whole(self) -> tuple[tuple[str, Interval], ...]:
        """Each axis with its whole extent (0:extent, or FULL when unbounded): a
        region's box for the axes it leaves out."""
        return tuple((a, FULL if ext is None else shared_interval(0, ext)) for a, ext in self.axes)


@dataclass(frozen=True)
class InitValue:
    """A region that holds ``value`` before the schedule runs (weights,
    a KV cache filled by an earlier phase).  ``ranks`` of ``None`` means
    every rank."""

    region: Region
    value: str
    ranks: tuple[int, ...] | None = None

    def applies_to(self, rank: int) -> bool:
        return self.ranks is None or rank in self.ranks


def op_features(op: Op) -> frozenset[str]:
    """The features of :attr:`Schedule.features` that one op shows by itself
    (all but "re-recorded", which takes the ops before it)."""
    out: set[str] = set()
    _add_op_features(op, out)
    return frozenset(out)


def _add_op_features(op: Op, out: set[str]) -> None:
    if op.batch is not None:
        out.add("batch")
    if op.kind is Kind.PUT:
        out.add("put")
    if op.completion is not None:
        out.add("weak")
    if op.p2p is not None:
        out.add("override")
    if op.comm is not None:
        out.add("comm")
    if op.stream == HOST_STREAM:
        out.add("host")
    if op.kind in ALLOCATOR_KINDS:
        out.add("alloc")
    if op.choice is not None:
        out.add("choice")


@dataclass(frozen=True)
class Schedule:
    name: str
    ranks: tuple[int, ...]
    groups: tuple[tuple[str, tuple[int, ...]], ...]
    buffers: tuple[Buffer, ...]
    ops: tuple[Op, ...]
    init: tuple[InitValue, ...] = ()
    p2p: str = "any"
    description: str = ""
    progress: str = "any"
    source: str = field(default="<schedule>", compare=False)
    choices: tuple[Choice, ...] = ()  # DESIGN.md section 2c: a choice schedule is checked for every assignment
    selected: str = ""  # the schedule one assignment of a choice schedule selects: that assignment, as text

    # ---- lookups -------------------------------------------------------
    @cached_property
    def group_map(self) -> dict[str, tuple[int, ...]]:
        return dict(self.groups)

    @cached_property
    def buffer_map(self) -> dict[str, Buffer]:
        return {b.name: b for b in self.buffers}

    @cached_property
    def by_rank(self) -> dict[int, tuple[Op, ...]]:
        out: dict[int, list[Op]] = {r: [] for r in self.ranks}
        for op in self.ops:
            out[op.rank].append(op)
        return {r: tuple(v) for r, v in out.items()}

    @cached_property
    def features(self) -> frozenset[str]:
        """Which v2 constructs the ops use: "batch", "put", "weak", "override"
        (a per-op p2p mode), "comm" (an explicit communicator), "host" (an op
        on the host stream), "alloc" (an allocator call), "choice" (an op
        with a guard or size expression), "re-recorded" (an event recorded
        more than once on a rank).  Lets validation
        and the semantics skip passes a schedule does not need."""
        out: set[str] = set()
        recorded: set[tuple[int, str | None]] = set()
        add = _add_op_features
        for op in self.ops:
            add(op, out)
            if op.kind is Kind.RECORD:
                if (op.rank, op.event) in recorded:
                    out.add("re-recorded")
                recorded.add((op.rank, op.event))
        return frozenset(out)

    @cached_property
    def batch_parts(self) -> dict[int, int]:
        """For every part of a group call but its first: its position j >= 1
        in the group call (op id -> j)."""
        part: dict[int, int] = {}
        if "batch" not in self.features:
            return part
        for ops in self.streams.values():
            prev: Op | None = None
            j = 0
            for op in ops:
                j = j + 1 if (op.batch is not None and prev is not None and prev.batch == op.batch) else 0
                if j:
                    part[op.id] = j
                prev = op
        return part

    @cached_property
    def streams(self) -> dict[tuple[int, str], tuple[Op, ...]]:
        """Program order of every (rank, stream)."""
        out: dict[tuple[int, str], tuple[Op, ...]] = {}
        for r, ops in self.by_rank.items():  # (one dict per rank: no key tuple made per op)
            names = list(map(_STREAM, ops))
            distinct = dict.fromkeys(names)  # the rank's streams, in first-issue order
            if len(distinct) <= _FEW_STREAMS:  # a few streams: one C-level pass over the rank per stream
                for stream in distinct:
                    out[(r, stream)] = tuple(compress(ops, map(eq, names, repeat(stream))))
                continue
            per: dict[str, list[Op]] = {}
            for op, stream in zip(ops, names, strict=True):
                lst = per.get(stream)
                if lst is None:
                    per[stream] = [op]
                else:
                    lst.append(op)
            for stream, lst in per.items():
                out[(r, stream)] = tuple(lst)
        # in the order their first ops are issued (the order of s.ops), as one pass over s.ops gives them
        return dict(sorted(out.items(), key=lambda item: item[1][0].id))

    @cached_property
    def seq_numbers(self) -> tuple[int | None, ...]:
        """For each op: its instance number among the collectives its rank
        issues on its group, or its FIFO number among the sends (receives)
        on its (communicator, src, dst), or among the puts (signal waits) on
        its (src, dst, signal).  ``None`` for other ops."""
        counters: dict[tuple[object, ...], int] = defaultdict(int)
        out: list[int | None] = []
        numbered = _NUMBERED
        for op in self.ops:
            if op.kind not in numbered:  # most ops: compute, record, wait, host and allocator calls
                out.append(None)
                continue
            key: tuple[object, ...] | None = None
            if op.kind.is_collective:
                key = ("coll", op.rank, op.group)
            elif op.kind is Kind.SEND:
                key = ("send", op.communicator, op.rank, op.peer)
            elif op.kind is Kind.RECV:
                key = ("recv", op.communicator, op.peer, op.rank)
            elif op.kind is Kind.PUT:
                key = ("put", op.rank, op.peer, op.signal)
            elif op.kind is Kind.WAIT_SIGNAL:
                key = ("wsig", op.peer, op.rank, op.signal)
            if key is None:
                out.append(None)
            else:
                out.append(counters[key])
                counters[key] += 1
        return tuple(out)

    @cached_property
    def labels(self) -> tuple[str, ...]:
        """The canonical string of every op, e.g. ``r1/comm: all_reduce#3(tp) L2 decode t4``."""
        return tuple(self._label(op) for op in self.ops)

    def label(self, op: Op | int) -> str:
        """The canonical string of one op; made on first request (a message
        about two ops of a million-op schedule should not label them all)."""
        i = op if isinstance(op, int) else op.id
        cache = self._label_cache
        text = cache.get(i)
        if text is None:
            text = cache[i] = self._label(self.ops[i])
        return text

    @cached_property
    def _label_cache(self) -> dict[int, str]:
        return {}

    def _label(self, op: Op) -> str:
        k = self.seq_numbers[op.id]
        ch = f",{op.comm}" if op.comm is not None else "" if op.channel == "0" else f",{op.channel}"
        if op.kind is Kind.COMPUTE:
            body = op.name or "compute"
        elif op.kind is Kind.SEND:
            body = f"send(->{op.peer}{ch})#{k}"
        elif op.kind is Kind.RECV:
            body = f"recv(<-{op.peer}{ch})#{k}"
        elif op.kind.is_collective:
            body = f"{op.kind}#{k}({op.group})"
        elif op.kind is Kind.PUT:
            sig = f",{op.signal}" if op.signal else ""
            body = f"put(->{op.peer}{sig})#{k}"
        elif op.kind is Kind.WAIT_SIGNAL:
            body = f"wait_signal(<-{op.peer},{op.signal})#{k}"
        elif op.kind is Kind.SYNC:
            body = (f"sync(event {op.event})" if op.event is not None else f"sync(stream {op.target})"
                    if op.target is not None else f"sync(op {op.of})" if op.of is not None else "sync(device)")
        elif op.kind is Kind.ALLOC:
            body = f"alloc({op.buffer} on {op.target}" + (f", reuses {op.reuses})" if op.reuses else ")")
        elif op.kind is Kind.FREE:
            body = f"free({op.buffer})"
        elif op.kind is Kind.RECORD_STREAM:
            body = f"record_stream({op.buffer}, {op.target})"
        else:
            body = f"{op.kind}({op.event})"
        if op.name and op.kind is not Kind.COMPUTE:
            body += f" {op.name}"
        suffix = op.meta.suffix()
        text = f"r{op.rank}/{op.stream}: {body}"
        return f"{text} {suffix}" if suffix else text

    def find(self, text: str) -> Op:
        """The op named by a canonical label, a unique prefix of one, or
        ``r<rank>#<index>`` (rank and issue index).  The parser back from
        labels used in golden files and counterexamples."""
        from ..errors import UsageError

        m = re.fullmatch(r"\s*r(\d+)#(\d+)\s*", text)
        if m:
            rank, idx = int(m.group(1)), int(m.group(2))
            ops = self.by_rank.get(rank, ())
            if idx < len(ops):
                return ops[idx]
            raise UsageError(f"{self.source}: no op {text!r}: rank {rank} has {len(ops)} ops")
        text = text.strip()
        exact = [op for op in self.ops if self.labels[op.id] == text]
        if len(exact) == 1:
            return exact[0]
        pref = [op for op in self.ops if self.labels[op.id].startswith(text)]
        if len(pref) == 1:
            return pref[0]
        if not pref and not exact:
            raise UsageError(f"{self.source}: no op is labelled {text!r}")
        raise UsageError(
            f"{self.source}: {text!r} names {len(exact) or len(pref)} ops; give the full label"
            " or r<rank>#<index>"
        )

    @property
    def size(self) -> int:
        return len(self.ops)
