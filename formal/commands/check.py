"""``syncproof check``: check schedule files, or a model's schedule."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

from ..errors import UsageError, UserError
from ..gcpause import gc_paused
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
        description="Check every property of one or more schedule files (JSON or compact; format v2, v1 still"
        " loads), or of the schedule a model builds (--model).",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("schedules", nargs="*", metavar="SCHEDULE")
    c.add_argument("--model", metavar="NAME", help="check the schedule this model builds (see `syncproof models`)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="params",
                   help="a model parameter (repeatable), e.g. --set tp=4")
    c.add_argument("--fault", metavar="NAME", help="switch on one of the model's named faults")
    add_solver_options(c)
    c.add_argument("--format", default="text", choices=["text", "json", "sarif"],
                   help="text (default), json (the report for tools) or sarif (SARIF 2.1.0 for code-scanning"
                   " UIs such as GitHub's: one result per violation at its op's line in the schedule file)")
    c.add_argument("--out", metavar="DIR", help="also write the report and pictures of each schedule to DIR")
    c.add_argument("--full-trace", action="store_true",
                   help="with --out: Perfetto traces of every op and runs stored whole (default: a window"
                   " around the culprits, and for schedules above 5,000 ops the run's cone only)")
    c.add_argument("--no-grid", action="store_true", help="leave the run grid out of text output")
    c.add_argument("--redundant", action="store_true",
                   help="also list every sync (event wait, host sync, barrier, ordering-only collective) as"
                   " redundant (its removal keeps every proved property proved; confirmed by re-check) or needed"
                   " (and for what), with its cost: the makespan with it minus without it")
    c.add_argument("--durations", metavar="FILE",
                   help="with --redundant: op durations, a JSON object mapping op labels or r<rank>#<index> to"
                   " microseconds (other ops: the built-in cost model)")
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


def _schedules(args: argparse.Namespace) -> list[tuple[str, Any, Any]]:
    """(what, loader, reference) triples: the loader returns a Schedule or
    raises a UserError; the reference (called only for a large schedule)
    returns the ``schedule_ref`` a report gives instead of embedding it."""
    from ..ir import load
    from ..render.jsonout import file_ref, model_ref

    out: list[tuple[str, Any, Any]] = [(p, (lambda p=p: load(p)), (lambda p=p: file_ref(p)))
                                       for p in args.schedules]
    if args.model:
        # models/ is installed as syncproof.models (a separate source folder)
        registry = importlib.import_module("syncproof.models.registry")
        params = parse_params(args.params)
        out.append((f"model {args.model}", lambda: registry.build(args.model, params, args.fault),
                    lambda: model_ref(args.model, params, args.fault)))
    elif args.params or args.fault:
        raise UsageError("--set and --fault need --model")
    if not out:
        raise UsageError("give schedule files, or --model NAME")
    return out


def run(args: argparse.Namespace) -> int:
    kw = solver_kwargs(args)
    if args.durations and not args.redundant:
        raise UsageError("--durations needs --redundant")
    if args.full_trace and not args.out:
        raise UsageError("--full-trace needs --out DIR")
    out_dir = Path(args.out) if args.out else None
    codes: list[int] = []
    docs: list[Any] = []
    checked: list[tuple[str, Any, Any, Any]] = []  # (what, schedule, report, hints), for SARIF
    tally = {"proved": 0, "violated": 0, "unknown": 0, "error": 0}
    items = _schedules(args)
    for what, loader, reference in items:
        _one(args, what, loader, reference, kw, out_dir, docs, checked, tally, codes)
    if args.format == "json":
        print(json.dumps(docs[0] if len(docs) == 1 and len(items) == 1 else docs, indent=2))
    elif args.format == "sarif":
        from ..render.sarif import sarif_log

        print(json.dumps(sarif_log(checked), indent=2))
    elif len(items) > 1:
        print(f"{len(items)} schedules: {tally['proved']} proved, {tally['violated']} with a"
              f" counterexample, {tally['unknown']} unknown, {tally['error']} bad input")
    return most_severe(codes)


def _one(args: argparse.Namespace, what: str, loader: Any, reference: Any, kw: dict[str, Any],
         out_dir: Path | None, docs: list[Any], checked: list[tuple[str, Any, Any, Any]],
         tally: dict[str, int], codes: list[int]) -> None:
    """Check one schedule and write its outputs (appends to ``codes``, ``docs``, ``checked``)."""
    from .. import quickexit
    from ..engine import check_schedule
    from ..engine.repair import report_hints
    from ..render import jsonout
    from ..render.jsonout import report_json
    from ..render.outputs import safe_stem, schedule_reference, write_outputs
    from ..render.oversync import redundancy_json, redundancy_text
    from ..render.text import report_text

    try:
        sched = loader()
        quickexit.hold(sched, len(sched.ops))  # the console command ends without freeing it
        rep = check_schedule(sched, **kw)  # type: ignore[arg-type]
        quickexit.hold(rep, len(sched.ops))
        # the one place hints are computed: every writer below gets them
        hints = report_hints(sched, rep)
        # only a JSON report or --out refers to the schedule (a hash of its whole file: not for text alone)
        ref = reference() if len(sched.ops) > jsonout.EMBED_MAX_OPS and (args.format == "json" or out_dir) \
            else None
        if ref is not None and out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            ref = schedule_reference(sched, out_dir, safe_stem(sched.name), ref)
    except UserError as exc:
        error(str(exc))
        codes.append(EXIT_ERROR)
        tally["error"] += 1
        return
    except OSError as exc:
        error(f"cannot write to --out directory {out_dir}: {exc}")
        codes.append(EXIT_ERROR)
        return
    extra: tuple[Any, Any] | None = None
    if args.redundant:
        try:
            extra = redundancy(sched, args.durations, kw)
        except UserError as exc:
            error(str(exc))
            codes.append(EXIT_ERROR)
    codes.append(rep.exit_code)
    tally[{0: "proved", 1: "violated", 3: "unknown"}[rep.exit_code]] += 1
    with gc_paused():  # the renderers build many small acyclic objects at scale
        if args.format == "json":
            doc = report_json(sched, rep, hints=hints, ref=ref)
            if extra is not None:
                doc["redundant"] = redundancy_json(*extra)
            docs.append(doc)
        elif args.format == "sarif":
            checked.append((what if what in args.schedules else "", sched, rep, hints))
        else:
            print(report_text(sched, rep, show_grid=not args.no_grid, hints=hints))
            if extra is not None:
                print()
                print(redundancy_text(*extra))
            print()
    if out_dir is not None:
        try:
            write_outputs(sched, rep, out_dir, hints, ref=ref, full_trace=args.full_trace)
            if extra is not None:
                write_redundancy(sched, *extra, out_dir)
        except OSError as exc:
            error(f"cannot write to --out directory {out_dir}: {exc}")
            codes.append(EXIT_ERROR)


def redundancy(sched: Any, durations_file: str | None, kw: dict[str, Any]) -> tuple[Any, Any]:
    """The redundancy report of one schedule and its costs (``--redundant``)."""
    from ..engine.redundant import find_redundant
    from ..render.oversync import durations_note, load_durations, sync_costs

    durations = load_durations(durations_file, sched) if durations_file else {}
    rkw = {k: v for k, v in kw.items() if k not in ("properties", "max_cex")}
    rep = find_redundant(sched, kw["properties"], **rkw)
    costs = sync_costs(sched, [v.sync for v in rep.verdicts], durations,
                       durations_note(durations_file, durations, sched))
    return rep, costs


def write_redundancy(sched: Any, rep: Any, costs: Any, out_dir: Path) -> list[Path]:
    """``<name>.redundant.json`` / ``.txt`` and the critical path's trace and picture."""
    from ..render.outputs import safe_stem
    from ..render.oversync import redundancy_json, redundancy_text, write_critical

    stem = safe_stem(sched.name)
    js = out_dir / f"{stem}.redundant.json"
    js.write_text(json.dumps(redundancy_json(rep, costs), indent=2) + "\n", encoding="utf-8")
    txt = out_dir / f"{stem}.redundant.txt"
    txt.write_text(redundancy_text(rep, costs) + "\n", encoding="utf-8")
    return [js, txt, *write_critical(sched, costs, out_dir, stem)]
