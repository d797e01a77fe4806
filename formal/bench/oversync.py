"""Benchmarks of the over-synchronization pass (issue 14): the redundancy
pass against a plain check of the same schedule, measured side by side, and
``minimize`` on the models' default schedules."""

from __future__ import annotations

import importlib
import time
from typing import Any

REDUNDANCY_SIZES = (1_000, 3_000, 10_000)
MODELS = ("tp", "pp", "kv", "overlap-scheduler", "async-decode", "dpattn-ep", "sp")


def run_redundancy(sizes: tuple[int, ...] | list[int] = REDUNDANCY_SIZES) -> list[dict[str, Any]]:
    """For each size: a plain check and the redundancy pass of the benchmark
    schedule (``bench --ops``'s generator), their seconds and ratio."""
    from ..engine import check_schedule
    from ..engine.redundant import find_redundant, syncs_of
    from .generators import schedule_of_size

    rows: list[dict[str, Any]] = []
    for n in sizes:
        s = schedule_of_size(n, "decode", False, False)
        t0 = time.perf_counter()
        check_schedule(s)
        plain = time.perf_counter() - t0
        t1 = time.perf_counter()
        rr = find_redundant(s)
        red = time.perf_counter() - t1
        rows.append({"ops": len(s.ops), "syncs": len(syncs_of(s)), "redundant": len(rr.redundant),
                     "implied": sum(v.how == "implied" for v in rr.verdicts), "checks": rr.checks,
                     "plain_seconds": round(plain, 3), "redundancy_seconds": round(red, 3),
                     "ratio": round(red / plain, 1) if plain > 0 else None})
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
    lines = [f"{'ops':>8} {'syncs':>6} {'redundant':>9} {'implied':>7} {'checks':>6} {'check s':>8}"
             f" {'redundancy s':>12} {'ratio':>7}"]
    for r in red:
        lines.append(f"{r['ops']:>8} {r['syncs']:>6} {r['redundant']:>9} {r['implied']:>7} {r['checks']:>6}"
                     f" {r['plain_seconds']:>8} {r['redundancy_seconds']:>12} {r['ratio']:>7}")
    lines.append("")
    lines.append(f"{'model':<20} {'ops':>6} {'syncs':>6} {'removed':>8} {'optimal':>8} {'s':>7}")
    for m in mins:
        lines.append(f"{m['model']:<20} {m['ops']:>6} {m['syncs']:>6} {m['removed']:>8} {str(m['optimal']):>8}"
                     f" {m['seconds']:>7}")
    return "\n".join(lines)
