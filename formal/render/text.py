"""Short terminal output: one line per property, then each counterexample
with its sentence, culprits and a small time x rank/stream grid."""

from __future__ import annotations

from ..ir import Schedule
from ..result import Counterexample, Report, Run, Verdict

MAX_ROWS = 16
CELL = 24


def _short(s: Schedule, op_id: int) -> str:
    label = s.label(op_id)
    return label.split(": ", 1)[1] if ": " in label else label


def grid(s: Schedule, cex: Counterexample, max_rows: int = MAX_ROWS) -> list[str]:
    """Rows are the run's events in time order, columns the lanes (rank/stream)
    that take part; ``┌`` an op starts, ``│`` it runs, ``└`` it ends, ``!``
    marks a culprit.  Large runs are cut to the window around the culprits."""
    run: Run | None = cex.run
    if run is None:
        return []
    events = []
    for op in s.ops:
        if run.start[op.id] is not None:
            events.append((run.start[op.id], 0, op.id))
        if run.end[op.id] is not None:
            events.append((run.end[op.id], 1, op.id))
    events.sort()
    culprits = set(cex.culprits)
    if len(events) > max_rows:
        idx = [i for i, (_, _, o) in enumerate(events) if o in culprits]
        centre = idx[len(idx) // 2] if idx else len(events) - 1
        lo = max(0, min(centre - max_rows // 2, len(events) - max_rows))
        window = events[lo : lo + max_rows]
    else:
        lo, window = 0, events
    shown_ops = {o for _, _, o in window} | culprits
    lanes = sorted({(s.ops[o].rank, s.ops[o].stream) for o in shown_ops})
    col = {lane: i for i, lane in enumerate(lanes)}
    running: dict[int, int] = {}  # lane index -> op running there
    for _, kind, o in events[:lo]:
        lane = col.get((s.ops[o].rank, s.ops[o].stream))
        if lane is None:
            continue
        if kind == 0:
            running[lane] = o
        elif running.get(lane) == o:
            del running[lane]
    head = "  time | " + " | ".join(f"r{r}/{st}"[:CELL].ljust(CELL) for r, st in lanes)
    lines = [head.rstrip(), "  " + "-" * (len(head) - 2)]
    if lo:
        lines.append(f"  ... {lo} earlier events")
    for t, kind, o in window:
        lane = col[(s.ops[o].rank, s.ops[o].stream)]
        cells = []
        for i in range(len(lanes)):
            if i == lane:
                mark = "!" if o in culprits else " "
                text = (f"┌{mark}{_short(s, o)}" if kind == 0 else f"└{mark}")
                cells.append(text[:CELL].ljust(CELL))
            elif i in running:
                cells.append("│".ljust(CELL))
            else:
                cells.append(" " * CELL)
        lines.append((f"  {t:>4} | " + " | ".join(cells)).rstrip())
        if kind == 0:
            running[lane] = o
        elif running.get(lane) == o:
            del running[lane]
    rest = len(events) - lo - len(window)
    if rest:
        lines.append(f"  ... {rest} later events")
    hung = [op.id for op in s.ops if run.end[op.id] is None]
    if hung:
        names = ", ".join(s.label(o) for o in hung[:6])
        lines.append(f"  never finish ({len(hung)}): {names}" + (" ..." if len(hung) > 6 else ""))
    return lines


def report_text(s: Schedule, rep: Report, show_grid: bool = True) -> str:
    out = [f"{rep.schedule} ({rep.source}): {rep.ops} ops, {rep.seconds:.2f} s"]
    for w in rep.warnings:
        out.append(f"  warning: {w}")
    for r in rep.results:
        verdict = "VIOLATED" if r.verdict is Verdict.VIOLATED else r.verdict.value
        detail = r.counterexample.sentence if r.counterexample else r.reason
        n = f"{r.obligations} obligation{'s' if r.obligations != 1 else ''}"
        out.append(f"  {r.property:<9} {verdict:<9} {n:<16} {detail}")
    for r in rep.results:
        cex = r.counterexample
        if cex is None:
            continue
        replay = "replayed on the executor" if cex.replayed else cex.replay_note or "not replayed"
        out.append("")
        out.append(f"  {r.property} counterexample ({replay}):")
        out.append(f"    {cex.sentence}")
        if cex.culprits:
            out.append("    culprits: " + "; ".join(s.label(o) for o in cex.culprits))
        if cex.candidates:
            out.append("    could not decide which rank is at fault; candidates: "
                       + ", ".join(f"rank {c}" for c in cex.candidates))
        if cex.missing_edge is not None:
            a, b = cex.missing_edge
            out.append(f"    missing order: {s.label(a)}  ->  {s.label(b)}")
        for m in r.more:
            out.append(f"    also: {m}")
        if show_grid:
            out.extend("  " + line for line in grid(s, cex))
    return "\n".join(out)
