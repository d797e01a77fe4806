"""Semantic validation of a schedule, shared by the file loader and the builder.

Every error names the source, the rank and op index, and what is wrong, and
suggests a fix where one is obvious.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from ..errors import ScheduleError
from .ops import COLLECTIVES, PHASES, Access, Kind, Meta, Op
from .region import Region
from .schedule import P2P_MODES, PROGRESS_MODES, Buffer, Schedule

# The kinds of format version 1; an op of another kind, or with any v2 field
# set, is always checked by ``_check_op``.
_V1_KINDS = frozenset({Kind.COMPUTE, Kind.SEND, Kind.RECV, Kind.RECORD, Kind.WAIT, Kind.ALL_REDUCE,
                       Kind.ALL_GATHER, Kind.REDUCE_SCATTER, Kind.ALL_TO_ALL, Kind.BROADCAST, Kind.BARRIER})


def _has_v2(op: Op) -> bool:
    return (op.kind not in _V1_KINDS or op.comm is not None or op.p2p is not None or op.batch is not None
            or op.signal is not None or op.counts is not None or op.recv_counts is not None
            or op.completion is not None or op.target is not None or op.of is not None or op.buffer is not None
            or op.reuses is not None or op.choice is not None)


_SUGGEST_MAX = 2000


def suggest(name: object, choices: Iterable[object]) -> str:
    names = [str(c) for c in choices]
    if len(names) > _SUGGEST_MAX:  # a message should not cost more than the check: no search among 10^5 names
        return f"{len(names)} known, e.g. " + ", ".join(repr(n) for n in sorted(names)[:8]) + " ..."
    key = str(name).lower()
    close = [n for n in names if n.lower() == key or sorted(n.lower()) == sorted(key)]
    close = close or difflib.get_close_matches(str(name), names, n=1, cutoff=0.5)
    if close:
        return f"did you mean {close[0]!r}?"
    if names:
        shown = ", ".join(repr(n) for n in sorted(names)[:8])
        return f"known: {shown}" + (" ..." if len(names) > 8 else "")
    return ""


def check_region(schedule: Schedule, region: Region, where: str) -> None:
    """``where`` already names the region."""
    buf = schedule.buffer_map.get(region.buffer)
    if buf is None:
        raise ScheduleError(
            f"buffer {region.buffer!r} is not declared",
            where,
            f"add it to \"buffers\"; {suggest(region.buffer, schedule.buffer_map)}",
        )
    extents = dict(buf.axes)
    for axis, iv in region.box:
        if axis not in extents:
            raise ScheduleError(
                f"axis {axis!r} is not declared for buffer {buf.name!r}"
                f" (its axes: {', '.join(buf.axis_names) or 'none'})",
                where,
                suggest(axis, extents) if extents else f"declare it in \"buffers\": {buf.name!r}",
            )
        ext = extents[axis]
        if ext is not None and not iv.is_full and (iv.lo < 0 or iv.hi > ext):
            raise ScheduleError(
                f"axis {axis!r} interval {iv.lo}:{iv.hi} is outside 0:{ext}",
                where,
            )


def _region_ok(schedule: Schedule, region: Region) -> bool:
    """The cheap test behind check_region: declared buffer and axes, inside extents."""
    return region_fits(schedule.buffer_map, region)


def region_fits(buffer_map: Mapping[str, Buffer], region: Region) -> bool:
    """``_region_ok`` given the schedule's buffer map."""
    buf = buffer_map.get(region.buffer)
    if buf is None or len(region.box) != len(buf.axes):
        return False
    for (axis, iv), (name, ext) in zip(region.box, buf.axes, strict=True):
        if axis != name:
            return False
        if ext is not None and not iv.is_full and (iv.lo < 0 or iv.hi > ext):
            return False
    return True


