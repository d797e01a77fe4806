#!/usr/bin/env python3
"""Compare syncproof's culprit analysis with torch's own Flight Recorder
analyzer (``torchfrtrace``, module ``torch.distributed.flight_recorder.fr_trace``)
on the fixtures in tests/fixtures/fr/, and write the table into
docs/flight-recorder.md (between the ``compare:begin``/``compare:end`` markers).

    .venv/bin/python scripts/compare_frtrace.py            # rewrite the table
    .venv/bin/python scripts/compare_frtrace.py --print    # print it only

torchfrtrace needs torch (the `torch` extra); syncproof does not.  Each
torchfrtrace run has a time limit.  Columns:

* torchfrtrace on the dumps as gloo writes them (empty ``pg_config``);
* torchfrtrace on a copy of the dumps whose ``pg_config`` is filled from the
  profiler traces' group table (the only change), with
  ``--allow-incomplete-ranks`` when a dump is missing;
* syncproof on the dumps alone, and on the dumps plus the profiler traces.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "fr"
DOC = ROOT / "docs" / "flight-recorder.md"
BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"
TIMEOUT_S = 180



def _truth_text(truth: dict[str, Any] | None) -> str:
    if truth is None:
        return "none (clean run)"
    op = truth["op"] + (f" to rank {truth['peer']}" if "peer" in truth else f" on {truth.get('group', '?')}")
    return f"rank {truth['rank']}: {op} [{truth['label']}]"


def run_frtrace(dump_dir: Path, extra: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """torchfrtrace's output: (status, problems).  status is "ok", "crash: ..." or "timeout"."""
    cmd = [sys.executable, "-m", "torch.distributed.flight_recorder.fr_trace", str(dump_dir), *extra]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "timeout", []
    text = proc.stdout + "\n" + proc.stderr
    if proc.returncode != 0:
        last = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return f"crash: {last[-1].strip()[:80] if last else proc.returncode}", []
    problems: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for line in text.splitlines():
        m = re.match(r"(Not all ranks joining collective|Collective sequence number: (\d+) has errors|"
                     r"Input/output mismatch in the collective sequence number)", line)
        if m:
            seq = re.search(r"(\d+)", line)
            cur = {"what": "missing ranks" if line.startswith("Not all") else
                   "size" if line.startswith("Input/output") else "mismatch",
                   "seq": int(seq.group(1)) if seq else None}
            problems.append(cur)
            continue
        if cur is None:
            continue
        if line.startswith("group info:"):
            cur["group"] = line.split(":", 1)[1].strip().split(":")[-1]
        elif line.startswith("collective:"):
            cur["op"] = line.split(":", 1)[1].strip()
        elif line.startswith("missing ranks:"):
            cur["ranks"] = sorted(int(x) for x in re.findall(r"\d+", line.split(":", 1)[1]))
        elif line.startswith("error msg:"):
            cur["ranks"] = sorted({int(x) for x in re.findall(r"Culprit rank (\d+)", line)})
            kinds = re.findall(r"Error type: (\w+)", line)
            if kinds:
                cur["what"] = kinds[0].lower().replace("_", " ")
    return "ok", problems


def frtrace_text(status: str, problems: list[dict[str, Any]]) -> str:
    if status != "ok":
        return status
    if not problems:
        return "no mismatch reported"
    parts = []
    for p in problems[:3]:
        who = ", ".join(map(str, p.get("ranks", []))) or "?"
        parts.append(f"{p.get('group', '?')} #{p.get('seq')} {p.get('op', '?')}: {p['what']} (rank {who})")
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(parts) + more


def patched_copy(scenario: Path, into: Path) -> bool:
    """Copy the pickles with pg_config taken from the profiler traces.  False if there is nothing to patch from."""
    from syncproof.importers.flight_recorder import safe_loads

    any_patch = False
    for dump in sorted((scenario / "pickle").iterdir()):
        doc = safe_loads(dump.read_bytes())
        rank = int(re.search(r"(\d+)$", dump.name).group(1))  # type: ignore[union-attr]
        trace = scenario / "profiler" / f"rank_{rank}.trace.json"
        if trace.exists():
            info = json.loads(trace.read_text()).get("distributedInfo", {})
            doc["pg_config"] = {g["pg_name"]: {"name": g["pg_name"], "desc": g["pg_desc"], "ranks": str(g["ranks"])}
                                for g in info.get("pg_config", [])}
            any_patch = True
        (into / dump.name).write_bytes(pickle.dumps(doc, protocol=2))
    return any_patch


