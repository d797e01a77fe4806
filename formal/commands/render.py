"""``syncproof render``: draw a saved report's counterexample again, without
solving: as a picture (SVG/PNG), Graphviz source (DOT) or a Perfetto trace."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import ScheduleError, UsageError
from ..result import PROPERTIES
from .common import EXIT_CODES, EXIT_OK

FULL_WARN_OPS = 2000
SUFFIXES = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot", ".json": "trace"}


def register(sub: Any) -> None:
    c = sub.add_parser(
        "render", help="draw a saved report's counterexample (SVG, PNG, DOT or Perfetto trace)",
        description="Draw the counterexample of a report that `syncproof check --out DIR` or"
        " `--format json` wrote, without solving again. The output's suffix picks the format: .svg or"
        " .png (a picture: one cluster per rank, one lane per stream, time left to right, what went"
        " wrong in red), .dot (Graphviz source) or .json (a Chrome/Perfetto trace: open it at"
        " https://ui.perfetto.dev).",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("report", metavar="RESULT.json", help="a report written by `syncproof check`")
    c.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="FILE.svg, FILE.png, FILE.dot or FILE.json (Perfetto trace)")
    c.add_argument("--property", "-p", choices=PROPERTIES,
                   help="which counterexample (default: the first violated property)")
    c.add_argument("--schedule", metavar="NAME",
                   help="which schedule, when the report holds several (`check --format json` of many files)")
    c.add_argument("--full", action="store_true",
                   help="draw every op (default: the culprits, what they depend on and a few neighbours)")
    c.set_defaults(func=run)


def error_note(msg: str) -> None:
    print(f"syncproof: note: {msg}", file=sys.stderr)


def _pick_doc(data: Any, name: str | None, where: str) -> dict[str, Any]:
    docs = data if isinstance(data, list) else [data]
    docs = [d for d in docs if isinstance(d, dict)]
    if name is not None:
        docs = [d for d in docs if d.get("schedule") == name]
        if not docs:
            raise ScheduleError(f"no schedule named {name!r} in the report", where)
    if len(docs) > 1:
        with_cex = [d for d in docs if isinstance(d.get("results"), list)
                    and any(isinstance(r, dict) and "counterexample" in r for r in d["results"])]
        names = ", ".join(str(d.get("schedule")) for d in with_cex)
        if len(with_cex) != 1:
            raise ScheduleError(f"the report holds {len(docs)} schedules; pick one with --schedule"
                                f" (with a counterexample: {names or 'none'})", where)
        docs = with_cex
    if not docs:
        raise ScheduleError("not a syncproof report (expected an object with results, or a list of them)", where)
    doc: dict[str, Any] = docs[0]
    return doc


def run(args: argparse.Namespace) -> int:
    from ..inputs import parse_json, read_text
    from ..render.dot import counterexample_dot
    from ..render.jsonout import counterexample_from_json, read_report_json
    from ..render.perfetto import counterexample_trace
    from ..render.picture import PictureError, render

    src, out = Path(args.report), Path(args.output)
    where = str(src)
    fmt = SUFFIXES.get(out.suffix.lower())
    if fmt is None:
        raise UsageError(f"{out}: unknown output type {out.suffix!r}; use .svg, .png, .dot or .json")
    data = parse_json(read_text(src, "a report written by `syncproof check --format json` or `--out`"), where)
    doc = _pick_doc(data, args.schedule, where)
    schedule, results = read_report_json(doc, where, src.parent)
    items = [r for r in results if "counterexample" in r]
    if args.property:
        items = [r for r in items if r.get("property") == args.property]
    if not items:
        what = f"for {args.property}" if args.property else "at all"
        raise UsageError(f"{src}: {doc.get('schedule')} has no counterexample {what}; nothing to draw")
    item = items[0]
    k = results.index(item)
    if "selection_doc" in item:  # a choice schedule: the run's selected schedule
        from ..ir import schedule_from_dict
        if not isinstance(item["selection_doc"], dict):
            raise ScheduleError(f"field results[{k}].selection_doc: expected an object", where)
        schedule = schedule_from_dict(item["selection_doc"], f"{where}: results[{k}].selection_doc")
    cex = counterexample_from_json(item["counterexample"], len(schedule.ops), where,
                                   f"results[{k}].counterexample")
    repair = item.get("repair")
    hint = repair.get("line") if isinstance(repair, dict) else None
    hint = hint if isinstance(hint, str) and hint else None
    known = cex.run.known if cex.run is not None else None
    if fmt == "trace":
        out.write_text(json.dumps(counterexample_trace(schedule, cex, hint, known)) + "\n", encoding="utf-8")
        return EXIT_OK
    if args.full and known is not None:
        raise UsageError(f"{src}: the report stores the run of {len(known)} of the {len(schedule.ops)} ops"
                         " (its cone); --full needs the whole run: check again with --out DIR --full-trace")
    if args.full and len(schedule.ops) > FULL_WARN_OPS and fmt != "dot":
        error_note(f"drawing all {len(schedule.ops)} ops takes minutes (about 40 s for 3,000 ops, 12 min for"
                   " 10,000 on a 2-core machine); the Perfetto trace (-o FILE.json) shows a whole run at once")
    under = item.get("assignment_text") if isinstance(item.get("assignment_text"), str) else None
    dot = counterexample_dot(schedule, cex, full=args.full, hint=hint, under=under)
    if fmt == "dot":
        out.write_text(dot, encoding="utf-8")
        return EXIT_OK
    try:
        out.write_bytes(render(dot, fmt))
    except PictureError as exc:
        raise UsageError(f"{exc} (`-o {out.with_suffix('.dot')}` writes the DOT text)") from None
    return EXIT_OK
