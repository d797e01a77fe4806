"""Options and helpers shared by the subcommands.  No solver import here."""

from __future__ import annotations

import argparse
import math
import sys

EXIT_OK, EXIT_VIOLATED, EXIT_ERROR, EXIT_UNKNOWN, EXIT_INTERNAL = 0, 1, 2, 3, 4

EXIT_CODES = """\
exit codes:
  0  every checked property is proved
  1  a counterexample was found (some property is violated)
  2  bad input or usage (the message names the file, op and problem)
  3  no counterexample, but some verdict is unknown (a solver limit was hit)
  4  internal error in syncproof (a bug: please report it)
With several schedules, the exit code is the most severe one: 4, then 2, then 1, then 3."""


def add_solver_options(p: argparse.ArgumentParser) -> None:
    from ..result import PROPERTIES

    p.add_argument("--property", "-p", action="append", choices=PROPERTIES, dest="properties",
                   help="check only this property (repeatable; default: all)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="wall-clock limit per solver call, in seconds (verdict unknown when hit)")
    p.add_argument("--rlimit", type=int, metavar="N",
                   help="z3 resource limit per solver call (reproducible across machines)")
    p.add_argument("--memory", type=int, metavar="MB", help="z3 memory limit in MB")
    p.add_argument("--max-cex", type=int, default=3, metavar="N",
                   help="list up to N violations per property (default 3; the first one in full)")
    p.add_argument("--engine", default="hybrid", choices=["hybrid", "z3"],
                   help="hybrid (default): decide pure precedence exactly on the graph, the rest with z3;"
                   " z3: everything through the solver")
    p.add_argument("--choices", default="auto", choices=["auto", "enumerate", "symbolic"],
                   help="a schedule with choices is checked for every assignment: enumerate them one by one,"
                   " or symbolic (z3 for matching, a verified reduction for the rest); auto (default)"
                   " enumerates up to 256 assignments")


def solver_kwargs(args: argparse.Namespace) -> dict[str, object]:
    from ..errors import UsageError
    from ..result import PROPERTIES

    if args.max_cex < 1:
        raise UsageError("--max-cex must be at least 1")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.rlimit is not None and args.rlimit < 1:
        raise UsageError(f"--rlimit must be a positive number of z3 resource units, got {args.rlimit}")
    if args.memory is not None and args.memory < 1:
        raise UsageError(f"--memory must be a positive number of MB, got {args.memory}")
    return {"properties": args.properties or PROPERTIES, "engine": args.engine, "timeout": args.timeout,
            "rlimit": args.rlimit, "memory_mb": args.memory, "max_cex": args.max_cex,
            "choices": getattr(args, "choices", "auto")}


def save_schedule(sched: object, output: str) -> None:
    """Save an imported or captured schedule (``-o``); a failure is a UsageError."""
    from ..errors import UsageError
    from ..ir import Schedule, save

    assert isinstance(sched, Schedule)
    try:
        save(sched, output)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None


def most_severe(codes: list[int]) -> int:
    for code in (EXIT_INTERNAL, EXIT_ERROR, EXIT_VIOLATED, EXIT_UNKNOWN):
        if code in codes:
            return code
    return EXIT_OK


def error(msg: str) -> None:
    print(f"syncproof: error: {msg}", file=sys.stderr)
