"""Benchmarks of the over-synchronization pass (issue 14): the redundancy
pass against a plain check of the same schedule, measured side by side, and
``minimize`` on the models' default schedules."""

from __future__ import annotations

import importlib
import time
from typing import Any

REDUNDANCY_SIZES = (1_000, 10_000, 100_000)
REPEATS = 3
MODELS = ("tp", "pp", "kv", "overlap-scheduler", "async-decode", "dpattn-ep", "sp")


def run_redundancy(sizes: tuple[int, ...] | list[int] = REDUNDANCY_SIZES, repeats: int = REPEATS
                   ) -> list[dict[str, Any]]:
    """For each size and both shapes of the benchmark schedule (``bench
    --ops``'s generator: as generated, every sync needed; and with a host
    sync after every step, which no proved obligation needs, so each is
    redundant and confirmed by one re-check): a plain check and the
    redundancy pass, alternated ``repeats`` times in one process, each
    timed at its fastest (the machine is shared).  ``ratio`` is the pass
    over the check; ``decide_ratio`` leaves out the confirming re-checks
    (one full check per redundant sync, by design)."""
    from ..engine import check_schedule
    from ..engine.redundant import find_redundant, syncs_of
    from .generators import schedule_of_size

    rows: list[dict[str, Any]] = []
    for n in sizes:
        for host_sync in (False, True):
            if host_sync and n > 10_000:
                continue  # each redundant host sync is one full re-check: hundreds at this size
            s = schedule_of_size(n, "decode", False, host_sync)
            check_schedule(s)  # warm: imports and caches, as for the pass
            plain: list[float] = []
            red: list[float] = []
            rechecks: list[float] = []
            rr = None
            for _ in range(repeats):
                t0 = time.perf_counter()
                check_schedule(s)
                plain.append(time.perf_counter() - t0)
                t1 = time.perf_counter()
                rr = find_redundant(s)
                red.append(time.perf_counter() - t1)
                rechecks.append(rr.recheck_seconds)
            assert rr is not None
            best = min(range(repeats), key=lambda i: red[i])
            p, r, rc = min(plain), red[best], rechecks[best]
            rows.append({"ops": len(s.ops), "shape": "host syncs" if host_sync else "as generated",
                         "syncs": len(syncs_of(s)), "redundant": len(rr.redundant),
                         "implied": sum(v.how == "implied" for v in rr.verdicts), "checks": rr.checks,
                         "plain_seconds": round(p, 3), "redundancy_seconds": round(r, 3),
                         "recheck_seconds": round(rc, 3),
                         "ratio": round(r / p, 2) if p > 0 else None,
                         "decide_ratio": round((r - rc) / p, 2) if p > 0 else None})
    return rows


def run_minimize_models(models: tuple[str, ...] = MODELS) -> list[dict[str, Any]]:
    """``minimize`` on each model's default schedule."""
    from ..engine.redundant import minimize, syncs_of

    registry = importlib.import_module("syncproof.models.registry")
    rows: list[dict[str, Any]] = []
    for name in models:
        s = registry.build(name, {}, None)
        t0 = time.perf_counter()
        m = minimize(s)
        rows.append({"model": name, "ops": len(s.ops), "syncs": len(syncs_of(s)), "removed": len(m.removed),
                     "removed_syncs": [x.label for x in m.removed], "optimal": m.optimal,
                     "iterations": m.iterations, "seconds": round(time.perf_counter() - t0, 3)})
    return rows


def table(red: list[dict[str, Any]], mins: list[dict[str, Any]]) -> str:
    lines = [f"{'ops':>8} {'shape':<13} {'syncs':>6} {'redundant':>9} {'checks':>6} {'check s':>8}"
             f" {'pass s':>8} {'re-check s':>10} {'ratio':>6} {'w/o re-checks':>13}"]
    for r in red:
        lines.append(f"{r['ops']:>8} {r['shape']:<13} {r['syncs']:>6} {r['redundant']:>9} {r['checks']:>6}"
                     f" {r['plain_seconds']:>8} {r['redundancy_seconds']:>8} {r['recheck_seconds']:>10}"
                     f" {r['ratio']:>6} {r['decide_ratio']:>13}")
    lines.append("")
    lines.append(f"{'model':<20} {'ops':>6} {'syncs':>6} {'removed':>8} {'optimal':>8} {'s':>7}")
    for m in mins:
        lines.append(f"{m['model']:<20} {m['ops']:>6} {m['syncs']:>6} {m['removed']:>8} {str(m['optimal']):>8}"
                     f" {m['seconds']:>7}")
    return "\n".join(lines)
