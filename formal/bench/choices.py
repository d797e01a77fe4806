"""The growth of a choice schedule's check with the number of ranks (issue 13).

``dp_ep_states`` is DP attention with expert parallelism, the shape of
DeepSeek-style serving (vLLM and SGLang with DP attention and EP): every rank
holds its own batch, so its ``state`` this step (idle, prefill or decode) is
rank-local and the job has 3^N assignments.  Per layer (two layers), on
every rank:

* attention on the compute stream: ``qkv`` when ``state != idle``, then
  ``attn_prefill`` or ``attn_decode`` by state; an idle rank runs
  ``attn_dummy`` on a dummy batch (the dummy forward);
* an event to the comm stream, the MLP-sync ``all_gather`` on ``dp`` (every
  rank), an event back;
* the router, an event, the expert ``all_to_all`` dispatch on the rank's EP
  group of 8 ranks (static counts), an event back, the expert kernel, an
  event, the ``all_to_all`` combine, an event back: the next layer reads
  what combine wrote.

The correct version issues every collective on every rank, whatever its
state: only compute ops are guarded.  ``broken=True`` is the classic hang: in
layer 1 an idle rank skips the MLP-sync all_gather (it keeps its own
activations, ``local_copy``), so any assignment with an idle rank and a busy
one gives two members of ``dp`` different collective sequences.

``run_choices_growth`` checks both versions at each size with
``check_schedule`` and records ops, the assignment space, the verdict, the
time and the engine's ``decided_by`` sentence.
"""

from __future__ import annotations

import time
from typing import Any

from ..ir import Schedule, ScheduleBuilder

EP = 8  # ranks per expert-parallel group
LAYERS = 2
STATES = ("idle", "prefill", "decode")
TOKENS = 16  # per member and direction of an all_to_all (static counts)
SIZES = (8, 32, 128, 512)


SHAPES = ("dummy", "gathered")