def _check_accesses(schedule: Schedule, op: Op, accesses: tuple[Access, ...], what: str) -> None:
    for acc in accesses:
        if not _region_ok(schedule, acc.region):  # build the message only when something is wrong
            check_region(schedule, acc.region, f"{schedule.source}: {op.where}, {what} {acc.region}")
    if what == "writes" and len(accesses) > 1:
        for i, a in enumerate(accesses):
            for b in accesses[i + 1 :]:
                if a.region.overlaps(b.region):
                    raise ScheduleError(
                        f"writes {a.region} and {b.region} overlap in one op",
                        f"{schedule.source}: {op.where}, {what}",
                        "give each location one value per op",
                    )


def meta_is_fine(meta: Meta) -> bool:
    """True if the metadata checks of ``_check_op`` pass ``meta``."""
    return not ((meta.phase is not None and meta.phase not in PHASES)
                or (meta.sp is not None and not (0 <= meta.sp[0] < meta.sp[1]))
                or (meta.step is not None and meta.step < 0))


def accesses_are_fine(buffer_map: Mapping[str, Buffer], accesses: tuple[Access, ...], writes: bool) -> bool:
    """True if ``_check_accesses`` passes ``accesses`` (the reads, or the writes, of one op)."""
    if not all(region_fits(buffer_map, a.region) for a in accesses):
        return False
    return not (writes and len(accesses) > 1 and any(a.region.overlaps(b.region)
                                                    for i, a in enumerate(accesses) for b in accesses[i + 1:]))


def _fine_ops(schedule: Schedule, ranks: set[int],
              recorded: dict[tuple[int, str], Op]) -> Callable[[int, Op], bool]:
    """A predicate: True if ``_check_op`` would pass the op (and then, like it,
    records the op's event); False if it may not.  It never builds a message.
    The checks of metadata and access lists are remembered per object: the
    loader shares those between ops."""
    group_map, buffer_map = schedule.group_map, schedule.buffer_map
    # ids of objects already found fine: alive (held by the schedule) throughout
    good_meta: set[int] = set()
    good_reads: set[int] = set()
    good_writes: set[int] = set()
    send, recv, record, wait, broadcast = Kind.SEND, Kind.RECV, Kind.RECORD, Kind.WAIT, Kind.BROADCAST
    collectives = COLLECTIVES

    def fine(pos: int, op: Op) -> bool:
        try:
            kind = op.kind
            if type(kind) is not Kind or op.id != pos or not op.stream or _has_v2(op):
                return False
            meta = op.meta
            if id(meta) not in good_meta:
                if not meta_is_fine(meta):
                    return False
                good_meta.add(id(meta))
            if kind is send or kind is recv:
                peer = op.peer
                if peer is None or peer not in ranks or peer == op.rank:
                    return False
                if op.writes if kind is send else op.reads:
                    return False
            elif kind in collectives:
                members = None if op.group is None else group_map.get(op.group)
                if members is None or op.rank not in members:
                    return False
                if kind is broadcast and (op.root is None or op.root not in members):
                    return False
            elif op.group is not None:
                return False
            key = None
            if kind is record or kind is wait:
                if not op.event or op.reads or op.writes:
                    return False
                if kind is record:
                    key = (op.rank, op.event)
            if op.size is not None and op.size < 0:
                return False
            reads, writes = op.reads, op.writes
            if id(reads) not in good_reads:
                if not accesses_are_fine(buffer_map, reads, False):
                    return False
                good_reads.add(id(reads))
            if id(writes) not in good_writes:
                if not accesses_are_fine(buffer_map, writes, True):
                    return False
                good_writes.add(id(writes))
        except Exception:  # _check_op meets it again, in its own order
            return False
        if key is not None:
            recorded.setdefault(key, op)
        return True

    return fine


