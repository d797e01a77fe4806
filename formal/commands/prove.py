"""``syncproof prove``: run the proof obligations (``proofs/*.toml``) and print
a summary table; non-zero exit on any regression or unknown."""

from __future__ import annotations

import argparse
import fnmatch
import json
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ..proofs import ERROR, OK, UNKNOWN, XFAIL, Obligation, Outcome, discover, exit_code, load, run

EXIT_TEXT = """\
exit codes:
  0  every obligation gave its expected verdict (known failures marked xfail included)
  1  a regression: a verdict differs from the expectation (or an xfail obligation passes)
  2  a proof file is malformed (the message names the file and the proof)
  3  no regression, but some verdict is unknown (a solver limit was hit)"""


def register(sub: Any) -> None:
    c = sub.add_parser(
        "prove", help="run the proof obligations (proofs/*.toml) and summarise",
        description="Run every proof obligation found in PATH (files, or directories searched for *.toml;"
        " default: proofs/) and print one row per obligation: what it checks, the expected and the actual"
        " verdict, and the time. Parametric obligations (all sizes at once) are marked as such.",
        epilog=EXIT_TEXT, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("paths", nargs="*", metavar="PATH", default=["proofs"])
    c.add_argument("-k", dest="pattern", metavar="GLOB",
                   help="only obligations whose id (file.toml::name) or target matches this glob, e.g. '*tp8*'")
    c.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="run N obligations in parallel")
    c.add_argument("--list", action="store_true", help="list the obligations without running them")
    c.add_argument("--format", default="text", choices=["text", "json"])
    c.set_defaults(func=run_cmd)


def _select(paths: list[str], pattern: str | None) -> list[Obligation]:
    obs: list[Obligation] = []
    for f in discover(paths):
        obs += load(f)
    if pattern:
        pat = pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"
        obs = [o for o in obs if fnmatch.fnmatch(o.id, pat) or fnmatch.fnmatch(o.target, pat)]
    return obs


def _row(o: Outcome, width: int) -> str:
    ob = o.obligation
    kind = "parametric" if ob.parametric else f"{o.ops} ops" if o.ops is not None else ""
    mark = {OK: "ok", XFAIL: "xfail"}.get(o.status, o.status.upper())
    return f"{ob.id:<{width}} {kind:>10}  {ob.expect_text:<20} {o.got:<32} {o.seconds:7.2f}s  {mark}"


def run_cmd(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        from ..errors import UsageError

        raise UsageError("--jobs must be at least 1")
    obs = _select(args.paths, args.pattern)
    if args.list:
        for ob in obs:
            print(f"{ob.id:<48} {ob.kind:<10} {ob.target:<48} expect {ob.expect_text}")
        print(f"{len(obs)} obligations")
        return 0
    width = max([len(o.id) for o in obs] + [10])
    t0 = time.perf_counter()
    outcomes: list[Outcome] = []
    if args.format == "text":
        print(f"{'obligation':<{width}} {'kind':>10}  {'expected':<20} {'got':<32} {'time':>8}  status")
    if args.jobs > 1 and len(obs) > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for o in pool.map(run, obs):
                outcomes.append(o)
                if args.format == "text":
                    print(_row(o, width), flush=True)
    else:
        for ob in obs:
            o = run(ob)
            outcomes.append(o)
            if args.format == "text":
                print(_row(o, width), flush=True)
    total = time.perf_counter() - t0
    if args.format == "json":
        print(json.dumps({"outcomes": [o.to_json() for o in outcomes], "seconds": round(total, 3),
                          "exit": exit_code(outcomes)}, indent=2))
        return exit_code(outcomes)
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
    return exit_code(outcomes)
