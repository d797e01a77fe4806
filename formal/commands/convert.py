"""``syncproof convert IN OUT``: a schedule file from the JSON form to the
compact form, or back (docs/format.md, section "Compact form")."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_CODES, EXIT_OK

FORMS = ("json", "compact")
COMPACT_SUFFIX = ".spz"


def register(sub: Any) -> None:
    c = sub.add_parser(
        "convert", help="convert a schedule file between the JSON form and the compact form",
        description="Read a schedule file (JSON or compact, told apart by its first bytes), check it as"
        " `check` loads it, and write it in the other form: compact (.spz) for big generated schedules,"
        " JSON to read, write by hand and diff. The round trip is lossless.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("input", metavar="IN", help="a schedule file, JSON or compact")
    c.add_argument("output", metavar="OUT", help="the file to write")
    c.add_argument("--to", choices=FORMS,
                   help=f"the form to write (default: compact if OUT ends in {COMPACT_SUFFIX}, JSON if it ends in"
                   " .json)")
    c.set_defaults(func=run)


def output_form(output: str, to: str | None) -> str:
    from ..errors import UsageError

    if to is not None:
        return to
    suffix = Path(output).suffix.lower()
    if suffix == COMPACT_SUFFIX:
        return "compact"
    if suffix == ".json":
        return "json"
    raise UsageError(f"cannot tell the form to write from {output!r}: name it *.json or *{COMPACT_SUFFIX},"
                     " or give --to json|compact")


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..ir import load
    from ..ir.compact import compact_bytes
    from ..ir.fileformat import dumps

    form = output_form(args.output, args.to)
    sched = load(args.input)
    data = compact_bytes(sched) if form == "compact" else dumps(sched).encode("utf-8")
    try:
        Path(args.output).write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a path with a NUL character
        raise UsageError(f"cannot write {args.output!r}: {exc}") from None
    print(f"wrote {args.output}: {form}, {len(sched.ops)} ops on {len(sched.ranks)} ranks, {len(data)} bytes",
          file=sys.stderr)
    return EXIT_OK
