"""SARIF 2.1.0 output (``check --format sarif``) for code-scanning UIs
(GitHub code scanning and other SARIF viewers).

The shape follows the OASIS SARIF 2.1.0 standard
(https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html):

* one ``run`` whose ``tool.driver`` is ``syncproof`` with one rule per
  property (``id``, ``shortDescription``, ``fullDescription``, ``help``);
* one ``result`` per violated property of each schedule, ``level: error``,
  located at the first culprit op in the schedule file:
  ``physicalLocation.artifactLocation.uri`` is the file's path relative to
  the working directory and ``region.startLine`` the line where that op's
  object starts in the file; the other culprit ops are ``relatedLocations``;
  the message is the counterexample's sentence and its repair hint, as the
  text report gives them;
* a property the checker could not decide (``unknown``) is no result: it is a
  ``note`` in ``invocations[0].toolExecutionNotifications``.

Line numbers come from :func:`op_lines`, a light scan of the file's text,
done only when SARIF is asked for.  No solver here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from .. import __version__
from ..errors import UserError
from ..inputs import read_text
from ..ir import Schedule
from ..result import Hint, PropertyResult, Report, Verdict

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

RULES: dict[str, tuple[str, str]] = {
    "matching": ("Every send has its recv and every collective all its members",
                 "Structural matching: every send has its recv, and every collective instance has all the"
                 " members of its group with the same kind, size and root. An unmatched op never completes."),
    "deadlock": ("No cycle of waits: every run can finish",
                 "No run of the schedule gets stuck: no cycle of waits through stream order, message blocking"
                 " (a send larger than the transport's buffer waits for its recv), communicator issue order or"
                 " kernel progress."),
    "dataflow": ("Every read sees the value it expects",
                 "In every run, each read of a region sees the value the schedule declares for it: its writer"
                 " has finished and nothing has overwritten it while the read runs."),
    "race": ("No two conflicting accesses can run at the same time",
             "In every run, two ops that touch the same region, at least one of them writing it, are ordered"
             " by the schedule's syncs (stream order, events, messages, collectives)."),
    "phase": ("Inference phase rules hold (decode step order, sampling)",
              "Decode steps start after the previous step finished and after the previous token is sampled;"
              " no sequence parallelism in decode; ops of one decode step agree on their token counts."),
}
HELP = ("Each result is a counterexample: one concrete run the engine found and replayed. The repair hint in"
        " the message is the smallest change syncproof proved (by re-checking) to remove it. See"
        " docs/rendering.md and docs/semantics.md.")

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def op_lines(text: str) -> dict[tuple[int, int], int]:
    """``(rank, index) -> line`` (1-based) where each op's object starts in
    a schedule file's text: a scan of its strings and brackets (no parse),
    under the top-level ``"ranks"`` object.  A file of another shape gives
    fewer entries, never an error."""
    out: dict[tuple[int, int], int] = {}
    depth = 0
    last_key: list[str | None] = [None] * 8
    in_ranks = False
    rank: int | None = None
    index = 0
    line, pos = 1, 0
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok[0] == '"':
            if depth < len(last_key):
                last_key[depth] = tok
            continue
        if tok in "[{":
            if depth == 1 and tok == "{" and last_key[1] == '"ranks"':
                in_ranks = True
            elif in_ranks and depth == 2 and tok == "[":
                key = (last_key[2] or '""')[1:-1]
                rank = int(key) if key.isascii() and key.isdigit() and len(key) < 10 else None
                index = 0
            elif in_ranks and depth == 3 and tok == "{" and rank is not None:
                start = m.start()
                line += text.count("\n", pos, start)
                pos = start
                out[(rank, index)] = line
                index += 1
            depth += 1
            if depth < len(last_key):
                last_key[depth] = None
        else:
            depth -= 1
            if depth == 1:
                in_ranks = False
            if depth == 2:
                rank = None
    return out


def _uri(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        rel = os.path.abspath(path)
    return quote(rel.replace(os.sep, "/"))


def _location(s: Schedule, o: int, uri: str | None, lines: Mapping[tuple[int, int], int],
              exact: bool) -> dict[str, Any]:
    op = s.ops[o]
    loc: dict[str, Any] = {"logicalLocations": [{"name": s.label(o), "kind": "member",
                                                 "fullyQualifiedName": f"{s.name}/{s.label(o)}"}]}
    if uri is not None:
        phys: dict[str, Any] = {"artifactLocation": {"uri": uri}}
        line = lines.get((op.rank, op.index)) if exact else None
        if line is not None:
            phys["region"] = {"startLine": line}
        loc["physicalLocation"] = phys
    return loc


def _message(r: PropertyResult, hint: Hint | None) -> str:
    cex = r.counterexample
    text = cex.sentence if cex is not None else r.reason
    if r.assignment:
        text = f"under {r.assignment}: {text}"
    if hint is not None:
        text += f"\n{hint.line()}"
    return text


def _results(path: str, s: Schedule, rep: Report, hints: Mapping[str, Hint],
             rule_index: Mapping[str, int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    results: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    uri = _uri(path) if path else None
    lines: dict[tuple[int, int], int] = {}
    if path and any(r.verdict is Verdict.VIOLATED for r in rep.results):
        try:
            lines = op_lines(read_text(path, "a schedule file (JSON, format v1)"))
        except UserError:
            lines = {}
    for r in rep.results:
        if r.verdict is Verdict.UNKNOWN:
            notes.append({"level": "note", "message": {"text": f"{rep.schedule}: {r.property} unknown: {r.reason}"},
                          "descriptor": {"id": r.property, "index": rule_index[r.property]}})
            continue
        if r.verdict is not Verdict.VIOLATED:
            continue
        cex = r.counterexample
        sr = r.selection if r.selection is not None else s
        exact = r.selection is None  # a choice schedule's selection has its own op numbering
        named = list(dict.fromkeys([*(cex.culprits if cex else ()),
                                    *((cex.observation.a,) if cex and cex.observation.a is not None else ())]))
        named = [o for o in named if 0 <= o < len(sr.ops)]
        item: dict[str, Any] = {
            "ruleId": r.property, "ruleIndex": rule_index[r.property], "level": "error",
            "message": {"text": _message(r, hints.get(r.property))},
        }
        if named:
            item["locations"] = [_location(sr, named[0], uri, lines, exact)]
            related = []
            for k, o in enumerate(named[1:], 1):
                loc = _location(sr, o, uri, lines, exact)
                loc["id"] = k
                loc["message"] = {"text": f"also a culprit: {sr.label(o)}"}
                related.append(loc)
            if related:
                item["relatedLocations"] = related
        elif uri is not None:
            item["locations"] = [{"physicalLocation": {"artifactLocation": {"uri": uri}}}]
        item["properties"] = {"schedule": rep.schedule, "replayed": bool(cex and cex.replayed)}
        results.append(item)
    return results, notes


def sarif_log(checked: Sequence[tuple[str, Schedule, Report, Mapping[str, Hint]]]) -> dict[str, Any]:
    """The SARIF log of the schedules checked, each ``(path, schedule,
    report, hints)`` (``path`` "" for a schedule with no file, such as a
    model's: its results carry logical locations only)."""
    rules = [{"id": p, "name": p.capitalize(), "shortDescription": {"text": short},
              "fullDescription": {"text": full}, "help": {"text": f"{full} {HELP}"},
              "defaultConfiguration": {"level": "error"}} for p, (short, full) in RULES.items()]
    rule_index = {p: i for i, p in enumerate(RULES)}
    results: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    artifacts: list[dict[str, Any]] = []
    for path, s, rep, hints in checked:
        got, note = _results(path, s, rep, hints, rule_index)
        results.extend(got)
        notes.extend(note)
        if path:
            artifacts.append({"location": {"uri": _uri(path)}})
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "syncproof", "version": __version__, "semanticVersion": __version__,
                            "rules": rules}},
        "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notes}],
        "results": results,
    }
    if artifacts:
        run["artifacts"] = artifacts
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}

