"""Repair hints: the smallest change that removes a violation, proved by
re-checking.

For a counterexample, :func:`repair_hint` proposes edits of the schedule,
applies each to a copy (through ``schedule_to_dict`` / ``schedule_from_dict``,
so the copy goes through the same validation as a file: an edit that does
not load is not realizable and is dropped) and re-checks the property with
:func:`~syncproof.engine.check.check_schedule`.  It repeats for the next
counterexample of the same property (a missing event is often missing on
every rank) until the property is proved, no edit helps, or ``max_rounds``
is reached.

Hints never loop: an edit that gives back a schedule already seen (an undo,
or a swap that only moves a mismatch) is dropped, the same step is never
taken twice, and the rounds are capped.  An edit that turns a ``wait`` into
a no-op is dropped too, and so is an edit that moves a ``record`` or a
``wait`` (it changes what the event orders: it removes a sync).

The hint says "proved" only when the final re-check of the edited schedule
proves the property *and* nothing new breaks: every property that was
proved before is still proved, and no property that could not be checked
before (``unknown``: the schedule deadlocked or did not match) is violated
after the edit (it may be a violation the edit made; the hint cannot tell,
so it does not claim a fix).  Among the edits that prove the property, the
first one that breaks nothing wins.

Edits, by what went wrong:

* an order missing between two streams of one rank (dataflow, race, phase):
  ``record`` a fresh event on the first op's stream right after it, ``wait``
  for it on the second op's stream right before it;
* an order missing between two ranks: a sync ``send``/``recv`` pair on a
  fresh channel from right after the first op to right before the second
  (directly, or from a side stream that waits for an event, so that the first
  rank's stream is not held up); then the same with a 1-element message
  marked ``eager`` (it fits any transport buffer, so it adds no blocking
  edge); for a ``put``, a ``wait_signal`` on the target first;
* a weak collective whose input is overwritten while its peers may still read
  it: a ``barrier`` on its group right after it on every member;
* two parts of one group call that must be ordered: take the later one out of
  the group call;
* a value a recv (or broadcast member) declares that its FIFO partner did not
  carry: swap it with the later recv of that FIFO that declares the carried
  value ("post the recv of X first"), or the sends on the other side;
* a cycle of waits (deadlock): through stream order or one communicator's
  issue order, issue the waiting op before the op it is queued behind;
  through a progress edge (two communicators launched in a different order on
  two ranks), launch them in the order the other rank uses, or put them in one
  group call; through message-blocking edges (a send and a recv that wait for
  each other's peer), issue them as one group call (``batch_isend_irecv``);
* collectives issued in a different order than the other members (matching):
  swap the culprit to the position the others use.  A mismatch in kind, size
  or counts is not an order: no reorder fixes it, and the hint says so.

Anything else (a value nobody writes, metadata that breaks a phase rule, a
read issued before its writer on the same rank) has no local sync fix, and
the hint says so.  This module uses the solver only through
``check_schedule``.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SyncproofError
from ..ir import Kind, Op, Schedule, schedule_from_dict, schedule_to_dict
from ..result import PROPERTIES, Counterexample, Hint, PropertyResult, Report, Verdict
from ..semantics.matching import _sig, _sig_text, match
from .check import check_schedule

MAX_ROUNDS = 8
AUTO_MAX_OPS = 20_000  # report_hints searches for hints up to this size (each costs a few checks)
GROUP_CALL = "ncclGroupStart/End; torch batch_isend_irecv"
EAGER_NOTE = ("a 1-element message, marked eager: it fits any transport buffer, so its send does not wait for"
              " its recv")


# ------------------------------------------------------------------ edits
@dataclass(frozen=True)
class _Edit:
    """One change, on op ids of the schedule it applies to.

    ``kind``: ``event``, ``p2p``, ``p2p_side`` (``eager``: the sync message is
    a 1-element eager send), ``signal``, ``barrier``, ``unbatch``, ``move``
    (issue ``a`` right before ``b``), ``rebind`` (issue wait ``a`` right after
    record ``b``), ``swap``, ``batch`` (``a``/``b`` and every
    pair in ``more`` become group calls).  ``why`` picks the wording."""

    kind: str
    a: int
    b: int
    why: str = ""
    more: tuple[tuple[int, int], ...] = ()
    eager: bool = False


def _short(s: Schedule, o: int) -> str:
    label = s.label(o)
    return label.split(": ", 1)[1] if ": " in label else label


def _lane(s: Schedule, o: int) -> str:
    op = s.ops[o]
    return f"r{op.rank}/{op.stream}"


class _Names:
    """Fresh event, channel, stream, group-call and signal names for one schedule."""

    def __init__(self, s: Schedule) -> None:
        self.used = {op.event for op in s.ops if op.event} | {op.channel for op in s.ops} | \
            {op.stream for op in s.ops} | {op.batch for op in s.ops if op.batch} | \
            {op.signal for op in s.ops if op.signal}
        self.k = 0

    def copy(self) -> _Names:
        dup = _Names.__new__(_Names)
        dup.used, dup.k = set(self.used), self.k
        return dup

    def fresh(self, stem: str) -> str:
        while f"{stem}{self.k}" in self.used:
            self.k += 1
        name = f"{stem}{self.k}"
        self.used.add(name)
        return name


def _instance(s: Schedule, o: int) -> list[Op]:
    """The members of the collective instance of op ``o`` (same group, same number)."""
    op, seq = s.ops[o], s.seq_numbers
    return [x for x in s.ops if x.kind.is_collective and x.group == op.group and seq[x.id] == seq[o]]


def _apply(s: Schedule, edit: _Edit, names: _Names) -> tuple[Schedule, str]:
    """The edited copy of ``s`` and a sentence describing the edit."""
    doc = copy.deepcopy(schedule_to_dict(s))
    a, b = s.ops[edit.a], s.ops[edit.b]
    ra, rb = doc["ranks"][str(a.rank)], doc["ranks"][str(b.rank)]
    if edit.kind == "event":
        ev = names.fresh("fix")
        rb.insert(b.index, {"op": "wait", "stream": b.stream, "event": ev})  # b comes after a: insert it first
        ra.insert(a.index + 1, {"op": "record", "stream": a.stream, "event": ev})
        text = (f"add record({ev}) on {_lane(s, a.id)} right after {_short(s, a.id)}, and wait({ev}) on"
                f" {_lane(s, b.id)} right before {_short(s, b.id)}")
    elif edit.kind in ("p2p", "p2p_side"):
        ch = names.fresh("fix")
        msg: dict[str, Any] = {"size": 1, "p2p": "eager"} if edit.eager else {}
        what = "a 1-element eager " if edit.eager else ""
        rb.insert(b.index, {"op": "recv", "stream": b.stream, "from": a.rank, "channel": ch,
                            **({"size": 1} if edit.eager else {})})
        if edit.kind == "p2p":
            ra.insert(a.index + 1, {"op": "send", "stream": a.stream, "to": b.rank, "channel": ch, **msg})
            text = (f"add {what}send(->{b.rank},{ch}) on {_lane(s, a.id)} right after {_short(s, a.id)}, and"
                    f" recv(<-{a.rank},{ch}) on {_lane(s, b.id)} right before {_short(s, b.id)}")
        else:
            ev, side = names.fresh("fix"), names.fresh("sync")
            ra[a.index + 1 : a.index + 1] = [
                {"op": "record", "stream": a.stream, "event": ev},
                {"op": "wait", "stream": side, "event": ev},
                {"op": "send", "stream": side, "to": b.rank, "channel": ch, **msg},
            ]
            text = (f"add record({ev}) on {_lane(s, a.id)} right after {_short(s, a.id)}, a new stream"
                    f" r{a.rank}/{side} that waits for it and sends on channel {ch}"
                    f"{' (' + what + 'send)' if edit.eager else ''}, and recv(<-{a.rank},{ch})"
                    f" on {_lane(s, b.id)} right before {_short(s, b.id)}")
        if edit.eager:
            text += f" ({EAGER_NOTE})"
    elif edit.kind == "signal":  # a is a put, b on its target: b waits for the put's signal
        sig = a.signal
        if sig is None:
            sig = names.fresh("fix")
            ra[a.index]["signal"] = sig
        rb.insert(b.index, {"op": "wait_signal", "stream": b.stream, "from": a.rank, "signal": sig})
        text = (f"{'give ' + _short(s, a.id) + f' the signal {sig!r}, and ' if a.signal is None else ''}add"
                f" wait_signal(<-{a.rank},{sig}) on {_lane(s, b.id)} right before {_short(s, b.id)}")
    elif edit.kind == "barrier":  # a is a weak collective: a barrier right after it on every member
        members = _instance(s, a.id)
        for m in members:
            doc["ranks"][str(m.rank)].insert(m.index + 1, {"op": "barrier", "stream": m.stream, "group": a.group})
        text = (f"add barrier({a.group}) right after {_short(s, a.id)} on every member (ranks"
                f" {', '.join(str(m.rank) for m in members)}): the collective is declared weak, so without an"
                " end barrier its peers may still read a member's input after that member's own end")
    elif edit.kind == "unbatch":  # b is a part of a's group call: take it out, issue it after the call
        parts = [op for op in s.by_rank[b.rank] if op.batch == b.batch and op.stream == b.stream]
        last = max(op.index for op in parts)
        moved = dict(rb[b.index])
        moved.pop("batch", None)
        rb.insert(last + 1, moved)
        rb.pop(b.index)
        text = (f"on rank {b.rank}, take {_short(s, b.id)} out of group call {b.batch!r} and issue it right after"
                f" the call (the parts of one group call are not ordered among themselves, so it may read"
                f" before {_short(s, a.id)} has written)")
    elif edit.kind == "move":  # issue a right before b (same rank, a issued after b)
        moved = ra.pop(a.index)
        ra.insert(b.index, moved)
        if edit.why.startswith("progress"):
            other = edit.why.partition(":")[2]
            def named(o: Op) -> str:
                label = _short(s, o.id)
                return label if o.communicator and f"({o.communicator})" in label else f"{label} ({o.communicator})"

            text = (f"on rank {a.rank}, launch {named(a)} before {named(b)}"
                    f"{', matching rank ' + other if other else ''}: NCCL needs every device to launch two"
                    " communicators' ops in one order")
        elif edit.why == "comm":
            text = (f"on rank {a.rank}, issue {_short(s, a.id)} before {_short(s, b.id)} (NCCL runs communicator"
                    f" {a.communicator!r}'s ops in issue order, whatever their streams)")
        else:
            text = f"on rank {a.rank}, issue {_short(s, a.id)} before {_short(s, b.id)} (both on {_lane(s, b.id)})"
    elif edit.kind == "rebind":  # a is a wait bound to an older record; issue it right after record b
        moved = ra.pop(a.index)
        ra.insert(b.index, moved)  # b.index > a.index: after the pop, b sits at b.index - 1
        text = (f"on rank {a.rank}, issue {_short(s, a.id)} right after {_short(s, b.id)}: a wait binds to the"
                f" latest record of its event issued before it, so where it stands now it waits for an earlier"
                f" record of {a.event!r}")
    elif edit.kind == "swap":
        ra[a.index], ra[b.index] = ra[b.index], ra[a.index]
        if edit.why.startswith("value:"):
            text = (f"on rank {a.rank}, swap the issue order of {_short(s, a.id)} and {_short(s, b.id)}, so that"
                    f" FIFO order pairs each with the message that carries its value ({edit.why[6:]})")
        else:
            text = f"on rank {a.rank}, swap the issue order of {_short(s, a.id)} and {_short(s, b.id)}"
    elif edit.kind == "own_comm":  # a's messages of its lane and peer move to a communicator of their own
        ch = names.fresh("fix")
        snd = a if a.kind is Kind.SEND else b
        pair = dict(match(s).pairs)
        group = [o for o in s.ops if o.kind is Kind.SEND and o.rank == snd.rank and o.stream == snd.stream
                 and o.peer == snd.peer and o.communicator == snd.communicator and o.id in pair]
        for o in group + [s.ops[pair[o.id]] for o in group]:
            d = doc["ranks"][str(o.rank)][o.index]
            if o.comm is not None:
                d["comm"] = f"{o.comm}:{ch}"
            else:
                d["channel"] = ch
        what = (f"the {len(group)} messages" if len(group) > 1 else "the message") + \
            f" rank {snd.rank} sends from {_lane(s, snd.id)} to rank {snd.peer}"
        text = (f"give {what} (from {_short(s, group[0].id)}) a communicator of their own (channel {ch}): on"
                f" {snd.communicator!r} NCCL runs them in issue order with that communicator's other ops")
    elif edit.kind == "batch":
        rows = []
        for x, y in ((edit.a, edit.b), *edit.more):
            ox, oy = s.ops[x], s.ops[y]
            gid = ox.batch or oy.batch or names.fresh("fixgc")
            for o in (ox, oy):
                doc["ranks"][str(o.rank)][o.index]["batch"] = gid
            rows.append((ox.rank, f"{_short(s, x)} and {_short(s, y)}"))
        head = f"on rank {rows[0][0]}, issue {rows[0][1]} as one group call ({GROUP_CALL})"
        if edit.why == "progress":
            head += ", so that the two communicators' ops launch together"
        tail = "".join(f"; the same on rank {r} ({what})" for r, what in rows[1:])
        text = head + tail
    else:  # pragma: no cover - a programming error
        raise ValueError(edit.kind)
    return schedule_from_dict(doc, s.source), text


def _rebind_edits(s: Schedule, oa: Op, ob: Op) -> list[_Edit]:
    """A wait on ``ob``'s stream bound to an earlier record of an event that is
    recorded again after ``oa`` (a loop's re-recorded event, waited for too
    early): issue the wait right after that record instead of adding a pair."""
    ops = s.by_rank[oa.rank]
    out: list[_Edit] = []
    for w in reversed(ops[:ob.index]):  # the wait closest before ob is the one that orders it
        if w.kind is not Kind.WAIT or w.stream != ob.stream:
            continue
        later = [o for o in ops[oa.index + 1:ob.index] if o.kind is Kind.RECORD and o.event == w.event
                 and o.stream == oa.stream]
        if later and later[0].index > w.index:
            out.append(_Edit("rebind", w.id, later[0].id))
    return out[:1]


def _order_edits(s: Schedule, a: int, b: int) -> tuple[list[_Edit], str]:
    """Edits that make ``a`` end before ``b`` starts, or why none exists."""
    oa, ob = s.ops[a], s.ops[b]
    if oa.rank == ob.rank:
        if oa.batch is not None and oa.batch == ob.batch and oa.stream == ob.stream:
            return [_Edit("unbatch", a, b)], ""
        if oa.stream == ob.stream:
            if oa.index < ob.index and oa.completion == "weak" and oa.kind.is_collective:
                return [_Edit("barrier", a, b)], ""
            if oa.index < ob.index:
                return [], (f"{_short(s, a)} already runs before {_short(s, b)} on {_lane(s, a)}; what is missing"
                            " is an order with another rank's op")
            return [], (f"{_short(s, b)} is queued before {_short(s, a)} on {_lane(s, a)}; no sync can"
                        " reorder one stream: move it in issue order")
        if oa.index > ob.index:
            return [], (f"on rank {oa.rank}, {_short(s, b)} is issued before {_short(s, a)}, so an event"
                        " recorded after the latter cannot be waited for before the former (such a wait"
                        " is a no-op); issue them in the other order first")
        return _rebind_edits(s, oa, ob) + [_Edit("event", a, b)], ""
    edits = []
    if oa.kind is Kind.PUT and oa.peer == ob.rank:
        edits.append(_Edit("signal", a, b))
    edits += [_Edit("p2p", a, b), _Edit("p2p_side", a, b), _Edit("p2p", a, b, eager=True),
              _Edit("p2p_side", a, b, eager=True)]
    return edits, ""


# ------------------------------------------------------ candidate edits
def _values(accs: Sequence[Any]) -> list[str]:
    return sorted(x.value or "" for x in accs)


def _fifo(s: Schedule, op: Op) -> list[Op]:
    """The ops of ``op``'s FIFO on its own rank (same kind, communicator and peer), in issue order."""
    return [x for x in s.by_rank[op.rank]
            if x.kind is op.kind and x.peer == op.peer and x.communicator == op.communicator]


