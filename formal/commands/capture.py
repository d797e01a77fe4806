"""``syncproof capture``: capture the schedule of a PyTorch script and check it.

The script runs on CPU, once per rank, under the recording stand-ins of
``syncproof.capture``; torch is imported here lazily, never by the core."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from ..errors import UsageError, UserError
from .common import EXIT_CODES, EXIT_ERROR, EXIT_OK, add_solver_options, error, save_schedule, solver_kwargs

NO_TORCH = "capture needs PyTorch: pip install 'syncproof[torch]'"

DESCRIPTION = """\
Capture the schedule of a PyTorch program and, with --check, check it.

SCRIPT.py is ordinary PyTorch CUDA code (torch.cuda streams and events,
torch.distributed collectives and p2p, non_blocking copies, pinned buffers)
with a per-rank entry point main(rank, world) (--rank-fn picks another name).
It runs on this machine's CPU, once per rank (--world ranks, each with its own
recording process group): no GPU is needed. Every kernel, copy, event, stream
wait, collective, host synchronization, allocation and free is recorded on the
stream it would run on, and the expected value of every read is the value the
program reads when its ops run one at a time in issue order. --check then
proves the schedule for every interleaving, as `syncproof check` does, or
shows one run that breaks it; op names are the program's own (module path and
aten op, e.g. layers.0.attn/aten.mm).

Arguments after `--` are the script's own (its sys.argv[1:]), e.g.
  syncproof capture examples/pytorch/tp_decode.py --world 2 --check -- --bug

