"""``syncproof sweep``: check every configuration of a model over a grid of
parameters (bounded exhaustive), one table row per configuration.

    syncproof sweep --model tp-pp --set tp=1,2,4,8 --set pp=1..4 --set layers=4
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from typing import Any

from ..errors import UsageError, UserError
from .common import EXIT_CODES, EXIT_ERROR, add_solver_options, most_severe, solver_kwargs
from .models import registry

MAX_CONFIGS = 10_000
MARK = {"proved": "ok", "violated": "VIOLATED", "unknown": "unknown"}


def register(sub: Any) -> None:
    c = sub.add_parser(
        "sweep", help="check a model over a grid of parameters",
        description="Build and check a model for every combination of the given parameter values (bounded"
        " exhaustive): --set KEY=V1,V2,... or --set KEY=LO..HI (inclusive), repeatable; parameters not given"
        " keep their defaults. Combinations the model rejects (e.g. more stages than layers) are listed as"
        " skipped. The exit code is the most severe over the checked configurations.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--model", required=True, metavar="NAME", help="the model (see `syncproof models`)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUES", dest="params",
                   help="values of one parameter: 1,2,4,8 or 1..4 or a mix (1,2..4); repeatable")
    c.add_argument("--fault", metavar="NAME", help="switch on one of the model's faults in every configuration")
    add_solver_options(c)
    c.add_argument("--format", default="text", choices=["text", "json"])
    c.set_defaults(func=run)


def parse_values(key: str, text: str) -> list[str]:
    """``1,2,4`` / ``1..4`` / ``prefill,decode`` -> the list of values (as strings)."""
    out: list[str] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise UsageError(f"--set {key}={text}: empty value in the list")
        if ".." in item:
            lo_s, hi_s = item.split("..", 1)
            try:
                lo, hi = int(lo_s), int(hi_s)
            except ValueError:
                raise UsageError(f"--set {key}={text}: a range is LO..HI with integers, got {item!r}") from None
            if hi < lo:
                raise UsageError(f"--set {key}={text}: range {item} is empty (did you mean {hi}..{lo}?)")
            out += [str(v) for v in range(lo, hi + 1)]
        else:
            out.append(item)
    return list(dict.fromkeys(out))


def grid(items: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    axes: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set takes KEY=VALUES, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip()
        if k in axes:
            raise UsageError(f"--set {k} is given twice; list every value in one --set ({k}=A,B,C)")
        axes[k] = parse_values(k, v)
    keys = list(axes)
    combos = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*axes.values())]
    if len(combos) > MAX_CONFIGS:
        raise UsageError(f"the grid has {len(combos)} configurations; at most {MAX_CONFIGS} per sweep")
    return keys, combos


def run(args: argparse.Namespace) -> int:
    from ..engine import check_schedule

    reg = registry()
    spec = reg.get(args.model)
    kw = solver_kwargs(args)
    keys, combos = grid(args.params)
    # Every name and value is checked up front, so a typo fails before any solving;
    # only combinations the model rejects are skipped.
    for k in keys:
        for v in {c[k] for c in combos}:
            reg.parse_value(spec.name, k, v)
    if args.fault is not None and args.fault not in [f.name for f in spec.faults]:
        reg.resolve(spec.name, {}, args.fault)
    rows: list[dict[str, Any]] = []
    codes: list[int] = []
    for combo in combos:
        row: dict[str, Any] = {"params": combo}
        t0 = time.perf_counter()
        try:
            sched = reg.build(args.model, combo, args.fault)
        except UserError as exc:
            row.update(status="skipped", reason=str(exc))
            rows.append(row)
            continue
        rep = check_schedule(sched, **kw)  # type: ignore[arg-type]
        codes.append(rep.exit_code)
        row.update(status="checked", schedule=sched.name, ops=sched.size, seconds=round(time.perf_counter() - t0, 3),
                   verdicts={r.property: r.verdict.value for r in rep.results}, exit=rep.exit_code)
        rows.append(row)
        if args.format == "text":
            _print_row(keys, row, first=len(codes) == 1)
    if args.format == "json":
        print(json.dumps({"model": args.model, "fault": args.fault, "rows": rows}, indent=2))
    else:
        for row in rows:
            if row["status"] == "skipped":
                vals = " ".join(f"{k}={row['params'][k]}" for k in keys)
                print(f"skipped {vals}: {row['reason']}")
        checked = [r for r in rows if r["status"] == "checked"]
        bad = sum(1 for r in checked if r["exit"] == 1)
        unk = sum(1 for r in checked if r["exit"] == 3)
        print(f"{len(rows)} configurations: {len(checked) - bad - unk} proved, {bad} with a counterexample,"
              f" {unk} unknown, {len(rows) - len(checked)} skipped")
    if not codes:
        return EXIT_ERROR
    return most_severe(codes)


def _print_row(keys: list[str], row: dict[str, Any], *, first: bool) -> None:
    props = list(row["verdicts"])
    if first:
        head = [f"{k:>8}" for k in keys] + [f"{'ops':>6}"] + [f"{p:>9}" for p in props] + [f"{'time':>8}"]
        print(" ".join(head))
    cells = [f"{row['params'][k]:>8}" for k in keys] + [f"{row['ops']:>6}"]
    cells += [f"{MARK[row['verdicts'][p]]:>9}" for p in props] + [f"{row['seconds']:>7.2f}s"]
    print(" ".join(cells), flush=True)
