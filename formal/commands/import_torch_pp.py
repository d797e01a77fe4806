"""``syncproof import torch-pp``: check a torch.distributed.pipelining schedule.

Reads torch's action lists (CSV as ``_dump_csv`` writes them, or JSON),
lowers them to a syncproof schedule and, with ``--check``, checks it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_CODES, EXIT_OK, add_solver_options, save_schedule, solver_kwargs

MAX_NOTES = 12

DESCRIPTION = """\
Import the action lists of a torch.distributed.pipelining schedule and check it.

FILE holds one list of actions per pipeline rank in torch's own form (2F0, 1B3,
0I1, 0W1, 3SEND_F1, 2RECV_B0, 1UNSHARD, 0REDUCE_GRAD, (0F3;3B1)OVERLAP_F_B):
a CSV as schedule._dump_csv(path) writes it, or JSON (a list of per-rank lists,
{"0": [...], ...}, or {"actions": ..., "placement": "v"}).  The lowered list
(pipeline_order_with_comms, with SEND/RECV) is the main input; a compute-only
pipeline_order is lowered with torch's own passes when torch is installed.

The schedule is checked as torch's _PipelineScheduleRuntime runs it: isend/irecv
posted in list order, each on the two-rank NCCL communicator of its pair and
that communicator's stream (or one communicator and stream, --comm-streams
single), matched first in, first out per communicator and direction, with no
tags; each F/B/I waits for its own recv; stages on one rank pass data locally.
Each recv declares the activation or gradient its action expects, and the check
compares it with what its FIFO partner sent.  See docs/torch-pp.md.

p2p modes (--p2p):
  any         (default) no assumption on message size: deadlock counts the hangs
              that appear once a message no longer fits NCCL's buffer; dataflow,
              race and phase assume nothing from a send waiting for its recv, so
              their proofs hold for every message size
  rendezvous  every send waits for its recv (all messages large), for every
              property
  eager       every send completes on its own (all messages buffered)

--progress concurrent asserts that NCCL kernels of different communicators (the
per-pair ones of one rank) run side by side; by default (any) NCCL's rule holds
that the host launch order across communicators must match on every rank, so a
crossed order counts as a possible hang."""


def register(sub: Any) -> None:
    c = sub.add_parser(
        "torch-pp", aliases=["torch_pp"], help="check a torch.distributed.pipelining schedule (its action lists)",
        description=DESCRIPTION, epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("file", metavar="FILE", help="CSV or JSON action lists, one list per rank")
    c.add_argument("--placement", default="auto", choices=["auto", "loop", "v"],
                   help="stage-to-rank placement: loop (stage s on rank s mod P), v (rank r holds stages r"
                   " and 2P-1-r), or auto (default: read it off the actions)")
    c.add_argument("--check", action="store_true", help="check the schedule (otherwise only convert it)")
    c.add_argument("-o", "--output", metavar="SCHEDULE.json",
                   help="write the syncproof schedule here (without --check and -o it goes to stdout)")
    c.add_argument("--eval", action="store_true", dest="eval_mode",
                   help="check what eval() runs: backward actions and their sends/recvs do nothing there")
    c.add_argument("--comm-streams", default="per-peer", choices=["per-peer", "single"],
                   help="per-peer (default): one NCCL communicator and stream per rank pair, as"
                   " ProcessGroupNCCL uses for a single isend/irecv; single: one communicator and stream for"
                   " all p2p (a process group created with device_id reuses its communicator)")
    c.add_argument("--p2p", default="any", choices=["any", "rendezvous", "eager"],
                   help="any (default): deadlock includes the hangs that need messages too large to buffer,"
                   " dataflow/race/phase hold for every message size; rendezvous: every send waits for its"
                   " recv, for every property; eager: every send completes without its recv")
    c.add_argument("--progress", default="any", choices=["any", "concurrent"],
                   help="any (default): kernels of different communicators may not progress side by side (NCCL"
                   " promises nothing), so deadlock counts crossed launch orders; concurrent: assert that they"
                   " do")
    add_solver_options(c)
    c.add_argument("--format", default="text", choices=["text", "json"])
    c.add_argument("--no-grid", action="store_true", help="leave the run grid out of text output")
    c.set_defaults(func=run)


def _summary(imp: Any) -> str:
    s = imp.schedule
    return (f"{s.name}: {imp.n_ranks} ranks, {imp.n_stages} stages ({imp.placement.style} placement),"
            f" {imp.n_microbatches} microbatches, {imp.n_actions} actions -> {len(s.ops)} ops"
            f" (p2p {s.p2p}, {'one communicator' if imp.comm == 'single' else 'one communicator per peer'})")


def _notes_text(notes: tuple[str, ...]) -> list[str]:
    lines = [f"  note: {n}" for n in notes[:MAX_NOTES]]
    if len(notes) > MAX_NOTES:
        lines.append(f"  ... {len(notes) - MAX_NOTES} more notes (all of them are in --format json)")
    return lines


def importer_json(imp: Any) -> dict[str, Any]:
    return {
        "kind": "torch-pp",
        "ranks": imp.n_ranks,
        "stages": imp.n_stages,
        "microbatches": imp.n_microbatches,
        "placement": imp.placement.style,
        "stage_to_rank": {str(k): v for k, v in sorted(imp.placement.stage_to_rank.items())},
        "actions": imp.n_actions,
        "comm_streams": imp.comm,
        "notes": list(imp.notes),
    }


def run(args: argparse.Namespace) -> int:
    from ..importers.torch_pp import import_file
    from ..ir import dumps

    kw = solver_kwargs(args)  # validate solver options before doing any work
    imp = import_file(args.file, placement=args.placement, comm=args.comm_streams, p2p=args.p2p,
                      progress=args.progress,
                      eval_mode=args.eval_mode)
    sched = imp.schedule
    if args.output:
        save_schedule(sched, args.output)
    if not args.check:
        if args.output:
            print(f"wrote {args.output}: {_summary(imp)}", file=sys.stderr)
            for line in _notes_text(imp.notes):
                print(line, file=sys.stderr)
        else:
            sys.stdout.write(dumps(sched))
        return EXIT_OK

    from ..engine import check_schedule
    from ..engine.repair import report_hints
    from ..render.jsonout import report_json
    from ..render.text import report_text

    rep = check_schedule(sched, **kw)  # type: ignore[arg-type]
    hints = report_hints(sched, rep)  # once, for every renderer
    if args.format == "json":
        doc = report_json(sched, rep, hints=hints)
        doc["importer"] = importer_json(imp)
        if args.output:
            doc["importer"]["schedule_file"] = str(Path(args.output))
        print(json.dumps(doc, indent=2))
    else:
        print(_summary(imp))
        for line in _notes_text(imp.notes):
            print(line)
        print(report_text(sched, rep, show_grid=not args.no_grid, hints=hints))
    return rep.exit_code
