"""Graphviz (DOT) picture of a counterexample run.

:func:`counterexample_dot` is a pure function from a schedule and a
counterexample to DOT text; drawing it (SVG/PNG) is ``picture.py``'s job.

Layout: time runs left to right.  Every rank is a cluster and every stream of
the rank a lane inside it.  An op sits in a column given by the run's times:
``col(b) = 1 + max(col(a) for every shown a that ended before b started)``,
so two ops in one column really ran at the same time, and an op that ended
before another started is always further left.

Edges: thin grey for stream (program) order, blue for send -> recv, green
dashed for record -> wait, orange for a put (to the wait_signal that waits
for it, and dotted into the target rank's op that uses what it wrote), and
one purple hexagon per collective instance, joined to its members.  The parts
of one group call (``batch``) sit in one dashed purple box.  The culprits, the
violated order (the counterexample's missing edge) and, for a deadlock, the
cycle of waits are red: a link of the cycle that holds in every run is solid,
one that holds only when the runtime blocks is dashed and says when ("if >
buffer": a message larger than the transport's buffer; "if kernels don't
co-run": two communicators' kernels that NCCL does not run side by side), and
communicator serialization and progress links name their communicators.  A
value that a recv declares but its matched send did not carry is a red
send -> recv edge with both values.

By default only the ops that explain the counterexample are drawn (the
culprits, the ops they depend on through stream order and syncs, and a few
neighbours), so a schedule of any size gives a small picture; ``full=True``
draws every op.  No solver here.
"""

from __future__ import annotations

import heapq
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from ..ir import Kind, Op, Schedule
from ..result import Counterexample, CycleStep

BUDGET = 36  # ops drawn by default
MAX_DISTANCE = 4  # how far (in stream steps and sync hops) the default view reaches
RED = "#d62728"
BLUE = "#1f77b4"
GREEN = "#2ca02c"
PURPLE = "#8e5ab5"
GREY = "#8c8c8c"
ORANGE = "#d9730d"

FILL = {
    "compute": "#ffffff",
    "p2p": "#e6f0fa",
    "collective": "#f1e9f8",
    "event": "#eaf5ea",
}
CULPRIT_FILL = "#fde0e0"


# ------------------------------------------------------------------ syncs
@dataclass(frozen=True)
class Instance:
    """The k-th collective every member issues on ``group``."""

    group: str
    k: int
    ops: tuple[int, ...]  # one op per member that issued a k-th collective, by rank


@dataclass(frozen=True)
class Syncs:
    """What links ops across streams and ranks, from the schedule alone
    (FIFO numbers for p2p, instance numbers for collectives, event names)."""

    p2p: tuple[tuple[int, int], ...]  # (send, recv)
    events: tuple[tuple[int, int], ...]  # (record, wait)
    noop_waits: frozenset[int]  # waits issued before their record (they order nothing)
    instances: tuple[Instance, ...]
    puts: tuple[tuple[int, int], ...] = ()  # (put, wait_signal)
    batches: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (group call id, its parts), per rank
    reuses: tuple[tuple[int, int], ...] = ()  # (free of a tensor, the alloc that gets its block)

    schedule: Schedule | None = field(default=None, compare=False, repr=False)

    @cached_property
    def index_in_stream(self) -> dict[int, int]:
        """Each op's position in its stream (asked once per schedule, not per picture)."""
        assert self.schedule is not None
        out: dict[int, int] = {}
        for ops in self.schedule.streams.values():
            for i, op in enumerate(ops):
                out[op.id] = i
        return out

    @cached_property
    def instance_of(self) -> dict[int, Instance]:
        return {o: inst for inst in self.instances for o in inst.ops}

    @cached_property
    def partners(self) -> dict[int, tuple[int, ...]]:
        out: dict[int, list[int]] = defaultdict(list)
        for a, b in self.p2p + self.events + self.puts + self.reuses:
            out[a].append(b)
            out[b].append(a)
        return {k: tuple(v) for k, v in out.items()}


_SEND, _RECV, _RECORD, _WAIT = Kind.SEND, Kind.RECV, Kind.RECORD, Kind.WAIT
_PUT, _WAIT_SIGNAL = Kind.PUT, Kind.WAIT_SIGNAL
_COLLECTIVES = frozenset(k for k in Kind if k.is_collective)


