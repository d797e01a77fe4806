"""``syncproof bench --load``: what a user waits for when checking a saved
schedule file, JSON beside compact, at given sizes (issue 16).

Per size, side by side in one run: the JSON file's size and save time; the
bare parse of the JSON text by the standard library (plain, and with the
duplicate-key hook the loader needs) and by orjson when installed (for
comparison only: the loader does not use it); syncproof's load of the JSON
file and of the compact file; the compact file's size; the check of the
loaded schedule; and end to end, ``syncproof check FILE`` in a fresh
process for each form: wall time and peak RSS (VmHWM, that process
alone).
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..gcpause import gc_paused


def _orjson_seconds(text: bytes) -> float | None:
    """orjson's bare parse of the text, for comparison; None where it is not installed."""
    try:
        import orjson
    except ImportError:
        return None
    t = time.perf_counter()
    doc = orjson.loads(text)
    took = time.perf_counter() - t
    del doc
    return took


# The child runs `syncproof check PATH` through the CLI's main and reports its own
# peak RSS from /proc (VmHWM: this process image's high-water mark).  Its
# rusage would not do: the peak RSS a process reports includes that of the
# process it was forked from (Linux keeps the maximum across exec), here the
# benchmark holding a big schedule.
_CHILD = """
import sys
from syncproof.cli import main
rc = main(["check", sys.argv[1], "--no-grid", "--format", "json"])
try:
    with open("/proc/self/status", encoding="ascii") as f:
        hwm = next((line.split()[1] for line in f if line.startswith("VmHWM:")), "")
except OSError:
    hwm = ""
with open(sys.argv[2], "w", encoding="ascii") as f:
    f.write(hwm)
sys.exit(rc)
"""


def _end_to_end(path: Path) -> dict[str, Any]:
    """``syncproof check PATH`` in a fresh process: exit code, wall seconds
    (interpreter start and exit included), peak RSS in MB (None where /proc is missing)."""
    hwm = path.with_suffix(".hwm")
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(hwm)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - t
    kb = hwm.read_text(encoding="ascii").strip() if hwm.exists() else ""
    return {"exit": p.returncode, "seconds": round(wall, 2), "peak_mb": round(int(kb) / 1024, 1) if kb else None}


def run_load_one(n_ops: int, fault: bool = False, mix: str = "decode", end_to_end: bool = True) -> dict[str, Any]:
    from ..engine import check_schedule
    from ..ir import load, save
    from ..ir.compact import compact_bytes
    from ..ir.jsonread import no_duplicate_keys
    from .generators import schedule_of_size

    row: dict[str, Any] = {"ops": 0, "fault": fault, "mix": mix}
    clock = time.perf_counter
    with tempfile.TemporaryDirectory(prefix="syncproof-bench-load-") as tmp:
        js, spz = Path(tmp) / "big.json", Path(tmp) / "big.spz"
        sched = schedule_of_size(n_ops, mix, fault)
        row["ops"] = len(sched.ops)
        t = clock()
        save(sched, js)
        row["save_json_seconds"] = clock() - t
        row["json_mb"] = round(js.stat().st_size / 1e6, 1)
        t = clock()
        data = compact_bytes(sched)
        row["save_compact_seconds"] = clock() - t
        spz.write_bytes(data)
        row["compact_mb"] = round(len(data) / 1e6, 1)
        del sched, data
        gc.collect()
        text = js.read_bytes()
        with gc_paused():  # the bare parsers, as the loader runs them (the collector paused)
            t = clock()
            doc = json.loads(text)
            row["parse_stdlib_seconds"] = clock() - t
            del doc
            t = clock()
            doc = json.loads(text, object_pairs_hook=no_duplicate_keys)
            row["parse_stdlib_hook_seconds"] = clock() - t
            del doc
            row["parse_orjson_seconds"] = _orjson_seconds(text)
        del text
        gc.collect()
        t = clock()
        loaded = load(js)
        row["load_json_seconds"] = clock() - t
        del loaded
        gc.collect()
        t = clock()
        loaded = load(spz)
        row["load_compact_seconds"] = clock() - t
        with gc_paused():
            t = clock()
            rep = check_schedule(loaded)
            row["check_seconds"] = clock() - t
        row["verdict"] = "violated" if any(r.counterexample is not None for r in rep.results) else "no counterexample"
        del loaded, rep
        gc.collect()
        if end_to_end:
            row["end_to_end_json"] = _end_to_end(js)
            row["end_to_end_compact"] = _end_to_end(spz)
    for k, v in list(row.items()):
        if isinstance(v, float):
            row[k] = round(v, 3)
    return row


COLUMNS = (("ops", "ops", "{:>9}"), ("json_mb", "JSON MB", "{:>8}"), ("parse_stdlib_hook_seconds", "stdlib s", "{:>8}"),
           ("parse_orjson_seconds", "orjson s", "{:>8}"), ("load_json_seconds", "load JSON s", "{:>11}"),
           ("compact_mb", "compact MB", "{:>10}"), ("load_compact_seconds", "load spz s", "{:>10}"),
           ("check_seconds", "check s", "{:>8}"))


def header() -> str:
    return " ".join(f"{{:>{len(fmt.format(''))}}}".format(title) for _, title, fmt in COLUMNS) + \
        f" {'e2e JSON s':>10} {'MB':>6} {'e2e spz s':>9} {'MB':>6}"


def line(row: dict[str, Any]) -> str:
    cells = [fmt.format("-" if row.get(k) is None else row[k]) for k, _, fmt in COLUMNS]
    for form in ("end_to_end_json", "end_to_end_compact"):
        e = row.get(form)
        cells.append(f"{e['seconds']:>10}" if e else f"{'-':>10}")
        cells.append(f"{e['peak_mb']:>6.0f}" if e and e["peak_mb"] is not None else f"{'-':>6}")
    return " ".join(cells)