Limits: control flow that depends on data is captured along the path the CPU
run took; a custom CUDA/Triton kernel must be registered with
syncproof.capture.opaque(...); CUDA graphs and multi-threaded hosts are not
captured. An op that cannot be classified is an error (exit 2), never dropped."""


def _add_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--world", type=int, default=1, metavar="N", help="number of ranks (default 1)")
    c.add_argument("--rank-fn", default="main", metavar="NAME",
                   help="the entry point, called as NAME(rank, world) for each rank (default main)")
    c.add_argument("-o", "--output", metavar="SCHEDULE.json",
                   help="write the captured schedule here (without --check and -o it goes to stdout)")
    c.add_argument("--check", action="store_true", help="check the captured schedule (otherwise only capture it)")
    c.add_argument("--out", metavar="DIR", help="with --check: also write the report and pictures to DIR")
    add_solver_options(c)
    c.add_argument("--format", default="text", choices=["text", "json"])
    c.add_argument("--no-grid", action="store_true", help="leave the run grid out of text output")


def register(sub: Any) -> None:
    c = sub.add_parser(
        "capture", help="capture the schedule of a PyTorch script (on CPU) and check it",
        usage="syncproof capture [options] SCRIPT.py [options] [-- SCRIPT ARGS...]",
        description=DESCRIPTION, epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # argparse cannot take options after a positional and then `--` (python 3.11), so
    # everything from the script on is taken here and split in _split_command
    c.add_argument("command", nargs=argparse.REMAINDER, metavar="SCRIPT.py [-- SCRIPT ARGS...]",
                   help="the PyTorch program (a file with a per-rank entry point); arguments after `--` are"
                   " the script's own (its sys.argv[1:])")
    _add_options(c)
    c.set_defaults(func=run)


def _split_command(args: argparse.Namespace) -> None:
    """Set ``args.script`` and ``args.script_args`` from ``args.command``
    (SCRIPT.py, capture options, ``--``, script arguments)."""
    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
        args.script, args.script_args = (cmd[0], cmd[1:]) if cmd else (None, [])
    else:
        args.script = cmd[0] if cmd else None
        tail = cmd[1:]
        i = tail.index("--") if "--" in tail else len(tail)
        opts, args.script_args = tail[:i], tail[i + 1:]
        if opts:
            p = argparse.ArgumentParser(prog="syncproof capture", add_help=False)
            _add_options(p)
            rest = p.parse_known_args(opts, namespace=args)[1]
            if rest:
                raise UsageError(f"unrecognized arguments: {' '.join(rest)} (arguments for the script go after"
                                 " `--`: syncproof capture SCRIPT.py [options] -- SCRIPT ARGS...)")
    if not args.script:
        raise UsageError("give the script to capture: syncproof capture SCRIPT.py [--world N] [-- SCRIPT ARGS...]")


def _need_torch() -> None:
    if importlib.util.find_spec("torch") is None:
        raise UsageError(NO_TORCH)


def _internal_dirs() -> tuple[str, ...]:
    """Folders whose frames are not the script's own: syncproof, torch, the
    standard library."""
    import os
    import sysconfig

    dirs = [str(Path(__file__).resolve().parent.parent)]
    spec = importlib.util.find_spec("torch")
    if spec is not None and spec.origin:
        dirs.append(str(Path(spec.origin).resolve().parent))
    for key in ("stdlib", "platstdlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            dirs.append(str(Path(p).resolve()))
    return tuple(d.rstrip(os.sep) + os.sep for d in dirs)


def script_traceback(exc: BaseException) -> str:
    """The traceback of an exception raised by the user's script, with the
    frames of syncproof, torch and the standard library left out (when none
    is the script's, the last frame is kept: it says where the error happened)."""
    internal = _internal_dirs()
    frames = traceback.extract_tb(exc.__traceback__)

    def own(fs: traceback.FrameSummary) -> bool:
        try:
            path = str(Path(fs.filename).resolve())
        except (OSError, ValueError):
            return True
        return not fs.filename.startswith("<") and not path.startswith(internal)

    kept = [fs for fs in frames if own(fs)] or frames[-1:]
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(traceback.StackSummary.from_list(kept))
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip("\n")


def _capture(args: argparse.Namespace) -> Any:
    _need_torch()
    try:
        from ..capture import capture_script
    except ModuleNotFoundError as exc:
        if exc.name == "torch" or (exc.name or "").startswith("torch."):
            raise UsageError(NO_TORCH) from None
        if (exc.name or "").startswith("syncproof.capture"):
            raise UsageError("this installation of syncproof has no syncproof.capture package") from None
        raise
    script = Path(args.script)
    if not script.is_file():
        raise UsageError(f"no such script: {args.script}")
    if args.world < 1:
        raise UsageError("--world must be at least 1")
    try:
        return capture_script(str(script), world=args.world, rank_fn=args.rank_fn, argv=tuple(args.script_args))
    except SystemExit as exc:
        code = exc.code
        if code in (None, 0):
            raise UsageError(f"{args.script} exited (sys.exit) while it was being captured") from None
        raise UsageError(f"{args.script} exited with status {code} while it was being captured"
                         " (its own usage message is above)") from None
    except UserError as exc:
        cause = exc.__cause__
        if cause is not None and not isinstance(cause, (UserError, SystemExit)):
            print(script_traceback(cause), file=sys.stderr)
        raise
    except Exception as exc:  # the user's script failed: show its own traceback, not ours
        print(script_traceback(exc), file=sys.stderr)
        raise UsageError(f"{args.script} raised {type(exc).__name__} while it was being captured"
                         " (its traceback is above)") from None


def _summary(sched: Any) -> str:
    streams = {(op.rank, op.stream) for op in sched.ops}
    return f"{sched.name}: {len(sched.ranks)} ranks, {len(streams)} streams, {len(sched.ops)} ops"


def run(args: argparse.Namespace) -> int:
    from ..ir import dumps

    _split_command(args)
    kw = solver_kwargs(args)  # validate solver options before running the script
    if args.out and not args.check:
        raise UsageError("--out needs --check")
    sched = _capture(args)
    if args.output:
        save_schedule(sched, args.output)
    if not args.check:
        if args.output:
            print(f"wrote {args.output}: {_summary(sched)}", file=sys.stderr)
        else:
            sys.stdout.write(dumps(sched))
        return EXIT_OK

    # the report, exactly as `syncproof check` prints it
    from ..engine import check_schedule
    from ..engine.repair import report_hints
    from ..render.jsonout import report_json
    from ..render.outputs import write_outputs
    from ..render.text import report_text

    rep = check_schedule(sched, **kw)  # type: ignore[arg-type]
    hints = report_hints(sched, rep)  # once, for every renderer
    code: int = rep.exit_code
    if args.format == "json":
        print(json.dumps(report_json(sched, rep, hints=hints), indent=2))
    else:
        print(report_text(sched, rep, show_grid=not args.no_grid, hints=hints))
        print()
    if args.out:
        try:
            write_outputs(sched, rep, Path(args.out), hints)
        except OSError as exc:
            error(f"cannot write to --out directory {args.out}: {exc}")
            code = EXIT_ERROR
    return code
