"""Options and helpers shared by the subcommands.  No solver import here."""

from __future__ import annotations

import argparse
import math
import re
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


#: Upper bounds of the solver options.  z3 takes its timeout (in ms), rlimit
#: and memory_max_size (in MB) as unsigned 32-bit parameters and ignores, with
#: a warning, a value that does not fit; refusing it is clearer.
MAX_TIMEOUT_S = 1_000_000.0  # about 11.5 days (z3's limit is 2^32 ms, 49.7 days)
MAX_Z3_UNSIGNED = 2**32 - 1
MAX_CEX = 100_000
MAX_INT_DIGITS = 40
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(nan|inf|infinity)", re.IGNORECASE)


def ascii_int(text: str) -> int:
    """argparse ``type`` for integers: ASCII digits only (``int()`` also
    takes ``٣``, ``1_000`` and 5000-digit strings), at most 40 digits."""
    t = text.strip()
    if not _INT.fullmatch(t) or not t.isascii():
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer (ASCII digits only)")
    if len(t.lstrip("+-")) > MAX_INT_DIGITS:
        raise argparse.ArgumentTypeError(f"an integer of {len(t.lstrip('+-'))} digits (at most {MAX_INT_DIGITS})")
    return int(t)


def ascii_float(text: str) -> float:
    """argparse ``type`` for numbers: ASCII decimal notation only (``float()``
    also takes ``١.٥`` and ``1_0``); nan and inf pass here and are refused
    by the option's own range check, which names the option."""
    t = text.strip()
    if not t.isascii() or not _FLOAT.fullmatch(t) or len(t) > 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 30 or 2.5)")
    return float(t)


def add_solver_options(p: argparse.ArgumentParser) -> None:
    from ..result import PROPERTIES

    p.add_argument("--property", "-p", action="append", choices=PROPERTIES, dest="properties",
                   help="check only this property (repeatable; default: all)")
    p.add_argument("--timeout", type=ascii_float, metavar="S",
                   help="wall-clock limit per solver call, in seconds (verdict unknown when hit)")
    p.add_argument("--rlimit", type=ascii_int, metavar="N",
                   help="z3 resource limit per solver call (reproducible across machines)")
    p.add_argument("--memory", type=ascii_int, metavar="MB", help="z3 memory limit in MB")
    p.add_argument("--max-cex", type=ascii_int, default=3, metavar="N",
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

    if not 1 <= args.max_cex <= MAX_CEX:
        raise UsageError(f"--max-cex must be at least 1 and at most {MAX_CEX}, got {args.max_cex}")
    if args.timeout is not None and not (math.isfinite(args.timeout) and 0 < args.timeout <= MAX_TIMEOUT_S):
        raise UsageError(f"--timeout must be a positive number of seconds, at most {MAX_TIMEOUT_S:.0f},"
                         f" got {args.timeout}")
    if args.rlimit is not None and not 1 <= args.rlimit <= MAX_Z3_UNSIGNED:
        raise UsageError(f"--rlimit must be a positive number of z3 resource units, at most {MAX_Z3_UNSIGNED},"
                         f" got {args.rlimit}")
    if args.memory is not None and not 1 <= args.memory <= MAX_Z3_UNSIGNED:
        raise UsageError(f"--memory must be a positive number of MB, at most {MAX_Z3_UNSIGNED}, got {args.memory}")
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
    except ValueError as exc:  # a path with a NUL character
        raise UsageError(f"cannot write {output!r}: {exc}") from None


def most_severe(codes: list[int]) -> int:
    for code in (EXIT_INTERNAL, EXIT_ERROR, EXIT_VIOLATED, EXIT_UNKNOWN):
        if code in codes:
            return code
    return EXIT_OK


def error(msg: str) -> None:
    print(f"syncproof: error: {msg}", file=sys.stderr)
