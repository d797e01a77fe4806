"""``syncproof check``: check schedule files, or a model's schedule."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

from ..errors import UsageError, UserError
from .common import (
    EXIT_CODES,
    EXIT_ERROR,
    add_solver_options,
    error,
    most_severe,
    solver_kwargs,
)


def register(sub: Any) -> None:
    c = sub.add_parser(
        "check", help="check schedule files (or a model)",
        description="Check every property of one or more schedule files (JSON, format v1), or of the"
        " schedule a model builds (--model).",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("schedules", nargs="*", metavar="SCHEDULE.json")
    c.add_argument("--model", metavar="NAME", help="check the schedule this model builds (see `syncproof models`)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="params",
                   help="a model parameter (repeatable), e.g. --set tp=4")
    c.add_argument("--fault", metavar="NAME", help="switch on one of the model's named faults")
    add_solver_options(c)
    c.add_argument("--format", default="text", choices=["text", "json"])
    c.add_argument("--out", metavar="DIR", help="also write the report and pictures of each schedule to DIR")
    c.add_argument("--no-grid", action="store_true", help="leave the run grid out of text output")
    c.set_defaults(func=run)


def parse_params(items: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        if not k.strip():
            raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
        params[k.strip()] = v.strip()
    return params


def _schedules(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """(what, loader) pairs: the loader returns a Schedule or raises a UserError."""
    from ..ir import load

    out: list[tuple[str, Any]] = [(p, (lambda p=p: load(p))) for p in args.schedules]
    if args.model:
        # models/ is installed as syncproof.models (a separate source folder)
        registry = importlib.import_module("syncproof.models.registry")
        params = parse_params(args.params)
        out.append((f"model {args.model}", lambda: registry.build(args.model, params, args.fault)))
    elif args.params or args.fault:
        raise UsageError("--set and --fault need --model")
    if not out:
        raise UsageError("give schedule files, or --model NAME")
    return out


def run(args: argparse.Namespace) -> int:
    from ..engine import check_schedule
    from ..render.jsonout import report_json
    from ..render.outputs import write_outputs
    from ..render.text import report_text

    kw = solver_kwargs(args)
    out_dir = Path(args.out) if args.out else None
    codes: list[int] = []
    docs = []
    tally = {"proved": 0, "violated": 0, "unknown": 0, "error": 0}
    items = _schedules(args)
    for _what, loader in items:
        try:
            sched = loader()
            rep = check_schedule(sched, **kw)  # type: ignore[arg-type]
        except UserError as exc:
            error(str(exc))
            codes.append(EXIT_ERROR)
            tally["error"] += 1
            continue
        codes.append(rep.exit_code)
        tally[{0: "proved", 1: "violated", 3: "unknown"}[rep.exit_code]] += 1
        if args.format == "json":
            docs.append(report_json(sched, rep))
        else:
            print(report_text(sched, rep, show_grid=not args.no_grid))
            print()
        if out_dir is not None:
            try:
                write_outputs(sched, rep, out_dir)
            except OSError as exc:
                error(f"cannot write to --out directory {out_dir}: {exc}")
                codes.append(EXIT_ERROR)
    if args.format == "json":
        print(json.dumps(docs[0] if len(docs) == 1 and len(items) == 1 else docs, indent=2))
    elif len(items) > 1:
        print(f"{len(items)} schedules: {tally['proved']} proved, {tally['violated']} with a"
              f" counterexample, {tally['unknown']} unknown, {tally['error']} bad input")
    return most_severe(codes)
