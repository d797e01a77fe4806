"""A Python builder for schedules, for people who write them by hand.

    b = ScheduleBuilder("tp2-decode")
    b.group("tp", [0, 1])
    b.buffer("h", "layer")
    for r in b.ranks(0, 1):
        r.compute("mlp", stream="compute", writes={"h[layer=0]": "partial"}, layer=0)
        r.all_reduce("tp", stream="compute", reads={"h[layer=0]": "partial"},
                     writes={"h[layer=0]": "sum"}, layer=0)
    schedule = b.build()

Format version 2 constructs have their own keywords and methods: ``comm=``,
``p2p=`` and ``batch=`` on sends, recvs and collectives; ``counts=``,
``recv_counts=`` and ``completion=`` on collectives; the rooted collectives
``reduce``, ``gather``, ``scatter``; one-sided ``put`` and ``wait_signal``;
and group calls::

    with r.group_call():            # one ncclGroupStart/End: the parts run as one node
        r.send(1, reads={"x": "x0"})
        r.recv(1, writes={"y": "y1"})

The host (issue 12) is the stream named ``"host"`` (:data:`HOST`): any op
built with ``stream=HOST`` is host work, run synchronously at its place in
issue order (filling a pinned buffer, a gloo collective, reading a result).
Host synchronization and the caching allocator have their own methods, which
always run on the host::

    r.sync(event="copied")          # event.synchronize()
    r.sync(target="copy")           # stream.synchronize()
    r.sync(of="ar")                 # work.wait() (blocking wait) / .item() on op "ar"
    r.sync()                        # torch.cuda.synchronize()
    r.alloc("a", "side")            # a = torch.empty(...) under torch.cuda.stream(side)
    r.record_stream("a", "main")    # a.record_stream(main)
    r.free("a")                     # del a
    r.alloc("b", "side", reuses="a")  # the allocator hands a's block to b

The builder writes the same document the file format reads and goes through
the same loader, so a built schedule and a loaded one cannot differ.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .. import apiguard
from .fileformat import FORMAT_VERSION, schedule_from_dict
from .ops import HOST_STREAM
from .schedule import Schedule

HOST = HOST_STREAM
"""The host stream's name: ``r.compute("fill", stream=HOST, ...)`` is host work."""

Accesses = dict[str, str | None] | None
Counts = Sequence[int] | None
_UNSET: Any = {}  # only compared with: an empty accesses map is the same as none
_COMM_KINDS = frozenset({"send", "recv", "all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast",
                         "barrier", "reduce", "gather", "scatter"})


