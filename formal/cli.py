"""The ``syncproof`` command line.  It imports result types and renderers;
the solver is loaded only when a check runs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import InternalError, UserError
from .result import PROPERTIES

EXIT_OK, EXIT_VIOLATED, EXIT_ERROR, EXIT_UNKNOWN, EXIT_INTERNAL = 0, 1, 2, 3, 4

EXIT_CODES = """\
exit codes:
  0  every checked property is proved
  1  a counterexample was found (some property is violated)
  2  bad input or usage (the message names the file, op and problem)
  3  no counterexample, but some verdict is unknown (a solver limit was hit)
  4  internal error in syncproof (a bug: please report it)
With several schedules, the exit code is the most severe one: 2, then 1, then 3."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="syncproof",
        description="Prove synchronization and ordering of multi-device inference schedules, "
        "or show a concrete run that breaks them.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"syncproof {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    c = sub.add_parser(
        "check", help="check schedule files",
        description="Check every property of one or more schedule files (JSON, format v1).",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("schedules", nargs="+", metavar="SCHEDULE.json")
    c.add_argument("--property", "-p", action="append", choices=PROPERTIES, dest="properties",
                   help="check only this property (repeatable; default: all)")
    c.add_argument("--timeout", type=float, metavar="S",
                   help="wall-clock limit per solver call, in seconds (verdict unknown when hit)")
    c.add_argument("--rlimit", type=int, metavar="N",
                   help="z3 resource limit per solver call (reproducible across machines)")
    c.add_argument("--memory", type=int, metavar="MB", help="z3 memory limit in MB")
    c.add_argument("--max-cex", type=int, default=3, metavar="N",
                   help="list up to N violations per property (default 3; the first one in full)")
    c.add_argument("--engine", default="hybrid", choices=["hybrid", "z3"],
                   help="hybrid (default): decide pure precedence exactly on the graph, the rest with z3;"
                   " z3: everything through the solver")
    c.add_argument("--format", default="text", choices=["text", "json"])
    c.add_argument("--out", metavar="DIR", help="also write DIR/<name>.json (the JSON report) and"
                   " DIR/<name>.txt for each schedule")
    c.add_argument("--no-grid", action="store_true", help="leave the run grid out of text output")
    return p


def _fail(msg: str, code: int) -> int:
    print(f"syncproof: {msg}", file=sys.stderr)
    return code


def cmd_check(args: argparse.Namespace) -> int:
    from .engine import check_schedule
    from .ir import load
    from .render.jsonout import report_json
    from .render.text import report_text

    if args.max_cex < 1:
        return _fail("error: --max-cex must be at least 1", EXIT_ERROR)
    if args.timeout is not None and args.timeout <= 0:
        return _fail("error: --timeout must be positive", EXIT_ERROR)
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return _fail(f"error: cannot create --out directory {out_dir}: {exc}", EXIT_ERROR)
    codes: list[int] = []
    docs = []
    tally = {"proved": 0, "violated": 0, "unknown": 0, "error": 0}
    for path in args.schedules:
        try:
            sched = load(path)
            rep = check_schedule(sched, args.properties or PROPERTIES, engine=args.engine,
                                 timeout=args.timeout, rlimit=args.rlimit, memory_mb=args.memory,
                                 max_cex=args.max_cex)
        except UserError as exc:
            print(f"syncproof: error: {exc}", file=sys.stderr)
            codes.append(EXIT_ERROR)
            tally["error"] += 1
            continue
        codes.append(rep.exit_code)
        tally[{0: "proved", 1: "violated", 3: "unknown"}[rep.exit_code]] += 1
        doc = report_json(sched, rep)
        text = report_text(sched, rep, show_grid=not args.no_grid)
        if args.format == "json":
            docs.append(doc)
        else:
            print(text)
            print()
        if out_dir is not None:
            (out_dir / f"{sched.name}.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
            (out_dir / f"{sched.name}.txt").write_text(report_text(sched, rep) + "\n", encoding="utf-8")
    if args.format == "json":
        print(json.dumps(docs[0] if len(docs) == 1 and len(args.schedules) == 1 else docs, indent=2))
    elif len(args.schedules) > 1:
        print(f"{len(args.schedules)} schedules: {tally['proved']} proved, {tally['violated']} with a"
              f" counterexample, {tally['unknown']} unknown, {tally['error']} bad input")
    for code in (EXIT_ERROR, EXIT_VIOLATED, EXIT_UNKNOWN):
        if code in codes:
            return code
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        if args.command == "check":
            return cmd_check(args)
    except UserError as exc:
        return _fail(f"error: {exc}", EXIT_ERROR)
    except InternalError as exc:
        return _fail(f"internal error (a bug in syncproof, please report it): {exc}", EXIT_INTERNAL)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_ERROR)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