_LAST_SYNCS: list[tuple[Schedule, Syncs]] = []


def find_syncs(s: Schedule) -> Syncs:
    """The syncs of ``s``, remembered for the last schedule asked about (a
    report's picture, trace and cone all ask for the same one; schedules are
    immutable)."""
    if _LAST_SYNCS and _LAST_SYNCS[0][0] is s:
        return _LAST_SYNCS[0][1]
    got = _find_syncs(s)
    _LAST_SYNCS[:] = [(s, got)]
    return got


def _find_syncs(s: Schedule) -> Syncs:
    sends: dict[tuple[object, ...], int] = {}
    recvs: dict[tuple[object, ...], int] = {}
    records: dict[tuple[int, str], int] = {}
    waits: list[Op] = []
    colls: dict[tuple[str, int], list[int]] = defaultdict(list)
    puts: dict[tuple[object, ...], int] = {}
    wsigs: dict[tuple[object, ...], int] = {}
    batches: dict[tuple[int, str], list[int]] = defaultdict(list)
    bound: dict[int, int | None] = {}
    freed: dict[tuple[int, str], int] = {}
    reuses: list[tuple[int, int]] = []
    seq = s.seq_numbers
    for op in s.ops:  # kinds compared with local names: ``Kind.X`` is a descriptor call per use
        kind = op.kind
        if op.batch is not None:
            batches[(op.rank, op.batch)].append(op.id)
        if kind is _SEND:  # FIFO per (communicator, src, dst), as the matcher numbers them
            sends[(op.rank, op.peer, op.communicator, seq[op.id])] = op.id
        elif kind is _RECV:
            recvs[(op.peer, op.rank, op.communicator, seq[op.id])] = op.id
        elif kind is _PUT:
            puts[(op.rank, op.peer, op.signal, seq[op.id])] = op.id
        elif kind is _WAIT_SIGNAL:
            wsigs[(op.peer, op.rank, op.signal, seq[op.id])] = op.id
        elif kind is _WAIT:
            waits.append(op)
            bound[op.id] = records.get((op.rank, op.event or ""))  # the latest record issued before it
        elif kind is _RECORD:
            if op.event is not None:
                records[(op.rank, op.event)] = op.id
        elif kind is Kind.FREE and op.buffer is not None:
            freed[(op.rank, op.buffer)] = op.id
        elif kind is Kind.ALLOC and op.reuses is not None and (op.rank, op.reuses) in freed:
            reuses.append((freed[(op.rank, op.reuses)], op.id))
        elif kind in _COLLECTIVES and op.group is not None:
            k = seq[op.id]
            if k is not None:
                colls[(op.group, k)].append(op.id)
    p2p = tuple(sorted((snd, recvs[k]) for k, snd in sends.items() if k in recvs))
    events: list[tuple[int, int]] = []
    noop: set[int] = set()
    for w in waits:
        rec = bound.get(w.id)
        if rec is None:  # issued before any record of its event: it orders nothing
            noop.add(w.id)
            continue
        events.append((rec, w.id))
    instances = tuple(
        Instance(g, k, tuple(sorted(ops, key=lambda o: s.ops[o].rank)))
        for (g, k), ops in sorted(colls.items())
    )
    signals = tuple(sorted((p, wsigs[k]) for k, p in puts.items() if k in wsigs))
    groups = tuple((b, tuple(ops)) for (_, b), ops in sorted(batches.items()))
    return Syncs(p2p, tuple(sorted(events)), frozenset(noop), instances, signals, groups, tuple(reuses), s)


# ------------------------------------------------------------- selection
def seeds(cex: Counterexample) -> list[int]:
    """The ops the counterexample names (culprits, missing order, cycle, observation)."""
    out = list(cex.culprits)
    if cex.missing_edge is not None:
        out.extend(cex.missing_edge)
    for st in cex.cycle:
        out.extend((st.op, st.next_op))
    for o in (cex.observation.a, cex.observation.b):
        if o is not None:
            out.append(o)
    return list(dict.fromkeys(out))


