"""Time `check_schedule` on synthetic TP x PP decode schedules of growing size.

    python benchmarks/scale.py [--layers 4 8 16] [--fault]

Prints ops, seconds per phase and peak RSS (this process, MB)."""

from __future__ import annotations

import argparse
import resource
import time

from syncproof.bench.generators import tp_pp_decode
from syncproof.engine import check_schedule


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tp", type=int, default=2)
    ap.add_argument("--pp", type=int, default=2)
    ap.add_argument("--steps", type=int, nargs="+", default=[2, 4, 8, 16])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--fault", action="store_true")
    args = ap.parse_args()
    print(f"{'ops':>8} {'build s':>8} {'check s':>8} {'peak MB':>8}  verdicts / phase seconds")
    for steps in args.steps:
        t0 = time.perf_counter()
        s = tp_pp_decode(args.tp, args.pp, args.layers, steps, fault=args.fault)
        t1 = time.perf_counter()
        rep = check_schedule(s)
        t2 = time.perf_counter()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        verdicts = " ".join(f"{r.property}={r.verdict.value}" for r in rep.results)
        phases = " ".join(f"{k}={v:.2f}" for k, v in rep.timings)
        print(f"{len(s.ops):>8} {t1 - t0:>8.2f} {t2 - t1:>8.2f} {peak:>8.0f}  {verdicts}\n{'':>36}{phases}",
              flush=True)


if __name__ == "__main__":
    main()