def _message_edits(s: Schedule, cex: Counterexample) -> tuple[list[_Edit], str]:
    """A receiver declares a value its matched sender did not carry: swap it
    with the later receiver of the FIFO that declares the carried value, or
    swap the sends."""
    obs = cex.observation
    if obs.a is None or obs.b is None:
        return [], "the counterexample names no receiver and sender"
    recv, send = s.ops[obs.a], s.ops[obs.b]
    carried, declared = list(obs.seen), sorted(v for v in obs.expected.split(", ")) if obs.expected else []
    edits: list[_Edit] = []
    if recv.kind is Kind.RECV and send.kind is Kind.SEND:
        mine = _fifo(s, recv)
        for later in mine[mine.index(recv) + 1:]:
            if _values(later.writes) == carried:
                edits.append(_Edit("swap", recv.id, later.id,
                                   f"value:post the recv of {', '.join(map(repr, carried))} first"))
        theirs = _fifo(s, send)
        for later in theirs[theirs.index(send) + 1:]:
            if _values(later.reads) == declared:
                edits.append(_Edit("swap", send.id, later.id,
                                   f"value:send {', '.join(map(repr, declared))} first"))
    elif recv.kind.is_collective:  # a broadcast member: a later broadcast on its group brings the value
        same = [x for x in s.by_rank[recv.rank] if x.kind.is_collective and x.group == recv.group]
        for later in same[same.index(recv) + 1:]:
            if _sig(later) == _sig(recv) and _values(later.writes) == carried:
                edits.append(_Edit("swap", recv.id, later.id,
                                   f"value:join the broadcast of {', '.join(map(repr, carried))} first"))
    if edits:
        return edits, ""
    where = "broadcast on that group" if recv.kind.is_collective else "message on that FIFO"
    return [], (f"no later {where} carries {', '.join(map(repr, declared))} and no later receiver declares"
                f" {', '.join(map(repr, carried))}: the values differ, not their order (fix the value the sender"
                " reads or the one the receiver declares)")


