"""Bug / fix / over-synchronized triples for issue 14 (redundant syncs and the
fewest syncs that keep every proof), as plain schedules.

Each case builds three schedules from one function, ``build(level)``:

* ``"bug"``: a needed sync is missing; ``breaks`` names the property violated;
* ``"fix"``: every property proved;
* ``"oversync"``: the fix plus syncs it does not need; still proved.

A *sync* is an event ``wait``, a host ``sync``, or a ``barrier`` instance
(one sync: removing it means removing every member, or matching breaks).  A
sync is named by its op label (``s.label(op)``); a barrier instance by the
labels of all its members.  Every case keeps its labels unique (one event
name per wait), so a label names one op.

``redundant`` is the set of syncs of the over-synchronized schedule whose
removal *alone* keeps every property proved; every other sync is needed
(removing it breaks one).  ``minimal`` is one hand-minimal set of syncs to
*keep*: the schedule with only these syncs is proved, and no smaller set is.
Where the syncs that are redundant alone are not redundant together (the
``either-path`` and ``tp-host-sync-either`` cases), ``len(minimal)`` is larger
than ``total - len(redundant)``.

``tests/test_oversync_cases.py`` checks every claim by removing syncs and
re-checking with the plain engine (brute force over subsets; each case has at
most 12 syncs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from syncproof.ir import Schedule, ScheduleBuilder

LEVELS = ("bug", "fix", "oversync")


@dataclass(frozen=True)
class Case:
    name: str
    summary: str
    build: Callable[[str], Schedule]
    breaks: str  # the property the bug violates
    redundant: frozenset[str]  # labels of the syncs redundant alone in the oversync schedule
    minimal: frozenset[str]  # one hand-minimal set of syncs to keep (labels)
    barriers: tuple[frozenset[str], ...] = ()  # barrier instances: the labels of each instance's members

    @property
    def minimal_size(self) -> int:
        """The fewest syncs that keep every proof (a barrier instance counts once)."""
        return sum(1 for u in _units_of(self.minimal, self.barriers))


def _units_of(labels: frozenset[str], barriers: tuple[frozenset[str], ...]) -> list[frozenset[str]]:
    out: list[frozenset[str]] = []
    rest = set(labels)
    for inst in barriers:
        if inst & rest:
            out.append(inst)
            rest -= inst
    out += [frozenset({x}) for x in sorted(rest)]
    return out


# ------------------------------------------------------------------ sglang two-way
def sglang_two_way(level: str) -> Schedule:
    """SGLang's overlap scheduler on one rank, three batches.  The schedule
    stream copies batch t into the shared index buffer ``idx``; the forward
    stream waits for it (``ready_t``: the data direction), reads ``idx`` in
    its first kernel and records ``free_t``; batch t+1's copy must wait for
    ``free_t`` (the schedule stream waits for the forward: without it the copy
    overwrites ``idx`` while the forward may still read it, a race).  The fix
    that added ``free_t`` also added the other direction before the copy
    (``sched_t``: the forward stream waits for the schedule stream's state),
    which the data direction already implies: the schedule stream's state at
    that point is its wait for ``free_{t-1}``, recorded on the forward
    itself."""
    b = ScheduleBuilder(f"sglang-two-way-{level}", description="schedule stream / forward stream, two-way waits")
    b.buffer("pin", "step").buffer("idx").buffer("h", "step")
    r = b.rank(0)
    for t in range(3):
        r.compute("schedule_batch", stream="host", writes={f"pin[step={t}]": f"idx({t})"})
        if t > 0:
            if level != "bug" or t != 2:
                r.wait(f"free{t - 1}", stream="schedule")
            if level == "oversync":
                r.record(f"sched{t}", stream="schedule")
                r.wait(f"sched{t}", stream="forward")
        r.compute("prepare_batch", stream="schedule", reads={f"pin[step={t}]": f"idx({t})"},
                  writes={"idx": f"idx({t})"})
        r.record(f"ready{t}", stream="schedule")
        r.wait(f"ready{t}", stream="forward")
        r.compute("resolve_indices", stream="forward", reads={"idx": f"idx({t})"}, writes={f"h[step={t}]": f"pos({t})"})
        r.record(f"free{t}", stream="forward")
        r.compute("forward", stream="forward", reads={f"h[step={t}]": f"pos({t})"})
    return b.build()


SGLANG = Case(
    "sglang-two-way", "SGLang schedule/forward streams: the fix's wait in both directions, one is needed",
    sglang_two_way, "race",
    redundant=frozenset({"r0/forward: wait(sched1)", "r0/forward: wait(sched2)"}),
    minimal=frozenset({"r0/forward: wait(ready0)", "r0/forward: wait(ready1)", "r0/forward: wait(ready2)",
                       "r0/schedule: wait(free0)", "r0/schedule: wait(free1)"}),
)


# ------------------------------------------------------------------ kv append per layer
def kv_append(level: str) -> Schedule:
    """A KV append on a side stream, two decode steps of two layers on one rank.
    qkv writes the new K/V into a staging buffer ``kvnew[layer]``; the cache
    stream waits for it (``new_t_L``) and appends it at position t; attention
    reads the cache prefix (earlier steps) and ``kvnew``.  The next step must
    not start before the appends of this one have ended (its qkv rewrites
    ``kvnew``, its attention reads position t): one fence per step
    (``fence1``: an event recorded on the cache stream after the step's last
    append).  The over-synchronized version also waits at every layer
    boundary for the previous layer's append (``layer_t_L``), which the fence
    already covers."""
    b = ScheduleBuilder(f"kv-append-{level}", description="KV append side stream: a wait per layer vs one per step")
    b.buffer("kv", "layer", "pos").buffer("kvnew", "layer").buffer("q", "layer")
    for L in range(2):
        b.init(f"kv[layer={L}, pos=0:4]", f"kv{L}(prompt)")
    r = b.rank(0)
    for k, t in enumerate((4, 5)):
        if k == 1 and level != "bug":
            r.wait("fence0", stream="compute")
        for L in range(2):
            r.compute("qkv", stream="compute", writes={f"kvnew[layer={L}]": f"new{L}(t{t})",
                                                       f"q[layer={L}]": f"q{L}(t{t})"}, layer=L)
            r.record(f"new{t}_{L}", stream="compute")
            r.wait(f"new{t}_{L}", stream="cache")
            r.compute("kv_append", stream="cache", reads={f"kvnew[layer={L}]": f"new{L}(t{t})"},
                      writes={f"kv[layer={L}, pos={t}]": f"kv{L}(t{t})"}, layer=L)
            if level == "oversync" and L == 0:
                r.record(f"app{t}_{L}", stream="cache")
            if level == "oversync" and L == 1:
                r.wait(f"app{t}_0", stream="compute")  # at the layer boundary: layer 0's append
            reads = {f"q[layer={L}]": f"q{L}(t{t})", f"kvnew[layer={L}]": f"new{L}(t{t})",
                     f"kv[layer={L}, pos=0:4]": f"kv{L}(prompt)"}
            if k == 1:
                reads[f"kv[layer={L}, pos=4]"] = f"kv{L}(t4)"
            r.compute("attn", stream="compute", reads=reads, layer=L)
        if k == 0:
            r.record("fence0", stream="cache")
    return b.build()


KV_APPEND = Case(
    "kv-append-per-layer", "KV append on a side stream: a wait at every layer boundary where one per step suffices",
    kv_append, "dataflow",
    redundant=frozenset({"r0/compute: wait(app4_0)", "r0/compute: wait(app5_0)"}),
    minimal=frozenset({"r0/cache: wait(new4_0)", "r0/cache: wait(new4_1)", "r0/cache: wait(new5_0)",
                       "r0/cache: wait(new5_1)", "r0/compute: wait(fence0)"}),
)


# ------------------------------------------------------------------ tp all_reduce + host sync
def _tp_layer(r: object, L: int, *, wait_in: bool, wait_out: bool) -> None:
    from syncproof.ir import RankBuilder
    assert isinstance(r, RankBuilder)
    rk = r.rank
    r.compute("out_proj", stream="compute", reads={f"x[layer={L}]": f"h{L}"}, writes={"part": f"part{L}(r{rk})"},
              layer=L)
    r.record(f"part{L}", stream="compute")
    if wait_in:
        r.wait(f"part{L}", stream="comm")
    r.all_reduce("tp", stream="comm", reads={"part": f"part{L}(r{rk})"}, writes={f"x[layer={L + 1}]": f"h{L + 1}"},
                 layer=L)
    r.record(f"sum{L}", stream="comm")
    if wait_out:
        r.wait(f"sum{L}", stream="compute")


def tp_host_sync(level: str) -> Schedule:
    """Two TP ranks, two row-parallel layers: the partial sum, an all-reduce on
    the comm stream, the consumer on compute.  Each all-reduce needs the
    comm stream to wait for the partial sum (``part_L``) and the compute
    stream to wait for the all-reduce (``sum_L``).  The over-synchronized
    version adds ``torch.cuda.synchronize()`` after layer 0's consumer has
    been issued (timing code): the host waits for everything issued so far,
    but every op issued after it already waits for what it needs."""
    b = ScheduleBuilder(f"tp-host-sync-{level}", description="TP all_reduce followed by a redundant host sync")
    b.buffer("x", "layer").buffer("part").group("tp", [0, 1])
    b.init("x[layer=0]", "h0")
    for rk in range(2):
        r = b.rank(rk)
        for L in range(2):
            _tp_layer(r, L, wait_in=True, wait_out=not (level == "bug" and rk == 1 and L == 0))
            r.compute("mlp", stream="compute", reads={f"x[layer={L + 1}]": f"h{L + 1}"}, layer=L)
            if level == "oversync" and L == 0:
                r.sync(name="timing")
    return b.build()


TP_HOST_SYNC = Case(
    "tp-host-sync", "TP all_reduce, its event waits, and a torch.cuda.synchronize() that orders nothing new",
    tp_host_sync, "dataflow",
    redundant=frozenset({"r0/host: sync(device) timing", "r1/host: sync(device) timing"}),
    minimal=frozenset({f"r{rk}/{st}: wait({ev}{L})" for rk in range(2) for L in range(2)
                       for st, ev in (("comm", "part"), ("compute", "sum"))}),
)


def tp_host_sync_either(level: str) -> Schedule:
    """One TP rank pair, one layer.  The compute stream waits for the
    all-reduce by an event (``sum0``), and the host also blocks on the
    all-reduce (``work.wait()`` with blocking wait: a host sync ``of`` it)
    *before* the consumer is issued.  Either one orders the consumer after
    the all-reduce: each is redundant alone, not both (the bug has
    neither)."""
    b = ScheduleBuilder(f"tp-host-sync-either-{level}", description="an event wait and a host sync, each enough")
    b.buffer("x", "layer").buffer("part").group("tp", [0, 1])
    b.init("x[layer=0]", "h0")
    for rk in range(2):
        r = b.rank(rk)
        r.compute("out_proj", stream="compute", reads={"x[layer=0]": "h0"}, writes={"part": f"part0(r{rk})"})
        r.record("part0", stream="compute")
        r.wait("part0", stream="comm")
        r.all_reduce("tp", stream="comm", reads={"part": f"part0(r{rk})"}, writes={"x[layer=1]": "h1"},
                     name="ar0")
        r.record("sum0", stream="comm")
        if not (level == "bug" and rk == 0):
            r.wait("sum0", stream="compute")
        if level == "oversync":
            r.sync(of="ar0", name="work_wait")
        r.compute("mlp", stream="compute", reads={"x[layer=1]": "h1"})
    return b.build()


TP_HOST_SYNC_EITHER = Case(
    "tp-host-sync-either", "an event wait and a blocking work.wait() on one all-reduce: either one suffices",
    tp_host_sync_either, "dataflow",
    redundant=frozenset({"r0/compute: wait(sum0)", "r1/compute: wait(sum0)",
                         "r0/host: sync(op ar0) work_wait", "r1/host: sync(op ar0) work_wait"}),
    minimal=frozenset({"r0/comm: wait(part0)", "r1/comm: wait(part0)",
                       "r0/compute: wait(sum0)", "r1/compute: wait(sum0)"}),
)


# ------------------------------------------------------------------ barrier before a collective
def barrier_before_collective(level: str) -> Schedule:
    """Two ranks: a barrier on the comm stream before every all-reduce (a
    ``dist.barrier()`` "to be safe").  The events between the streams already
    order the all-reduce's input and its consumer; the barrier orders
    nothing the proofs need."""
    b = ScheduleBuilder(f"barrier-before-collective-{level}", description="a barrier before each all_reduce")
    b.buffer("x", "layer").buffer("part").group("tp", [0, 1])
    b.init("x[layer=0]", "h0")
    for rk in range(2):
        r = b.rank(rk)
        for L in range(2):
            r.compute("out_proj", stream="compute", reads={f"x[layer={L}]": f"h{L}"},
                      writes={"part": f"part{L}(r{rk})"}, layer=L)
            r.record(f"part{L}", stream="compute")
            if not (level == "bug" and rk == 0 and L == 1):
                r.wait(f"part{L}", stream="comm")
            if level == "oversync":
                r.barrier("tp", stream="comm", name="safety", layer=L)
            r.all_reduce("tp", stream="comm", reads={"part": f"part{L}(r{rk})"},
                         writes={f"x[layer={L + 1}]": f"h{L + 1}"}, layer=L)
            r.record(f"sum{L}", stream="comm")
            r.wait(f"sum{L}", stream="compute")
            r.compute("mlp", stream="compute", reads={f"x[layer={L + 1}]": f"h{L + 1}"}, layer=L)
    return b.build()


_BAR = tuple(frozenset({f"r{rk}/comm: barrier#{2 * L}(tp) safety L{L}" for rk in range(2)}) for L in range(2))
BARRIER = Case(
    "barrier-before-collective", "a barrier before every all-reduce, where the stream events suffice",
    barrier_before_collective, "dataflow",
    redundant=_BAR[0] | _BAR[1],
    minimal=frozenset({f"r{rk}/{st}: wait({ev}{L})" for rk in range(2) for L in range(2)
                       for st, ev in (("comm", "part"), ("compute", "sum"))}),
    barriers=_BAR,
)


# ------------------------------------------------------------------ transitively redundant
def transitive(level: str) -> Schedule:
    """Three streams on one rank: ``a`` produces X; ``b`` waits for it
    (``ab``), reads X and produces Y; ``c`` waits for ``b`` (``bc``) and reads
    X and Y.  The over-synchronized version also has ``c`` wait for ``a``
    directly (``ac``): implied by ``ab`` then ``bc``."""
    b = ScheduleBuilder(f"transitive-{level}", description="a wait implied by another path")
    b.buffer("X").buffer("Y")
    r = b.rank(0)
    r.compute("produce_x", stream="a", writes={"X": "x"})
    r.record("ab", stream="a")
    if level == "oversync":
        r.record("ac", stream="a")
    r.wait("ab", stream="b")
    r.compute("produce_y", stream="b", reads={"X": "x"}, writes={"Y": "y"})
    r.record("bc", stream="b")
    if level == "oversync":
        r.wait("ac", stream="c")
    if level != "bug":
        r.wait("bc", stream="c")
    r.compute("consume", stream="c", reads={"X": "x", "Y": "y"})
    return b.build()


TRANSITIVE = Case(
    "transitive", "a direct wait that the path through a third stream already implies",
    transitive, "dataflow",
    redundant=frozenset({"r0/c: wait(ac)"}),
    minimal=frozenset({"r0/b: wait(ab)", "r0/c: wait(bc)"}),
)


# ------------------------------------------------------------------ either of two paths
def either_path(level: str) -> Schedule:
    """Two paths order the consumer after the producer: the consumer's stream
    waits for the producer directly (``direct``), and also for a copy stream
    (``via``) that itself waited for the producer (``to_copy``, needed: the
    copy reads the producer's output).  ``direct`` and ``via`` are each
    redundant alone; without both the consumer races (the bug has only the
    copy's wait).  So the syncs redundant alone (two) are not removable
    together: the minimal set has two syncs, not one."""
    b = ScheduleBuilder(f"either-path-{level}", description="two waits, each redundant alone but not both")
    b.buffer("X").buffer("Z")
    r = b.rank(0)
    r.compute("produce", stream="main", writes={"X": "x"})
    r.record("to_copy", stream="main")
    r.record("direct", stream="main")
    r.wait("to_copy", stream="copy")
    r.compute("copy_out", stream="copy", reads={"X": "x"}, writes={"Z": "x"})
    r.record("via", stream="copy")
    if level != "bug":
        r.wait("direct", stream="side")
    if level == "oversync":
        r.wait("via", stream="side")
    r.compute("consume", stream="side", reads={"X": "x"})
    return b.build()


EITHER = Case(
    "either-path", "two waits that each suffice alone: redundant alone, not together",
    either_path, "dataflow",
    redundant=frozenset({"r0/side: wait(direct)", "r0/side: wait(via)"}),
    minimal=frozenset({"r0/copy: wait(to_copy)", "r0/side: wait(direct)"}),
)


CASES: tuple[Case, ...] = (SGLANG, KV_APPEND, TP_HOST_SYNC, TP_HOST_SYNC_EITHER, BARRIER, TRANSITIVE, EITHER)


def early_wait() -> Schedule:
    """Stream 'c' waits for 'a''s result before an independent compute 'k'
    that does not need it; only 'r' reads it.  The wait is needed, but it
    belongs just before 'r' (then 'k' runs beside 'a'): the case of
    ``minimize``'s suggestions, not of a removal."""
    b = ScheduleBuilder("early-wait")
    b.buffer("x").buffer("y").buffer("z")
    r = b.rank(0)
    r.compute("a", stream="a", writes={"x": "A"})
    r.record("ea", stream="a")
    r.wait("ea", stream="c")
    r.compute("k", stream="c", reads={"y": None}, writes={"z": "K"})
    r.compute("r", stream="c", reads={"x": "A"})
    return b.build()
