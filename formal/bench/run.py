"""Run one benchmark: build a schedule of a given size, check it, time every
phase, and compare the decision part with the reference lower bound."""

from __future__ import annotations

import math
import resource
import time
from typing import Any

from ..engine import check_schedule
from ..engine.graph import PrecedenceGraph
from ..result import Verdict
from ..semantics.matching import match
from ..semantics.obligations import (
    phase_obligations,
    race_obligations,
    read_obligations,
)
from ..semantics.precedence import build_precedence
from .generators import schedule_of_size


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(n_ops: int, mix: str = "decode", fault: bool = False, engine: str = "hybrid",
            reference: bool = True, host_sync: bool = False, z3_encoding: str = "cone") -> dict[str, Any]:
    """``z3_encoding``: how ``engine="z3"`` encodes (``"cone"``, or ``"full"``,
    the whole-formula encoding of 0.2-0.4, to compare the two in one run)."""
    phases: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    s = schedule_of_size(n_ops, mix, fault, host_sync)
    phases.append({"phase": "load", "seconds": time.perf_counter() - t0, "peak_mb": _rss_mb()})
    t1 = time.perf_counter()
    rep = check_schedule(s, engine=engine, z3_encoding=z3_encoding)
    check_s = time.perf_counter() - t1
    for name, secs in rep.timings:
        phases.append({"phase": name, "seconds": secs, "peak_mb": None})
    phases[-1]["peak_mb"] = _rss_mb()
    cexs = [r.counterexample for r in rep.results if r.counterexample is not None]
    if cexs:  # the picture of the first counterexample's cone, as a user would get it
        from ..render import picture
        from ..render.dot import counterexample_dot

        t2 = time.perf_counter()
        dot = counterexample_dot(s, cexs[0])
        if picture.backend() is not None:
            picture.render(dot, "svg")
        phases.append({"phase": "rendering", "seconds": time.perf_counter() - t2, "peak_mb": _rss_mb()})
    violated = [r.property for r in rep.results if r.verdict is Verdict.VIOLATED]
    unknown = [r.property for r in rep.results if r.verdict is Verdict.UNKNOWN]
    verdict = ("violated: " + ",".join(violated)) if violated else ("unknown: " + ",".join(unknown)) \
        if unknown else "proved"
    decision = sum(secs for name, secs in rep.timings if name == "graph" or name.startswith("decide:"))
    out: dict[str, Any] = {
        "ops": len(s.ops), "mix": mix, "fault": fault, "host_sync": host_sync, "engine": engine, "schedule": s.name,
        **({"z3_encoding": z3_encoding} if engine == "z3" else {}),
        "seconds": round(check_s, 3), "load_seconds": round(phases[0]["seconds"], 3),
        "decision_seconds": round(decision, 3), "peak_mb": round(_rss_mb(), 1), "verdict": verdict,
        "phases": [{**p, "seconds": round(p["seconds"], 4)} for p in phases],
    }
    if reference and engine == "hybrid" and not unknown and rep.result("deadlock").verdict is Verdict.PROVED:
        out.update(_reference(s, decision))
    return out


def _reference(s: Any, decision: float) -> dict[str, Any]:
    """Re-ask the hybrid's reachability queries (recorded, untimed) and answer
    them with the numpy reference; the answers must be the same."""
    import numpy as np

    from .reference import reference_reach

    m = match(s)
    prec = build_precedence(s, m).data
    g = PrecedenceGraph(s, prec)
    g.queries = []
    for obs in (read_obligations(s), race_obligations(s), phase_obligations(s)):
        for ob in obs:
            g.decide(ob)
    qs = g.queries
    qx = np.fromiter((x for x, _ in qs), dtype=np.int64, count=len(qs))
    qy = np.fromiter((y for _, y in qs), dtype=np.int64, count=len(qs))
    u, v = prec.u, prec.v
    chain, pos = np.array(g.chain, dtype=np.int64), np.array(g.pos, dtype=np.int32)
    best = None
    for _ in range(2):
        r = reference_reach(prec.n_points, u, v, chain, pos, g.n_chains, qx, qy)
        best = r if best is None or r.seconds < best.seconds else best
    assert best is not None
    g.queries = None
    mine = np.fromiter((g.reach(x, y) for x, y in qs), dtype=bool, count=len(qs))
    agree = bool((mine == best.answers).all())
    return {"reference_seconds": round(best.seconds, 4), "queries": len(qs),
            "ratio_to_reference": round(decision / best.seconds, 2) if best.seconds > 0 else None,
            "reference_agrees": agree}


def growth_exponent(rows: list[dict[str, Any]]) -> float | None:
    """Least-squares slope of log(seconds) over log(ops)."""
    pts = [(math.log(r["ops"]), math.log(r["seconds"])) for r in rows if r["seconds"] > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return round(sum((x - mx) * (y - my) for x, y in pts) / den, 2) if den else None
