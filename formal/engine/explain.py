"""Turn solver witnesses into runs, observations and plain sentences.
No solver here: only the witness times and the schedule."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ..ir import Schedule
from ..result import CycleStep, Observation, Run
from ..semantics.obligations import MetaOb, OrderOb, OverlapOb, ReadOb, SampleOb
from ..semantics.precedence import CLASSES, Edge, Precedence, end, start
from .graph import topological_order

NOTHING = "<nothing>"


def run_from_times(prec: Precedence, times: Sequence[int]) -> Run:
    """A run with distinct integer times 0, 1, 2, ... in the witness's order.
    Every constraint and every witness relation is strict, so ties in the
    model are between unrelated events and any tie-break keeps the run
    admissible and the observation the same."""
    n = prec.n_ops
    t = np.asarray(times[:2 * n], dtype=np.int64)
    pts = np.lexsort((np.arange(2 * n), t))  # by time, ties by point
    rank = np.empty(2 * n, dtype=np.int64)
    rank[pts] = np.arange(2 * n, dtype=np.int64)
    return Run(tuple(rank[0::2].tolist()), tuple(rank[1::2].tolist()))  # start(o) = 2o, end(o) = 2o + 1


def partial_run(prec: Precedence, never: Iterable[int] = ()) -> Run:
    """The longest run of a schedule that hangs: events that can happen, in a
    topological order of the precedence graph; the points in ``never`` (and
    everything after them, and every cycle) never happen."""
    succ: list[list[int]] = [[] for _ in range(prec.n_points)]
    for ed in prec.edges:
        succ[ed.u].append(ed.v)
    order = topological_order(prec.n_points, succ, blocked=set(never))
    when: dict[int, int] = {}
    for p in order:
        if p < 2 * prec.n_ops:
            when[p] = len(when)
    n = prec.n_ops
    return Run(tuple(when.get(start(o)) for o in range(n)), tuple(when.get(end(o)) for o in range(n)))


def _why(s: Schedule, ed: Edge) -> str:
    w = ed.why
    if w == "stream":
        op = s.ops[ed.a]
        return f"stream order on r{op.rank}/{op.stream}"
    if w == "event":
        rec = s.ops[ed.a]
        return f"it waits for event {rec.event!r}, bound to its latest record before it, r{rec.rank}#{rec.index}"
    if w == "signal":
        return f"it waits for the signal {s.ops[ed.b].signal!r} of that put"
    if w == "p2p":
        return "a recv finishes only after its send has started"
    if w == "p2p-block":
        a, b = s.ops[ed.b], s.ops[ed.a]  # the send waits for its recv
        size = f" of {a.size} elements" if a.size is not None else ""
        mode = ("the schedule says rendezvous" if ed.cls == 0 else
                "once the message is larger than the transport's buffer: NCCL completes a send that fits its"
                " connection buffer, 4 MiB by default, without its recv")
        return f"the send{size} from rank {a.rank} to rank {b.rank} waits for its recv ({mode})"
    if w == "root":
        return "a rooted collective's data flows from (or to) its root"
    if w == "coll-block":
        return ("a rooted collective's members wait for each other once the message is larger than the"
                " transport's buffer")
    if w == "batch":
        return "a group call's parts start together"
    if w == "comm":
        op = s.ops[ed.a]
        return (f"NCCL runs communicator {op.communicator!r}'s ops on rank {op.rank} one after another in issue"
                " order, whatever the stream")
    if w == "progress":
        a, b = s.ops[ed.a], s.ops[ed.b]
        return (f"rank {a.rank} launches {a.communicator!r} before {b.communicator!r}, and NCCL does not promise"
                " that two communicators' kernels progress side by side (its guide: the host-side launch"
                " order must match on every device)")
    if w == "host":
        h = s.ops[ed.a]
        return f"the host issues it only after {s.label(h)} has returned (host work runs at its place in issue order)"
    if w == "sync":
        t, h = s.ops[ed.a], s.ops[ed.b]
        what = ("stream.synchronize()" if h.target is not None else "work.wait()" if h.of is not None
                else "torch.cuda.synchronize()")
        return f"{what} returns only after {s.label(t)} has finished"
    if w == "alloc":
        t, h = s.ops[ed.a], s.ops[ed.b]
        return (f"the caching allocator hands {h.reuses!r}'s block to {h.buffer!r} only after {s.label(t)} (recorded"
                " with record_stream before the free) has finished")
    return "a collective finishes only after every member arrives"


_AUX = ("coll", "batch", "coll-block")


def cycle_steps(s: Schedule, prec: Precedence, cycle: Sequence[Edge]) -> tuple[CycleStep, ...]:
    """Op-level links of a cycle of waits, each op waiting for the next one.
    Collective instances and group calls are folded into their members."""
    links: list[CycleStep] = []
    member_in: int | None = None
    member_cls = 0
    # start at an edge out of an op's event, so that the edge into an aux point
    # comes before the edge out of it
    k = next((i for i, ed in enumerate(cycle) if ed.u < 2 * prec.n_ops), 0)
    cycle = list(cycle[k:]) + list(cycle[:k])
    for ed in cycle:  # edge u -> v: the op of v waits for the op of u
        if ed.why == "op":
            continue
        if ed.why in _AUX:
            if ed.u < 2 * prec.n_ops:  # start(member) <= arrive(I)
                member_in, member_cls = ed.a, ed.cls
            elif member_in is not None and member_in != ed.b:  # arrive(I) < end(member)
                cls = max(ed.cls, member_cls)
                links.append(CycleStep(ed.b, member_in, _why(s, ed), CLASSES[cls] if cls else ""))
            continue
        links.append(CycleStep(ed.b, ed.a, _why(s, ed), CLASSES[ed.cls] if ed.cls else ""))
    return tuple(reversed(links))


def cycle_sentence(s: Schedule, steps: Sequence[CycleStep]) -> str:
    if not steps:
        return "no execution can finish: the precedence constraints form a cycle"
    chain = ", ".join(f"{s.label(st.op)} waits for {s.label(st.next_op)} ({st.why})" for st in steps)
    kinds = {st.blocking for st in steps if st.blocking}
    if not kinds:
        return f"no execution can finish, whatever the message sizes: {chain}"
    needs = []
    if "message" in kinds:
        msgs = [st for st in steps if st.blocking == "message"]
        needs.append(f"{len(msgs)} message{'s' if len(msgs) != 1 else ''} larger than the transport's buffer"
                     " (NCCL's default connection buffer is 4 MiB)")
    if "progress" in kinds:
        needs.append("kernels of different communicators that do not progress side by side")
    return f"the run hangs once it meets {' and '.join(needs)}: {chain}"


# --------------------------------------------------------------- witnesses
def read_observation(s: Schedule, ob: ReadOb, run: Run) -> tuple[Observation, str, tuple[int, ...],
                                                                   tuple[int, int] | None]:
    rs, re_ = run.start[ob.read], max(run.end[m] or 0 for m in ob.until or (ob.read,))
    assert rs is not None
    writers = [(run.end[w], w, True) for w in ob.good] + [(run.end[w], w, False) for w in ob.bad]
    before = sorted((t, w, g) for t, w, g in writers if t is not None and t < rs)
    during = sorted((t, w, g) for t, w, g in writers if t is not None and rs < t < re_ and not g)
    if before:
        at_start_writer: int | None = before[-1][1]
        at_start_good = before[-1][2]
        assert at_start_writer is not None
        at_start = ob.expected if at_start_good else _written(s, at_start_writer, ob)
    else:
        at_start_writer, at_start_good = None, ob.init_good
        at_start = ob.init if ob.init is not None else NOTHING
    seen = [at_start] + [_written(s, w, ob) for _, w, _ in during]
    reader = s.label(ob.read)
    region = str(ob.region)
    obs = Observation("read", a=ob.read, region=region, expected=ob.expected, seen=tuple(seen))
    if not at_start_good:
        late = [w for w in ob.good if (run.end[w] or 0) > rs]
        if at_start_writer is not None and ob.good and not late:
            good_before = [w for t, w, g in before if g]
            sentence = (f"{s.label(at_start_writer)} overwrote {region} with {at_start!r} after "
                        f"{s.label(good_before[-1])} wrote {ob.expected!r} and before {reader} read it")
            return obs, sentence, (ob.read, at_start_writer), (ob.read, at_start_writer)
        if at_start_writer is not None and not ob.good and ob.init_good:
            sentence = (f"{s.label(at_start_writer)} overwrote {region} with {at_start!r} before {reader} read it"
                        f" (it expects {ob.expected!r}, the value {region} held at the start)")
            return obs, sentence, (ob.read, at_start_writer), (ob.read, at_start_writer)
        if late:
            w = late[0]
            sentence = (f"{reader} read {region} before {s.label(w)} wrote {ob.expected!r} there "
                        f"(it saw {at_start!r})")
            return obs, sentence, (ob.read, w), (w, ob.read)
        sentence = (f"{reader} expects {ob.expected!r} in {region}, but no op on rank {s.ops[ob.read].rank}"
                    f" writes that value there before it (it saw {at_start!r})")
        return obs, sentence, (ob.read,), None
    w = during[0][1]
    if ob.until and (run.end[w] or 0) > (run.end[ob.read] or 0):
        sentence = (f"{s.label(w)} overwrote {region} with {_written(s, w, ob)!r} after {reader} returned but"
                    f" while its peers could still read it: the collective is declared weak (no end barrier),"
                    f" so a member's input is in use until every member has ended (it expects {ob.expected!r})")
    else:
        sentence = (f"{s.label(w)} overwrote {region} with {_written(s, w, ob)!r} while {reader} was still "
                    f"reading it (it expects {ob.expected!r})")
    return obs, sentence, (ob.read, w), (ob.read, w)


def _written(s: Schedule, w: int, ob: ReadOb) -> str:
    for acc in s.ops[w].writes:
        if acc.region.overlaps(ob.region):
            return acc.value or NOTHING
    return NOTHING


def overlap_observation(s: Schedule, ob: OverlapOb) -> tuple[Observation, str]:
    a, b = s.ops[ob.a], s.ops[ob.b]
    what = "write" if any(x.region.overlaps(ob.region) for x in a.writes) and \
        any(x.region.overlaps(ob.region) for x in b.writes) else "touch"
    sentence = (f"{s.label(a)} and {s.label(b)} can run at the same time and both {what} {ob.region}"
                " (at least one writes it); nothing orders them")
    if ob.a_until or ob.b_until:
        sentence += (" (a weak collective, without an end barrier, keeps using its buffers until every"
                     " member has ended)")
    return Observation("overlap", a=ob.a, b=ob.b, region=str(ob.region)), sentence


def order_observation(s: Schedule, ob: OrderOb | SampleOb, run: Run
                      ) -> tuple[Observation, str, tuple[int, int]]:
    before = ob.before if isinstance(ob, OrderOb) else ob.samples
    pairs = [(a, b) for a in before for b in ob.after
             if (run.start[b] or 0) < (run.end[a] or 0)]
    if isinstance(ob, SampleOb):  # b starts before every sampler ends: name the earliest sampler
        b = min((b for _, b in pairs), key=lambda x: run.start[x] or 0)
        a = min(ob.samples, key=lambda g: run.end[g] or 0)
        return (Observation("order", a=a, b=b),
                f"{s.label(b)} starts before {s.label(a)} has produced the token: {ob.why}", (a, b))
    a, b = min(pairs, key=lambda p: (run.start[p[1]] or 0, -(run.end[p[0]] or 0)))
    if len(before) == 1 and len(ob.after) == 1:
        sentence = ob.why
    else:
        sentence = f"{s.label(b)} starts before {s.label(a)} ends: {ob.why}"
    return Observation("order", a=a, b=b), sentence, (a, b)


def meta_observation(ob: MetaOb) -> Observation:
    return Observation("meta", a=ob.op, b=ob.other)


def allocator_advice(s: Schedule, a: int, b: int, block: str) -> str:
    """What to do in PyTorch terms when two ops meet on one allocator block
    under two tensor names: the caching allocator handed the freed block to a
    new tensor while work on another stream still used the old one."""
    from ..ir import Kind
    from ..semantics.memory import shared_block

    names = shared_block(s, s.ops[a], s.ops[b], block)
    if names is None:
        return ""
    old, new = sorted(names, key=lambda n: _alloc_index(s, s.ops[a].rank, n))
    user = s.ops[a] if names[0] == old else s.ops[b]
    alloc = next((op for op in s.by_rank[user.rank] if op.kind is Kind.ALLOC and op.buffer == new), None)
    if alloc is not None and alloc.target == user.stream:
        return ""  # the user runs on the allocation stream: stream order covers the reuse, record_stream is no fix
    where = f" on stream {alloc.target!r}" if alloc is not None and alloc.target else ""
    return (f". The caching allocator gave the block of {old!r} to {new!r}{where} once {old!r} was freed: that orders"
            f" the reuse only after the work of its allocation stream, not after {user.stream!r}, which still uses"
            f" {old!r}. Call {old}.record_stream({user.stream}) before freeing it, or keep a reference to {old!r}"
            f" until {s.label(user)} has finished (an event the freeing stream waits for)")


def _alloc_index(s: Schedule, rank: int, buffer: str) -> int:
    from ..ir import Kind

    for op in s.by_rank[rank]:
        if op.kind is Kind.ALLOC and op.buffer == buffer:
            return op.index
    return -1


def noop_wait_note(s: Schedule, culprits: Sequence[int], noop_waits: Sequence[int]) -> str:
    """A wait issued before any record of its event does nothing in CUDA; when
    one sits on a culprit's rank and stream, it is likely the cause: say so."""
    lanes = {(s.ops[c].rank, s.ops[c].stream) for c in culprits}
    ranks = {s.ops[c].rank for c in culprits}
    hits = [w for w in noop_waits if (s.ops[w].rank, s.ops[w].stream) in lanes] or \
        [w for w in noop_waits if s.ops[w].rank in ranks]
    if not hits:
        return ""
    w = s.ops[hits[0]]
    return (f". Note: {s.label(w)} is issued before any record of event {w.event!r} on rank {w.rank}, so in CUDA it"
            " waits for nothing (cudaStreamWaitEvent uses the event's state when it is called); record the event"
            " before waiting on it")