def dp_ep_states(ranks: int, broken: bool = False, layers: int = LAYERS, shape: str = "dummy") -> Schedule:
    """DP attention over ``ranks`` ranks with EP groups of 8; every rank's
    ``state`` in {idle, prefill, decode} is its own (rank scope).

    ``shape="gathered"`` is the other fix vLLM and SGLang use: the ranks first
    all-reduce whether any of them has work (the derived ``any_busy``) and
    skip the whole step together when none has; every op is labelled with
    the decode step and its rank's sequence, and a busy rank samples its
    token, so the phase rule's sampling order is checked across ranks (the
    reduction then needs pairs of ranks: a covering array)."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    gathered = shape == "gathered"
    if ranks < EP or ranks % EP:
        raise ValueError(f"ranks must be a positive multiple of {EP}, got {ranks}")
    b = ScheduleBuilder(f"dp{ranks}-ep{EP}-states{'-broken' if broken else ''}",
                        description=("Broken" if broken else "Correct") + f": DP attention over {ranks} ranks with"
                        f" EP groups of {EP}; every rank's state (idle, prefill, decode) is rank-local."
                        + (" In layer 1 an idle rank skips the MLP-sync all_gather on dp." if broken else
                           " An idle rank runs a dummy forward and joins every collective."))
    b.group("dp", list(range(ranks)))
    for k in range(ranks // EP):
        b.group(f"ep{k}", list(range(k * EP, (k + 1) * EP)))
    for buf in ("x", "q", "h", "g", "d", "e", "y"):
        b.buffer(buf, "layer")
    b.init("x[layer=0]", "x0")
    b.choice("state", scope="rank", values=list(STATES))
    if gathered:
        b.buffer("flag").buffer("flags").buffer("tok")
        b.choice("any_busy", scope="dp", value="any(state != idle)", via="sync_busy")
    counts = [TOKENS] * EP
    for rank in range(ranks):
        r = b.rank(rank)
        ep = f"ep{rank // EP}"
        step: dict[str, Any] = {"phase": "decode", "step": 0} if gathered else {}
        if gathered:
            r.compute("busy_flag", writes={"flag": "f"}, **step)
            r.record("flag", stream="compute").wait("flag", stream="comm")
            r.all_reduce("dp", reads={"flag": "f"}, writes={"flags": "fs"}, name="sync_busy", **step)
            r.sync(of="sync_busy")  # .item(): the host branches on the gathered flag
        for L in range(layers):
            x, q, h, g = (f"{n}[layer={L}]" for n in "xqhg")
            d, e, y, nxt = f"d[layer={L}]", f"e[layer={L}]", f"y[layer={L}]", f"x[layer={L + 1}]"
            xv = f"x{L}"
            # attention: the kernels differ by state; an idle rank runs a dummy batch
            if gathered:
                _gathered_layer(r, L, ep, counts, rank, broken)
                continue
            r.compute("qkv", reads={x: xv}, writes={q: f"q{L}"}, layer=L, when="state != idle")
            r.compute("attn_prefill", reads={q: f"q{L}"}, writes={h: f"h{L}"}, layer=L,
                      when="state == prefill")
            r.compute("attn_decode", reads={q: f"q{L}"}, writes={h: f"h{L}"}, layer=L, when="state == decode")
            r.compute("attn_dummy", reads={x: xv}, writes={h: f"h{L}"}, layer=L, when="state == idle")
            r.record(f"h{L}", stream="compute", layer=L).wait(f"h{L}", stream="comm", layer=L)
            if broken and L == 1:
                # the bug: the idle branch keeps its own activations instead of joining the gather
                r.all_gather("dp", reads={h: f"h{L}"}, writes={g: f"g{L}"}, name="mlp_sync", layer=L,
                             when="state != idle")
                r.compute("local_copy", reads={h: f"h{L}"}, writes={g: f"g{L}"}, layer=L, when="state == idle")
            else:
                r.all_gather("dp", reads={h: f"h{L}"}, writes={g: f"g{L}"}, name="mlp_sync", layer=L)
            r.record(f"g{L}", stream="comm", layer=L).wait(f"g{L}", stream="compute", layer=L)
            # experts: dispatch, expert kernel, combine, on the rank's EP group
            r.compute("router", reads={g: f"g{L}"}, writes={d: f"d{L}"}, layer=L)
            r.record(f"d{L}", stream="compute", layer=L).wait(f"d{L}", stream="comm", layer=L)
            r.all_to_all(ep, reads={d: f"d{L}"}, writes={e: f"e{L}"}, counts=counts, recv_counts=counts,
                         name="dispatch", layer=L)
            r.record(f"e{L}", stream="comm", layer=L).wait(f"e{L}", stream="compute", layer=L)
            r.compute("expert", reads={e: f"e{L}"}, writes={y: f"y{L}"}, layer=L)
            r.record(f"y{L}", stream="compute", layer=L).wait(f"y{L}", stream="comm", layer=L)
            r.all_to_all(ep, reads={y: f"y{L}"}, writes={nxt: f"x{L + 1}"}, counts=counts, recv_counts=counts,
                         name="combine", layer=L)
            r.record(f"x{L + 1}", stream="comm", layer=L).wait(f"x{L + 1}", stream="compute", layer=L)
        if gathered:
            r.compute("sample", reads={f"x[layer={layers}]": f"x{layers}"}, writes={"tok": "t"}, when="state != idle",
                      sample=True, seqs=[rank], phase="decode", step=0)
            r.compute("next_embed", reads={"tok": "t"}, writes={"x[layer=0]": "x0n"}, when="state != idle",
                      seqs=[rank], phase="decode", step=1)
    return b.build()


def _gathered_layer(r: Any, L: int, ep: str, counts: list[int], rank: int, broken: bool = False) -> None:
    """One layer of the gathered shape: every collective issued when some
    rank is busy (a shared value), the attention kernels by the rank's own
    state; a busy rank's ops carry its sequence.  ``broken``: layer 1's
    MLP-sync all_gather is guarded by the rank's own state instead (the
    overlap/skip decision taken from the local batch)."""
    x, q, h, g = (f"{n}[layer={L}]" for n in "xqhg")
    d, e, y, nxt = f"d[layer={L}]", f"e[layer={L}]", f"y[layer={L}]", f"x[layer={L + 1}]"
    m: dict[str, Any] = {"layer": L, "phase": "decode", "step": 0, "seqs": [rank]}
    busy = "any_busy"
    r.compute("qkv", reads={x: f"x{L}"}, writes={q: f"q{L}"}, when="state != idle", **m)
    r.compute("attn_prefill", reads={q: f"q{L}"}, writes={h: f"h{L}"}, when="state == prefill", **m)
    r.compute("attn_decode", reads={q: f"q{L}"}, writes={h: f"h{L}"}, when="state == decode", **m)
    r.compute("attn_dummy", reads={x: f"x{L}"}, writes={h: f"h{L}"}, when=f"{busy} and state == idle", **m)
    r.record(f"h{L}", stream="compute", when=busy, **m).wait(f"h{L}", stream="comm", when=busy, **m)
    r.all_gather("dp", reads={h: f"h{L}"}, writes={g: f"g{L}"}, name="mlp_sync",
                 when="state != idle" if broken and L == 1 else busy, **m)
    r.record(f"g{L}", stream="comm", when=busy, **m).wait(f"g{L}", stream="compute", when=busy, **m)
    r.compute("router", reads={g: f"g{L}"}, writes={d: f"d{L}"}, when=busy, **m)
    r.record(f"d{L}", stream="compute", when=busy, **m).wait(f"d{L}", stream="comm", when=busy, **m)
    r.all_to_all(ep, reads={d: f"d{L}"}, writes={e: f"e{L}"}, counts=counts, recv_counts=counts,
                 name="dispatch", when=busy, **m)
    r.record(f"e{L}", stream="comm", when=busy, **m).wait(f"e{L}", stream="compute", when=busy, **m)
    r.compute("expert", reads={e: f"e{L}"}, writes={y: f"y{L}"}, when=busy, **m)
    r.record(f"y{L}", stream="compute", when=busy, **m).wait(f"y{L}", stream="comm", when=busy, **m)
    r.all_to_all(ep, reads={y: f"y{L}"}, writes={nxt: f"x{L + 1}"}, counts=counts, recv_counts=counts,
                 name="combine", when=busy, **m)
    r.record(f"x{L + 1}", stream="comm", when=busy, **m).wait(f"x{L + 1}", stream="compute", when=busy, **m)


def _verdict(rep: Any) -> str:
    from ..result import Verdict

    violated = [r.property for r in rep.results if r.verdict is Verdict.VIOLATED]
    unknown = [r.property for r in rep.results if r.verdict is Verdict.UNKNOWN]
    if violated:
        return "violated: " + ",".join(violated)
    return ("unknown: " + ",".join(unknown)) if unknown else "proved"


def run_choices_growth(ranks_list: tuple[int, ...] | list[int] = SIZES, shapes: tuple[str, ...] = ("dummy",),
                       **check_kw: Any) -> list[dict[str, Any]]:
    """For each shape, size and both versions: build, check with
    ``check_schedule`` (keywords passed on, e.g. ``choices="symbolic"``), and
    record the figures."""
    from ..engine import check_schedule

    rows: list[dict[str, Any]] = []
    for shape, n, broken in ((sh, n, b) for sh in shapes for n in ranks_list for b in (False, True)):
        if True:
            t0 = time.perf_counter()
            s = dp_ep_states(n, broken, shape=shape)
            build_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            rep = check_schedule(s, **check_kw)
            secs = time.perf_counter() - t1
            assignment = ""
            for r in rep.results:
                if getattr(r, "assignment", ""):
                    assignment = r.assignment
                    break
            rows.append({
                "shape": shape, "ranks": n, "broken": broken, "schedule": s.name, "ops": len(s.ops),
                "assignments": getattr(rep, "assignments", "") or f"{len(STATES)}^{n}",
                "verdict": _verdict(rep), "seconds": round(secs, 3), "build_seconds": round(build_s, 3),
                "decided_by": getattr(rep, "decided_by", ""), "assignment": assignment,
                "properties": {r.property: r.verdict.value for r in rep.results},
            })
    return rows


def growth_table(rows: list[dict[str, Any]]) -> str:
    """ranks, ops, assignments, then each version's verdict and seconds."""
    by: dict[tuple[str, int], dict[bool, dict[str, Any]]] = {}
    for row in rows:
        by.setdefault((row.get("shape", "dummy"), row["ranks"]), {})[row["broken"]] = row
    head = (f"{'shape':<9} {'ranks':>6} {'ops':>7} {'assignments':>12}  {'correct':<28} {'s':>7}  {'broken':<28}"
            f" {'s':>7}")
    lines = [head]
    for shape, n in sorted(by, key=lambda k: (SHAPES.index(k[0]) if k[0] in SHAPES else 9, k[1])):
        c, k = by[(shape, n)].get(False), by[(shape, n)].get(True)
        any_row = c or k
        assert any_row is not None
        lines.append(f"{shape:<9} {n:>6} {any_row['ops']:>7} {any_row['assignments']:>12}"
                     f"  {(c or {}).get('verdict', '-'):<28} {(c or {}).get('seconds', '-'):>7}"
                     f"  {(k or {}).get('verdict', '-'):<28} {(k or {}).get('seconds', '-'):>7}")
    return "\n".join(lines)
