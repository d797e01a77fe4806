"""The counterexample run as a Chrome trace (JSON Object Format), which
Perfetto (https://ui.perfetto.dev) and chrome://tracing open.

* one process per rank (``pid`` = rank), one thread per stream (``tid``,
  named after the stream);
* one complete slice (``ph: "X"``) per op that started, from its start to its
  end; an op that never ends runs to the end of the trace and says so;
  ops that never start are instant events (``ph: "i"``) at the end;
* flow arrows (``ph: "s"`` then ``ph: "f"``, paired by ``id``) for every
  send -> recv, record -> wait, put -> wait_signal, and collective instance (from the member that
  arrived last, whose arrival lets the others finish, to each other member),
  and one for the order the counterexample says is missing;
* culprit slices are prefixed ``[culprit]``, carry ``args.culprit`` and the
  trace viewer's red colour name (``cname: "terrible"``).

A deadlock's cycle is in ``otherData.cycle``, each link with ``blocking``
(``"message"``, ``"progress"`` or ``""``, as in the JSON report).

Run times are event numbers (0, 1, 2, ...), not seconds: one step is shown
as 1 ms so the slices are wide enough to click.  No solver here.

``ops`` limits the trace to some ops (``check --out`` writes the window
:func:`trace_window` gives, ``check --full-trace`` every op): slices, flows
and the horizon then come from those ops only, so the file grows with the
window, not with the schedule.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from ..ir import Schedule
from ..result import Counterexample
from .dot import find_syncs, plain_sentence, seeds, short_label

STEP_US = 1000  # one run step, in trace microseconds
WINDOW_STEPS = 60  # trace_window: run steps either side of each culprit event
WINDOW_MAX_OPS = 3000  # trace_window: at most this many ops (nearest to the culprits first)


def trace_window(s: Schedule, cex: Counterexample, steps: int = WINDOW_STEPS,
                 max_ops: int = WINDOW_MAX_OPS) -> set[int]:
    """The ops with an event within ``steps`` run steps of an event of an op
    the counterexample names (at most ``max_ops``, nearest first), and the
    named ops themselves.  Without a run: the named ops."""
    named = [o for o in seeds(cex) if 0 <= o < len(s.ops)]
    run = cex.run
    keep = set(named)
    if run is None:
        return keep
    starts = np.array(run.start, dtype=np.float64)
    ends = np.array(run.end, dtype=np.float64)
    near: dict[int, float] = {}
    for c in named:
        for tc in (run.start[c], run.end[c]):
            if tc is None:
                continue
            # each op's distance to tc (nan for an event that does not happen)
            with np.errstate(invalid="ignore"):
                d = np.fmin(np.abs(starts - tc), np.abs(ends - tc))
            for o in np.flatnonzero(d <= steps).tolist():
                if d[o] < near.get(o, steps + 1):
                    near[o] = float(d[o])
    for o in sorted(near, key=lambda o: (near[o], o)):
        if len(keep) >= max_ops:
            break
        keep.add(o)
    return keep


def counterexample_trace(s: Schedule, cex: Counterexample, hint: str | None = None,
                         ops: Collection[int] | None = None) -> dict[str, Any]:
    """The trace document (a dict ready for ``json.dump``); ``ops``: only
    these ops (default: every op)."""
    run = cex.run
    wanted = set(ops) if ops is not None else None
    shown = [op for op in s.ops if op.id in wanted] if wanted is not None else list(s.ops)
    starts: dict[int, int | None] = {}
    ends: dict[int, int | None] = {}
    if run is None:  # no times: lay ops out in stream order
        for lane in s.streams.values():
            for i, op in enumerate(lane):
                if wanted is None or op.id in wanted:
                    starts[op.id], ends[op.id] = 2 * i, 2 * i + 1
    else:
        for op in shown:
            starts[op.id], ends[op.id] = run.start[op.id], run.end[op.id]
    horizon = max([t for t in (*starts.values(), *ends.values()) if t is not None], default=0) + 2
    culprits = set(cex.culprits) | {o for st in cex.cycle for o in (st.op, st.next_op)}
    if cex.missing_edge is not None:
        culprits |= set(cex.missing_edge)

    events: list[dict[str, Any]] = []
    tids: dict[tuple[int, str], int] = {}
    for (rank, stream) in s.streams:
        tids[(rank, stream)] = sum(1 for (r, _) in tids if r == rank) + 1
    for rank in s.ranks:
        events.append({"ph": "M", "name": "process_name", "pid": rank, "tid": 0,
                       "args": {"name": f"rank {rank}"}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": rank, "tid": 0,
                       "args": {"sort_index": rank}})
    for (rank, stream), tid in tids.items():
        events.append({"ph": "M", "name": "thread_name", "pid": rank, "tid": tid, "args": {"name": stream}})
        events.append({"ph": "M", "name": "thread_sort_index", "pid": rank, "tid": tid,
                       "args": {"sort_index": tid}})

    def span(o: int) -> tuple[int, int] | None:
        st = starts.get(o)
        if st is None:
            return None
        en = ends[o]
        return st * STEP_US, (en if en is not None else horizon) * STEP_US

    for op in shown:
        o = op.id
        tid = tids[(op.rank, op.stream)]
        name = short_label(s, o)
        args: dict[str, Any] = {"op": s.label(o), "id": o, "issue_index": op.index, "kind": str(op.kind)}
        if o in culprits:
            name = "[culprit] " + name
            args["culprit"] = True
        sp = span(o)
        if sp is None:
            args["never_starts"] = True
            events.append({"ph": "i", "s": "t", "name": f"never starts: {name}", "cat": str(op.kind),
                           "pid": op.rank, "tid": tid, "ts": horizon * STEP_US, "args": args})
            continue
        if ends.get(o) is None:
            args["never_ends"] = True
        ev: dict[str, Any] = {"ph": "X", "name": name, "cat": str(op.kind), "pid": op.rank, "tid": tid,
                              "ts": sp[0], "dur": sp[1] - sp[0], "args": args}
        if o in culprits:
            ev["cname"] = "terrible"
        events.append(ev)

    flow_id = 0

    def flow(a: int, b: int, name: str, cat: str) -> None:
        """An arrow from inside a's slice to inside b's slice."""
        nonlocal flow_id
        sa, sb = span(a), span(b)
        if sa is None or sb is None:
            return
        flow_id += 1
        # leave a's slice at its end (or where b begins, if that is earlier) and
        # enter b's slice where it is running: both points lie inside the slices
        ts_a = max(sa[0], min(sa[1], sb[1]) - 1)
        ts_b = min(sb[1] - 1, max(sb[0], ts_a)) if sb[1] > sb[0] else sb[0]
        opa, opb = s.ops[a], s.ops[b]
        events.append({"ph": "s", "id": flow_id, "name": name, "cat": cat, "pid": opa.rank,
                       "tid": tids[(opa.rank, opa.stream)], "ts": ts_a})
        events.append({"ph": "f", "bp": "e", "id": flow_id, "name": name, "cat": cat, "pid": opb.rank,
                       "tid": tids[(opb.rank, opb.stream)], "ts": ts_b})

    syncs = find_syncs(s)
    for snd, rcv in syncs.p2p:
        flow(snd, rcv, f"send -> recv ({s.ops[snd].channel})", "p2p")
    for rec, wt in syncs.events:
        flow(rec, wt, f"event {s.ops[wt].event}", "event")
    for put, wsig in syncs.puts:
        flow(put, wsig, f"put -> wait_signal ({s.ops[put].signal})", "put")
    for inst in syncs.instances:
        arrived = [m for m in inst.ops if starts.get(m) is not None]
        if len(arrived) < 2:
            continue
        last = max(arrived, key=lambda m: (starts.get(m) or 0, m))
        for m in inst.ops:
            if m != last:
                flow(last, m, f"{s.ops[last].kind}#{inst.k}({inst.group})", "collective")
    if cex.missing_edge is not None:
        a, b = cex.missing_edge
        flow(a, b, f"MISSING ORDER: {short_label(s, a)} -> {short_label(s, b)}", "missing_order")

    meta: dict[str, Any] = {"schedule": s.name, "property": cex.property,
                            "sentence": plain_sentence(s, cex, limit=2000),
                            "time_unit": f"one run step = {STEP_US} us"}
    if cex.cycle:
        meta["cycle"] = [{"op": s.label(st.op), "waits_for": s.label(st.next_op), "why": st.why,
                          "blocking": st.blocking} for st in cex.cycle]
    if hint:
        meta["repair"] = hint
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": meta}