def stale_wait_note(s: Schedule, culprits: Sequence[int], events: Sequence[tuple[int, int]]) -> str:
    """An event recorded again: a wait binds to the latest record issued
    before it, so a wait issued before this iteration's record waits for the
    previous iteration's.  When a wait on one culprit's stream is bound that
    way and the other culprit is followed by a record of the same event that
    the wait was meant for, say so."""
    if len(culprits) != 2:
        return ""
    bound = {w: r for r, w in events}
    for x, y in ((culprits[0], culprits[1]), (culprits[1], culprits[0])):
        reader, writer = s.ops[x], s.ops[y]
        if reader.rank != writer.rank:
            continue
        ops = s.by_rank[reader.rank]
        for w in ops[:reader.index]:
            if w.kind.value != "wait" or w.stream != reader.stream or w.id not in bound:
                continue
            later = [o for o in ops[writer.index + 1:] if o.kind.value == "record" and o.event == w.event
                     and o.stream == writer.stream]
            if later and later[0].index > w.index:
                rec = s.ops[bound[w.id]]
                return (f". Note: {s.label(w)} binds to the record of {w.event!r} at r{rec.rank}#{rec.index}, the"
                        f" latest issued before it (CUDA uses the event's state when the wait is called), not to"
                        f" r{later[0].rank}#{later[0].index} after {s.label(writer)}: issue the wait after that record")
    return ""