def _matching_edits(s: Schedule, cex: Counterexample) -> tuple[list[_Edit], str]:
    """Collectives issued out of the other members' order: swap the culprit
    into place.  Only when the rank's sequence on the group is a permutation
    of another member's: a kind or size mismatch is not an order."""
    edits: list[_Edit] = []
    why = ""
    groups = list(dict.fromkeys(s.ops[c].group for c in cex.culprits if s.ops[c].kind.is_collective))
    for g in groups:
        if g is None:
            continue
        for rank, first in _deviants(s, g):
            why = _reorder(s, g, rank, first, edits) or why
    p2p = [s.ops[c] for c in cex.culprits if s.ops[c].kind.is_p2p]
    sends = [o for o in p2p if o.kind is Kind.SEND]
    recvs = [o for o in p2p if o.kind is Kind.RECV]
    if sends and recvs:
        edits += _fifo_swaps(s, sends[0], recvs[0])
        if not edits:
            why = (f"{_short(s, sends[0].id)} and {_short(s, recvs[0].id)} disagree in size or dtype, and their"
                   " FIFO's sends and recvs are not the same sizes in another order; no reorder or sync fixes"
                   " that: make them agree")
    if edits:
        return list(dict.fromkeys(edits)), ""
    if why:
        return [], why
    return [], ("the mismatch is not an order of collectives or messages: an op is missing or has no partner"
                " (see the matching sentence); no reorder or sync creates it")