def select_ops(s: Schedule, cex: Counterexample, budget: int = BUDGET,
               syncs: Syncs | None = None) -> list[int]:
    """The ops worth drawing: the ops the counterexample names, then the
    closest ops by a weighted distance (stream predecessor and sync partner
    1, stream successor 2), up to ``budget`` ops and ``MAX_DISTANCE``.  A
    named collective also brings its other members (but not their
    neighbours).  Everything the counterexample names is kept even beyond
    the budget.  Sorted by op id."""
    if len(s.ops) <= budget:
        return list(range(len(s.ops)))
    syncs = syncs or find_syncs(s)
    named = seeds(cex)
    if not named:  # nothing named: show where the run stops
        run = cex.run
        if run is not None:
            stuck = [o for o in range(len(s.ops)) if run.start[o] is not None and run.end[o] is None]
            named = stuck[:4]
        named = named or list(range(min(len(s.ops), 4)))
    index_in_stream = syncs.index_in_stream

    def neighbours(o: int, d: int) -> Iterable[tuple[int, int, bool]]:
        """(op, cost, leaf): a leaf is drawn but not explored further."""
        op = s.ops[o]
        lane = s.streams[(op.rank, op.stream)]
        i = index_in_stream[o]
        if i > 0:
            yield lane[i - 1].id, 1, False
        if i + 1 < len(lane):
            yield lane[i + 1].id, 2, False
        for p in syncs.partners.get(o, ()):
            yield p, 1, False
        inst = syncs.instance_of.get(o) if d == 0 else None
        if inst is not None:  # a named collective: show its other members, not their context
            for m in inst.ops:
                if m != o:
                    yield m, 2, True

    dist: dict[int, int] = {o: 0 for o in named}
    heap = [(0, o, False) for o in named]
    heapq.heapify(heap)
    chosen: list[int] = []
    taken: set[int] = set()
    while heap:
        d, o, leaf = heapq.heappop(heap)
        if o in taken or d > dist.get(o, d):
            continue
        if d > 0 and len(chosen) >= budget:
            break
        taken.add(o)
        chosen.append(o)
        if leaf:
            continue
        for q, w, q_leaf in neighbours(o, d):
            nd = d + w
            if nd <= MAX_DISTANCE and nd < dist.get(q, MAX_DISTANCE + 1) and q not in taken:
                dist[q] = nd
                heapq.heappush(heap, (nd, q, q_leaf))
    return sorted(chosen)


# --------------------------------------------------------------- columns
def columns(cex: Counterexample, shown: Sequence[int], s: Schedule) -> dict[int, int]:
    """Column of every shown op: an op that ended before another started is
    further left, and ops in one column overlap in time.  Ops that never
    start go after the last column, in stream order."""
    run = cex.run
    col: dict[int, int] = {}
    if run is None:  # no times: stream order only
        wanted = set(shown)
        for ops in s.streams.values():
            k = 0
            for op in ops:
                if op.id in wanted:
                    col[op.id] = k
                    k += 1
        return col
    events: list[tuple[int, int, int]] = []
    for o in shown:
        st, en = run.start[o], run.end[o]
        if st is not None:
            events.append((st, 1, o))
        if en is not None:
            events.append((en, 0, o))
    events.sort()
    ended = -1
    for _, is_start, o in events:
        if is_start:
            col[o] = ended + 1
        elif o in col:
            ended = max(ended, col[o])
    last = max(col.values(), default=-1)
    shown_set = set(shown)
    for ops in s.streams.values():
        k = 0
        for op in ops:
            if op.id in shown_set and op.id not in col:
                k += 1
                col[op.id] = last + k
    return col


# ----------------------------------------------------------------- text
def short_label(s: Schedule, o: int) -> str:
    """The label without its ``r<rank>/<stream>: `` prefix (the lane says it)."""
    label = s.label(o)
    return label.split(": ", 1)[1] if ": " in label else label


