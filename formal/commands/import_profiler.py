"""``syncproof import profiler TRACE...``: the communication ops each rank
issued, from PyTorch profiler traces, and the culprit if the ranks diverge."""

from __future__ import annotations

import argparse
from typing import Any

from .import_flight_recorder import HELP_EXIT, add_common_options, check_world, report


def register(sub: Any) -> None:
    c = sub.add_parser(
        "profiler",
        help="list each rank's communication ops from profiler traces, and find a divergence",
        description="Read one PyTorch profiler trace per rank (the Chrome trace JSON that"
        " prof.export_chrome_trace() writes) and list, per rank and in issue order, the communication ops"
        " it issued (c10d::* calls, with the enclosing record_function ranges as labels), send/recv"
        " included; then name the rank that caused the first divergence, if any.",
        epilog=HELP_EXIT, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("traces", nargs="+", metavar="TRACE", help="trace files, or directories of them")
    c.add_argument("--world", type=int, metavar="N", help="the number of ranks, when no trace says it")
    add_common_options(c)
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..importers.profiler import load_profiler_job

    check_world(args.world)
    job = load_profiler_job(args.traces, world=args.world)
    return report(job, args, kind="profiler", list_ops=True)
