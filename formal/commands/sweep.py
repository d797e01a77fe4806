"""``syncproof sweep``: check every configuration of a model over a grid of
parameters (bounded exhaustive), one table row per configuration.

    syncproof sweep --model tp-pp --set tp=1,2,4,8 --set pp=1..4 --set layers=4
    syncproof sweep --model tp --set tp=1..8 --set layers=1..8 --jobs 4      # local processes
    syncproof sweep --model tp --set tp=1..8 --set layers=1..8 --ray auto    # a Ray cluster

The configurations are checked by ``syncproof.fanout`` (docs/fanout.md); the
rows come out in grid order whichever executor ran them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from ..errors import ScheduleError, UsageError, UserError
from ..fanout import Failed, add_fanout_options, open_fanout
from ..inputs import ascii_int
from .common import EXIT_CODES, EXIT_ERROR, EXIT_INTERNAL, add_solver_options, error, most_severe, solver_kwargs
from .models import registry

MAX_CONFIGS = 10_000
MARK = {"proved": "ok", "violated": "VIOLATED", "unknown": "unknown"}


def register(sub: Any) -> None:
    c = sub.add_parser(
        "sweep", help="check a model over a grid of parameters",
        description="Build and check a model for every combination of the given parameter values (bounded"
        " exhaustive): --set KEY=V1,V2,... or --set KEY=LO..HI (inclusive), repeatable; parameters not given"
        " keep their defaults. Combinations the model rejects (e.g. more stages than layers) are listed as"
        " skipped. The exit code is the most severe over the checked configurations. --jobs N checks N"
        " configurations at a time in local processes, --ray ADDRESS on a Ray cluster (docs/fanout.md).",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--model", required=True, metavar="NAME", help="the model (see `syncproof models`)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUES", dest="params",
                   help="values of one parameter: 1,2,4,8 or 1..4 or a mix (1,2..4); repeatable")
    c.add_argument("--fault", metavar="NAME", help="switch on one of the model's faults in every configuration")
    add_solver_options(c)
    add_fanout_options(c)
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
            lo, hi = _bound(key, text, item, lo_s), _bound(key, text, item, hi_s)
            if hi < lo:
                raise UsageError(f"--set {key}={text}: range {item} is empty (did you mean {hi}..{lo}?)")
            if hi - lo >= MAX_CONFIGS:
                raise UsageError(f"--set {key}={text}: range {item} has {hi - lo + 1} values; a sweep has at most"
                                 f" {MAX_CONFIGS} configurations")
            out += [str(v) for v in range(lo, hi + 1)]
        else:
            out.append(item)
        if len(out) > MAX_CONFIGS:
            raise UsageError(f"--set {key}: more than {MAX_CONFIGS} values; a sweep has at most {MAX_CONFIGS}"
                             " configurations")
    return list(dict.fromkeys(out))


def _bound(key: str, text: str, item: str, bound: str) -> int:
    try:
        return ascii_int(bound.strip(), f"--set {key}={text}", "a range bound")
    except ScheduleError:
        raise UsageError(f"--set {key}={text}: a range is LO..HI with integers (ASCII digits), got {item!r}"
                         ) from None


def axes_of(items: list[str]) -> dict[str, list[str]]:
    """``--set`` arguments -> the values of each parameter, in order."""
    axes: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set takes KEY=VALUES, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            raise UsageError(f"--set {item!r}: the parameter name is missing (KEY=VALUES)")
        if k in axes:
            raise UsageError(f"--set {k} is given twice; list every value in one --set ({k}=A,B,C)")
        axes[k] = parse_values(k, v)
    return axes


def grid(items: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """The parameters and every combination of their values (at most
    :data:`MAX_CONFIGS`, counted before any is built)."""
    axes = axes_of(items)
    return list(axes), _product(axes)


def _product(axes: dict[str, list[str]]) -> list[dict[str, str]]:
    size = math.prod(len(v) for v in axes.values())
    if size > MAX_CONFIGS:
        raise UsageError(f"the grid has {size} configurations; at most {MAX_CONFIGS} per sweep")
    keys = list(axes)
    return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*axes.values())]


def _normalize(reg: Any, model: str, axes: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every name and value checked up front (a typo fails before any
    solving): integers in ASCII digits, written canonically (``01`` is 1)."""
    spec = reg.get(model)
    out: dict[str, list[str]] = {}
    for k, values in axes.items():
        reg.parse_value(model, k, values[0])  # an unknown parameter is named first
        param = spec.param(k)
        vals: list[str] = []
        for v in values:
            if not param.choices:
                try:
                    v = str(ascii_int(v, f"--set {k}", f"an integer in {param.range_text}"))
                except ScheduleError as exc:
                    raise UsageError(f"model {model}: {exc}") from None
            reg.parse_value(model, k, v)
            vals.append(v)
        out[k] = list(dict.fromkeys(vals))
    return out