def _check_op(schedule: Schedule, pos: int, op: Op, ranks: set[int], recorded: dict[tuple[int, str], Op]) -> None:
    """The checks of one op, in order; raises the first problem."""
    src = schedule.source
    where = _OpWhere(src, op)  # formatted only if an error is raised
    if op.id != pos:
        raise ScheduleError(f"op id {op.id} should be {pos}", where)
    if not op.stream:
        raise ScheduleError("op has no stream", where)
    meta = op.meta
    if meta.phase is not None and meta.phase not in PHASES:
        raise ScheduleError(
            f"phase {meta.phase!r} is unknown", where, f"use {' or '.join(PHASES)}"
        )
    if meta.sp is not None and not (0 <= meta.sp[0] < meta.sp[1]):
        raise ScheduleError(f"sp partition {meta.sp[0]}/{meta.sp[1]} is out of range", where)
    if meta.step is not None and meta.step < 0:
        raise ScheduleError(f"decode step {meta.step} is negative", where)
    if op.kind.is_p2p or op.kind is Kind.PUT or op.kind is Kind.WAIT_SIGNAL:
        if op.peer is None:
            raise ScheduleError(f"{op.kind} needs a peer rank", where)
        if op.peer not in ranks:
            raise ScheduleError(
                f"peer rank {op.peer} does not exist", where, suggest(op.peer, ranks)
            )
        if op.peer == op.rank:
            raise ScheduleError(
                f"{op.kind} to its own rank {op.rank}", where,
                "a copy on one rank is a compute op",
            )
    if op.kind is Kind.WAIT_SIGNAL:
        if not op.signal:
            raise ScheduleError("wait_signal needs a signal name", where)
        if op.reads or op.writes:
            raise ScheduleError("wait_signal accesses no memory", where)
    if op.kind is Kind.SEND and op.writes:
        raise ScheduleError("a send writes nothing on its own rank", where,
                            "put the destination region on the matching recv")
    if op.kind is Kind.RECV and op.reads:
        raise ScheduleError("a recv reads nothing on its own rank", where,
                            "put the source region on the matching send")
    if op.kind.is_collective:
        if op.group is None:
            raise ScheduleError(f"{op.kind} needs a group", where)
        group_members = schedule.group_map.get(op.group)
        if group_members is None:
            raise ScheduleError(
                f"group {op.group!r} is not declared", where,
                f"declare it in \"groups\"; {suggest(op.group, schedule.group_map)}",
            )
        if op.rank not in group_members:
            raise ScheduleError(
                f"rank {op.rank} is not a member of group {op.group!r} {list(group_members)}",
                where,
            )
        if op.kind.is_rooted:
            if op.root is None:
                raise ScheduleError(f"{op.kind} needs a root", where,
                                    f"add \"root\": one of {list(group_members)}")
            if op.root not in group_members:
                raise ScheduleError(
                    f"{op.kind} root {op.root} is not in group {op.group!r}", where
                )
        for what, counts in (("counts", op.counts), ("recv_counts", op.recv_counts)):
            if counts is not None and len(counts) != len(group_members):
                raise ScheduleError(
                    f"{what} has {len(counts)} entries but group {op.group!r} has {len(group_members)} members",
                    where, "give one count per member, in the group's member order")
    elif op.group is not None and not op.kind.is_p2p:
        raise ScheduleError(f"{op.kind} takes no group", where)
    if op.kind in (Kind.RECORD, Kind.WAIT):
        if not op.event:
            raise ScheduleError(f"{op.kind} needs an event name", where)
        if op.reads or op.writes:
            raise ScheduleError(f"{op.kind} accesses no memory", where)
        key = (op.rank, op.event)
        if op.kind is Kind.RECORD:  # recorded again: a later wait binds to the latest record before it
            recorded.setdefault(key, op)
    if op.size is not None and op.size < 0:
        raise ScheduleError(f"size {op.size} is negative", where)
    _check_accesses(schedule, op, op.reads, "reads")
    _check_accesses(schedule, op, op.writes, "writes")


check_op = _check_op  # the loader's name for it


class _OpWhere:
    def __init__(self, src: str, op: Op) -> None:
        self.src, self.op = src, op

    def __str__(self) -> str:
        return f"{self.src}: {self.op.where}"


# What the loader hands over when it has already passed every op through the
# per-op checks (as ``_check_op`` would): the events each rank records (the
# record ops, in op order) and the wait ops, in op order.
# The third item: the schedule's ``features``, when the loader tracked them
# on the way (validate does not use it).
PreChecked = tuple[dict[tuple[int, str], Op], list[Op], frozenset[str] | None]


