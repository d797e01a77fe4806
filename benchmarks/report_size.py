"""What ``check --out`` costs for a large counterexample: the outputs now
(schedule referenced, runs cut to their cone, traces windowed) side by side
with writing everything (``--full-trace`` and the schedule embedded, as
reports were before), on one schedule, in one process.

    .venv/bin/python benchmarks/report_size.py 100000

prints the seconds, the peak memory growth and the bytes written of each;
the schedule is ``schedule_of_size(n, fault=True)`` (one missing wait),
saved to a file first.  ``--new-only`` skips the write-everything leg (at
10^6 ops it needs several GB)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.iterdir())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ops", type=int)
    ap.add_argument("--schedule", help="an existing schedule file (default: generate one)")
    ap.add_argument("--new-only", action="store_true")
    args = ap.parse_args()
    from syncproof.bench.generators import schedule_of_size
    from syncproof.engine import check_schedule
    from syncproof.engine.repair import report_hints
    from syncproof.ir import load, save
    from syncproof.render.jsonout import file_ref
    from syncproof.render.outputs import write_outputs

    work = Path(tempfile.mkdtemp(prefix="report_size."))
    path = Path(args.schedule) if args.schedule else work / "schedule.json"
    if not args.schedule:
        save(schedule_of_size(args.ops, fault=True), path)
    t = time.perf_counter()
    s = load(path)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    rep = check_schedule(s)
    t_check = time.perf_counter() - t
    hints = report_hints(s, rep)
    print(f"{len(s.ops)} ops, file {path.stat().st_size / 1e6:.1f} MB; load {t_load:.1f} s, check {t_check:.1f} s,"
          f" exit {rep.exit_code}; rss {_rss_mb():.0f} MB, peak so far {_hwm_mb():.0f} MB")
    legs = [("now (default --out)", {}),
            ("everything (--full-trace, schedule embedded)", {"full_trace": True, "embed_max_ops": 10**12})]
    for name, kw in legs[:1] if args.new_only else legs:
        out = work / name.split()[0]
        before = _hwm_mb()
        t = time.perf_counter()
        write_outputs(s, rep, out, hints, ref=file_ref(path), **kw)  # type: ignore[arg-type]
        sec = time.perf_counter() - t
        print(f"  {name:<46} {sec:7.1f} s  peak {max(_hwm_mb(), before):6.0f} MB"
              f" (+{_hwm_mb() - before:.0f})  {_size(out) / 1e6:8.2f} MB written")
        shutil.rmtree(out)
    shutil.rmtree(work)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
