"""``syncproof bench``: time the checker on generated schedules of given sizes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .common import EXIT_OK, ascii_int

#: The largest --ops a benchmark builds (about 20 GB of memory at 10^7).
MAX_BENCH_OPS = 10**7
#: The most ranks of a --choices run.
MAX_BENCH_RANKS = 4096


def register(sub: Any) -> None:
    b = sub.add_parser(
        "bench", help="time the checker on generated schedules",
        description="Generate TP x PP inference schedules of about N ops, check them, and print wall time and"
        " peak memory per phase, the growth exponent, and the ratio of the decision part to a numpy"
        " reference lower bound answering the same reachability queries. With --choices: how the check of a"
        " schedule with rank-local choices grows with the number of ranks.",
    )
    b.add_argument("--ops", type=ascii_int, nargs="+", default=[1000, 10000], metavar="N",
                   help="schedule sizes (default 1000 10000)")
    b.add_argument("--mix", default="decode", choices=["decode", "prefill"])
    b.add_argument("--fault", action="store_true", help="inject one missing event wait (a counterexample)")
    b.add_argument("--host-sync", action="store_true",
                   help="add a host stream.synchronize() at the end of every step on every rank")
    b.add_argument("--engine", default="hybrid", choices=["hybrid", "z3"])
    b.add_argument("--no-reference", action="store_true", help="skip the reference lower bound")
    b.add_argument("--choices", action="store_true",
                   help="instead: the growth with ranks of a choice schedule (DP attention + EP, every rank's"
                   " state idle/prefill/decode its own: 3^N assignments), correct and broken, at --ranks")
    b.add_argument("--ranks", type=ascii_int, nargs="+", default=[8, 32, 128, 512], metavar="N",
                   help="with --choices: the numbers of ranks, multiples of 8 (default 8 32 128 512)")
    b.add_argument("--method", default="auto", choices=["auto", "enumerate", "symbolic"],
                   help="with --choices: how every assignment is covered (as check --choices)")
    b.add_argument("--redundant", action="store_true",
                   help="instead: the redundancy pass (check --redundant) beside a plain check at --ops sizes, and"
                   " minimize on the models' defaults (issue 14)")
    b.add_argument("--load", action="store_true",
                   help="instead: what checking a saved schedule file costs at --ops sizes, JSON beside the compact"
                   " form: file sizes, parse time (stdlib, and orjson if installed), load time of each form, check"
                   " time, and `syncproof check FILE` end to end (wall time, peak RSS) for each (issue 16)")
    b.add_argument("--no-end-to-end", action="store_true", help="with --load: skip the end-to-end runs")
    b.add_argument("--format", default="text", choices=["text", "json"])
    b.add_argument("--json-out", metavar="FILE", help="also write the JSON result to FILE")
    b.set_defaults(func=run)


def check_args(args: argparse.Namespace) -> None:
    """Refuse sizes the benchmark cannot mean: exit 2, naming the option."""
    from ..errors import UsageError

    bad = [n for n in args.ops if not 1 <= n <= MAX_BENCH_OPS]
    if bad:
        raise UsageError(f"--ops: {bad[0]} is not a number of ops from 1 to {MAX_BENCH_OPS}")
    bad = [n for n in args.ranks if not 1 <= n <= MAX_BENCH_RANKS]
    if bad:
        raise UsageError(f"--ranks: {bad[0]} is not a number of ranks from 1 to {MAX_BENCH_RANKS}")
    modes = [m for m in ("choices", "redundant", "load") if getattr(args, m)]
    if len(modes) > 1:
        raise UsageError(f"--{modes[0]} and --{modes[1]} are separate benchmarks: give one")
    if args.no_end_to_end and not args.load:
        raise UsageError("--no-end-to-end goes with --load")
    if args.json_out is not None and not args.json_out.strip():
        raise UsageError("--json-out needs a file name")


def run(args: argparse.Namespace) -> int:
    check_args(args)
    if args.load:
        return _run_load(args)
    if args.choices:
        return _run_choices(args)
    if args.redundant:
        return _run_redundant(args)
    from ..bench.run import growth_exponent, run_one
    from ..bench.targets import judge, table

    rows = []
    if args.format == "text":
        print(f"{'ops':>9} {'load s':>7} {'check s':>8} {'decide s':>9} {'ref s':>7} {'ratio':>6} {'peak MB':>8}"
              "  verdict")
    for n in args.ops:
        row = run_one(n, args.mix, args.fault, args.engine, reference=not args.no_reference,
                      host_sync=args.host_sync)
        rows.append(row)
        if args.format == "text":
            ref = row.get("reference_seconds")
            ratio = row.get("ratio_to_reference")
            print(f"{row['ops']:>9} {row['load_seconds']:>7.2f} {row['seconds']:>8.2f} {row['decision_seconds']:>9.2f}"
                  f" {ref if ref is not None else '-':>7} {ratio if ratio is not None else '-':>6}"
                  f" {row['peak_mb']:>8.0f}  {row['verdict']}", flush=True)
            phases = "  ".join(f"{p['phase']}={p['seconds']:.2f}" for p in row["phases"])
            print(f"{'':>10}{phases}")
    growth = growth_exponent(rows)
    targets = judge(rows, growth)
    doc = {"format": 1, "runs": rows, "growth_exponent": growth, "targets": [t.to_json() for t in targets]}
    if len(rows) == 1:
        doc.update({k: rows[0].get(k) for k in ("ops", "seconds", "peak_mb", "verdict", "ratio_to_reference")})
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    else:
        if growth is not None:
            print(f"cost growth exponent (check time ~ ops^k): k = {growth}")
        print(table(targets))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return EXIT_OK


def _run_choices(args: argparse.Namespace) -> int:
    from ..bench.choices import EP, growth_table, run_choices_growth
    from ..errors import UsageError

    bad = [n for n in args.ranks if n < EP or n % EP]
    if bad:
        raise UsageError(f"--ranks: {', '.join(map(str, bad))} is not a positive multiple of {EP} (the EP group)")
    rows: list[dict[str, object]] = []
    for shape in ("dummy", "gathered"):
        for n in args.ranks:  # one size at a time, so that a text run shows each row as it is measured
            rows.extend(run_choices_growth((n,), shapes=(shape,), choices=args.method))
            if args.format == "text":
                print(growth_table(rows).splitlines()[-1] if len(rows) > 2 else growth_table(rows), flush=True)
    doc = {"format": 1, "benchmark": "choices-growth", "method": args.method, "runs": rows}
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    else:
        for row in rows:
            if row["decided_by"]:
                print(f"{row['shape']}, {row['ranks']} ranks, {'broken' if row['broken'] else 'correct'}:"
                      f" {row['decided_by']}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return EXIT_OK


def _run_redundant(args: argparse.Namespace) -> int:
    from ..bench.oversync import run_minimize_models, run_redundancy, table

    red = run_redundancy(args.ops)
    mins = run_minimize_models()
    doc = {"format": 1, "benchmark": "oversync", "redundancy": red, "minimize": mins,
           "target": "redundancy pass within 2x of a plain check at 10^5 ops (issue 14)",
           "verdict": redundancy_target(red)}
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    else:
        print(table(red, mins))
        print("\n" + redundancy_target(red))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return EXIT_OK


def redundancy_target(red: list[dict[str, Any]]) -> str:
    """Issue 14's target, judged on the benchmark schedule as generated at
    10^5 ops or more (the host-sync shape measures the confirming re-checks,
    one full check per redundant sync by design, and is reported apart)."""
    big = [r for r in red if r["shape"] == "as generated" and r["ops"] >= 100_000 and r["ratio"] is not None]
    if not big:
        return "target: the redundancy pass within 2x of a plain check at 10^5 ops: not measured (run --ops 100000)"
    worst = max(r["ratio"] for r in big)
    return (f"target: the redundancy pass within 2x of a plain check at 10^5 ops: {'met' if worst <= 2 else 'NOT met'}"
            f" ({worst}x at {max(r['ops'] for r in big)} ops; with a redundant host sync every step each is"
            " confirmed by one full re-check: see the host-sync rows)")


def _run_load(args: argparse.Namespace) -> int:
    from ..bench.load import header, line, run_load_one

    rows = []
    if args.format == "text":
        print(header(), flush=True)
    for n in args.ops:
        row = run_load_one(n, fault=args.fault, mix=args.mix, end_to_end=not args.no_end_to_end)
        rows.append(row)
        if args.format == "text":
            print(line(row), flush=True)
    doc = {"format": 1, "benchmark": "load", "runs": rows,
           "target": "a 10^6-op JSON schedule checked end to end in <= 15 s and <= 4 GiB; the compact form loads"
           " 10^6 ops in <= 3 s (issue 16)"}
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    _write_json_out(args, doc)
    return EXIT_OK


def _write_json_out(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    from ..errors import UsageError

    if not args.json_out:
        return
    try:
        Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {args.json_out}: {exc.strerror or exc}") from None
