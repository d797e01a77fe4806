"""``syncproof prove``: run the proof obligations (``proofs/*.toml``) and print
a summary table; non-zero exit on any regression or unknown."""

from __future__ import annotations

import argparse
import fnmatch
import json
import time
from typing import Any

from ..errors import UsageError
from ..fanout import Failed, Fanout, add_fanout_options, check_fanout_options, open_fanout
from ..proofs import ERROR, OK, UNKNOWN, XFAIL, Obligation, Outcome, discover, exit_code, load, run
from .common import EXIT_INTERNAL

EXIT_TEXT = """\
exit codes:
  0  every obligation gave its expected verdict (known failures marked xfail included)
  1  a regression: a verdict differs from the expectation (or an xfail obligation passes)
  2  a proof file is malformed (the message names the file and the proof)
  3  no regression, but some verdict is unknown (a solver limit was hit)
  4  internal error in syncproof while running an obligation (a bug: please report it)"""


def register(sub: Any) -> None:
    c = sub.add_parser(
        "prove", help="run the proof obligations (proofs/*.toml) and summarise",
        description="Run every proof obligation found in PATH (files, or directories searched for *.toml;"
        " default: proofs/) and print one row per obligation: what it checks, the expected and the actual"
        " verdict, and the time. Parametric obligations (all sizes at once) are marked as such. --jobs N runs N"
        " obligations at a time in local processes, --ray ADDRESS on a Ray cluster (docs/fanout.md).",
        epilog=EXIT_TEXT, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("paths", nargs="*", metavar="PATH", default=["proofs"])
    c.add_argument("-k", dest="pattern", metavar="GLOB",
                   help="only obligations whose id (file.toml::name) or target matches this glob, e.g. '*tp8*'")
    add_fanout_options(c)
    c.add_argument("--list", action="store_true", help="list the obligations without running them")
    c.add_argument("--format", default="text", choices=["text", "json"])
    c.set_defaults(func=run_cmd)


def _select(paths: list[str], pattern: str | None) -> list[Obligation]:
    obs: list[Obligation] = []
    for f in discover(paths):
        obs += load(f)
    if pattern is not None:
        if not pattern.strip():
            raise UsageError("-k takes a glob or a word (e.g. -k '*tp8*'), got an empty one")
        pat = pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"
        obs = [o for o in obs if fnmatch.fnmatch(o.id, pat) or fnmatch.fnmatch(o.target, pat)]
    return obs


def run_one(ob: Obligation) -> Outcome:
    """One obligation's outcome (plain data; runs in a worker)."""
    return run(ob)


def _failed(ob: Obligation, failed: Failed) -> Outcome:
    what = "bad input" if failed.kind == "user" else "internal error (a bug in syncproof, please report it)"
    return Outcome(ob, ERROR, "error", f"{what}: {failed.message}")


def _row(o: Outcome, width: int) -> str:
    ob = o.obligation
    kind = "parametric" if ob.parametric else f"{o.ops} ops" if o.ops is not None else ""
    mark = {OK: "ok", XFAIL: "xfail"}.get(o.status, o.status.upper())
    return f"{ob.id:<{width}} {kind:>10}  {ob.expect_text:<20} {o.got:<32} {o.seconds:7.2f}s  {mark}"


def run_cmd(args: argparse.Namespace) -> int:
    check_fanout_options(args.jobs, args.ray)
    obs = _select(args.paths, args.pattern)
    if args.list:
        for ob in obs:
            print(f"{ob.id:<48} {ob.kind:<10} {ob.target:<48} expect {ob.expect_text}")
        print(f"{len(obs)} obligations")
        return 0
    if not obs:
        where = ", ".join(args.paths)
        raise UsageError(f"no proof obligation in {where} matches -k {args.pattern!r}" if args.pattern
                         else f"no proof obligation found in {where}")
    with open_fanout(args.jobs, args.ray) as fan:
        return _run(args, obs, fan)


def _run(args: argparse.Namespace, obs: list[Obligation], fan: Fanout) -> int:
    width = max([len(o.id) for o in obs] + [10])
    t0 = time.perf_counter()
    outcomes: list[Outcome] = []
    internal = False
    if args.format == "text":
        print(f"{'obligation':<{width}} {'kind':>10}  {'expected':<20} {'got':<32} {'time':>8}  status")
    for ob, got in zip(obs, fan.imap(run_one, obs), strict=True):
        if isinstance(got, Failed):
            internal = internal or got.kind != "user"
            got = _failed(ob, got)
        outcomes.append(got)
        if args.format == "text":
            print(_row(got, width), flush=True)
    total = time.perf_counter() - t0
    if args.format == "json":
        code = EXIT_INTERNAL if internal else exit_code(outcomes)
        print(json.dumps({"outcomes": [o.to_json() for o in outcomes], "seconds": round(total, 3),
                          "exit": code}, indent=2))
        return code
    problems = [o for o in outcomes if o.status not in (OK, XFAIL)]
    for o in problems:
        print(f"\n{o.obligation.id} ({o.obligation.target}): expected {o.obligation.expect_text}, got {o.got}")
        if o.detail:
            print(f"  {o.detail}")
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in (OK, XFAIL, UNKNOWN, ERROR)}
    failed = sum(1 for o in outcomes if o.failed and o.status != ERROR)
    param = sum(1 for o in outcomes if o.obligation.parametric)
    files = len({o.obligation.path for o in outcomes})
    print(f"\n{len(outcomes)} obligations in {files} files ({param} parametric): {counts[OK]} as expected,"
          f" {failed} regressions, {counts[UNKNOWN]} unknown, {counts[XFAIL]} known failures (xfail),"
          f" {counts[ERROR]} errors; {total:.1f} s")
    for o in outcomes:
        if o.status == XFAIL:
            print(f"  xfail {o.obligation.id}: {o.obligation.xfail}")
    return EXIT_INTERNAL if internal else exit_code(outcomes)