def validate(schedule: Schedule, _prechecked: PreChecked | None = None, *, selected: bool = False) -> None:
    """Raise :class:`ScheduleError` for the first problem found.  ``selected``:
    the schedule one assignment of a choice schedule selects, where a guard
    may drop every record of an event: a wait or sync on it is then a no-op
    (CUDA: waiting on an event never recorded returns at once), not an error."""
    src = schedule.source
    if schedule.p2p not in P2P_MODES:
        raise ScheduleError(
            f"p2p mode {schedule.p2p!r} is unknown", src, f"use one of {', '.join(P2P_MODES)}"
        )
    if schedule.progress not in PROGRESS_MODES:
        raise ScheduleError(
            f"progress mode {schedule.progress!r} is unknown", src, f"use one of {', '.join(PROGRESS_MODES)}"
        )
    ranks = set(schedule.ranks)
    if len(ranks) != len(schedule.ranks):
        dup_rank = next(r for r, c in Counter(schedule.ranks).items() if c > 1)
        raise ScheduleError(f"rank {dup_rank} is listed twice", src)
    for gname, members in schedule.groups:
        if not members:
            raise ScheduleError(f"group {gname!r} has no members", src)
        dup = [m for m, c in Counter(members).items() if c > 1]
        if dup:
            raise ScheduleError(f"group {gname!r} lists rank {dup[0]} twice", src)
        for m in members:
            if m not in ranks:
                raise ScheduleError(
                    f"group {gname!r} names rank {m}, which has no ops list",
                    src,
                    f"add \"{m}\": [] to \"ranks\" or remove {m} from the group",
                )
    for init in schedule.init:
        check_region(schedule, init.region, f"{src}: init {init.region}")
        for r in init.ranks or ():
            if r not in ranks:
                raise ScheduleError(f"init {init.region} names unknown rank {r}", src)

    waits: Iterable[Op]
    if _prechecked is not None:
        recorded, waits = _prechecked[0], _prechecked[1]
    else:
        recorded, waits = {}, schedule.ops
        # The common case, an op with nothing wrong, is decided by the predicate
        # without building anything; any op it does not pass goes through
        # _check_op, the reference check, which raises the first problem with
        # its full message (or, if the op is fine after all, records its event).
        op_is_fine = _fine_ops(schedule, ranks, recorded)
        for pos, op in enumerate(schedule.ops):
            if not op_is_fine(pos, op):
                _check_op(schedule, pos, op, ranks, recorded)
    if schedule.choices or "choice" in schedule.features:  # an op with an OpChoice
        # a choice schedule superposes every branch: the checks across ops
        # (group calls, lifetimes, events) run on each selected schedule
        from .select import validate_choices
        validate_choices(schedule)
        return
    _check_batches(schedule)
    _check_host(schedule, selected)
    if selected:
        return
    for op in waits:
        if op.kind is Kind.WAIT and (op.rank, op.event) not in recorded:
            on_rank = sorted(e for (r, e) in recorded if r == op.rank)
            other = sorted(r for (r, e) in recorded if e == op.event)
            hint = suggest(op.event or "", on_rank) if on_rank else ""
            if other:
                hint = (f"event {op.event!r} is recorded on rank {other[0]}; events are per rank:"
                        " sync across ranks with send/recv or a collective")
            raise ScheduleError(
                f"wait on event {op.event!r}, which rank {op.rank} never records",
                f"{src}: {op.where}", hint,
            )


def validate_selected(schedule: Schedule) -> None:
    """Validate the schedule one assignment selects from a choice schedule
    whose ops passed :func:`validate` already: only the checks across ops
    (group calls, host and allocator lifetimes) can fail on a selection; a
    wait whose record a guard dropped is a no-op (see :func:`validate`)."""
    _check_batches(schedule)
    _check_host(schedule, True)