def _deviants(s: Schedule, g: str) -> list[tuple[int, int]]:
    """The members of ``g`` whose collective sequence differs from the one
    most members issue (every member when there is no majority), each with
    the index of its first differing collective."""
    seqs = {m: [_sig(o) for o in s.by_rank.get(m, ()) if o.kind.is_collective and o.group == g]
            for m in s.group_map.get(g, ())}
    common = Counter(tuple(v) for v in seqs.values()).most_common()
    if not common:
        return []
    best, n = common[0]
    majority = list(best) if n > 1 and (len(common) == 1 or common[1][1] < n) else None
    out = []
    for m, seq in seqs.items():
        ref = majority if majority is not None else next((v for k, v in seqs.items() if k != m), seq)
        if seq == ref:
            continue
        d = next((k for k in range(min(len(seq), len(ref))) if seq[k] != ref[k]), min(len(seq), len(ref)))
        out.append((m, d))
    return out


def _reorder(s: Schedule, g: str, rank: int, first: int, edits: list[_Edit]) -> str:
    """Swaps that put ``rank``'s collectives on ``g`` in another member's
    order (appended to ``edits``), or why no reorder can."""
    mine = [o for o in s.by_rank[rank] if o.kind.is_collective and o.group == g]
    msig = [_sig(o) for o in mine]
    refs = []
    for m in s.group_map.get(g, ()):
        if m == rank:
            continue
        theirs = [_sig(o) for o in s.by_rank.get(m, ()) if o.kind.is_collective and o.group == g]
        if theirs != msig and Counter(theirs) == Counter(msig) and theirs not in refs:
            refs.append(theirs)
    if not refs:
        lens = sorted({sum(1 for o in s.by_rank.get(m, ()) if o.kind.is_collective and o.group == g)
                       for m in s.group_map.get(g, ()) if m != rank})
        at = f"#{first}" + (f": {_sig_text(mine[first])}" if first < len(mine) else "")
        if lens and len(mine) not in lens:
            return (f"rank {rank} issues {len(mine)} collective{'s' if len(mine) != 1 else ''} on {g} where the"
                    f" others issue"
                    f" {' or '.join(map(str, lens))} (first difference at {at}); no reorder or sync fixes a"
                    " missing or extra collective: every member must issue the same ones")
        return (f"rank {rank}'s collectives on {g} differ from the other members' in kind, size, root or counts"
                f" (first difference at {at}), not only in their order; no reorder or sync fixes that: make them"
                " agree")
    for ref in refs:
        d = next(k for k in range(len(msig)) if msig[k] != ref[k])
        j = next(k for k in range(d + 1, len(msig)) if msig[k] == ref[d])
        edits.append(_Edit("swap", mine[d].id, mine[j].id))
    return ""


