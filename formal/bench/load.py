"""``syncproof bench --load``: what a user waits for when checking a saved
schedule file, JSON beside compact, at given sizes (issue 16).

Per size, side by side in one run: the JSON file's size and save time; the
bare parse of the JSON text by the standard library (plain, and with the
duplicate-key hook the loader needs) and by orjson when installed (for
comparison only: the loader does not use it); syncproof's load of the JSON
file and of the compact file, each followed by the check of what it loaded;
the compact file's size; and end to end, ``syncproof check FILE`` for each
form: wall time and peak RSS (VmHWM, that process alone).  Every
measurement but the saves runs in a fresh process.
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


# Each measurement runs in a fresh process: in the benchmark's own process,
# which has just built and freed a big schedule, the same load takes up to
# twice as long (its heap is fragmented, its memory handed back and faulted in again).
_CHILD_PARSE = """
import json, sys, time
from syncproof.gcpause import gc_paused
from syncproof.ir.jsonread import no_duplicate_keys
data = open(sys.argv[1], "rb").read()
out = {}
with gc_paused():  # as the loader parses
    t = time.perf_counter(); doc = json.loads(data); out["parse_stdlib_seconds"] = time.perf_counter() - t; del doc
    t = time.perf_counter(); doc = json.loads(data, object_pairs_hook=no_duplicate_keys)
    out["parse_stdlib_hook_seconds"] = time.perf_counter() - t; del doc
    try:
        import orjson
    except ImportError:
        out["parse_orjson_seconds"] = None
    else:
        t = time.perf_counter(); doc = orjson.loads(data); out["parse_orjson_seconds"] = time.perf_counter() - t
print(json.dumps(out))
"""
_CHILD_LOAD = """
import json, sys, time
t = time.perf_counter()
from syncproof.ir import load
s = load(sys.argv[1])
out = {"load_seconds": time.perf_counter() - t}
from syncproof.engine import check_schedule
from syncproof.gcpause import gc_paused
with gc_paused():
    t = time.perf_counter(); rep = check_schedule(s); out["check_seconds"] = time.perf_counter() - t
out["violated"] = any(r.counterexample is not None for r in rep.results)
print(json.dumps(out))
"""


def _child(script: str, *args: str) -> dict[str, Any]:
    p = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({p.returncode}): {p.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def run_load_one(n_ops: int, fault: bool = False, mix: str = "decode", end_to_end: bool = True) -> dict[str, Any]:
    from ..ir import save
    from ..ir.compact import compact_bytes
    from .generators import schedule_of_size

    row: dict[str, Any] = {"ops": 0, "fault": fault, "mix": mix}
    clock = time.perf_counter
    with tempfile.TemporaryDirectory(prefix="syncproof-bench-load-") as tmp:
        js, spz = Path(tmp) / "big.json", Path(tmp) / "big.spz"
        with gc_paused():
            sched = schedule_of_size(n_ops, mix, fault)
            row["ops"] = len(sched.ops)
            t = clock()
            save(sched, js)
            row["save_json_seconds"] = clock() - t
            t = clock()
            data = compact_bytes(sched)
            row["save_compact_seconds"] = clock() - t
            del sched
        spz.write_bytes(data)
        row["json_mb"] = round(js.stat().st_size / 1e6, 1)
        row["compact_mb"] = round(len(data) / 1e6, 1)
        del data
        gc.collect()
        row.update(_child(_CHILD_PARSE, str(js)))
        got = _child(_CHILD_LOAD, str(js))
        row["load_json_seconds"], row["check_seconds"] = got["load_seconds"], got["check_seconds"]
        got = _child(_CHILD_LOAD, str(spz))
        row["load_compact_seconds"], row["check_compact_seconds"] = got["load_seconds"], got["check_seconds"]
        row["verdict"] = "violated" if got["violated"] else "no counterexample"
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