class RankBuilder:
    """Appends ops to one rank in issue order."""

    def __init__(self, rank: int, ops: list[dict[str, Any]]) -> None:
        self.rank = rank
        self._ops = ops
        self._calls = 0  # group calls opened with a generated id
        self._batch: str | None = None  # the id of the group call being built, if any

    def _add(self, kind: str, stream: str, fields: dict[str, Any], meta: dict[str, Any]) -> RankBuilder:
        d: dict[str, Any] = {"op": kind, "stream": stream}
        for k, v in fields.items():  # the fields left unset are None, or {} for accesses
            if v is not None and v != _UNSET:
                d[k] = v
        return self._put(d, meta)

    def _put(self, d: dict[str, Any], meta: dict[str, Any]) -> RankBuilder:
        """Append op ``d`` (its set fields) with the metadata not None."""
        for v in meta.values():
            if v is None:  # rare: drop the metadata set to None
                d.update({k: v for k, v in meta.items() if v is not None})
                break
        else:
            d.update(meta)
        self._ops.append(d)
        return self

    def _put_part(self, d: dict[str, Any], meta: dict[str, Any]) -> RankBuilder:
        """``_put`` inside a group call: ``d`` becomes one of its parts.  (The
        group call sets it as ``_put`` on the instance, so that the ops built
        outside one pay nothing for it.)"""
        self._stamp(d)
        return RankBuilder._put(self, d, meta)

    def _stamp(self, d: dict[str, Any]) -> None:
        batch = self._batch
        where = f"rank {self.rank}, op {len(self._ops)} ({d['op']} on {d['stream']})"
        if d["op"] not in _COMM_KINDS:
            raise ValueError(f"{where}: a {d['op']} cannot be part of group call {batch!r}: a group call"
                             " holds sends, recvs and collectives only")
        given = d.setdefault("batch", batch)
        if given != batch:
            raise ValueError(f"{where}: batch={given!r} inside group call {batch!r}")

    @contextmanager
    def group_call(self, batch: str | None = None) -> Iterator[str]:
        """Every op appended inside is a part of one group call
        (ncclGroupStart/End, torch ``batch_isend_irecv``): the parts start and
        end together and never block each other.  ``batch`` is its id; by
        default a new one, ``gc0``, ``gc1``, ... in this rank's order.  A group
        call opened inside another joins it, as nested ncclGroupStart/End do.
        Yields the id."""
        outer = self._batch
        if outer is not None:
            if batch is not None and batch != outer:
                raise ValueError(f"rank {self.rank}: group call {batch!r} opened inside group call {outer!r}")
            yield outer
            return
        if batch is None:
            batch = f"gc{self._calls}"
            self._calls += 1
        elif not isinstance(batch, str) or not batch:
            raise ValueError(f"rank {self.rank}: a group call id must be a non-empty string, got {batch!r}")
        self._batch = batch
        self._put = self._put_part  # type: ignore[method-assign]
        try:
            yield batch
        finally:
            self._batch = None
            del self._put

    # The methods below are _add unrolled (the builder makes every op of the
    # benchmark's schedules): a field is set when it is not None and not {}.
    def compute(self, name: str, *, stream: str = "compute", reads: Accesses = None,
                writes: Accesses = None, **meta: Any) -> RankBuilder:
        d: dict[str, Any] = {"op": "compute", "stream": stream}
        if name is not None and name != _UNSET:
            d["name"] = name
        if reads is not None and reads != _UNSET:
            d["reads"] = reads
        if writes is not None and writes != _UNSET:
            d["writes"] = writes
        return self._put(d, meta)

    def send(self, to: int, *, stream: str = "comm", channel: str | None = None,
             reads: Accesses = None, size: int | None = None, name: str | None = None,
             dtype: str | None = None, comm: str | None = None, p2p: str | None = None,
             batch: str | None = None, **meta: Any) -> RankBuilder:
        """``comm``: the communicator (default: one per rank pair and channel);
        ``p2p``: ``"eager"`` or ``"rendezvous"`` for this message;
        ``batch``: the id of the group call it is part of."""
        d: dict[str, Any] = {"op": "send", "stream": stream, "to": to}
        if channel is not None:
            d["channel"] = channel
        if reads is not None and reads != _UNSET:
            d["reads"] = reads
        if size is not None:
            d["size"] = size
        if name is not None:
            d["name"] = name
        if dtype is not None:
            d["dtype"] = dtype
        if comm is not None:
            d["comm"] = comm
        if p2p is not None:
            d["p2p"] = p2p
        if batch is not None:
            d["batch"] = batch
        return self._put(d, meta)

    def recv(self, frm: int, *, stream: str = "comm", channel: str | None = None,
             writes: Accesses = None, size: int | None = None, name: str | None = None,
             dtype: str | None = None, comm: str | None = None, p2p: str | None = None,
             batch: str | None = None, **meta: Any) -> RankBuilder:
        """As :meth:`send`, from rank ``frm`` into ``writes``."""
        d: dict[str, Any] = {"op": "recv", "stream": stream, "from": frm}
        if channel is not None:
            d["channel"] = channel
        if writes is not None and writes != _UNSET:
            d["writes"] = writes
        if size is not None:
            d["size"] = size
        if name is not None:
            d["name"] = name
        if dtype is not None:
            d["dtype"] = dtype
        if comm is not None:
            d["comm"] = comm
        if p2p is not None:
            d["p2p"] = p2p
        if batch is not None:
            d["batch"] = batch
        return self._put(d, meta)

    def collective(self, kind: str, group: str, *, stream: str = "comm", reads: Accesses = None,
                   writes: Accesses = None, size: int | None = None, root: int | None = None,
                   dtype: str | None = None, name: str | None = None, comm: str | None = None,
                   batch: str | None = None, counts: Counts = None, recv_counts: Counts = None,
                   completion: str | None = None, p2p: str | None = None, **meta: Any) -> RankBuilder:
        """A collective of ``kind`` over ``group``.  Format version 2 keywords:
        ``comm`` (the communicator; default: the group), ``batch`` (group call
        id), ``counts`` (all_gather, reduce_scatter: one per member; all_to_all:
        what is sent to each member), ``recv_counts`` (all_to_all: what is
        received from each member), ``completion="weak"`` (a custom collective
        without an end barrier) and ``p2p`` (rooted kinds: ``"eager"`` or
        ``"rendezvous"``).  The methods named after each kind take the
        keywords that kind allows."""
        return self._coll(kind, group, stream, reads, writes, size, root, dtype, name, comm, batch, counts,
                          recv_counts, completion, p2p, meta)

    def _coll(self, kind: str, group: str, stream: str, reads: Accesses, writes: Accesses, size: int | None,
              root: int | None, dtype: str | None, name: str | None, comm: str | None, batch: str | None,
              counts: Counts, recv_counts: Counts, completion: str | None, p2p: str | None,
              meta: dict[str, Any]) -> RankBuilder:
        # positional: the per-kind methods below call it without a second
        # round of keyword matching (the benchmark builds a collective per layer)
        d: dict[str, Any] = {"op": kind, "stream": stream}
        for key, v in (("group", group), ("reads", reads), ("writes", writes), ("size", size), ("root", root),
                       ("dtype", dtype), ("name", name)):
            if v is not None and v != _UNSET:
                d[key] = v
        if comm is not None:
            d["comm"] = comm
        if batch is not None:
            d["batch"] = batch
        if counts is not None:
            d["counts"] = list(counts)
        if recv_counts is not None:
            d["recv_counts"] = list(recv_counts)
        if completion is not None:
            d["completion"] = completion
        if p2p is not None:
            d["p2p"] = p2p
        return self._put(d, meta)

    def all_reduce(self, group: str, *, stream: str = "comm", reads: Accesses = None, writes: Accesses = None,
                   size: int | None = None, dtype: str | None = None, name: str | None = None,
                   comm: str | None = None, batch: str | None = None, completion: str | None = None,
                   **meta: Any) -> RankBuilder:
        return self._coll("all_reduce", group, stream, reads, writes, size, None, dtype, name, comm, batch, None,
                          None, completion, None, meta)

    def all_gather(self, group: str, *, stream: str = "comm", reads: Accesses = None, writes: Accesses = None,
                   size: int | None = None, dtype: str | None = None, name: str | None = None,
                   comm: str | None = None, batch: str | None = None, counts: Counts = None,
                   completion: str | None = None, **meta: Any) -> RankBuilder:
        """``counts``: the count of each member, the same vector on every member."""
        return self._coll("all_gather", group, stream, reads, writes, size, None, dtype, name, comm, batch, counts,
                          None, completion, None, meta)

    def reduce_scatter(self, group: str, *, stream: str = "comm", reads: Accesses = None,
                       writes: Accesses = None, size: int | None = None, dtype: str | None = None,
                       name: str | None = None, comm: str | None = None, batch: str | None = None,
                       counts: Counts = None, completion: str | None = None, **meta: Any) -> RankBuilder:
        """``counts``: the count of each member, the same vector on every member."""
        return self._coll("reduce_scatter", group, stream, reads, writes, size, None, dtype, name, comm, batch,
                          counts, None, completion, None, meta)

    def all_to_all(self, group: str, *, stream: str = "comm", reads: Accesses = None, writes: Accesses = None,
                   size: int | None = None, dtype: str | None = None, name: str | None = None,
                   comm: str | None = None, batch: str | None = None, counts: Counts = None,
                   recv_counts: Counts = None, completion: str | None = None, **meta: Any) -> RankBuilder:
        """``counts[j]``: what this rank sends to member j; ``recv_counts[j]``:
        what it receives from member j."""
        return self._coll("all_to_all", group, stream, reads, writes, size, None, dtype, name, comm, batch, counts,
                          recv_counts, completion, None, meta)

    def barrier(self, group: str, *, stream: str = "comm", size: int | None = None, dtype: str | None = None,
                name: str | None = None, comm: str | None = None, batch: str | None = None,
                completion: str | None = None, **meta: Any) -> RankBuilder:
        return self._coll("barrier", group, stream, None, None, size, None, dtype, name, comm, batch, None, None,
                          completion, None, meta)

    def broadcast(self, group: str, root: int, *, stream: str = "comm", reads: Accesses = None,
                  writes: Accesses = None, size: int | None = None, dtype: str | None = None,
                  name: str | None = None, comm: str | None = None, batch: str | None = None,
                  completion: str | None = None, p2p: str | None = None, **meta: Any) -> RankBuilder:
        """``root``'s input copied to every member's output."""
        return self._coll("broadcast", group, stream, reads, writes, size, root, dtype, name, comm, batch, None,
                          None, completion, p2p, meta)

    def reduce(self, group: str, root: int, *, stream: str = "comm", reads: Accesses = None,
               writes: Accesses = None, size: int | None = None, dtype: str | None = None,
               name: str | None = None, comm: str | None = None, batch: str | None = None,
               completion: str | None = None, p2p: str | None = None, **meta: Any) -> RankBuilder:
        """Every member's input reduced into ``root``'s output (format version 2)."""
        return self._coll("reduce", group, stream, reads, writes, size, root, dtype, name, comm, batch, None,
                          None, completion, p2p, meta)

    def gather(self, group: str, root: int, *, stream: str = "comm", reads: Accesses = None,
               writes: Accesses = None, size: int | None = None, dtype: str | None = None,
               name: str | None = None, comm: str | None = None, batch: str | None = None,
               completion: str | None = None, p2p: str | None = None, **meta: Any) -> RankBuilder:
        """Every member's input gathered into ``root``'s output (format version 2)."""
        return self._coll("gather", group, stream, reads, writes, size, root, dtype, name, comm, batch, None,
                          None, completion, p2p, meta)

    def scatter(self, group: str, root: int, *, stream: str = "comm", reads: Accesses = None,
                writes: Accesses = None, size: int | None = None, dtype: str | None = None,
                name: str | None = None, comm: str | None = None, batch: str | None = None,
                completion: str | None = None, p2p: str | None = None, **meta: Any) -> RankBuilder:
        """``root``'s input split among the members' outputs (format version 2)."""
        return self._coll("scatter", group, stream, reads, writes, size, root, dtype, name, comm, batch, None,
                          None, completion, p2p, meta)

    def put(self, to: int, *, stream: str = "comm", reads: Accesses = None, writes: Accesses = None,
            signal: str | None = None, size: int | None = None, dtype: str | None = None,
            name: str | None = None, **meta: Any) -> RankBuilder:
        """A one-sided put (format version 2): reads ``reads`` on this rank and
        writes ``writes`` in rank ``to``'s memory; ``signal`` is set on ``to``
        when it has landed (a :meth:`wait_signal` there waits for it)."""
        d: dict[str, Any] = {"op": "put", "stream": stream, "to": to}
        if reads is not None and reads != _UNSET:
            d["reads"] = reads
        if writes is not None and writes != _UNSET:
            d["writes"] = writes
        if signal is not None:
            d["signal"] = signal
        if size is not None:
            d["size"] = size
        if dtype is not None:
            d["dtype"] = dtype
        if name is not None:
            d["name"] = name
        return self._put(d, meta)

    def wait_signal(self, frm: int, signal: str, *, stream: str = "comm", name: str | None = None,
                    **meta: Any) -> RankBuilder:
        """Holds ``stream`` back until rank ``frm``'s put with ``signal`` has
        landed here (format version 2)."""
        d: dict[str, Any] = {"op": "wait_signal", "stream": stream, "from": frm, "signal": signal}
        if name is not None:
            d["name"] = name
        return self._put(d, meta)

    def record(self, event: str, *, stream: str, **meta: Any) -> RankBuilder:
        d: dict[str, Any] = {"op": "record", "stream": stream}
        if event is not None and event != _UNSET:
            d["event"] = event
        return self._put(d, meta)

    def wait(self, event: str, *, stream: str, **meta: Any) -> RankBuilder:
        d: dict[str, Any] = {"op": "wait", "stream": stream}
        if event is not None and event != _UNSET:
            d["event"] = event
        return self._put(d, meta)

    # ---- the host and the caching allocator (format version 2, issue 12):
    # these calls always run on the host stream
    def sync(self, *, event: str | None = None, target: str | None = None, of: str | None = None,
             name: str | None = None, **meta: Any) -> RankBuilder:
        """A host synchronize: the host blocks until what it waits for has
        finished, and every op issued after it starts after that.  At most
        one of ``event`` (``event.synchronize()``: the latest record of that
        event issued before it), ``target`` (``stream.synchronize()``: the
        last op issued on that stream before it) and ``of`` (the latest op
        named so, e.g. ``work.wait()`` with blocking wait or ``.item()``);
        none of them is ``torch.cuda.synchronize()`` (every stream)."""
        d: dict[str, Any] = {"op": "sync", "stream": HOST_STREAM}
        if event is not None:
            d["event"] = event
        if target is not None:
            d["target"] = target
        if of is not None:
            d["of"] = of
        if name is not None:
            d["name"] = name
        return self._put(d, meta)

    def alloc(self, buffer: str, target: str, *, reuses: str | None = None, name: str | None = None,
              **meta: Any) -> RankBuilder:
        """The caching allocator hands ``buffer`` a block from the pool of
        stream ``target`` (the current stream at the allocation).  ``reuses``:
        a buffer freed earlier on this rank, allocated on the same stream,
        whose block this allocation gets (take it from the allocator's trace)."""
        d: dict[str, Any] = {"op": "alloc", "stream": HOST_STREAM, "buffer": buffer, "target": target}
        if reuses is not None:
            d["reuses"] = reuses
        if name is not None:
            d["name"] = name
        return self._put(d, meta)

    def free(self, buffer: str, *, name: str | None = None, **meta: Any) -> RankBuilder:
        """The last reference to ``buffer`` is dropped: its block returns to
        the pool of its allocation stream."""
        d: dict[str, Any] = {"op": "free", "stream": HOST_STREAM, "buffer": buffer}
        if name is not None:
            d["name"] = name
        return self._put(d, meta)

    def record_stream(self, buffer: str, target: str, *, name: str | None = None, **meta: Any) -> RankBuilder:
        """``buffer.record_stream(target)``: when ``buffer`` is freed, its
        block is handed out again only after the work queued on ``target`` at
        the free has finished."""
        d: dict[str, Any] = {"op": "record_stream", "stream": HOST_STREAM, "buffer": buffer, "target": target}
        if name is not None:
            d["name"] = name
        return self._put(d, meta)


