"""Files written by ``check --out DIR`` for one checked schedule.

* ``<name>.json``: the report (the schedule embedded up to
  ``jsonout.EMBED_MAX_OPS`` ops; above, referenced by path and sha256, and
  each counterexample's run stored for its cone: see ``jsonout``), and
  ``<name>.txt``;
* ``<name>.schedule.json``: a large model-built schedule (no file of its
  own), written once so that the report can reference it;
* per counterexample, ``<name>.<property>.dot`` (Graphviz source),
  ``.svg`` and ``.png`` (the picture) and ``.trace.json`` (the run as a
  Chrome/Perfetto trace: a window around the culprits, or every op with
  ``full_trace``).

Repair hints are computed once by the command (``engine.repair.report_hints``)
and handed in; nothing here computes one.  If no Graphviz is available (see
``picture.py``) the DOT and trace files are still written and one note on
standard error says why there is no picture.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from ..gcpause import gc_paused
from ..ir import Schedule, save
from ..result import Counterexample, Hint, Report
from . import jsonout
from .cone import stored_ops
from .dot import counterexample_dot
from .jsonout import file_ref, report_json
from .perfetto import counterexample_trace, trace_window
from .picture import FORMATS, PictureError, PictureUnavailable, render
from .text import report_text

_warned = False


def write_counterexample(schedule: Schedule, cex: Counterexample, base: Path, hint: str | None = None,
                         full: bool = False, under: str | None = None,
                         trace_ops: Collection[int] | None = None) -> list[Path]:
    """``base.dot``, ``base.svg``, ``base.png`` and ``base.trace.json`` for one
    counterexample (``base`` without suffix); returns the paths written.
    ``trace_ops``: the ops the trace shows (default every op)."""
    global _warned
    dot = counterexample_dot(schedule, cex, hint=hint, full=full, under=under)
    paths = [base.with_name(base.name + ".dot")]
    paths[0].write_text(dot, encoding="utf-8")
    trace = base.with_name(base.name + ".trace.json")
    note = f"under the assignment {under}" + (f"; {hint}" if hint else "") if under else hint
    trace.write_text(json.dumps(counterexample_trace(schedule, cex, note, trace_ops)) + "\n", encoding="utf-8")
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


def schedule_reference(schedule: Schedule, out_dir: Path, stem: str, ref: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``schedule_ref`` of a large report written to ``out_dir``: the
    schedule file (with its path relative to the report), or, for a schedule
    with no file (``ref`` names a model, or nothing), ``<stem>.schedule.json``
    written there once."""
    if ref is not None and "path" in ref:
        out = dict(ref)
    else:
        path = out_dir / f"{stem}.schedule.json"
        save(schedule, path)
        out = {**(dict(ref) if ref else {}), **file_ref(path)}
    with contextlib.suppress(ValueError):  # ValueError: another drive (Windows)
        out["relative"] = os.path.relpath(out["path"], os.path.abspath(out_dir))
    return out


def write_outputs(schedule: Schedule, report: Report, out_dir: Path, hints: Mapping[str, Hint] | None = None, *,
                  ref: Mapping[str, Any] | None = None, full_trace: bool = False,
                  embed_max_ops: int | None = None) -> list[Path]:
    """Write the report (``<name>.json``, ``<name>.txt``) and the files of
    every counterexample; returns the paths.  ``hints``: each violated
    property's repair hint; ``ref``: where the schedule is (``jsonout.file_ref``
    or ``model_ref``), for a schedule above ``embed_max_ops`` ops;
    ``full_trace``: traces of every op and runs stored whole."""
    with gc_paused():  # millions of small objects, no cycles: collections would cost more than the work
        return _write_outputs(schedule, report, out_dir, hints, ref, full_trace, embed_max_ops)


def _write_outputs(schedule: Schedule, report: Report, out_dir: Path, hints: Mapping[str, Hint] | None,
                   ref: Mapping[str, Any] | None, full_trace: bool, embed_max_ops: int | None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = safe_stem(schedule.name)
    limit = jsonout.EMBED_MAX_OPS if embed_max_ops is None else embed_max_ops
    small = len(schedule.ops) <= limit
    paths: list[Path] = []
    if not small:
        ref = schedule_reference(schedule, out_dir, stem, ref)
        beside = out_dir / f"{stem}.schedule.json"
        if ref["path"] == os.path.abspath(beside):
            paths.append(beside)
    cones: dict[str, set[int]] = {}
    for r in report.results:
        cex = r.counterexample
        if cex is not None and not small and not full_trace:
            cones[r.property] = stored_ops(r.selection if r.selection is not None else schedule, cex)
    js = out_dir / f"{stem}.json"
    doc = report_json(schedule, report, hints=hints, ref=ref, cones=cones, embed_max_ops=limit,
                      full_runs=full_trace)
    with js.open("w", encoding="utf-8") as f:
        json.dump(doc, f, indent=None if not small else 2)
        f.write("\n")
    del doc
    txt = out_dir / f"{stem}.txt"
    txt.write_text(report_text(schedule, report, hints=hints) + "\n", encoding="utf-8")
    paths = [js, txt, *paths]
    for r in report.results:
        if r.counterexample is None:
            continue
        sr = r.selection if r.selection is not None else schedule  # a choice schedule: the selected one
        hint = hints.get(r.property) if hints else None
        window = None if full_trace else cones.get(r.property) or trace_window(sr, r.counterexample)
        paths += write_counterexample(sr, r.counterexample, out_dir / f"{stem}.{r.property}",
                                      hint.line() if hint is not None else None, under=r.assignment or None,
                                      trace_ops=window)
    return paths