def _q(text: str) -> str:
    """A DOT double-quoted string; ``\\n`` in ``text`` stays a line break."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)) or text


def plain_sentence(s: Schedule, cex: Counterexample, limit: int = 260, short: bool = False) -> str:
    """The counterexample sentence, shortened for a picture: a cycle of waits
    becomes one line (the red arrows show it), with ``short`` op labels lose
    their lane prefix, and the text is cut at ``limit`` characters."""
    if cex.cycle:
        n = len({o for st in cex.cycle for o in (st.op, st.next_op)})
        head, sep, _ = cex.sentence.partition(": ")
        if not sep or len(head) > 160:
            head = "no execution can finish"
        dashed = "; dashed: only when the runtime blocks" if any(
            st.blocking for st in cex.cycle) else ""
        text = (f"{head}: {n} ops wait for each other in a cycle"
                f" (red arrows, numbered: each op waits for the next{dashed})")
        limit = max(limit, len(text))
    else:
        text = cex.sentence
        if short:
            for o in sorted(set(seeds(cex)), key=lambda o: -len(s.label(o))):
                text = text.replace(s.label(o), short_label(s, o))
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _times(cex: Counterexample, o: int) -> str:
    run = cex.run
    if run is None:
        return ""
    st, en = run.start[o], run.end[o]
    if st is None:
        return "never starts"
    if en is None:
        return f"t {st} - never ends"
    return f"t {st}-{en}"


def _family(op: Op) -> str:
    if op.kind is Kind.COMPUTE:
        return "compute"
    if op.kind.is_p2p:
        return "p2p"
    if op.kind.is_collective:
        return "collective"
    return "event"


# ------------------------------------------------------------------ DOT
def counterexample_dot(s: Schedule, cex: Counterexample, *, full: bool = False, budget: int = BUDGET,
                       hint: str | None = None, title: str | None = None, under: str | None = None) -> str:
    """DOT text of one counterexample: a timeline of the run, one cluster per
    rank and one lane per stream, the culprits and what went wrong in red.

    ``hint`` (a repair sentence) is printed under the title, and so is
    ``under`` (the assignment of a choice schedule the run is under);
    ``full`` draws every op instead of the ones that explain the
    counterexample."""
    syncs = find_syncs(s)
    shown = list(range(len(s.ops))) if full else select_ops(s, cex, budget, syncs)
    shown_set = set(shown)
    col = columns(cex, shown, s)
    run = cex.run
    culprits = set(cex.culprits)
    cycle_ops = {o for st in cex.cycle for o in (st.op, st.next_op)}
    red_ops = culprits | cycle_ops
    if cex.missing_edge is not None:
        red_ops |= set(cex.missing_edge)

    out: list[str] = []
    w = out.append
    w(f"digraph {_q(s.name)} {{")
    w("  rankdir=LR; newrank=true; compound=true; nodesep=0.18; ranksep=0.35; pad=0.3;")
    w('  fontname="Helvetica"; fontsize=11; labelloc=t; labeljust=l; forcelabels=true;')
    w('  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, margin="0.08,0.03",'
      ' height=0.3, fillcolor="#ffffff", color="#555555"];')
    w(f'  edge [fontname="Helvetica", fontsize=9, color="{GREY}", arrowsize=0.6, penwidth=0.8];')
    w(f"  label=<{_title_html(s, cex, hint, title, shown, full, under)}>;")

    # Layout.  Every column has a time anchor T<c>; ``rank=same`` puts each op
    # in the column of its anchor (newrank lets that cross clusters).  dot
    # orders clusters top to bottom as a breadth-first walk from the only node
    # without in-edges first meets them: that node is an invisible ``root``
    # with edges to the time axis and then to one invisible anchor per lane,
    # in rank and stream order, so rank 0 and each rank's first stream are on
    # top whatever the sync edges are (lane anchors sit in a column of their
    # own, before the first op).
    ncol = max(col.values(), default=-1) + 1
    first_time: dict[int, int] = {}
    if run is not None:
        for o, c in col.items():
            t0 = run.start[o]
            if t0 is not None:
                first_time[c] = min(first_time.get(c, t0), t0)
    w("  root [shape=point, style=invis, width=0.01];")
    w("  subgraph time_axis {")
    w("    node [shape=point, style=invis, width=0.01, height=0.01];")
    for c in range(ncol):
        txt = f"t {first_time[c]}" if c in first_time else ("later" if run is not None else f"#{c}")
        w(f"    T{c} [tooltip={_q(txt)}];")
    for c in range(1, ncol):  # one statement per edge: Graphviz's parser chokes on long chains
        w(f"    T{c - 1} -> T{c} [style=invis];")
    w("  }")

    # clusters: rank -> stream lanes
    by_lane: dict[tuple[int, str], list[int]] = defaultdict(list)
    for o in shown:
        op = s.ops[o]
        by_lane[(op.rank, op.stream)].append(o)
    lanes_of_rank: dict[int, list[str]] = defaultdict(list)
    for (r, st) in s.streams:  # streams in order of first appearance
        if (r, st) in by_lane:
            lanes_of_rank[r].append(st)
    for r in sorted(lanes_of_rank):
        bad_rank = r in cex.candidates
        w(f"  subgraph cluster_r{r} {{")
        w(f'    label={_q(f"rank {r}" + (" (may be at fault)" if bad_rank else ""))}; fontsize=12;'
          f' style="rounded"; color="{RED if bad_rank else "#444444"}"; penwidth=1.2;')
        for i, st in enumerate(lanes_of_rank[r]):
            w(f"    subgraph cluster_r{r}_{i} {{")
            w(f'      label={_q(st)}; fontsize=10; fontcolor="#555555"; style="filled,rounded";'
              ' fillcolor="#f6f6f6"; color="#dddddd"; penwidth=1;')
            w(f"      L{r}_{i} [shape=point, style=invis, width=0.01];")
            lane_ops = sorted(by_lane[(r, st)], key=lambda o: s.ops[o].index)
            k = 0
            while k < len(lane_ops):  # the parts of one group call in one box
                batch = s.ops[lane_ops[k]].batch
                j = k + 1
                while batch is not None and j < len(lane_ops) and s.ops[lane_ops[j]].batch == batch:
                    j += 1
                if batch is None:
                    w(f"      {_node(s, cex, lane_ops[k], lane_ops[k] in red_ops)}")
                else:
                    w(f"      subgraph cluster_r{r}_{i}_gc{k} {{")
                    w(f'        label={_q(f"group call {batch}")}; fontsize=9; fontcolor="{PURPLE}";'
                      f' style="dashed,rounded"; color="{PURPLE}"; penwidth=1.2;')
                    for o in lane_ops[k:j]:
                        w(f"        {_node(s, cex, o, o in red_ops)}")
                    w("      }")
                k = j
            w("    }")
        w("  }")

    anchors = [(r, i, st) for r in sorted(lanes_of_rank) for i, st in enumerate(lanes_of_rank[r])]
    if ncol:
        w("  root -> T0 [style=invis];")
    for r, i, st in anchors:
        first = min(by_lane[(r, st)], key=lambda o: s.ops[o].index)
        w(f"  root -> L{r}_{i} [style=invis]; L{r}_{i} -> o{first} [style=invis];")
    if anchors:
        w("  {rank=same; " + "; ".join(f"L{r}_{i}" for r, i, _ in anchors) + ";}")

    # columns: every op in the rank of its time anchor
    per_col: dict[int, list[int]] = defaultdict(list)
    for o in shown:
        per_col[col[o]].append(o)

    # collective instances: one hub per instance that has a shown member
    hubs: list[str] = []
    hub_col: dict[str, int] = {}
    hub_lines: list[str] = []
    for inst in syncs.instances:
        members = [m for m in inst.ops if m in shown_set]
        kinds = {str(s.ops[m].kind) for m in inst.ops}
        group_size = len(s.group_map.get(inst.group, ()))
        mismatch = len(kinds) > 1 or bool(group_size and len(inst.ops) != group_size)
        if not members or (len(members) == 1 and not mismatch and members[0] not in red_ops):
            continue  # a lone member says by its own label what it is
        hub = f"I_{_ident(inst.group)}_{inst.k}"
        hubs.append(hub)
        started = [col[m] for m in members if run is None or run.start[m] is not None]
        hub_col[hub] = max(started) if started else max(col[m] for m in members)
        head = f"{'/'.join(sorted(kinds))}#{inst.k}({inst.group})"
        members_txt = "ranks " + ",".join(str(s.ops[m].rank) for m in inst.ops)
        if len(kinds) > 1:
            head = f"instance #{inst.k} of {inst.group}: kinds differ"
            members_txt = "\n".join(f"r{s.ops[m].rank}: {s.ops[m].kind}" for m in inst.ops)
        if group_size and len(inst.ops) < group_size:
            missing = sorted(set(s.group_map[inst.group]) - {s.ops[m].rank for m in inst.ops})
            members_txt += "\nnever joined: " + ",".join(f"r{x}" for x in missing)
        hidden = len(inst.ops) - len(members)
        if hidden:
            members_txt += f"\n({hidden} not drawn)"
        color = RED if mismatch else PURPLE
        hub_lines.append(f"  {hub} [shape=hexagon, label={_q(head + chr(10) + members_txt)}, fontsize=9,"
                         f' style="filled", fillcolor="{FILL["collective"]}", color="{color}",'
                         f' fontcolor="{RED if mismatch else "#333333"}", penwidth=1.5];')
        for m in members:
            hub_lines.append(f'  o{m} -> {hub} [dir=none, color="{color}", penwidth=1.6, constraint=false];')
    out.extend(hub_lines)
    hubs_at: dict[int, list[str]] = defaultdict(list)
    for h in hubs:
        hubs_at[hub_col[h]].append(h)
    for c in range(ncol):
        names = [f"T{c}"] + [f"o{o}" for o in sorted(per_col.get(c, []))] + hubs_at.get(c, [])
        w("  {rank=same; " + "; ".join(names) + ";}")

    # stream order between shown ops of one lane (with the hidden count)
    missing_pair = cex.missing_edge
    cycle_pairs = {(st.next_op, st.op) for st in cex.cycle}  # drawn as "op waits for next_op"
    for (r, st), ops in sorted(by_lane.items()):
        lane = s.streams[(r, st)]
        pos = {op.id: i for i, op in enumerate(lane)}
        ordered = sorted(ops, key=lambda o: pos[o])
        for a, b in zip(ordered, ordered[1:], strict=False):
            gap = pos[b] - pos[a] - 1
            attrs = ["constraint=false"]
            if gap:
                attrs += ["style=dashed", f"label={_q(f'{gap} op' + ('s' if gap != 1 else ''))}"]
            if (a, b) in cycle_pairs or (a, b) == missing_pair:
                continue  # drawn with the cycle, or as the missing order (a weak collective's peers)
            if not gap and s.ops[a].batch is not None and s.ops[a].batch == s.ops[b].batch:
                continue  # parts of one group call are not ordered: the box says they run together
            w(f"  o{a} -> o{b} [{', '.join(attrs)}];")

    # p2p and events
    obs = cex.observation
    wrong_value = (obs.b, obs.a) if obs.kind == "message" and obs.a is not None and obs.b is not None else None
    for snd, rcv in syncs.p2p:
        if snd in shown_set and rcv in shown_set and (snd, rcv) not in cycle_pairs and (rcv, snd) not in cycle_pairs \
                and (snd, rcv) != wrong_value:
            ch = s.ops[snd].channel
            lab = "send" if ch == "0" else f"send ({ch})"
            w(f'  o{snd} -> o{rcv} [color="{BLUE}", penwidth=1.4, label={_q(lab)}, fontcolor="{BLUE}",'
              " constraint=false];")
    for put, wsig in syncs.puts:
        if put in shown_set and wsig in shown_set and (put, wsig) not in cycle_pairs:
            lab = f"put, signal {s.ops[put].signal}"
            w(f'  o{put} -> o{wsig} [color="{ORANGE}", penwidth=1.4, label={_q(lab)}, fontcolor="{ORANGE}",'
              " constraint=false];")
    for put in shown:  # what a put writes lands in the target rank: to the shown ops there that use it
        op = s.ops[put]
        if op.kind is not Kind.PUT or op.peer is None:
            continue
        users = [o for o in shown if s.ops[o].rank == op.peer and s.ops[o].kind is not Kind.WAIT_SIGNAL
                 and any(x.region.overlaps(w_.region) for w_ in op.writes
                         for x in s.ops[o].reads + s.ops[o].writes)]
        for o in users[:3]:
            if (put, o) == missing_pair or (o, put) == missing_pair:
                continue
            regions = ", ".join(str(w_.region) for w_ in op.writes)
            w(f'  o{put} -> o{o} [color="{ORANGE}", style=dotted, penwidth=1.2,'
              f' label={_q(f"put writes {regions} on rank {op.peer}")}, fontcolor="{ORANGE}", constraint=false];')
    for fr, al in syncs.reuses:  # the caching allocator hands the freed block to a new tensor
        if fr in shown_set and al in shown_set:
            lab = f"block of {s.ops[fr].buffer} -> {s.ops[al].buffer}"
            w(f'  o{fr} -> o{al} [color="{ORANGE}", style=bold, penwidth=1.6, label={_q(lab)},'
              f' fontcolor="{ORANGE}", constraint=false];')
    for rec, wt in syncs.events:
        if rec in shown_set and wt in shown_set and (rec, wt) not in cycle_pairs:
            ev = s.ops[wt].event or ""
            noop = wt in syncs.noop_waits
            lab = f"event {ev}" + (" (no-op: waited before recorded)" if noop else "")
            w(f'  o{rec} -> o{wt} [color="{GREEN}", style=dashed, penwidth=1.3, label={_q(lab)},'
              f' fontcolor="{GREEN}", constraint=false];')

    # what went wrong
    for i, step in enumerate(cex.cycle):
        if step.op in shown_set and step.next_op in shown_set:
            why = _cycle_why(s, step)
            lab = _wrap(f"{i + 1}. waits for: {why}", 44)
            style = ', style="dashed"' if step.blocking else ""
            w(f'  o{step.op} -> o{step.next_op} [color="{RED}", penwidth=2.4{style}, label={_q(lab)},'
              f' fontcolor="{RED}", constraint=false];')
    if wrong_value is not None and all(o in shown_set for o in wrong_value):
        snd, rcv = wrong_value
        carried = ", ".join(repr(v) for v in obs.seen) or "no value"
        lab = _wrap(f"WRONG VALUE: carries {carried}", 40)
        w(f'  o{snd} -> o{rcv} [color="{RED}", penwidth=2.6, {_label_attr(col, snd, rcv)}={_q(lab)},'
          f' fontcolor="{RED}", constraint=false];')
    if missing_pair is not None and all(o in shown_set for o in missing_pair):
        a, b = missing_pair
        lab = _wrap("MISSING ORDER: " + _edge_words(s, cex), 38)
        w(f'  o{a} -> o{b} [color="{RED}", style="dashed", penwidth=2.6, {_label_attr(col, a, b)}={_q(lab)},'
          f' fontcolor="{RED}", constraint=false];')
    w("}")
    return "\n".join(out) + "\n"


def _label_attr(col: dict[int, int], a: int, b: int) -> str:
    """``xlabel`` for an edge between ops of one column (a vertical edge,
    whose ``label`` dot would put across the ops and cluster titles beside
    it; an ``xlabel`` is placed where it overlaps nothing), else ``label``."""
    return "xlabel" if col.get(a) == col.get(b) else "label"


def _ident(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)


BLOCKING_WHEN = {"message": "only if > buffer", "progress": "only if kernels don't co-run"}


def _cycle_why(s: Schedule, step: CycleStep) -> str:
    """A cycle link in a few words: the rule, the communicators it names,
    and when a blocking link holds."""
    why = step.why
    x, y = s.ops[step.op], s.ops[step.next_op]
    if why.startswith("stream order"):
        words = "stream order"
    elif "one after another in issue order" in why:
        words = f"NCCL serializes communicator {y.communicator} in issue order"
    elif " launches " in why and "side by side" in why:
        words = f"progress: {y.communicator} launched before {x.communicator}"
    elif "waits for its recv" in why:
        words = "its recv"
    elif "recv finishes only after its send" in why:
        words = "its send"
    elif "members wait for each other" in why:
        words = "every member of the rooted collective"
    elif "flows from (or to) its root" in why:
        words = "the collective's root"
    elif "group call" in why:
        words = "its group call's other parts"
    elif "signal" in why or "event" in why:
        words = why.replace("it waits for ", "")
    elif "collective" in why:
        words = "all members of the collective"
    else:
        words = why
    when = BLOCKING_WHEN.get(step.blocking)
    return f"{words} ({when})" if when else words


def _edge_words(s: Schedule, cex: Counterexample) -> str:
    """What the red dashed edge means, in plain words."""
    assert cex.missing_edge is not None
    a, b = cex.missing_edge
    obs = cex.observation
    sa, sb = short_label(s, a), short_label(s, b)
    if obs.kind == "read" and obs.a == b:
        return f"{sa} must finish before {sb} reads {obs.region}; nothing makes it wait"
    if obs.kind == "read" and obs.a == a:
        return f"{sb} overwrites {obs.region} before {sa} has read it"
    if obs.kind == "overlap":
        return f"{sa} and {sb} can overlap on {obs.region}; nothing orders them"
    return f"{sa} must end before {sb} starts; nothing makes it wait"


def _node(s: Schedule, cex: Counterexample, o: int, red: bool) -> str:
    op = s.ops[o]
    fam = _family(op)
    lines = [_wrap(short_label(s, o), 30), _times(cex, o)]
    obs = cex.observation
    if obs.kind == "message" and o == obs.a:
        carried = ", ".join(repr(v) for v in obs.seen) or "no value"
        lines.append(_wrap(f"declares {obs.expected!r}, gets {carried}", 34))
    run = cex.run
    never_ends = run is not None and run.end[o] is None
    attrs = [f"label={_q(chr(10).join(x for x in lines if x))}"]
    style = ["rounded", "filled"]
    if never_ends:
        style.append("dashed")
    if red:
        attrs += [f'color="{RED}"', f'fillcolor="{CULPRIT_FILL}"', "penwidth=2.4", f'fontcolor="{RED}"']
    else:
        attrs.append(f'fillcolor="{FILL[fam]}"')
        if never_ends:
            attrs.append('fontcolor="#777777"')
    if fam == "event":
        attrs.append("fontsize=9")
    attrs.append(f'style="{",".join(style)}"')
    return f"o{o} [{', '.join(attrs)}];"


def _title_html(s: Schedule, cex: Counterexample, hint: str | None, title: str | None,
                shown_ops: Sequence[int], full: bool, under: str | None = None) -> str:
    shown = len(shown_ops)
    head = title or f"{s.name}: {cex.property} violated"
    rows = [f'<B><FONT POINT-SIZE="14">{_html(head)}</FONT></B>']
    if under:
        for line in _wrap(f"under the assignment {under}", 110).split("\n"):
            rows.append(f"<B>{_html(line)}</B>")
    for line in _wrap(plain_sentence(s, cex), 110).split("\n"):
        rows.append(f'<FONT COLOR="{RED}">{_html(line)}</FONT>')
    if hint:
        for line in _wrap(hint, 110).split("\n"):
            rows.append(f'<FONT COLOR="#1a7f37">{_html(line)}</FONT>')
    extra = ""
    kinds = {s.ops[o].kind for o in shown_ops}
    if any(st.blocking for st in cex.cycle):
        extra += (f' · <FONT COLOR="{RED}">red dashed: a wait that holds only when the runtime blocks'
                  " (a message larger than the buffer, or kernels of two communicators that do not co-run)</FONT>")
    if Kind.PUT in kinds:
        extra += f' · <FONT COLOR="{ORANGE}">orange: put (dotted: into the target rank)</FONT>'
    if any(s.ops[o].batch is not None for o in shown_ops):
        extra += f' · <FONT COLOR="{PURPLE}">dashed box: one group call</FONT>'
    if full or shown == len(s.ops):
        scope = f"all {len(s.ops)} ops"
    else:
        scope = f"{shown} of {len(s.ops)} ops (the culprits, what they wait for and their neighbours)"
    rows.append(
        f'<FONT POINT-SIZE="9" COLOR="#666666">time runs left to right; {scope}. '
        f'grey: stream order · <FONT COLOR="{BLUE}">blue: send → recv</FONT> · '
        f'<FONT COLOR="{GREEN}">green dashed: record → wait</FONT> · '
        f'<FONT COLOR="{PURPLE}">hexagon: one collective</FONT> · '
        f'<FONT COLOR="{RED}">red: what went wrong</FONT></FONT>'
    )
    if extra:
        rows.append(f'<FONT POINT-SIZE="9" COLOR="#666666">{extra.removeprefix(" · ")}</FONT>')
    cells = "".join(f'<TR><TD ALIGN="LEFT">{row}</TD></TR>' for row in rows)
    return f'<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">{cells}</TABLE>'