class ScheduleBuilder:
    """Builds a schedule document of format version 2.  ``p2p``: ``"any"``
    (the default), ``"rendezvous"`` or ``"eager"``; ``progress``: ``"any"``
    (the default) or ``"concurrent"``; see docs/format.md."""

    def __init__(self, name: str, *, p2p: str = "any", progress: str = "any", description: str = "") -> None:
        self._doc: dict[str, Any] = {"syncproof": FORMAT_VERSION, "name": name}
        if p2p != "any":
            self._doc["p2p"] = p2p
        if progress != "any":
            self._doc["progress"] = progress
        self._doc.update({"description": description, "groups": {}, "buffers": {}, "init": [], "ranks": {}})
        self._rank_builders: dict[int, RankBuilder] = {}

    def group(self, name: str, members: list[int] | range) -> ScheduleBuilder:
        apiguard.text(name, "group", "name", empty=False)
        apiguard.instance(members, (list, tuple, range), "group", "members", "a list of ranks")
        self._doc["groups"][name] = list(members)
        return self

    def buffer(self, name: str, *axes: str, **extents: int | None) -> ScheduleBuilder:
        """``buffer("kv", "layer", "token")`` or ``buffer("kv", layer=4, token=1024)``."""
        apiguard.text(name, "buffer", "name", empty=False)
        if axes and extents:
            self._doc["buffers"][name] = {**{a: None for a in axes}, **extents}
        elif extents:
            self._doc["buffers"][name] = dict(extents)
        else:
            self._doc["buffers"][name] = list(axes)
        return self

    def init(self, region: str, value: str, ranks: list[int] | None = None) -> ScheduleBuilder:
        entry: dict[str, Any] = {"region": region, "value": value}
        if ranks is not None:
            entry["ranks"] = list(ranks)
        self._doc["init"].append(entry)
        return self

    def choice(self, name: str, *, scope: str | list[str], values: Sequence[Any] | None = None,
               range: tuple[int, int] | None = None, length: int | None = None, value: str | None = None,
               gathers: str | None = None, via: str | None = None) -> ScheduleBuilder:
        """Declare a choice (DESIGN.md section 2c; docs/format.md, "Choices").
        ``scope``: ``"rank"``, ``"job"``, a group or a list of groups.  A free
        choice has ``values`` or ``range=(lo, hi)``; a derived one ``value``
        (an aggregate such as ``"any(state != idle)"``) or ``gathers`` (a
        rank-local choice), with ``via`` the collective it comes out of.  Ops
        then take ``when="..."`` (a guard) and expressions as ``size`` or
        ``counts`` entries."""
        d: dict[str, Any] = {"scope": scope}
        if values is not None:
            d["values"] = list(values)
        if range is not None:
            d["range"] = list(range)
        if length is not None:
            d["length"] = length
        if value is not None:
            d["value"] = value
        if gathers is not None:
            d["gathers"] = gathers
        if via is not None:
            d["via"] = via
        self._doc.setdefault("choices", {})[name] = d
        return self

    def rank(self, rank: int) -> RankBuilder:
        """The builder of ``rank``'s ops (the same one on every call)."""
        apiguard.integer(rank, "rank", "rank", 0)
        rb = self._rank_builders.get(rank)
        if rb is None:
            rb = self._rank_builders[rank] = RankBuilder(rank, self._doc["ranks"].setdefault(str(rank), []))
        return rb

    def ranks(self, *ranks: int) -> list[RankBuilder]:
        return [self.rank(r) for r in ranks]

    def to_dict(self) -> dict[str, Any]:
        return self._doc

    def build(self, source: str | None = None) -> Schedule:
        """Validate and return the schedule; raises ScheduleError naming the op."""
        apiguard.optional_text(source, "build", "source")
        return schedule_from_dict(self._doc, source or f"<builder {self._doc['name']}>")
