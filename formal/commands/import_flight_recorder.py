"""``syncproof import flight-recorder DIR``: find the culprit of a hung job
from its Flight Recorder dumps (and, optionally, its profiler traces)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import most_severe

HELP_EXIT = """\
exit codes:
  0  the run is clean: no rank's ops diverge from the others'
  1  a fault was found (a culprit is named, or the candidates are listed);
     with --check, also when matching or deadlock is violated
  2  bad input or usage (the message names the file and what is wrong)
  4  internal error in syncproof (a bug: please report it)"""


def register(sub: Any) -> None:
    c = sub.add_parser(
        "flight-recorder", aliases=["flight_recorder", "fr"],
        help="find the rank that hung a job, from Flight Recorder dumps (and profiler traces)",
        description="Read one Flight Recorder dump per rank (the pickle of _dump_fr_trace() or the JSON of"
        " _dump_fr_trace_json(), NCCL or gloo), build each rank's sequence of collectives (and send/recv"
        " where the dump has them) and name the rank that caused the first divergence, with the reasoning."
        " Profiler traces of the same run (Chrome trace JSON) may sit in the same directory."
        " Pickles are read with a restricted unpickler that builds only plain containers and scalars.",
        epilog=HELP_EXIT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("dumps", nargs="+", metavar="DIR", help="directories or files: one Flight Recorder dump per"
                   " rank (its file name ends in the rank, as torch writes them), and optionally one profiler"
                   " trace per rank in the same directory; dumps and traces are told apart by their content."
                   " In a directory, hidden files and subdirectories are not read; any other file must be a"
                   " dump or a trace")
    c.add_argument("--profiler", nargs="+", default=[], metavar="TRACE",
                   help="more files or directories, usually the profiler traces (Chrome trace JSON, one per"
                   " rank): labels (record_function ranges), send/recv, and group membership when the dumps"
                   " lack it. Read exactly like DIR")
    c.add_argument("--world", type=int, metavar="N", help="the number of ranks, when no file says it")
    add_common_options(c)
    c.set_defaults(func=run)


def add_common_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--check", action="store_true",
                   help="also build the schedule and check matching and deadlock on it")
    c.add_argument("-o", "--output", metavar="SCHEDULE.json", help="save the imported schedule (format v2)")
    c.add_argument("--list", action="store_true", help="list every rank's communication ops")
    c.add_argument("--format", default="text", choices=["text", "json"])


def run(args: argparse.Namespace) -> int:
    from ..importers.flight_recorder import load_flight_recorder

    check_world(args.world)
    job = load_flight_recorder(args.dumps, args.profiler, world=args.world)
    return report(job, args, kind="flight-recorder", list_ops=args.list)


# ---------------------------------------------------------------- shared with `import profiler`
def check_world(world: int | None) -> None:
    from ..errors import UsageError
    from ..importers.documents import MAX_RANK

    if world is not None and not 1 <= world <= MAX_RANK + 1:
        raise UsageError(f"--world must be between 1 and {MAX_RANK + 1}")


def _op_json(job: Any, op: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": op.kind}
    if op.ran_as and op.ran_as != op.kind:
        d["ran_as"] = op.ran_as
    if op.group is not None:
        d["group"] = job.group_name(op.group)
    if op.seq is not None:
        d["seq"] = op.seq
    if op.peer is not None:
        d["peer"] = op.peer
    if op.root is not None:
        d["root"] = op.root
    d["in_sizes"] = [list(s) for s in op.in_sizes]
    d["out_sizes"] = [list(s) for s in op.out_sizes]
    if op.dtype:
        d["dtype"] = op.dtype
    d["state"] = op.state
    d["label"] = op.label
    if op.frames:
        d["frames"] = [f"{n} ({f}:{ln})" for n, f, ln in op.frames]
    if op.time_ns is not None:
        d["time_ns"] = op.time_ns
    d["source"] = op.source
    return d


def _op_line(job: Any, i: int, op: Any) -> str:
    from ..importers.culprit import sizes_text, state_text

    return f"    {i:3d}  {job.describe(op, False):<40} {sizes_text(op):<28} {state_text(op)}"


def report(job: Any, args: argparse.Namespace, kind: str, list_ops: bool) -> int:
    from ..errors import UsageError
    from ..importers.culprit import analyse, job_to_schedule

    analysis = analyse(job)
    codes = [analysis.exit_code]
    sched = None
    rep = None
    if args.check or args.output:
        sched = job_to_schedule(job)
    if args.output:
        from ..ir import save

        assert sched is not None
        try:
            save(sched, args.output)
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    if args.check:
        from ..engine import check_schedule

        assert sched is not None
        rep = check_schedule(sched, properties=("matching", "deadlock"))
        codes.append(rep.exit_code)
    if args.format == "json":
        doc: dict[str, Any] = {
            "import": kind,
            "job": _job_json(job),
            "verdict": analysis.verdict,
            "decided": analysis.decided,
            "culprits": [c.to_json() for c in analysis.culprits],
            "candidates": list(analysis.candidates),
            "analysis": analysis.to_json(),
        }
        if list_ops:
            doc["ranks"] = {str(r): [_op_json(job, op) for op in rt.ops] for r, rt in sorted(job.ranks.items())}
        if rep is not None and sched is not None:
            from ..engine.repair import report_hints
            from ..render.jsonout import report_json

            doc["check"] = report_json(sched, rep, hints=report_hints(sched, rep))
        if args.output:
            doc["schedule"] = str(args.output)
        print(json.dumps(doc, indent=2))
    else:
        print(_job_text(job))
        if list_ops:
            for r, rt in sorted(job.ranks.items()):
                print(f"  rank {r} ({len(rt.ops)} ops):")
                for i, op in enumerate(rt.ops):
                    print(_op_line(job, i, op))
        print(analysis.text())
        if rep is not None and sched is not None:
            from ..engine.repair import report_hints
            from ..render.text import report_text

            print()
            print(report_text(sched, rep, hints=report_hints(sched, rep)))
        if args.output:
            print(f"schedule written to {args.output}")
    return most_severe(codes)


def _job_json(job: Any) -> dict[str, Any]:
    return {
        "name": job.name,
        "backend": job.backend,
        "world": list(job.world),
        "missing_ranks": list(job.missing),
        "groups": {g.name: {"members": list(g.members), "from": g.how, "pg_name": g.key}
                   for g in job.groups.values()},
        "sources": list(job.sources),
        "warnings": list(job.warnings),
    }


def _job_text(job: Any) -> str:
    n_fr = sum(1 for rt in job.ranks.values() if rt.fr_file)
    n_prof = sum(1 for rt in job.ranks.values() if rt.profiler_file)
    parts = []
    if n_fr:
        parts.append(f"{n_fr} Flight Recorder dump{'s' if n_fr != 1 else ''}")
    if n_prof:
        parts.append(f"{n_prof} profiler trace{'s' if n_prof != 1 else ''}")
    lines = [f"{job.name}: {' + '.join(parts)} ({job.backend}), ranks {_ranks(job.world)}"
             + (f", no data from rank{'s' if len(job.missing) > 1 else ''} {_ranks(job.missing)}"
                if job.missing else "")]
    lines.append("groups: " + ", ".join(f"{g.name} = {list(g.members)} ({g.how})" for g in job.groups.values()))
    for w in job.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def _ranks(rs: Any) -> str:
    rs = list(rs)
    if rs and rs == list(range(rs[0], rs[-1] + 1)) and len(rs) > 2:
        return f"{rs[0]}-{rs[-1]}"
    return ", ".join(map(str, rs))

