"""Hypothesis strategies: random small valid schedules.

The schedules are small (2-3 ranks, 1-2 streams per rank, about ten ops) so
that the explicit executor explores them in well under a second, and varied
enough to hit every property both ways: reads expecting values from a small
pool (sometimes right, sometimes wrong), p2p pairs (sometimes unmatched,
sometimes eager, sometimes crossed), collectives on the group of all ranks (sometimes
mismatched), record/wait pairs (the wait sometimes issued first), initial
values and phase metadata.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from syncproof.ir import Schedule, ScheduleBuilder

VALUES = ("a", "b", "c")
COLLECTIVE_KINDS = ("all_reduce", "all_gather", "barrier", "broadcast")


@st.composite
def _region(draw: st.DrawFn, buffers: dict[str, int]) -> str:
    name = draw(st.sampled_from(sorted(buffers)))
    ext = buffers[name]
    if draw(st.integers(0, 3)) == 0:
        return name
    lo = draw(st.integers(0, ext - 1))
    hi = draw(st.integers(lo + 1, ext))
    return f"{name}[i={lo}:{hi}]"


@st.composite
def _accesses(draw: st.DrawFn, buffers: dict[str, int], *, write: bool, allow_none: bool,
              values: tuple[str, ...] = VALUES) -> dict[str, Any]:
    """Zero or one access (writes within one op must not overlap)."""
    if not draw(st.booleans()):
        return {}
    region = draw(_region(buffers))
    if allow_none and not write and draw(st.integers(0, 4)) == 0:
        return {region: None}
    return {region: draw(st.sampled_from(values))}


@st.composite
def _meta(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 2)) != 0:
        return {}
    meta: dict[str, Any] = {}
    phase = draw(st.sampled_from(("prefill", "decode")))
    meta["phase"] = phase
    if phase == "decode":
        meta["step"] = draw(st.integers(0, 1))  # always set: see test_differential
        if draw(st.integers(0, 2)) == 0:
            meta["tokens"] = draw(st.sampled_from(("0:1", "1:2")))
    if draw(st.booleans()):
        meta["seqs"] = [draw(st.integers(0, 1))]
    if draw(st.integers(0, 5)) == 0:
        meta["sp"] = draw(st.sampled_from(("0/2", "1/2")))
    if draw(st.integers(0, 3)) == 0:
        meta["sample"] = True
    return meta


@st.composite
def schedules(draw: st.DrawFn, max_ranks: int = 3, max_ops: int = 8,
              values: tuple[str, ...] = VALUES) -> Schedule:
    """``values``: the pool reads and writes draw from; a pool weighted to one
    value gives reads with several writers of their expected value."""
    n_ranks = draw(st.integers(2, max(2, max_ranks)))
    ranks = list(range(n_ranks))
    eager = draw(st.integers(0, 3)) == 0
    b = ScheduleBuilder("random", p2p="eager" if eager else "rendezvous")
    b.group("all", ranks)
    buffers: dict[str, int] = {}
    for name in ("x", "y")[: draw(st.integers(1, 2))]:
        buffers[name] = draw(st.integers(1, 4))
        b.buffer(name, i=buffers[name])
    streams = {r: ["s0", "s1"][: draw(st.integers(1, 2))] for r in ranks}
    rb = {r: b.rank(r) for r in ranks}

    for _ in range(draw(st.integers(0, 2))):
        ranks_sel = None if draw(st.booleans()) else [draw(st.sampled_from(ranks))]
        b.init(draw(_region(buffers)), draw(st.sampled_from(values)), ranks=ranks_sel)

    budget = max_ops
    events = 0
    for _ in range(draw(st.integers(1, max_ops))):
        if budget <= 0:
            break
        action = draw(st.sampled_from(("compute", "compute", "p2p", "p2p", "coll", "event", "exchange")))
        if action == "compute":
            r = draw(st.sampled_from(ranks))
            rb[r].compute(
                f"k{budget}", stream=draw(st.sampled_from(streams[r])),
                reads=draw(_accesses(buffers, write=False, allow_none=True, values=values)) or None,
                writes=draw(_accesses(buffers, write=True, allow_none=False, values=values)) or None,
                **draw(_meta()),
            )
            budget -= 1
        elif action == "p2p":
            src = draw(st.sampled_from(ranks))
            dst = draw(st.sampled_from([r for r in ranks if r != src]))
            channel = draw(st.sampled_from((None, None, "1")))
            which = draw(st.sampled_from(("both",) * 8 + ("send", "recv")))
            size = draw(st.sampled_from((None, None, 8)))
            rsize = size if draw(st.integers(0, 9)) else draw(st.sampled_from((None, 4)))
            if which in ("both", "send"):
                rb[src].send(dst, stream=draw(st.sampled_from(streams[src])), channel=channel, size=size,
                             reads=draw(_accesses(buffers, write=False, allow_none=True, values=values)) or None,
                             **draw(_meta()))
                budget -= 1
            if which in ("both", "recv"):
                rb[dst].recv(src, stream=draw(st.sampled_from(streams[dst])), channel=channel, size=rsize,
                             writes=draw(_accesses(buffers, write=True, allow_none=False, values=values)) or None,
                             **draw(_meta()))
                budget -= 1
        elif action == "exchange":
            # both ranks send to and receive from each other: with rendezvous
            # p2p and sends first on one stream, the classic pipeline hang
            a, c = draw(st.permutations(ranks))[:2]
            for me, other in ((a, c), (c, a)):
                stream = draw(st.sampled_from(streams[me]))
                if draw(st.booleans()):
                    rb[me].send(other, stream=stream).recv(other, stream=stream)
                else:
                    rb[me].recv(other, stream=stream).send(other, stream=stream)
            budget -= 4
        elif action == "coll":
            kind = draw(st.sampled_from(COLLECTIVE_KINDS))
            skip = draw(st.sampled_from(ranks)) if draw(st.integers(0, 9)) == 0 else None
            odd = draw(st.sampled_from(ranks)) if draw(st.integers(0, 9)) == 0 else None
            for r in ranks:
                if r == skip:
                    continue
                k = kind
                if r == odd:
                    k = draw(st.sampled_from([c for c in COLLECTIVE_KINDS if c != kind]))
                extra: dict[str, Any] = {"root": 0} if k == "broadcast" else {}
                if k != "barrier":  # a barrier moves no data
                    extra["reads"] = draw(_accesses(buffers, write=False, allow_none=True, values=values)) or None
                    extra["writes"] = draw(_accesses(buffers, write=True, allow_none=False, values=values)) or None
                rb[r].collective(k, "all", stream=draw(st.sampled_from(streams[r])), **extra, **draw(_meta()))
                budget -= 1
        else:
            r = draw(st.sampled_from(ranks))
            ev = f"e{events}"
            events += 1
            rec_stream = draw(st.sampled_from(streams[r]))
            wait_stream = draw(st.sampled_from(streams[r]))
            if draw(st.integers(0, 3)) == 0:
                rb[r].wait(ev, stream=wait_stream)
                rb[r].record(ev, stream=rec_stream)
            else:
                rb[r].record(ev, stream=rec_stream)
                rb[r].wait(ev, stream=wait_stream)
            budget -= 2
    return b.build()
