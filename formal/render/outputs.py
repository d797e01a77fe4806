"""Files written by ``check --out DIR`` for one checked schedule.

* ``<name>.json``: the report (with the schedule embedded, so that
  ``syncproof render`` can draw it again without solving), and ``<name>.txt``;
* per counterexample, ``<name>.<property>.dot`` (Graphviz source),
  ``.svg`` and ``.png`` (the picture) and ``.trace.json`` (the run as a
  Chrome/Perfetto trace).

If no Graphviz is available (see ``picture.py``) the DOT and trace files are
still written and one note on standard error says why there is no picture.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from ..ir import Schedule
from ..result import Counterexample, Report, Verdict
from .dot import counterexample_dot
from .jsonout import report_json
from .perfetto import counterexample_trace
from .picture import FORMATS, PictureError, PictureUnavailable, render
from .text import report_text

_warned = False


def write_counterexample(schedule: Schedule, cex: Counterexample, base: Path, hint: str | None = None,
                         full: bool = False, under: str | None = None) -> list[Path]:
    """``base.dot``, ``base.svg``, ``base.png`` and ``base.trace.json`` for one
    counterexample (``base`` without suffix); returns the paths written."""
    global _warned
    dot = counterexample_dot(schedule, cex, hint=hint, full=full, under=under)
    paths = [base.with_name(base.name + ".dot")]
    paths[0].write_text(dot, encoding="utf-8")
    trace = base.with_name(base.name + ".trace.json")
    note = f"under the assignment {under}" + (f"; {hint}" if hint else "") if under else hint
    trace.write_text(json.dumps(counterexample_trace(schedule, cex, note)) + "\n", encoding="utf-8")
    paths.append(trace)
    for fmt in FORMATS:
        try:
            data = render(dot, fmt)
        except PictureUnavailable as exc:
            if not _warned:
                print(f"syncproof: note: {exc}; wrote the .dot files", file=sys.stderr)
                _warned = True
            break
        except PictureError as exc:
            print(f"syncproof: note: no picture of {base.name}: {exc}; wrote {paths[0].name}", file=sys.stderr)
            break
        pic = base.with_name(f"{base.name}.{fmt}")
        pic.write_bytes(data)
        paths.append(pic)
    return paths


_UNSAFE = re.compile(r"[^A-Za-z0-9._=+,\[\]-]")


def safe_stem(name: str) -> str:
    """A file name made from a schedule name that cannot leave the output
    directory: separators, ``..`` and every character outside a small safe
    set become ``_``; at most 120 characters; never empty or hidden."""
    stem = _UNSAFE.sub("_", name)[:120].lstrip(".") or "schedule"
    return stem.replace("..", "_")


def write_outputs(schedule: Schedule, report: Report, out_dir: Path) -> list[Path]:
    """Write the report (``<name>.json``, ``<name>.txt``) and the files of
    every counterexample; returns the paths."""
    from ..engine.repair import hint_for  # the report was just checked: the engine is loaded

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = safe_stem(schedule.name)
    js = out_dir / f"{stem}.json"
    js.write_text(json.dumps(report_json(schedule, report), indent=2) + "\n", encoding="utf-8")
    txt = out_dir / f"{stem}.txt"
    txt.write_text(report_text(schedule, report) + "\n", encoding="utf-8")
    paths = [js, txt]
    for r in report.results:
        if r.counterexample is None:
            continue
        sr = r.selection if r.selection is not None else schedule  # a choice schedule: the selected one
        hint = hint_for(sr, r, report) if r.verdict is Verdict.VIOLATED else None
        paths += write_counterexample(sr, r.counterexample, out_dir / f"{stem}.{r.property}",
                                      hint.line() if hint is not None else None, under=r.assignment or None)
    return paths
