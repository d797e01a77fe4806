"""Short terminal output: one line per property, then each counterexample
with its sentence, culprits, a repair hint and a small time x rank/stream
grid."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..ir import Schedule
from ..result import Counterexample, Hint, Report, Run, Verdict

MAX_ROWS = 16
CELL_MIN, CELL_MAX = 14, 28


def _short(s: Schedule, op_id: int) -> str:
    label = s.label(op_id)
    return label.split(": ", 1)[1] if ": " in label else label


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def failing_event(cex: Counterexample) -> tuple[int, int, str] | None:
    """The run event where things go wrong, as ``(op, 0 start | 1 end, note)``."""
    run, obs = cex.run, cex.observation
    if run is None:
        return None
    if obs.kind == "read" and obs.a is not None:
        if cex.missing_edge is not None and cex.missing_edge[0] == obs.a:  # overwritten while reading
            w = cex.missing_edge[1]
            return w, 1, f"overwrites {obs.region} during the read"
        return obs.a, 0, f"reads {obs.region}: wrong value"
    if obs.kind == "overlap" and obs.a is not None and obs.b is not None:
        later = max((obs.a, obs.b), key=lambda o: run.start[o] or 0)
        return later, 0, "both run at once"
    if obs.kind == "order" and obs.b is not None:
        return obs.b, 0, "starts too early"
    if obs.kind == "meta" and obs.a is not None:
        return obs.a, 0, "breaks a phase rule"
    if obs.kind == "message" and obs.a is not None:
        carried = ", ".join(repr(v) for v in obs.seen) or "no value"
        return obs.a, 1, f"receives {carried}, declares {obs.expected!r}"
    if obs.kind in ("hang", "cycle"):
        started = [o for o in range(len(run.start)) if run.start[o] is not None]
        if not started:
            return None
        last = max(started, key=lambda o: max(t for t in (run.start[o], run.end[o]) if t is not None))
        kind = 1 if run.end[last] is not None else 0
        return last, kind, "stuck after this: nothing else can happen"
    return None


def _sorted_events(run: Run) -> tuple[Any, Any, Any, Any]:
    """The run's events (a start is kind 0, an end kind 1) in (time, kind,
    op) order, as arrays: ``order`` (positions), ``times``, ``kinds`` and
    ``ops`` already sorted.  Array work: a 10^6-op run sorts in a second."""
    n = len(run.start)
    st = np.array(run.start, dtype=np.float64)
    en = np.array(run.end, dtype=np.float64)
    t = np.concatenate((st, en))
    k = np.concatenate((np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)))
    o = np.concatenate((np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64)))
    keep = ~np.isnan(t)
    t, k, o = t[keep], k[keep], o[keep]
    order = np.lexsort((o, k, t))
    return order, t[order], k[order], o[order]


def grid(s: Schedule, cex: Counterexample, max_rows: int = MAX_ROWS) -> list[str]:
    """Rows are the run's events in time order, columns the lanes (rank/stream)
    that take part; ``┌`` an op starts, ``│`` it runs, ``└`` it ends, ``!``
    marks a culprit and ``◀`` the row where things go wrong.  Large runs are
    cut to the window around that row."""
    run: Run | None = cex.run
    if run is None:
        return []
    order, times, kinds, ops = _sorted_events(run)
    total = len(order)
    culprits = set(cex.culprits)
    fail = failing_event(cex)
    fail_row: int | None = None
    if fail is not None:
        hit = np.flatnonzero((ops == fail[0]) & (kinds == fail[1]))
        fail_row = int(hit[0]) if len(hit) else None
    if total > max_rows:
        if fail_row is not None:
            centre = fail_row
        else:
            idx = np.flatnonzero(np.isin(ops, np.fromiter(culprits, dtype=np.int64, count=len(culprits))))
            centre = int(idx[len(idx) // 2]) if len(idx) else total - 1
        lo = max(0, min(centre - max_rows // 2, total - max_rows))
    else:
        lo = 0
    hi = min(total, lo + max_rows)
    window = [(int(times[i]), int(kinds[i]), int(ops[i])) for i in range(lo, hi)]
    shown_ops = {o for _, _, o in window} | culprits
    lanes = sorted({(s.ops[o].rank, s.ops[o].stream) for o in shown_ops})
    col = {lane: i for i, lane in enumerate(lanes)}
    width = max([len(_short(s, o)) + 3 for o in shown_ops] + [len(f"r{r}/{st}") for r, st in lanes])
    cell = max(CELL_MIN, min(CELL_MAX, width))
    running: dict[int, int] = {}  # lane index -> op running there
    if lo:  # what runs in the shown lanes when the window opens: their events before it, in order
        key = (float(times[lo]), int(kinds[lo]), int(ops[lo]))
        before: list[tuple[float, int, int]] = []
        for lane_key in lanes:
            for op in s.streams.get(lane_key, ()):
                for kind, t in ((0, run.start[op.id]), (1, run.end[op.id])):
                    if t is not None and (t, kind, op.id) < key:
                        before.append((t, kind, op.id))
        before.sort()
        for _, kind, o in before:
            lane_i = col[(s.ops[o].rank, s.ops[o].stream)]
            if kind == 0:
                running[lane_i] = o
            elif running.get(lane_i) == o:
                del running[lane_i]
    head = "  time | " + " | ".join(_fit(f"r{r}/{st}", cell).ljust(cell) for r, st in lanes)
    lines = [head.rstrip(), "  " + "-" * (len(head) - 2)]
    if lo:
        lines.append(f"  ... {lo} earlier events")
    for i, (t, kind, o) in enumerate(window, lo):
        lane = col[(s.ops[o].rank, s.ops[o].stream)]
        cells = []
        for k in range(len(lanes)):
            if k == lane:
                mark = "!" if o in culprits else " "
                text = (f"┌{mark}{_short(s, o)}" if kind == 0 else f"└{mark}")
                cells.append(_fit(text, cell).ljust(cell))
            elif k in running:
                cells.append("│".ljust(cell))
            else:
                cells.append(" " * cell)
        line = f"  {t:>4} | " + " | ".join(cells)
        if i == fail_row and fail is not None:
            line += f"  ◀ {fail[2]}"
        lines.append(line.rstrip())
        if kind == 0:
            running[lane] = o
        elif running.get(lane) == o:
            del running[lane]
    rest = total - lo - len(window)
    if rest:
        lines.append(f"  ... {rest} later events")
    hung = [op.id for op in s.ops if run.end[op.id] is None]
    if hung:
        names = ", ".join(s.label(o) for o in hung[:6])
        lines.append(f"  never finish ({len(hung)}): {names}" + (" ..." if len(hung) > 6 else ""))
    return lines


BLOCKING_NOTE = {"message": "only once the message is larger than the transport's buffer",
                 "progress": "only when the two communicators' kernels do not run side by side"}


def _link(why: str) -> str:
    """A cycle link's reason, in a few words (the sentence has it in full)."""
    if why.startswith("stream order"):
        return "stream order"
    if "one after another in issue order" in why:
        return why.split(" on rank ", 1)[0] + " in issue order"
    if " launches " in why and "side by side" in why:
        return why.split(", and NCCL", 1)[0].replace("launches", "launched", 1)
    if "waits for its recv" in why:
        return "the send waits for its recv"
    if "recv finishes only after its send" in why:
        return "the recv needs its send"
    return why


