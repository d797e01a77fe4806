"""Matching, as the executor sees it: which ops of a schedule meet which.

Written from DESIGN.md §2b and the v2 contract, not from the engine:

- point to point: one FIFO per (communicator, source, destination); the n-th
  send from a to b on communicator C meets the n-th recv at b from a on C, in
  issue order.  A pair whose sizes disagree never completes (NCCL hangs or
  aborts), so both of its ops are unmatched;
- collectives: the k-th collective a rank issues on a group meets the k-th of
  every other member (one *instance*) when kind, size, dtype, root and counts
  agree (all_to_all: member i's ``counts[j]`` equals member j's
  ``recv_counts[i]`` where both are given); from a group's first bad instance
  on, its collectives are unmatched;
- one-sided: the n-th ``wait_signal`` at dst on (src, signal) binds to the n-th
  put from src to dst with that signal; a wait_signal without one never ends
  (a matching problem); a put without a waiter is fine;
- events (re-recorded): a wait, or a host ``sync`` on an event, binds to the
  latest record of the event its rank issued before it (the event's state at
  the time of the call); a wait with no earlier record does nothing.

Values travel with messages: :func:`message_problems` compares what each recv
(each non-root member of a broadcast) declares it writes with what its matched
send (the root) carried.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import attrgetter

from ..ir import Kind, Op, Schedule

_SEND = Kind.SEND
_RECV = Kind.RECV
_RECORD = Kind.RECORD
_WAIT = Kind.WAIT
_PUT = Kind.PUT
_WAIT_SIGNAL = Kind.WAIT_SIGNAL
_SYNC = Kind.SYNC
_BROADCAST = Kind.BROADCAST
_ALL_TO_ALL = Kind.ALL_TO_ALL
COLLECTIVE_KINDS = frozenset(k for k in Kind if k.is_collective)
P2P_KINDS = frozenset({_SEND, _RECV})
COMM_KINDS = COLLECTIVE_KINDS | P2P_KINDS
"""Kinds that run on a communicator (NCCL): what the queues of §2b hold."""

_kind_of = attrgetter("kind")
_id_of = attrgetter("id")
_rank_group = attrgetter("rank", "group")


@dataclass
class Matching:
    """Who meets whom.  ``instance`` maps each matched send, recv or
    collective to every op of its match (a (send, recv) pair, or a collective
    instance in the group's member order); ``unmatched`` holds the comm ops
    and wait_signals that never end."""

    instance: dict[int, tuple[int, ...]] = field(default_factory=dict)
    unmatched: set[int] = field(default_factory=set)
    record_of: dict[int, int] = field(default_factory=dict)   # wait / event sync -> the latest record before it
    put_of: dict[int, int] = field(default_factory=dict)      # wait_signal -> its bound put
    pairs: list[tuple[int, int]] = field(default_factory=list)           # (send, recv), sizes agreeing or not
    instances: list[tuple[int, ...]] = field(default_factory=list)       # matched collective instances
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _signature(op: Op) -> tuple[object, ...]:
    # all_to_all counts are per destination and differ between members: they
    # are compared crosswise, below, not as part of the signature.
    counts = None if op.kind is _ALL_TO_ALL else op.counts
    return (op.kind, op.size, op.root, op.dtype, counts)


def _all_to_all_counts_disagree(inst: Sequence[Op]) -> bool:
    for i, a in enumerate(inst):
        if a.counts is None:
            continue
        for j, b in enumerate(inst):
            if b.recv_counts is not None and a.counts[j] != b.recv_counts[i]:
                return True
    return False


def match(schedule: Schedule) -> Matching:
    m = Matching()
    label = schedule.label
    ops = schedule.ops
    kinds = list(map(_kind_of, ops))

    # -- point to point: FIFO per (communicator, src, dst), in issue order (a
    # schedule lists each rank's ops in issue order)
    sends: dict[tuple[str | None, int, int], list[Op]] = defaultdict(list)
    recvs: dict[tuple[str | None, int, int], list[Op]] = defaultdict(list)
    for op in compress(ops, map(P2P_KINDS.__contains__, kinds)):
        assert op.peer is not None
        if op.kind is _SEND:
            sends[(op.communicator, op.rank, op.peer)].append(op)
        else:
            recvs[(op.communicator, op.peer, op.rank)].append(op)
    instance = m.instance
    for key in sorted(set(sends) | set(recvs), key=lambda k: (str(k[0]), k[1], k[2])):
        ss, rr = sends.get(key, []), recvs.get(key, [])
        for snd, rcv in zip(ss, rr, strict=False):
            pair = (snd.id, rcv.id)
            instance[snd.id] = pair
            instance[rcv.id] = pair
            m.pairs.append(pair)
            if snd.size is not None and rcv.size is not None and snd.size != rcv.size:
                m.problems.append(f"{label(snd)} sends size {snd.size} but {label(rcv)} expects {rcv.size}")
                m.unmatched |= {snd.id, rcv.id}
        for extra in ss[len(rr):] + rr[len(ss):]:
            other = "recv" if extra.kind is _SEND else "send"
            m.unmatched.add(extra.id)
            m.problems.append(f"{label(extra)} has no matching {other}")

    # -- collectives: the k-th on a group of every member is instance k
    colls: dict[tuple[int, str | None], list[Op]] = defaultdict(list)
    for op in compress(ops, map(COLLECTIVE_KINDS.__contains__, kinds)):
        colls[_rank_group(op)].append(op)
    for gname, members in schedule.groups:
        lists = [colls.get((r, gname), []) for r in members]
        longest = max(map(len, lists), default=0)
        bad = min(map(len, lists), default=0)
        why = ""
        for k, inst in enumerate(zip(*lists, strict=False)):
            if len(set(map(_signature, inst))) != 1:
                bad, why = k, "members disagree on kind, size, dtype, root or counts"
                break
            if inst[0].kind is _ALL_TO_ALL and _all_to_all_counts_disagree(inst):
                bad, why = k, "a member's counts disagree with another member's recv_counts"
                break
            ids = tuple(map(_id_of, inst))
            instance.update(dict.fromkeys(ids, ids))
            m.instances.append(ids)
        if bad < longest:
            missing = [r for r, lst in zip(members, lists, strict=True) if bad >= len(lst)]
            if missing:
                why = f"rank(s) {', '.join(map(str, missing))} never issue it"
            m.problems.append(f"collective #{bad} on group {gname!r} does not match: {why}")
            for lst in lists:
                m.unmatched.update(op.id for op in lst[bad:])

    # -- one-sided: the n-th wait_signal at dst on (src, signal) binds to the
    # n-th put from src to dst with that signal
    puts: dict[tuple[int, int, str], list[int]] = defaultdict(list)
    for op in compress(ops, map(_PUT.__eq__, kinds)):
        if op.signal is not None:
            assert op.peer is not None
            puts[(op.rank, op.peer, op.signal)].append(op.id)
    taken: Counter[tuple[int, int, str]] = Counter()
    for op in compress(ops, map(_WAIT_SIGNAL.__eq__, kinds)):
        assert op.peer is not None and op.signal is not None
        pkey = (op.peer, op.rank, op.signal)
        k = taken[pkey]
        taken[pkey] += 1
        bound = puts.get(pkey, [])
        if k < len(bound):
            m.put_of[op.id] = bound[k]
        else:
            m.unmatched.add(op.id)
            m.problems.append(f"{label(op)} has no put from rank {op.peer} with signal {op.signal!r}"
                              " to bind to: it never completes")

    # -- events: an event holds the state its latest record captured; a wait
    # (an event sync) binds to the state at its issue: the latest record of
    # the event issued before it on its rank (none: it does nothing)
    m.record_of = bind_records(schedule, (_WAIT, _SYNC))
    return m


def bind_records(schedule: Schedule, waiters: tuple[Kind, ...] = (Kind.WAIT, Kind.SYNC)) -> dict[int, int]:
    """``waiter -> record``: each op of a ``waiters`` kind that names an
    event, bound to the latest record of that event its rank issued before
    it (CUDA ``cudaStreamWaitEvent``, ``cudaEventSynchronize``: "the most
    recently captured state at the time of the call").  The host issues a
    rank's ops in issue order and a record overwrites the event's state, so
    the state at the waiter's issue is that of the latest record before it."""
    out: dict[int, int] = {}
    kinds = list(map(_kind_of, schedule.ops))
    wanted = set(waiters) | {_RECORD}
    if not any(map(wanted.__contains__, kinds)):
        return out
    # (a schedule lists each rank's ops in issue order)
    state: dict[tuple[int, str | None], int] = {}
    for op in compress(schedule.ops, map(wanted.__contains__, kinds)):
        if op.kind is _RECORD:
            state[(op.rank, op.event)] = op.id
        elif op.event is not None:
            rec = state.get((op.rank, op.event))
            if rec is not None:
                out[op.id] = rec
    return out


# ---------------------------------------------------------------- values
@dataclass(frozen=True)
class Message:
    """A receiving op (a recv, or a non-root member of a broadcast), the op
    whose data it gets (its send, or the root), the values it declares it
    writes and the values the message carried (None: the sender declares no
    value, so the receiver's are taken on trust)."""

    receiver: int
    sender: int
    declared: tuple[str, ...]
    carried: tuple[str, ...] | None

    @property
    def mismatch(self) -> bool:
        """The receiver declares values, the sender declares values, and they
        differ as multisets.  (A receiver that declares no value asserts
        nothing, as DESIGN §2b calls the declared value an assertion.)"""
        return (self.carried is not None and bool(self.declared)
                and Counter(self.declared) != Counter(self.carried))


def _carried_by_send(op: Op) -> tuple[str, ...] | None:
    vals = tuple(acc.value for acc in op.reads)
    if not vals or None in vals:
        return None
    return vals  # type: ignore[return-value]


def _carried_by_root(op: Op) -> tuple[str, ...] | None:
    """What a broadcast root sends: the values it reads; when it declares no
    read values (no reads, or a read with value None, as for a send), the
    values it writes (its own output is the broadcast value)."""
    read = _carried_by_send(op)
    if read is not None:
        return read
    vals = tuple(acc.value for acc in op.writes)
    if not vals or None in vals:
        return None
    return vals  # type: ignore[return-value]


def _declared(op: Op) -> tuple[str, ...]:
    return tuple(str(acc.value) for acc in op.writes)


def message_of(schedule: Schedule, m: Matching, o: int) -> Message | None:
    """The message op ``o`` receives, if it is a matched recv or a matched
    non-root broadcast member."""
    op = schedule.ops[o]
    inst = m.instance.get(o)
    if inst is None:
        return None
    if op.kind is _RECV:
        snd = schedule.ops[inst[0]]
        return Message(o, snd.id, _declared(op), _carried_by_send(snd))
    if op.kind is _BROADCAST and op.rank != op.root:
        root = next(schedule.ops[p] for p in inst if schedule.ops[p].rank == op.root)
        return Message(o, root.id, _declared(op), _carried_by_root(root))
    return None


def messages(schedule: Schedule, m: Matching) -> list[Message]:
    """Every message a matched recv or broadcast member receives, in op order."""
    out: list[Message] = []
    ops = schedule.ops
    for o in sorted(m.instance):
        k = ops[o].kind
        if k is _RECV or k is _BROADCAST:
            msg = message_of(schedule, m, o)
            if msg is not None:
                out.append(msg)
    return out


def landed_values(msg: Message, op: Op) -> list[str]:
    """The value each write access of the receiving op ``op`` holds when the
    message lands: what the message carried.  Where the declaration agrees
    with the message (as multisets), or the message is taken on trust, that is
    the declared value; on a mismatch (a ``dataflow`` violation in itself) a
    single carried value fills every region, and as many carried values as
    regions fill them in order; otherwise the declaration stands."""
    declared = [str(acc.value) for acc in op.writes]
    carried = msg.carried
    if carried is None or not msg.mismatch:
        return declared
    if len(carried) == 1:
        return [carried[0]] * len(declared)
    if len(carried) == len(declared):
        return list(carried)
    return declared