def _fifo_swaps(s: Schedule, send: Op, recv: Op) -> list[_Edit]:
    """A send and its recv disagree in size: swap one of them with a later op
    of its FIFO that has the partner's size, when the FIFO's sends and recvs
    have the same sizes in another order."""
    def sig(o: Op) -> tuple[int | None, str | None]:
        return (o.size, o.dtype)

    tx, rx = _fifo(s, send), _fifo(s, recv)
    if Counter(map(sig, tx)) != Counter(map(sig, rx)):
        return []
    out = [_Edit("swap", recv.id, later.id) for later in rx[rx.index(recv) + 1:] if sig(later) == sig(send)]
    out += [_Edit("swap", send.id, later.id) for later in tx[tx.index(send) + 1:] if sig(later) == sig(recv)]
    return out


_SYNC_KINDS = (Kind.RECORD, Kind.WAIT)


def _link(why: str) -> str:
    """The rule of a cycle step, from its sentence (see ``explain._why``)."""
    if why.startswith("stream order"):
        return "stream"
    if "one after another in issue order" in why:
        return "comm"
    if "progress side by side" in why and " launches " in why:
        return "progress"
    return "other"


def _cycle_edits(s: Schedule, cex: Counterexample) -> tuple[list[_Edit], str]:
    partner: dict[int, int] = {}
    if any(_link(st.why) == "comm" for st in cex.cycle):
        for a, b in match(s).pairs:
            partner[a], partner[b] = b, a
    moves: list[_Edit] = []
    batches: list[tuple[int, int]] = []
    progress_batches: list[tuple[int, int]] = []
    for st in cex.cycle:
        x, y = s.ops[st.op], s.ops[st.next_op]
        link = _link(st.why)
        if link == "other" or x.rank != y.rank or x.index < y.index:
            continue
        if link in ("stream", "comm") and x.kind not in _SYNC_KINDS and y.kind not in _SYNC_KINDS:
            moves.append(_Edit("move", x.id, y.id, link))
        if link == "comm":
            for o in (x, y):
                if o.id in partner:
                    moves.append(_Edit("own_comm", o.id, partner[o.id]))
        elif link == "progress":
            other = next((str(s.ops[t.op].rank) for t in cex.cycle if _link(t.why) == "progress"
                          and s.ops[t.op].rank != x.rank and s.ops[t.op].communicator == y.communicator
                          and s.ops[t.next_op].communicator == x.communicator), "")
            moves.append(_Edit("move", x.id, y.id, f"progress:{other}"))
        if x.kind.is_comm and y.kind.is_comm and x.stream == y.stream and x.index == y.index + 1:
            (progress_batches if link == "progress" else batches).append((y.id, x.id))
    kinds = {st.blocking for st in cex.cycle}
    groups: list[_Edit] = []
    for pairs, why in ((batches, ""), (progress_batches, "progress")):
        if len(pairs) > 1:
            groups.append(_Edit("batch", pairs[0][0], pairs[0][1], why, tuple(pairs[1:])))
        groups += [_Edit("batch", x, y, why) for x, y in pairs]
    edits = groups + moves if "message" in kinds else moves + groups
    if not edits:
        return [], ("the cycle has no link that a reorder or a group call could break (every link is a"
                    " message or a collective; see the cycle)")
    return list(dict.fromkeys(edits)), ""


