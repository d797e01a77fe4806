"""``syncproof minimize``: the fewest (or cheapest) syncs that keep every
property the schedule proves, found with z3's optimizer and re-checked."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .check import parse_params
from .common import EXIT_CODES, EXIT_OK, add_solver_options, solver_kwargs

EPILOG = EXIT_CODES.replace(
    "  0  every checked property is proved\n  1  a counterexample was found (some property is violated)\n",
    "  0  a minimized schedule was found: every property the given schedule proves stays proved\n"
    "     (the given schedule's own counterexamples are not an error here)\n")


def register(sub: Any) -> None:
    c = sub.add_parser(
        "minimize", help="the fewest syncs that keep every proved property",
        description="Find a set of syncs (event waits, host syncs, barriers, ordering-only collectives) that keeps"
        " every property the schedule proves, with the fewest syncs (or the least cost), decided exactly with"
        " z3's optimizer; or say that the schedule is already minimal.  The minimized schedule is re-checked"
        " from scratch and, with -o, written (format v2).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("schedule", nargs="?", metavar="SCHEDULE.json")
    c.add_argument("--model", metavar="NAME", help="minimize the schedule this model builds (see `syncproof models`)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="params",
                   help="a model parameter (repeatable), e.g. --set tp=4")
    c.add_argument("--fault", metavar="NAME", help="switch on one of the model's named faults")
    c.add_argument("-o", "--output", metavar="OUT.json", help="write the minimized schedule here")
    c.add_argument("--weights", default="count", choices=["count", "cost"],
                   help="count (default): the fewest syncs; cost: the least total cost, each sync weighted by its"
                   " own cost (the makespan with it minus without it)")
    c.add_argument("--durations", metavar="FILE",
                   help="op durations, a JSON object mapping op labels or r<rank>#<index> to microseconds"
                   " (other ops: the built-in cost model)")
    c.add_argument("--suggest", type=int, default=8, metavar="N",
                   help="also try moving each of the first N waits and host syncs on the minimized schedule's"
                   " critical path later on its stream (default 8; 0: no suggestions).  A move that keeps every"
                   " proof and shortens the makespan is printed as a suggestion: a change to the schedule, each"
                   " re-checked from scratch, not a result about the given schedule")
    add_solver_options(c)
    c.add_argument("--format", default="text", choices=["text", "json"])
    c.set_defaults(func=run)


def _load(args: argparse.Namespace) -> Any:
    if args.model:
        if args.schedule:
            raise UsageError("give a schedule file or --model NAME, not both")
        import importlib

        registry = importlib.import_module("syncproof.models.registry")
        return registry.build(args.model, parse_params(args.params), args.fault)
    if args.params or args.fault:
        raise UsageError("--set and --fault need --model")
    if not args.schedule:
        raise UsageError("give a schedule file, or --model NAME")
    from ..ir import load

    return load(args.schedule)


def run(args: argparse.Namespace) -> int:
    from ..engine.redundant import minimize, suggest_moves, syncs_of
    from ..ir import save
    from ..render.oversync import durations_note, load_durations, minimized_json, minimized_text, sync_costs

    kw: dict[str, Any] = solver_kwargs(args)
    if args.suggest < 0 or args.suggest > 10_000:
        raise UsageError(f"--suggest takes a number of syncs from 0 to 10000, got {args.suggest}")
    sched = _load(args)
    durations = load_durations(args.durations, sched) if args.durations else {}
    costs = sync_costs(sched, syncs_of(sched), durations, durations_note(args.durations, durations, sched))
    weights = dict(costs.per_sync) if args.weights == "cost" else None
    rkw = {k: v for k, v in kw.items() if k not in ("properties", "max_cex")}
    m = minimize(sched, kw["properties"], weights=weights, **rkw)
    moves: tuple[Any, ...] = ()
    if args.suggest and m.proved:
        mdur = load_durations(args.durations, m.schedule) if args.durations else None
        moves = suggest_moves(m.schedule, m.proved, durations=mdur, limit=args.suggest, **rkw)
    written = None
    if args.output:
        out = Path(args.output)
        try:
            save(m.schedule, out)
        except OSError as exc:
            raise UsageError(f"cannot write the minimized schedule to {out}: {exc}") from None
        written = str(out)
    if args.format == "json":
        print(json.dumps(minimized_json(m, sched, costs, args.weights, written, moves), indent=2))
    else:
        print(minimized_text(m, sched, costs, args.weights, written, moves))
    return EXIT_OK
