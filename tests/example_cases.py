"""The bundled examples, shared by the tests: which are broken on purpose (and
the property each breaks), and their checked reports, computed once."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from syncproof import Report, Schedule, load
from syncproof.engine import check_schedule

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
BROKEN_PROPERTY = {
    "tp-allreduce-nowait": "dataflow",
    "pp-sendrecv-deadlock": "deadlock",
    "collective-order-mismatch": "matching",
    "kv-decode-step-early": "dataflow",
    "sp-prefill-early-attention": "dataflow",
}
BROKEN = tuple(sorted(BROKEN_PROPERTY))


@cache
def checked(name: str) -> tuple[Schedule, Report]:
    s = load(ROOT / "examples" / f"{name}.json")
    return s, check_schedule(s)