def _candidates(s: Schedule, cex: Counterexample) -> tuple[list[_Edit], str]:
    """Candidate edits for one counterexample, best first, or why none exists."""
    if cex.property == "matching":
        return _matching_edits(s, cex)
    if cex.cycle:
        return _cycle_edits(s, cex)
    if cex.observation.kind == "message":
        return _message_edits(s, cex)
    if cex.missing_edge is None:
        if cex.observation.kind == "meta":
            return [], "the op's own metadata breaks the phase rule; no sync changes that"
        if cex.observation.kind == "read":
            return [], "nothing on this rank writes the expected value before the read; a sync cannot create it"
        return [], "the counterexample names no missing order to add"
    a, b = cex.missing_edge
    edits, why = _order_edits(s, a, b)
    if cex.observation.kind == "overlap":  # either order removes an overlap
        more, _ = _order_edits(s, b, a)
        edits += more
        if edits:
            why = ""
    return edits, why


# ----------------------------------------------------------------- search
def _first_cex(rep: Report, prop: str) -> Counterexample | None:
    r = rep.result(prop)
    return r.counterexample if r.verdict is Verdict.VIOLATED else None


def _fingerprint(s: Schedule) -> str:
    doc = schedule_to_dict(s)
    doc.pop("name", None)
    doc.pop("description", None)
    return json.dumps(doc, sort_keys=True)


def _noop_waits(s: Schedule) -> int:
    return len(match(s).noop_waits)


def _before(original: Schedule, report: Report | None, engine: str) -> dict[str, Verdict]:
    before = {r.property: r.verdict for r in report.results} if report is not None else {}
    missing = [q for q in PROPERTIES if q not in before]
    if missing:
        orig = check_schedule(original, missing, engine=engine, replay=False, max_cex=1)
        before.update({r.property: r.verdict for r in orig.results})
    return before


