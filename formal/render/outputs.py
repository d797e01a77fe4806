"""Files written by ``check --out DIR`` for one checked schedule."""

from __future__ import annotations

import json
from pathlib import Path

from ..ir import Schedule
from ..result import Report
from .jsonout import report_json
from .text import report_text


def write_outputs(schedule: Schedule, report: Report, out_dir: Path) -> list[Path]:
    """Write ``<name>.json`` (the report) and ``<name>.txt``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / f"{schedule.name}.json"
    js.write_text(json.dumps(report_json(schedule, report), indent=2) + "\n", encoding="utf-8")
    txt = out_dir / f"{schedule.name}.txt"
    txt.write_text(report_text(schedule, report) + "\n", encoding="utf-8")
    return [js, txt]