def _check_batches(schedule: Schedule) -> None:
    """A group call (ops sharing a ``batch`` id on a rank) is one run of
    consecutive communication ops in the rank's issue order, on one stream."""
    if "batch" not in schedule.features:
        return
    src = schedule.source
    last: dict[int, Op] = {}  # per rank: the previous op, when it was in a batch
    done: set[tuple[int, str]] = set()
    for op in schedule.ops:
        prev = last.get(op.rank)
        if op.batch is None:
            if prev is not None:
                done.add((op.rank, prev.batch or ""))
                del last[op.rank]
            continue
        where = f"{src}: {op.where}"
        if not op.kind.is_comm:
            raise ScheduleError(f"a {op.kind} cannot be part of group call {op.batch!r}", where,
                                "a group call (ncclGroupStart/End, batch_isend_irecv) holds sends, recvs and"
                                " collectives only")
        if prev is not None and prev.batch != op.batch:
            done.add((op.rank, prev.batch or ""))
            prev = None
        if prev is None and (op.rank, op.batch) in done:
            raise ScheduleError(f"group call {op.batch!r} is not one run of consecutive ops on rank {op.rank}",
                                where, "issue the parts of a group call one after the other, or give each"
                                " group call its own batch id")
        if prev is not None and prev.stream != op.stream:
            raise ScheduleError(f"group call {op.batch!r} has parts on streams {prev.stream!r} and"
                                f" {op.stream!r}", where, "launch a group call on one stream")
        last[op.rank] = op


def _check_host(schedule: Schedule, selected: bool = False) -> None:
    """Host syncs name something issued before them; every allocator call
    follows a tensor's lifetime on its rank: allocated once, used, marked with
    record_stream, freed once; an allocation reuses a block freed before it on
    the same allocation stream, of a buffer with the same axes."""
    if not {"host", "alloc"} & schedule.features:
        return
    src = schedule.source
    for r in schedule.ranks:
        rank_events = {o.event for o in schedule.by_rank[r] if o.kind is Kind.RECORD and o.event}
        names: set[str] = set()
        alloc: dict[str, Op] = {}
        freed: dict[str, Op] = {}
        reused: dict[str, Op] = {}
        for op in schedule.by_rank[r]:
            where = f"{src}: {op.where}"
            k = op.kind
            if k is Kind.SYNC and op.event is not None and not selected and op.event not in rank_events:
                recorded = sorted(rank_events)
                raise ScheduleError(f"sync on event {op.event!r}, which rank {r} never records", where,
                                    suggest(op.event, recorded))
            if k is Kind.SYNC and op.of is not None and op.of not in names:
                raise ScheduleError(f"sync waits for op {op.of!r}, but rank {r} issues no op of that name before it",
                                    where, suggest(op.of, sorted(names)))
            if k is Kind.ALLOC:
                b = op.buffer or ""
                if b in alloc:
                    raise ScheduleError(f"buffer {b!r} is allocated twice on rank {r} (first at op {alloc[b].index})",
                                        where, "give each allocation its own buffer name")
                alloc[b] = op
                if op.reuses is not None:
                    x = op.reuses
                    if x not in freed:
                        raise ScheduleError(f"alloc of {b!r} reuses the block of {x!r}, which rank {r} has not freed"
                                            " before it", where, f"free {x!r} first")
                    if x in reused:
                        raise ScheduleError(f"the block of {x!r} is handed out twice (first to op"
                                            f" {reused[x].index})", where)
                    reused[x] = op
                    if alloc[x].target != op.target:
                        raise ScheduleError(
                            f"alloc of {b!r} on stream {op.target!r} reuses the block of {x!r}, allocated on stream"
                            f" {alloc[x].target!r}: the caching allocator hands a freed block only to allocations"
                            " on the stream it was allocated on", where)
                    ax = schedule.buffer_map[x].axes
                    if schedule.buffer_map[b].axes != ax:
                        raise ScheduleError(f"alloc of {b!r} reuses the block of {x!r}, but their axes differ", where,
                                            "declare both buffers with the same axes")
            elif k is Kind.FREE or k is Kind.RECORD_STREAM:
                b = op.buffer or ""
                if b not in alloc:
                    raise ScheduleError(f"{k} of {b!r}, which rank {r} has not allocated before it", where,
                                        f"add an alloc of {b!r} before it")
                if b in freed:
                    raise ScheduleError(f"{k} of {b!r} after it was freed (at op {freed[b].index})", where)
                if k is Kind.FREE:
                    freed[b] = op
            if op.name:
                names.add(op.name)