def _breaks(prop: str, before: dict[str, Verdict], after: Report) -> list[str]:
    """What the edit breaks: a property proved before that is not proved
    after, or one that could not be checked before and is violated after."""
    out = []
    for r in after.results:
        q, was = r.property, before.get(r.property)
        if q == prop or r.verdict is Verdict.PROVED:
            continue
        if was is Verdict.PROVED or (was is Verdict.UNKNOWN and r.verdict is Verdict.VIOLATED):
            out.append(q)
    return out


def repair_hint(schedule: Schedule, result: PropertyResult, *, report: Report | None = None,
                engine: str = "hybrid", max_rounds: int = MAX_ROUNDS) -> Hint | None:
    """A repair hint for a violated ``result`` of ``schedule``, or ``None``
    when the result is not violated.  ``report`` (the report ``result`` came
    from) saves re-checking the original schedule for the other verdicts.

    The search is greedy (the first edit that makes progress is kept); when
    its path does not end in a clean proof, it starts again from each other
    first edit, up to ``RESTARTS`` times, and returns the first proved hint
    (else the first path's)."""
    cex = result.counterexample
    if result.verdict is not Verdict.VIOLATED or cex is None:
        return None
    banned: set[str] = set()
    first: Hint | None = None
    cache: dict[str, dict[str, Verdict]] = {}
    for _ in range(RESTARTS + 1):
        hint = _greedy(schedule, result.property, cex, report, engine, max_rounds, banned, cache)
        if first is None:
            first = hint
        if hint.proved or not hint.steps or hint.steps[0] in banned:
            return hint if hint.proved else first
        banned.add(hint.steps[0])
    return first


RESTARTS = 2


def _greedy(schedule: Schedule, prop: str, cex: Counterexample, report: Report | None, engine: str,
            max_rounds: int, banned: set[str], cache: dict[str, dict[str, Verdict]]) -> Hint:
    """One greedy path of edits; ``banned`` first steps are not taken."""
    current, names = schedule, _Names(schedule)
    steps: list[str] = []
    seen = {_fingerprint(schedule)}
    before: dict[str, Verdict] | None = cache.get("before")
    noop = _noop_waits(schedule)
    for _ in range(max_rounds):
        edits, why = _candidates(current, cex)
        if not edits:
            if not steps:
                return Hint(prop, "no_fix", f"no local fix: {why}")
            return _unproved(prop, steps, f"after {len(steps)} change(s) {prop} is still violated and {why}:"
                             f" {cex.sentence}")
        progress: tuple[Schedule, str, Verdict, Counterexample | None, _Names] | None = None
        proving: list[tuple[Schedule, str, Report]] = []
        tried: list[str] = []
        for edit in edits:
            trial = names.copy()
            try:
                cand, text = _apply(current, edit, trial)
            except SyncproofError:
                continue  # not realizable: the edited schedule does not load
            fp = _fingerprint(cand)
            if fp in seen or text in steps or _noop_waits(cand) > noop or (not steps and text in banned):
                continue  # an undo, a repeat, a wait turned into a no-op, or a first step already tried
            tried.append(text)
            rep = check_schedule(cand, (prop,), engine=engine, replay=False, max_cex=1)
            verdict = rep.result(prop).verdict
            nxt = _first_cex(rep, prop)
            if verdict is Verdict.PROVED:
                if before is None:
                    before = cache["before"] = _before(schedule, report, engine)
                full = check_schedule(cand, PROPERTIES, engine=engine, replay=False, max_cex=1)
                proving.append((cand, text, full))
                if not _breaks(prop, before, full):
                    return _final(cand, prop, [*steps, text], before, full)
            elif progress is None and nxt is not None and nxt.sentence != cex.sentence:
                progress = (cand, text, verdict, nxt, trial)
        if proving:  # every edit that proves it breaks something: say what the first one breaks
            cand, text, full = proving[0]
            assert before is not None
            return _final(cand, prop, [*steps, text], before, full)
        if progress is None:
            if not tried:
                return _unproved(prop, steps, "no realizable edit is left that does not undo an earlier one:"
                                 f" {cex.sentence}") if steps else \
                    Hint(prop, "no_fix", f"no local fix: no candidate edit is realizable here ({cex.sentence})")
            return _unproved(prop, steps, f"tried {'; '.join(tried)}, but the re-check still finds: {cex.sentence}")
        current, text, _verdict, nxt, names = progress
        seen.add(_fingerprint(current))
        steps.append(text)
        assert nxt is not None
        cex = nxt
    return _unproved(prop, steps, f"{prop} is still violated after {max_rounds} changes: {cex.sentence}")


