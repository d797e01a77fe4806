"""Random small valid plain schedules (format version 2): :func:`schedules`
and the building blocks it draws with.

The schedules are small (2-3 ranks, 1-2 streams per rank, about ten ops) so
that the independent executor explores them in well under a second, and
varied enough to hit every property both ways and every construct of the
runtime model (docs/semantics.md):

* the schedule's ``p2p`` mode (any, rendezvous, eager) and ``progress`` (any,
  concurrent), and per-op ``p2p`` overrides on sends, recvs and rooted
  collectives;
* communicators: the default one per rank pair, channels (a separate
  communicator each), explicit ``comm`` names (a send/recv on a group's
  communicator, a collective on a second communicator of its group), and
  one communicator's ops spread over several streams of a rank;
* group calls (``batch``): consecutive sends, recvs or collectives of one
  rank on one stream, the peer's counterparts batched or not;
* every collective kind, on the group of all ranks or on a two-rank group:
  rooted ones (broadcast, reduce, gather, scatter) with a random root,
  all_gather / reduce_scatter ``counts``, all_to_all ``counts`` and
  ``recv_counts`` (sometimes mismatched), ``completion: "weak"`` on
  all_reduce; and sometimes a member skips or issues another kind;
* puts with and without a signal, and wait_signals (sometimes with no put to
  bind to), sometimes followed by a read of what the put wrote;
* values carried by messages: a recv (a broadcast member) usually declares
  what its send (the root) read, sometimes another value;
* reads expecting values from a small pool (sometimes right, sometimes
  wrong), p2p pairs (sometimes unmatched, crossed, of different sizes),
  record/wait pairs (the wait sometimes issued first), initial values and
  phase metadata.

The budget counts ops; an action may overshoot it by a few ops (a collective
adds one op per member).  ``features`` restricts the actions drawn (see
:data:`FEATURES`); the default draws exactly what the project's own
differential tests draw.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from ..ir import Schedule, ScheduleBuilder
from ..ir.builder import RankBuilder

VALUES = ("a", "b", "c")
# (weights by repetition) the kinds the "coll" action draws
COLLECTIVE_KINDS = ("all_reduce", "all_reduce", "all_gather", "reduce_scatter", "all_to_all", "barrier",
                    "broadcast", "broadcast", "reduce", "gather", "scatter")
ALL_COLLECTIVE_KINDS = tuple(sorted(set(COLLECTIVE_KINDS)))
ROOTED = frozenset({"broadcast", "reduce", "gather", "scatter"})
P2P_MODES = ("any", "rendezvous", "eager")
PROGRESS_MODES = ("any", "concurrent")
_OVERRIDE = st.sampled_from((None,) * 6 + ("eager", "rendezvous"))


@st.composite
def regions(draw: st.DrawFn, buffers: dict[str, int]) -> str:
    """A region of one of ``buffers`` (name -> extent of its one axis ``i``):
    the whole buffer (one time in four) or a box ``name[i=lo:hi]``."""
    name = draw(st.sampled_from(sorted(buffers)))
    ext = buffers[name]
    if draw(st.integers(0, 3)) == 0:
        return name
    lo = draw(st.integers(0, ext - 1))
    hi = draw(st.integers(lo + 1, ext))
    return f"{name}[i={lo}:{hi}]"


@st.composite
def accesses(draw: st.DrawFn, buffers: dict[str, int], *, write: bool, allow_none: bool,
              values: tuple[str, ...] = VALUES) -> dict[str, Any]:
    """An op's reads or writes: zero or one access (writes within one op must
    not overlap), ``{region: value}`` with a value from ``values``; a read
    (``allow_none``) sometimes expects no particular value (``None``)."""
    if not draw(st.booleans()):
        return {}
    region = draw(regions(buffers))
    if allow_none and not write and draw(st.integers(0, 4)) == 0:
        return {region: None}
    return {region: draw(st.sampled_from(values))}


@st.composite
def _received(draw: st.DrawFn, buffers: dict[str, int], carried: dict[str, Any],
              values: tuple[str, ...]) -> dict[str, Any]:
    """What a receiver (a recv, a broadcast member) declares it writes: mostly
    the values its sender carried (``carried``: the sender's reads), sometimes
    another value, sometimes nothing."""
    pick = draw(st.integers(0, 9))
    if pick == 0:
        return {}
    if pick <= 6 and carried and None not in carried.values():
        return {draw(regions(buffers)): v for v in carried.values()}
    return draw(accesses(buffers, write=True, allow_none=False, values=values))


@st.composite
def op_meta(draw: st.DrawFn) -> dict[str, Any]:
    """Builder keyword arguments for an op's metadata, often none: a phase,
    a decode step (and tokens), a sequence, an SP shard, a sampling flag."""
    if draw(st.integers(0, 2)) != 0:
        return {}
    meta: dict[str, Any] = {}
    phase = draw(st.sampled_from(("prefill", "decode")))
    meta["phase"] = phase
    if phase == "decode":
        meta["step"] = draw(st.integers(0, 1))  # always set: see test_differential
        if draw(st.integers(0, 2)) == 0:
            meta["tokens"] = draw(st.sampled_from(("0:1", "1:2")))
    if draw(st.booleans()):
        meta["seqs"] = [draw(st.integers(0, 1))]
    if draw(st.integers(0, 5)) == 0:
        meta["sp"] = draw(st.sampled_from(("0/2", "1/2")))
    if draw(st.integers(0, 3)) == 0:
        meta["sample"] = True
    return meta


class _Gen:
    """The state of one schedule being drawn: ranks, streams, buffers,
    groups and their communicators, counters for fresh names."""

    def __init__(self, draw: st.DrawFn, values: tuple[str, ...], max_ranks: int) -> None:
        self.draw = draw
        self.values = values
        n_ranks = draw(st.integers(2, max(2, min(3, max_ranks))))
        self.ranks = list(range(n_ranks))
        self.b = ScheduleBuilder("random", p2p=draw(st.sampled_from(P2P_MODES)),
                                 progress=draw(st.sampled_from(PROGRESS_MODES)))
        self.groups: dict[str, list[int]] = {"all": self.ranks}
        if n_ranks == 3 and draw(st.booleans()):
            self.groups["pair"] = draw(st.sampled_from(([0, 1], [1, 2], [0, 2])))
        for g, members in self.groups.items():
            self.b.group(g, members)
        self.buffers: dict[str, int] = {}
        for name in ("x", "y")[: draw(st.integers(1, 2))]:
            self.buffers[name] = draw(st.integers(1, 4))
            self.b.buffer(name, i=self.buffers[name])
        self.streams = {r: ["s0", "s1"][: draw(st.integers(1, 2))] for r in self.ranks}
        self.rb = {r: self.b.rank(r) for r in self.ranks}
        self.calls = {r: 0 for r in self.ranks}
        self.events = 0
        self.signals = 0

    # ---- small draws
    def stream(self, r: int) -> str:
        return self.draw(st.sampled_from(self.streams[r]))

    def reads(self, *, allow_none: bool = True) -> dict[str, Any] | None:
        return self.draw(accesses(self.buffers, write=False, allow_none=allow_none, values=self.values)) or None

    def writes(self) -> dict[str, Any] | None:
        return self.draw(accesses(self.buffers, write=True, allow_none=False, values=self.values)) or None

    def received(self, carried: dict[str, Any] | None) -> dict[str, Any] | None:
        return self.draw(_received(self.buffers, carried or {}, self.values)) or None

    def meta(self) -> dict[str, Any]:
        return self.draw(op_meta())

    def batch_id(self, r: int) -> str:
        self.calls[r] += 1
        return f"g{self.calls[r]}"

    def p2p_comm(self, a: int, c: int) -> dict[str, Any]:
        """The communicator of a message between ``a`` and ``c``: the pair's
        default (mostly), a channel, or the communicator of a group holding
        both (NCCL point to point on a collective's communicator)."""
        pick = self.draw(st.integers(0, 9))
        if pick <= 5:
            return {}
        if pick <= 7:
            return {"channel": "1"}
        shared = [g for g, ms in self.groups.items() if a in ms and c in ms]
        g = self.draw(st.sampled_from(shared))
        return {"comm": g if self.draw(st.booleans()) else f"{g}-2"}

    def coll_comm(self, group: str) -> str | None:
        """A collective's communicator: its group's (mostly), or a second one
        of the same group."""
        return f"{group}-2" if self.draw(st.integers(0, 4)) == 0 else None

    def consume(self, r: int, region_values: dict[str, Any] | None) -> int:
        """Sometimes a compute on ``r`` reading what an op just wrote there
        (so that proved dataflow is common, not only violations)."""
        if not region_values or self.draw(st.integers(0, 2)) != 0:
            return 0
        self.rb[r].compute("use", stream=self.stream(r), reads=dict(region_values), **self.meta())
        return 1

    # ---- actions; each returns the number of ops it added
    def compute(self) -> int:
        r = self.draw(st.sampled_from(self.ranks))
        self.rb[r].compute("k", stream=self.stream(r), reads=self.reads(), writes=self.writes(), **self.meta())
        return 1

    def p2p(self) -> int:
        draw = self.draw
        src = draw(st.sampled_from(self.ranks))
        dst = draw(st.sampled_from([r for r in self.ranks if r != src]))
        comm = self.p2p_comm(src, dst)
        which = draw(st.sampled_from(("both",) * 8 + ("send", "recv")))
        size = draw(st.sampled_from((None, None, 8)))
        rsize = size if draw(st.integers(0, 9)) else draw(st.sampled_from((None, 4)))
        added = 0
        carried = self.reads()
        if which in ("both", "send"):
            self.rb[src].send(dst, stream=self.stream(src), size=size, reads=carried, p2p=draw(_OVERRIDE),
                              **comm, **self.meta())
            added += 1
        if which in ("both", "recv"):
            got = self.received(carried)
            self.rb[dst].recv(src, stream=self.stream(dst), size=rsize, writes=got, p2p=draw(_OVERRIDE),
                              **comm, **self.meta())
            added += 1 + self.consume(dst, got)
        return added

    def exchange(self) -> int:
        """Both ranks send to and receive from each other: with blocking
        messages and sends first on one stream, the classic pipeline hang;
        sometimes one side (or both) issues its pair as a group call, which
        never blocks itself."""
        draw = self.draw
        a, c = draw(st.permutations(self.ranks))[:2]
        comm = self.p2p_comm(a, c)
        for me, other in ((a, c), (c, a)):
            stream = self.stream(me)
            batch = self.batch_id(me) if draw(st.integers(0, 2)) == 0 else None
            first_send = draw(st.booleans())
            for part in (("send", "recv") if first_send else ("recv", "send")):
                if part == "send":
                    self.rb[me].send(other, stream=stream, batch=batch, p2p=draw(_OVERRIDE), **comm)
                else:
                    self.rb[me].recv(other, stream=stream, batch=batch, p2p=draw(_OVERRIDE), **comm)
        return 4

    def crossed(self) -> int:
        """Two ranks issue two communication ops between them in opposite
        orders (messages either way, or a collective of a group holding
        both): a hang once messages block or kernels of different
        communicators do not co-run, unless streams, eager messages or
        concurrent progress untie it."""
        draw = self.draw
        a, c = draw(st.permutations(self.ranks))[:2]
        shared = sorted(g for g, ms in self.groups.items() if a in ms and c in ms)
        ops: list[tuple[str, Any]] = []
        for _ in range(2):
            what = draw(st.sampled_from(("a->c", "c->a", "coll")))
            if what == "coll":
                kind = draw(st.sampled_from(("all_reduce", "broadcast")))
                ops.append(("coll", (draw(st.sampled_from(shared)), kind)))
            else:
                ops.append((what, self.p2p_comm(a, c)))
        added = 0
        for me, order in ((a, ops), (c, ops[::-1])):
            for what, arg in order:
                stream = self.stream(me)
                if what == "coll":
                    group, kind = arg
                    for r in self.groups[group]:
                        if r in (a, c) and r != me:
                            continue
                        if r not in (a, c) and me != a:
                            continue  # the other members join once, in a's order
                        self.rb[r].collective(kind, group, stream=self.stream(r) if r != me else stream,
                                              root=c if kind == "broadcast" else None, p2p=draw(_OVERRIDE)
                                              if kind == "broadcast" else None)
                        added += 1
                else:
                    snd = what[0] == ("a" if me == a else "c")
                    other = c if me == a else a
                    if snd:
                        self.rb[me].send(other, stream=stream, p2p=draw(_OVERRIDE), **arg)
                    else:
                        self.rb[me].recv(other, stream=stream, p2p=draw(_OVERRIDE), **arg)
                    added += 1
        return added

    def group_call(self) -> int:
        """One rank issues a group call of two or three parts (sends, recvs to
        several peers; sometimes a collective of every rank); the peers issue
        the counterparts in a random order, batched or not."""
        draw = self.draw
        r = draw(st.sampled_from(self.ranks))
        others = [p for p in self.ranks if p != r]
        batch = self.batch_id(r)
        stream = self.stream(r)
        parts = draw(st.lists(st.tuples(st.sampled_from(("send", "recv")), st.sampled_from(others)),
                              min_size=2, max_size=3))
        with_coll = draw(st.integers(0, 4)) == 0
        counterparts: dict[int, list[tuple[str, dict[str, Any] | None]]] = {p: [] for p in others}
        comms = {p: self.p2p_comm(r, p) for p in others}
        added = 0
        for kind, peer in parts:
            if kind == "send":
                carried = self.reads()
                self.rb[r].send(peer, stream=stream, batch=batch, reads=carried, **comms[peer])
                counterparts[peer].append(("recv", self.received(carried)))
            else:
                self.rb[r].recv(peer, stream=stream, batch=batch, writes=self.writes(), **comms[peer])
                counterparts[peer].append(("send", self.reads()))
            added += 1
        if with_coll:
            self.rb[r].all_reduce("all", stream=stream, batch=batch)
            added += 1
        for p in others:
            todo = counterparts[p]
            if not todo and not with_coll:
                continue
            order = draw(st.permutations(todo)) if todo else []
            pbatch = self.batch_id(p) if draw(st.booleans()) else None
            pstream = self.stream(p)
            if with_coll:
                at = draw(st.integers(0, len(order)))
                order = [*order[:at], ("coll", None), *order[at:]]
            for kind, acc in order:
                if kind == "send":
                    self.rb[p].send(r, stream=pstream, batch=pbatch, reads=acc, **comms[p])
                elif kind == "recv":
                    self.rb[p].recv(r, stream=pstream, batch=pbatch, writes=acc, **comms[p])
                else:
                    self.rb[p].all_reduce("all", stream=pstream, batch=pbatch)
                added += 1
        return added

    def collective(self, kind: str | None = None) -> int:
        draw = self.draw
        group = draw(st.sampled_from(sorted(self.groups)))
        members = self.groups[group]
        if kind is None:
            kind = draw(st.sampled_from(COLLECTIVE_KINDS))
        skip = draw(st.sampled_from(members)) if draw(st.integers(0, 9)) == 0 else None
        odd = draw(st.sampled_from(members)) if draw(st.integers(0, 9)) == 0 else None
        comm = self.coll_comm(group)
        root = draw(st.sampled_from(members))
        weak = kind == "all_reduce" and draw(st.integers(0, 2)) == 0
        n = len(members)
        counts: list[list[int] | None] = [None] * n
        recv_counts: list[list[int] | None] = [None] * n
        if kind in ("all_gather", "reduce_scatter") and draw(st.integers(0, 2)):
            vec = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
            counts = [list(vec) for _ in members]
            if draw(st.integers(0, 4)) == 0:  # one member disagrees
                i = draw(st.integers(0, n - 1))
                counts[i] = [v + 1 for v in vec]
        elif kind == "all_to_all" and draw(st.integers(0, 2)):
            mat = draw(st.lists(st.lists(st.integers(0, 3), min_size=n, max_size=n), min_size=n, max_size=n))
            counts = [list(mat[i]) for i in range(n)]
            recv_counts = [[mat[j][i] for j in range(n)] for i in range(n)]
            for i in range(n):
                if draw(st.integers(0, 4)) == 0:
                    counts[i] = None
                elif draw(st.integers(0, 4)) == 0:
                    recv_counts[i] = None
            rows = [i for i in range(n) if recv_counts[i] is not None and counts[i] is not None]
            if rows and draw(st.integers(0, 2)) == 0:  # one entry disagrees
                row = recv_counts[draw(st.sampled_from(rows))]
                assert row is not None
                row[draw(st.integers(0, n - 1))] += 1
        root_reads: dict[str, Any] | None = None
        if kind == "broadcast":
            root_reads = self.reads()
        added = 0
        for i, r in enumerate(members):
            if r == skip:
                continue
            k = kind
            if r == odd:
                k = draw(st.sampled_from([c for c in ALL_COLLECTIVE_KINDS if c != kind]))
            extra: dict[str, Any] = {}
            if k in ROOTED:
                extra["root"] = root
                extra["p2p"] = draw(_OVERRIDE)
            if k == kind:
                if counts[i] is not None:
                    extra["counts"] = counts[i]
                if recv_counts[i] is not None:
                    extra["recv_counts"] = recv_counts[i]
                if weak:
                    extra["completion"] = "weak"
            if k != "barrier":  # a barrier moves no data
                if k == "broadcast" and kind == "broadcast":
                    if r == root:
                        extra["reads"] = root_reads
                        extra["writes"] = self.writes() if draw(st.integers(0, 3)) == 0 else None
                    else:
                        extra["writes"] = self.received(root_reads)
                else:
                    extra["reads"] = self.reads()
                    extra["writes"] = self.writes()
            self.rb[r].collective(k, group, stream=self.stream(r), comm=comm, **extra, **self.meta())
            added += 1
            if extra.get("writes"):
                added += self.consume(r, extra["writes"])
        return added

    def put(self) -> int:
        """A put from one rank into another's memory, with a signal or not; a
        wait_signal on the target, usually for that put's signal, sometimes
        for one no put sets (it never completes), sometimes missing."""
        draw = self.draw
        src = draw(st.sampled_from(self.ranks))
        dst = draw(st.sampled_from([r for r in self.ranks if r != src]))
        signal = f"sig{self.signals}" if draw(st.integers(0, 3)) else None
        self.signals += 1
        writes = self.writes()
        self.rb[src].put(dst, stream=self.stream(src), reads=self.reads(), writes=writes, signal=signal,
                         **self.meta())
        added = 1
        pick = draw(st.integers(0, 9))
        if pick >= 2:
            waited = signal if (signal is not None and pick >= 3) else f"sig{self.signals}x"
            stream = self.stream(dst)
            self.rb[dst].wait_signal(src, waited, stream=stream, **self.meta())
            added += 1
            if writes and draw(st.booleans()):
                self.rb[dst].compute("use", stream=stream, reads=dict(writes), **self.meta())
                added += 1
        return added

    def event(self) -> int:
        draw = self.draw
        r = draw(st.sampled_from(self.ranks))
        ev = f"e{self.events}"
        self.events += 1
        rec_stream, wait_stream = self.stream(r), self.stream(r)
        rb: RankBuilder = self.rb[r]
        if draw(st.integers(0, 3)) == 0:
            rb.wait(ev, stream=wait_stream)
            rb.record(ev, stream=rec_stream)
        else:
            rb.record(ev, stream=rec_stream)
            rb.wait(ev, stream=wait_stream)
        return 2


ACTIONS = ("compute", "compute", "p2p", "p2p", "collective", "collective", "event", "exchange", "crossed",
           "group_call", "put")
# Every schedule starts with one of these (then random actions): so that a few hundred examples reach every
# collective kind and every v2 mechanism, however hypothesis clusters its draws.
FOCUS = (*ALL_COLLECTIVE_KINDS, "put", "group_call", "crossed", "exchange", "p2p")
# What ``schedules(features=...)`` can restrict the draws to: one name per action.
FEATURES = ("compute", "p2p", "collective", "event", "exchange", "crossed", "group_call", "put")


def _restrict(features: Iterable[str] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The actions and the first actions (focus) allowed by ``features``."""
    if features is None:
        return ACTIONS, FOCUS
    wanted = tuple(features)
    if isinstance(features, str) or not wanted:
        raise InvalidArgument(f"features must be a non-empty collection of names from {', '.join(FEATURES)},"
                              f" got {features!r}")
    unknown = [f for f in wanted if f not in FEATURES]
    if unknown:
        raise InvalidArgument(f"unknown feature {unknown[0]!r}; features are {', '.join(FEATURES)}")
    actions = tuple(a for a in ACTIONS if a in wanted)
    focus = tuple(f for f in FOCUS if f in wanted or (f in ALL_COLLECTIVE_KINDS and "collective" in wanted))
    return actions, focus or actions


@st.composite
def schedules(draw: st.DrawFn, max_ranks: int = 3, max_ops: int = 8,
              values: tuple[str, ...] = VALUES, features: Iterable[str] | None = None) -> Schedule:
    """A small random valid plain schedule (see the module docstring).

    ``max_ranks``: 2 or 3 (more is taken as 3).  ``max_ops``: the op budget
    (a last action may overshoot it by a few ops).  ``values``: the pool
    reads and writes draw from; a pool weighted to one value gives reads with
    several writers of their expected value.  ``features``: only these
    actions (names from :data:`FEATURES`, e.g. ``("compute", "event")`` for
    one-rank-at-a-time stream programs); default: all of them.
    """
    actions, focus_pool = _restrict(features)
    if max_ops < 1:
        raise InvalidArgument(f"max_ops must be at least 1, got {max_ops}")
    gen = _Gen(draw, values, max_ranks)
    for _ in range(draw(st.integers(0, 2))):
        ranks_sel = None if draw(st.booleans()) else [draw(st.sampled_from(gen.ranks))]
        gen.b.init(draw(regions(gen.buffers)), draw(st.sampled_from(values)), ranks=ranks_sel)
    focus = draw(st.sampled_from(focus_pool))
    budget = max_ops - (gen.collective(focus) if focus in ALL_COLLECTIVE_KINDS else getattr(gen, focus)())
    for _ in range(draw(st.integers(0, max_ops - 1))):
        if budget <= 0:
            break
        action = draw(st.sampled_from(actions))
        budget -= getattr(gen, action)()
    return gen.b.build()
