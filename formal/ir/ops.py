"""Ops, the steps of a schedule, and their metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from .region import Interval, Region

if TYPE_CHECKING:
    from .choices import OpChoice


class Kind(StrEnum):
    COMPUTE = "compute"
    SEND = "send"
    RECV = "recv"
    ALL_REDUCE = "all_reduce"
    ALL_GATHER = "all_gather"
    REDUCE_SCATTER = "reduce_scatter"
    ALL_TO_ALL = "all_to_all"
    BROADCAST = "broadcast"
    BARRIER = "barrier"
    REDUCE = "reduce"
    GATHER = "gather"
    SCATTER = "scatter"
    RECORD = "record"
    WAIT = "wait"
    PUT = "put"
    WAIT_SIGNAL = "wait_signal"
    SYNC = "sync"
    ALLOC = "alloc"
    FREE = "free"
    RECORD_STREAM = "record_stream"

    def __str__(self) -> str:
        return self.value

    @property
    def is_collective(self) -> bool:
        return self in COLLECTIVES

    @property
    def is_p2p(self) -> bool:
        return self in (Kind.SEND, Kind.RECV)

    @property
    def is_rooted(self) -> bool:
        """A collective with a root: broadcast, reduce, gather, scatter."""
        return self in ROOTED

    @property
    def is_comm(self) -> bool:
        """An op that runs on a communicator (NCCL): p2p and collectives."""
        return self in COMM_KINDS


COLLECTIVES = frozenset(
    {
        Kind.ALL_REDUCE,
        Kind.ALL_GATHER,
        Kind.REDUCE_SCATTER,
        Kind.ALL_TO_ALL,
        Kind.BROADCAST,
        Kind.BARRIER,
        Kind.REDUCE,
        Kind.GATHER,
        Kind.SCATTER,
    }
)
ROOTED = frozenset({Kind.BROADCAST, Kind.REDUCE, Kind.GATHER, Kind.SCATTER})
HOST_STREAM = "host"
"""The stream name of a rank's host thread: ops on it run synchronously at
their place in issue order (filling a pinned buffer, a gloo collective)."""
ALLOCATOR_KINDS = frozenset({Kind.ALLOC, Kind.FREE, Kind.RECORD_STREAM})
HOST_ONLY = ALLOCATOR_KINDS | {Kind.SYNC}
COMM_KINDS = COLLECTIVES | {Kind.SEND, Kind.RECV}
P2P_MODES_OP = ("eager", "rendezvous")

PHASES = ("prefill", "decode")


@dataclass(frozen=True)
class Access:
    """One region an op reads or writes.

    For a write, ``value`` is the logical datum the write puts there.  For a
    read it is the datum the read *expects* (the specification); ``None``
    means the read accepts any value and only takes part in race checks.
    """

    region: Region
    value: str | None

    def __str__(self) -> str:
        return f"{self.region}={self.value if self.value is not None else '*'}"


@dataclass(frozen=True)
class Meta:
    """What an op belongs to; it makes output readable and drives the phase rules.

    ``tokens`` are the query (new) tokens the op computes for; ``sp`` marks a
    sequence-parallel partition as ``(index, count)``; ``sample`` marks the op
    that produces a decode step's sampled token.
    """

    phase: str | None = None
    step: int | None = None
    layer: int | None = None
    mb: int | None = None
    seqs: tuple[int, ...] = ()
    tokens: Interval | None = None
    sp: tuple[int, int] | None = None
    sample: bool = False

    def suffix(self) -> str:
        parts: list[str] = []
        if self.layer is not None:
            parts.append(f"L{self.layer}")
        if self.phase is not None:
            parts.append(self.phase)
        if self.step is not None:
            parts.append(f"t{self.step}")
        if self.mb is not None:
            parts.append(f"mb{self.mb}")
        if self.seqs:
            parts.append("seq" + ",".join(str(s) for s in self.seqs))
        if self.tokens is not None:
            parts.append(f"tok{self.tokens.lo}:{self.tokens.hi}")
        if self.sp is not None:
            parts.append(f"sp{self.sp[0]}/{self.sp[1]}")
        if self.sample:
            parts.append("sample")
        return " ".join(parts)


@dataclass(frozen=True)
class Op:
    """One step on one stream of one rank.

    ``id`` is the op's position in ``Schedule.ops``; ``index`` its position in
    its rank's issue order (the order the host enqueues the rank's ops across
    all of its streams).
    The loaders build ops without ``__init__`` and leave out of the instance
    dict the fields of format v2 that are None: a field with a default is
    also a class attribute, which stands for it (a million ops, a dozen
    fewer dict entries each).  Read fields as attributes, never from
    ``__dict__``.  An op alike to an earlier one but for its id, rank and
    index is copied from a template dict that holds them too: updating the
    new op's empty instance dict from a whole dict is one copy in CPython,
    and overwriting the three entries after it inserts nothing.
    """

    id: int
    rank: int
    index: int
    stream: str
    kind: Kind
    name: str = ""
    peer: int | None = None
    channel: str = "0"
    group: str | None = None
    event: str | None = None
    root: int | None = None
    size: int | None = None
    dtype: str | None = None
    reads: tuple[Access, ...] = ()
    writes: tuple[Access, ...] = ()
    meta: Meta = field(default_factory=Meta)
    # ---- format v2 (all optional; None means the default)
    comm: str | None = None  # the NCCL communicator (default: see ``communicator``)
    p2p: str | None = None  # per-message override of the schedule's p2p mode: "eager" or "rendezvous"
    batch: str | None = None  # group call id: parts issued in one ncclGroupStart/End run as one node
    signal: str | None = None  # put: the signal it sets on the target; wait_signal: the one it waits for
    counts: tuple[int, ...] | None = None  # per-member counts (all_gather/reduce_scatter) or send sizes (all_to_all)
    recv_counts: tuple[int, ...] | None = None  # all_to_all: what this member expects from each member
    completion: str | None = None  # "weak": a custom collective without an end barrier
    # ---- host and memory (format v2): sync, alloc, free, record_stream
    target: str | None = None  # sync: the stream synchronized; alloc: its allocation stream; record_stream: the stream
    of: str | None = None  # sync: the name of the op whose completion the host waits for (work.wait(), .item())
    buffer: str | None = None  # alloc/free/record_stream: the buffer (tensor) allocated, freed or marked
    reuses: str | None = None  # alloc: the freed buffer whose block this allocation gets
    # ---- choices (format v2): the op's guard and size expressions; None for a plain op
    choice: OpChoice | None = None

    @property
    def on_host(self) -> bool:
        return self.stream == HOST_STREAM

    @property
    def communicator(self) -> str | None:
        """The communicator this op runs on: its ``comm`` if given; for a
        collective, its group; for a send or recv, one communicator per rank
        pair (as torch's ProcessGroupNCCL creates for point to point), and a
        separate one per non-default ``channel``.  None for other ops."""
        if self.comm is not None:
            return self.comm
        kind = self.kind
        if kind in COLLECTIVES:
            return self.group
        if kind is Kind.SEND or kind is Kind.RECV:
            assert self.peer is not None
            a, b = (self.rank, self.peer) if self.rank < self.peer else (self.peer, self.rank)
            return f"p2p:{a}-{b}" if self.channel == "0" else f"p2p:{a}-{b}:{self.channel}"
        return None

    @property
    def where(self) -> str:
        """Location for messages: ``rank 1, op 3 (all_reduce on comm)``."""
        return f"rank {self.rank}, op {self.index} ({self.kind} on {self.stream})"