def _same_shape(text: str) -> tuple[str, tuple[str, ...]]:
    """A step with its rank numbers and fresh names blanked, and the ranks."""
    ranks = tuple(dict.fromkeys(re.findall(r"\br(\d+)/", text) + re.findall(r"on rank (\d+)", text)))
    shape = re.sub(r"\br\d+/", "r*/", text)
    shape = re.sub(r"on rank \d+", "on rank *", shape)
    shape = re.sub(r"\b(fix|sync|fixgc)\d+\b", r"\1*", shape)
    shape = re.sub(r"(->|<-)\d+", r"\1*", shape)
    return shape, ranks


def _join(steps: Sequence[str]) -> str:
    """The steps as one sentence; a step that repeats the previous one on
    other ranks is folded into "the same on rank N"."""
    out: list[str] = []
    prev_shape: str | None = None
    for step in steps:
        shape, ranks = _same_shape(step)
        if shape == prev_shape and len(ranks) == 1:
            out[-1] += f"; the same on rank {ranks[0]}"
        else:
            out.append(step)
            prev_shape = shape
    return "; then ".join(out)


def _unproved(prop: str, steps: Sequence[str], why: str) -> Hint:
    text = _join(steps) + f" ({why})" if steps else why
    return Hint(prop, "unproved", text, tuple(steps))


def _final(repaired: Schedule, prop: str, steps: list[str], before: dict[str, Verdict], rep: Report) -> Hint:
    """The hint for a repaired copy whose re-check (``rep``, every property)
    proves ``prop``: proved when nothing that held (or could not be checked)
    before is broken."""
    verdicts = tuple((r.property, r.verdict.value) for r in rep.results)
    text = _join(steps)
    if rep.result(prop).verdict is not Verdict.PROVED:  # pragma: no cover - the single re-check proved it
        return Hint(prop, "unproved", f"{text} (the full re-check does not prove {prop})", tuple(steps),
                    verdicts, repaired)
    broken = _breaks(prop, before, rep)
    if broken:
        details = []
        for q in broken:
            r = rep.result(q)
            was = "was proved" if before.get(q) is Verdict.PROVED else "could not be checked before"
            what = r.counterexample.sentence if r.counterexample is not None else r.reason
            details.append(f"{q} ({was}) is then {r.verdict.value}: {what}")
        return Hint(prop, "unproved", f"{text} (this proves {prop}, but {'; '.join(details)})",
                    tuple(steps), verdicts, repaired)
    still = [q for q, v in verdicts if v != "proved"]
    tail = f"; still not proved: {', '.join(still)}" if still else "; every property is then proved"
    return Hint(prop, "proved", f"{text} (re-check proves {prop}{tail})", tuple(steps), verdicts, repaired)


# ------------------------------------------------------- for the renderers
_CACHE: dict[tuple[int, int, int], tuple[Schedule, PropertyResult, Hint | None]] = {}


def hint_for(schedule: Schedule, result: PropertyResult, report: Report | None = None,
             max_ops: int = AUTO_MAX_OPS) -> Hint | None:
    """:func:`repair_hint`, remembered for the last few results (a caller
    asking twice about one result gets the same hint; commands call
    :func:`report_hints` once per report and hand the hints to the
    renderers, which never compute one).  Above ``max_ops``
    ops it returns a hint that says it was not attempted (call
    :func:`repair_hint` directly)."""
    if result.verdict is not Verdict.VIOLATED or result.counterexample is None:
        return None
    key = (id(schedule), id(result), max_ops)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is schedule and hit[1] is result:
        return hit[2]
    if len(schedule.ops) > max_ops:
        hint: Hint | None = Hint(result.property, "unproved",
                                 f"not attempted: the schedule has {len(schedule.ops)} ops (automatic hints"
                                 f" stop at {max_ops}); call syncproof.engine.repair.repair_hint")
    else:
        hint = repair_hint(schedule, result, report=report, engine=report.engine if report else "hybrid")
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[key] = (schedule, result, hint)
    return hint


def report_hints(schedule: Schedule, report: Report, max_ops: int = AUTO_MAX_OPS) -> dict[str, Hint]:
    """The repair hint of every violated property of ``report``, computed
    once, for the renderers (which never compute hints themselves): the
    command that checked a schedule calls this and hands the result to the
    text, JSON, SARIF and picture writers.  A choice schedule's hint is for
    the schedule its counterexample's assignment selects."""
    hints: dict[str, Hint] = {}
    for r in report.results:
        sr = r.selection if r.selection is not None else schedule
        hint = hint_for(sr, r, report, max_ops)
        if hint is not None:
            hints[r.property] = hint
    return hints