@dataclass(frozen=True)
class Config:
    """One configuration to check, as plain data (it travels to workers)."""

    model: str
    params: tuple[tuple[str, str], ...]
    fault: str | None
    solver: tuple[tuple[str, Any], ...]


def check_config(cfg: Config) -> dict[str, Any]:
    """Build and check one configuration: its row (plain data)."""
    from ..engine import check_schedule

    row: dict[str, Any] = {"params": dict(cfg.params)}
    t0 = time.perf_counter()
    try:
        sched = registry().build(cfg.model, dict(cfg.params), cfg.fault)
    except UserError as exc:
        row.update(status="skipped", reason=str(exc))
        return row
    kw = dict(cfg.solver)
    kw["properties"] = tuple(kw["properties"])
    rep = check_schedule(sched, **kw)
    row.update(status="checked", schedule=sched.name, ops=sched.size, seconds=round(time.perf_counter() - t0, 3),
               verdicts={r.property: r.verdict.value for r in rep.results}, exit=rep.exit_code)
    return row


def _failed_row(cfg: Config, failed: Failed) -> dict[str, Any]:
    code = EXIT_ERROR if failed.kind == "user" else EXIT_INTERNAL
    what = {"user": "bad input", "internal": "internal error (a bug in syncproof, please report it)",
            "lost": "lost"}[failed.kind]
    return {"params": dict(cfg.params), "status": "error", "error": f"{what}: {failed.message}", "exit": code}


def run(args: argparse.Namespace) -> int:
    reg = registry()
    spec = reg.get(args.model)
    kw = solver_kwargs(args)
    axes = _normalize(reg, spec.name, axes_of(args.params))
    keys, combos = list(axes), _product(axes)
    if args.fault is not None and args.fault not in [f.name for f in spec.faults]:
        reg.resolve(spec.name, {}, args.fault)
    solver = tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in kw.items()))
    configs = [Config(spec.name, tuple(c.items()), args.fault, solver) for c in combos]
    rows: list[dict[str, Any]] = []
    codes: list[int] = []
    header = False
    with open_fanout(args.jobs, args.ray) as fan:
        for cfg, got in zip(configs, fan.imap(check_config, configs), strict=True):
            row = _failed_row(cfg, got) if isinstance(got, Failed) else got
            rows.append(row)
            if row["status"] == "skipped":
                continue
            codes.append(row["exit"])
            if args.format == "text":
                if row["status"] == "error":
                    vals = " ".join(f"{k}={row['params'][k]}" for k in keys)
                    print(f"error {vals}: {row['error']}", flush=True)
                else:
                    _print_row(keys, row, first=not header)
                    header = True
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
        errors = sum(1 for r in rows if r["status"] == "error")
        skipped = sum(1 for r in rows if r["status"] == "skipped")
        print(f"{len(rows)} configurations: {len(checked) - bad - unk} proved, {bad} with a counterexample,"
              f" {unk} unknown, {skipped} skipped" + (f", {errors} errors" if errors else ""))
    if not codes:
        error(f"no configuration of model {spec.name} could be built: all {len(rows)} were skipped"
              + (" (the reasons are listed above)" if args.format == "text" else ""))
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