def cycle_lines(s: Schedule, cex: Counterexample) -> list[str]:
    """The links of a deadlock's cycle, numbered, each with the rule that
    makes it and, for a blocking link, when it holds."""
    lines = []
    for i, st in enumerate(cex.cycle, 1):
        note = BLOCKING_NOTE.get(st.blocking)
        tail = f"  [{st.blocking}-blocking: {note}]" if note else ""
        lines.append(f"      {i}. {s.label(st.op)} waits for {s.label(st.next_op)}: {_link(st.why)}{tail}")
    return lines


def report_text(s: Schedule, rep: Report, show_grid: bool = True, hints: Mapping[str, Hint] | None = None) -> str:
    """The report for a terminal.  ``hints`` (property -> repair hint, as
    ``engine.repair.report_hints`` computes them once per check) adds each
    violated property's hint; this module never computes one."""
    out = [f"{rep.schedule} ({rep.source}): {rep.ops} ops, {rep.seconds:.2f} s"]
    if rep.decided_by:
        out.append(f"  choices: {rep.assignments} assignments; {rep.decided_by}")
    for w in rep.warnings:
        out.append(f"  warning: {w}")
    for r in rep.results:
        verdict = "VIOLATED" if r.verdict is Verdict.VIOLATED else r.verdict.value
        detail = r.counterexample.sentence if r.counterexample else r.reason
        n = f"{r.obligations} obligation{'s' if r.obligations != 1 else ''}"
        out.append(f"  {r.property:<9} {verdict:<9} {n:<16} {detail}")
    top = s
    for r in rep.results:
        cex = r.counterexample
        if cex is None:
            continue
        s = r.selection if r.selection is not None else top  # a choice schedule: the run's selected schedule
        replay = "replayed on the executor" if cex.replayed else cex.replay_note or "not replayed"
        out.append("")
        out.append(f"  {r.property} counterexample ({replay}):")
        if r.assignment:
            out.append(f"    under: {r.assignment}")
        out.append(f"    {cex.sentence}")
        if cex.culprits:
            out.append("    culprits: " + "; ".join(s.label(o) for o in cex.culprits))
        if cex.candidates:
            out.append("    could not decide which rank is at fault; candidates: "
                       + ", ".join(f"rank {c}" for c in cex.candidates))
        if cex.missing_edge is not None:
            a, b = cex.missing_edge
            out.append(f"    missing order: {s.label(a)}  ->  {s.label(b)}")
        obs = cex.observation
        if obs.kind == "message" and obs.a is not None and obs.b is not None:
            carried = ", ".join(repr(v) for v in obs.seen) or "no value"
            out.append(f"    wrong value: {s.label(obs.a)} declares {obs.expected!r}; its matched"
                       f" {s.label(obs.b)} carries {carried}")
        if cex.cycle:
            out.append("    cycle (each op waits for the next):")
            out.extend(cycle_lines(s, cex))
        for m in r.more:
            out.append(f"    also: {m}")
        hint = hints.get(r.property) if hints else None
        if hint is not None:
            out.append(f"    {hint.line()}")
        if show_grid:
            out.extend("  " + line for line in grid(s, cex))
    return "\n".join(out)
