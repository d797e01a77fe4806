"""syncproof vs torch's own simulator on the same lowered pipeline schedules.

    .venv/bin/python benchmarks/torch_pp_bench.py [--sizes 4x8,8x16,...] [--cap 600] [--p2p any]

Needs torch (``pip install -e '.[torch]'``).  For each size P x M it builds
torch's ScheduleInterleaved1F1B with 2 stages per rank (no process group:
stand-in stages), takes the lowered action lists torch's runtime would
execute, and times, on those same lists:

* torch: ``_simulate_comms_compute`` (its dry-run of the comms, which
  cannot read UNSHARD/RESHARD/REDUCE_GRAD, so they are dropped for it);
* syncproof: the import (lowering the lists to a schedule) and the full
  check (every property, default engine).

The ratio is syncproof's check time over torch's simulation time (and,
second, with the import included), in wall-clock seconds and again in CPU
seconds of the process (steadier when the machine is busy).  Not part of the tests.  Sizes whose
check would, by the growth seen so far, exceed ``--cap`` seconds are
skipped and listed as such, except the headline size (``--target``, 64 ranks x
128 microbatches), which always runs: the last line of the output gives its
check time and its ratio to torch's simulation, measured in the same run.
The schedules are checked in the default p2p mode (``any``: deadlock counts
the hangs that need messages too large to buffer; dataflow, race and phase
hold for every message size); ``--p2p`` picks another.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import warnings
from typing import Any

DEFAULT_SIZES = "4x8,8x16,16x32,32x64,64x128"
TARGET = "64x128"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        p, m = part.lower().split("x")
        out.append((int(p), int(m)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help=f"ranks x microbatches, default {DEFAULT_SIZES}")
    ap.add_argument("--schedule", default="Interleaved1F1B", help="torch schedule class (default Interleaved1F1B)")
    ap.add_argument("--engine", default="hybrid", choices=["hybrid", "z3"])
    ap.add_argument("--cap", type=float, default=600.0,
                    help="skip sizes whose syncproof check is expected to take longer (seconds, default 600);"
                    " the --target size always runs")
    ap.add_argument("--target", default=TARGET,
                    help=f"the headline size, never skipped and summed up last (default {TARGET})")
    ap.add_argument("--p2p", default="any", choices=["any", "rendezvous", "eager"],
                    help="the schedules' p2p mode (default any, as syncproof import torch-pp checks them)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    target = parse_sizes(args.target)[0]
    sizes = parse_sizes(args.sizes)
    if target not in sizes:
        sizes.append(target)

    from syncproof import check_schedule
    from syncproof.importers import torch_bridge as tb
    from syncproof.importers import torch_pp as tp

    mod = tb._schedules_module()
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    prev: tuple[int, float] | None = None  # (actions, check seconds) of the last size run
    print(f"{args.schedule}, 2 stages per rank; torch {mod.torch.__version__}; engine {args.engine};"
          f" p2p {args.p2p}", flush=True)
    for p, m in sizes:
        t0 = time.perf_counter()
        sched = tb.build_schedule(args.schedule, p, m)
        order, pl, n_mb, _ = tb.schedule_actions(sched)
        build = time.perf_counter() - t0
        n_actions = sum(1 for acts in order.values() for a in acts if a is not None)
        if prev is not None and (p, m) != target:
            estimate = prev[1] * (n_actions / prev[0]) ** 1.2
            if estimate > args.cap:
                skipped.append(f"{p}x{m}: expected ~{estimate:.0f} s for the check, above --cap {args.cap:.0f} s")
                continue
        n_stages = len(pl.stage_to_rank)
        sim_input = tb.order_to_torch(tb.simulator_view(order))
        mapping = dict(pl.stage_to_rank)
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        mod._simulate_comms_compute(sim_input, mapping.__getitem__, n_stages)
        t_sim, c_sim = time.perf_counter() - t0, time.process_time() - c0
        del sim_input
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        imp = tp.lower(order, placement=pl, name=f"{args.schedule}-{p}x{m}", p2p=args.p2p)
        t_import, c_import = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        rep = check_schedule(imp.schedule, engine=args.engine, max_cex=1)
        t_check, c_check = time.perf_counter() - t0, time.process_time() - c0
        verdict = "proved" if rep.exit_code == 0 else {1: "VIOLATED", 3: "unknown"}.get(rep.exit_code, "?")
        rows.append({"size": f"{p}x{m}", "target": (p, m) == target, "actions": n_actions,
                     "ops": len(imp.schedule.ops), "build": build,
                     "sim": t_sim, "import": t_import, "check": t_check, "verdict": verdict,
                     "cpu_sim": c_sim, "cpu_import": c_import, "cpu_check": c_check,
                     "timings": rep.timings})
        r = rows[-1]
        print(f"  {r['size']:>7}: {n_actions} actions, {r['ops']} ops; torch sim {t_sim:.2f} s, syncproof"
              f" import {t_import:.2f} s + check {t_check:.2f} s ({verdict}); torch build {build:.1f} s",
              flush=True)
        prev = (n_actions, t_check)
        del imp, rep, order, sched
        gc.collect()

    print()
    head = (f"{'P x M':>8} {'actions':>8} {'ops':>8} {'torch sim s':>12} {'import s':>9} {'check s':>9}"
            f" {'check/sim':>10} {'(imp+chk)/sim':>14}  verdict")
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = r["check"] / r["sim"] if r["sim"] > 0 else float("inf")
        ratio_all = (r["import"] + r["check"]) / r["sim"] if r["sim"] > 0 else float("inf")
        print(f"{r['size']:>8} {r['actions']:>8} {r['ops']:>8} {r['sim']:>12.3f} {r['import']:>9.3f}"
              f" {r['check']:>9.3f} {ratio:>10.2f} {ratio_all:>14.2f}  {r['verdict']}")
    print("\nthe same in CPU seconds of this process (less sensitive to other load on the machine):")
    head2 = f"{'P x M':>8} {'torch sim':>10} {'import':>8} {'check':>8} {'check/sim':>10} {'(imp+chk)/sim':>14}"
    print(head2)
    print("-" * len(head2))
    for r in rows:
        sim = max(r["cpu_sim"], 1e-9)
        print(f"{r['size']:>8} {r['cpu_sim']:>10.3f} {r['cpu_import']:>8.3f} {r['cpu_check']:>8.3f}"
              f" {r['cpu_check'] / sim:>10.2f} {(r['cpu_import'] + r['cpu_check']) / sim:>14.2f}")
    for s in skipped:
        print(f"skipped {s}")
    if rows:
        big = next((r for r in rows if r["target"]), rows[-1])
        parts = ", ".join(f"{k} {v:.2f}" for k, v in big["timings"])
        print(f"\nwhere the check time goes at {big['size']}: {parts}")
        ratio = big["check"] / big["sim"] if big["sim"] > 0 else float("inf")
        print(f"{big['size']} ({big['actions']} actions, {big['ops']} ops, p2p {args.p2p}): syncproof check"
              f" {big['check']:.2f} s, torch _simulate_comms_compute {big['sim']:.2f} s, ratio {ratio:.2f}"
              f" (import {big['import']:.2f} s more); {big['verdict']}")
    return 0 if all(r["verdict"] == "proved" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