def syncproof_text(scenario: Path, with_profiler: bool) -> tuple[str, Any]:
    from syncproof.errors import UserError
    from syncproof.importers.culprit import analyse
    from syncproof.importers.flight_recorder import load_flight_recorder

    try:
        job = load_flight_recorder([scenario / "pickle"], [scenario / "profiler"] if with_profiler else [])
    except UserError as exc:
        return f"error: {exc}", None
    a = analyse(job)
    if a.verdict == "clean":
        return "clean", a
    if a.decided:
        return "; ".join(f"rank {c.rank}: {c.op}" + (f" to rank {c.peer}" if c.peer is not None else
                                                     f" #{c.seq} on {c.group}" if c.group else "")
                         + (f" [{c.label}]" if c.label else "") + f" ({c.what})" for c in a.culprits), a
    return "cannot decide; candidates " + ", ".join(map(str, a.candidates)), a


def mark(truth: dict[str, Any] | None, analysis: Any) -> str:
    if analysis is None:
        return "✗"
    if truth is None:
        return "✓" if analysis.verdict == "clean" else "✗"
    if analysis.verdict == "clean":
        return "✗"
    if analysis.decided:
        ok = any(c.rank == truth["rank"] and c.op == truth["op"] for c in analysis.culprits)
        return "✓" if ok else "✗"
    return "~" if truth["rank"] in analysis.candidates else "✗"


def frtrace_mark(truth: dict[str, Any] | None, status: str, problems: list[dict[str, Any]]) -> str:
    if status != "ok":
        return "✗"
    if truth is None:
        return "✓" if not problems else "✗"
    if not problems:
        return "✗"
    first = problems[0].get("ranks", [])
    return "✓" if first == [truth["rank"]] else "~" if any(truth["rank"] in p.get("ranks", []) for p in problems) \
        else "✗"


def table() -> str:
    rows = ["| fault | ground truth | torchfrtrace (gloo dumps as written) | torchfrtrace (pg_config from the"
            " profiler) | syncproof (dumps only) | syncproof (dumps + profiler) |",
            "|---|---|---|---|---|---|"]
    for truth_file in sorted(FIXTURES.glob("*/truth.json")):
        scenario = truth_file.parent
        truth_doc = json.loads(truth_file.read_text())
        truth = truth_doc.get("culprit")
        st_raw, pr_raw = run_frtrace(scenario / "pickle", [])
        with tempfile.TemporaryDirectory() as tmp:
            if patched_copy(scenario, Path(tmp)):
                missing = len(list((scenario / "pickle").iterdir())) < truth_doc["world"]
                st_pat, pr_pat = run_frtrace(Path(tmp), ["--allow-incomplete-ranks"] if missing else [])
            else:
                st_pat, pr_pat = "no profiler traces", []
        s_fr, a_fr = syncproof_text(scenario, False)
        s_all, a_all = syncproof_text(scenario, True)
        cells = [
            f"`{scenario.name}`: {truth_doc['description']}",
            _truth_text(truth),
            f"{frtrace_mark(truth, st_raw, pr_raw)} {frtrace_text(st_raw, pr_raw)}",
            f"{frtrace_mark(truth, st_pat, pr_pat)} {frtrace_text(st_pat, pr_pat)}",
            f"{mark(truth, a_fr)} {s_fr}",
            f"{mark(truth, a_all)} {s_all}",
        ]
        rows.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        print(f"{scenario.name}: done", file=sys.stderr, flush=True)
    rows.append("")
    rows.append("✓ names the ground-truth culprit rank (syncproof: and op) first; ~ cannot decide, or names it"
                " only among others; ✗ wrong, nothing, or a crash.")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--print", action="store_true", help="print the table instead of writing the doc")
    args = ap.parse_args(argv)
    text = table()
    if args.print:
        print(text)
        return 0
    doc = DOC.read_text()
    if BEGIN not in doc or END not in doc:
        print(f"{DOC}: markers {BEGIN} / {END} not found", file=sys.stderr)
        return 2
    head, rest = doc.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    print(f"wrote the table into {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
