"""Generate the torch-pp test fixtures from torch's own schedule classes.

    .venv/bin/python scripts/gen_torch_pp_fixtures.py [--out tests/fixtures/torch_pp]

Needs torch (``pip install -e '.[torch]'``); no process group and no GPU: the
schedule objects are built with stand-in stages
(:func:`syncproof.importers.torch_bridge.build_schedule`), which is all the
constructors need to compute ``pipeline_order`` and its lowering.

Written, for every schedule class at 2 and 4 ranks and several microbatch
counts (combinations the class refuses are skipped and listed):

* ``<class>-p<P>-m<M>.csv``: the lowered action lists, exactly as
  ``schedule._dump_csv(path)`` writes them for the runtime classes; the
  single-stage classes (GPipe, 1F1B) have no lowered list of their own, so
  theirs is lowered here with torch's passes, as ``_PipelineScheduleRuntime``
  would do after ``_load_csv``;
* a few compute-only orders (``*.compute.csv``, ``_dump_csv(path,
  "compute_only")``), among them 1F1B's, which torch's own validator rejects;
* the lowered lists torch produces with ``defer_pp_recv=True``
  (``*-defer.csv``);
* ``manifest.json``: class, sizes, placement and torch's own verdicts
  (``_validate_schedule``, ``_simulate_comms_compute``) for every file.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "torch_pp"
MICROBATCHES = {2: (2, 3, 4, 8), 4: (4, 6, 8, 12)}
DEFER = (("Interleaved1F1B", 2, 4), ("Interleaved1F1B", 4, 8), ("LoopedBFS", 4, 8),
         ("InterleavedZeroBubble", 2, 4), ("InterleavedZeroBubble", 4, 8), ("ZBVZeroBubble", 2, 4),
         ("ZBVZeroBubble", 4, 8), ("DualPipeV", 2, 4), ("DualPipeV", 4, 8))
COMPUTE_ONLY = (("Interleaved1F1B", 2, 4), ("ZBVZeroBubble", 2, 4), ("GPipe", 2, 4), ("1F1B", 2, 4))


def slug(cls: str) -> str:
    return cls.lower()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    from syncproof.importers import torch_bridge as tb
    from syncproof.importers.torch_pp import format_order, infer_placement, read_order

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.csv"):
        old.unlink()
    entries: list[dict[str, Any]] = []
    skipped: list[str] = []

    def record(path: Path, cls: str, p: int, m: int, kind: str, notes: tuple[str, ...] = ()) -> None:
        f = read_order(path)
        pl = infer_placement(f.order)
        entry: dict[str, Any] = {"file": path.name, "class": cls, "ranks": p, "microbatches": m,
                                 "placement": pl.style, "kind": kind}
        if kind != "compute":
            entry["torch"] = tb.torch_checks(f.order, pl, m)
        if notes:
            entry["notes"] = list(notes)
        entries.append(entry)

    for cls in tb.SCHEDULE_CLASSES:
        for p, mbs in MICROBATCHES.items():
            for m in mbs:
                try:
                    sch = tb.build_schedule(cls, p, m)
                except (ValueError, RuntimeError) as exc:
                    skipped.append(f"{cls} P={p} M={m}: {exc}")
                    continue
                path = out / f"{slug(cls)}-p{p}-m{m}.csv"
                if cls in tb.SINGLE_STAGE:
                    order, _, _, notes = tb.schedule_actions(sch)
                    path.write_text(format_order(order), encoding="utf-8")
                else:
                    sch._dump_csv(str(path))  # the lowered list, as torch writes it
                    notes = ()
                record(path, cls, p, m, "lowered", notes)
    for cls, p, m in COMPUTE_ONLY:
        sch = tb.build_schedule(cls, p, m)
        path = out / f"{slug(cls)}-p{p}-m{m}.compute.csv"
        if cls in tb.SINGLE_STAGE:
            path.write_text(format_order(tb.order_from_torch(sch.pipeline_order)), encoding="utf-8")
        else:
            sch._dump_csv(str(path), "compute_only")
        record(path, cls, p, m, "compute")
    for cls, p, m in DEFER:
        sch = tb.build_schedule(cls, p, m, defer_pp_recv=True)
        path = out / f"{slug(cls)}-p{p}-m{m}-defer.csv"
        sch._dump_csv(str(path))
        record(path, cls, p, m, "defer")
    manifest = {
        "generated_by": "scripts/gen_torch_pp_fixtures.py",
        "torch": torch.__version__,
        "skipped": skipped,
        "files": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(entries)} files to {out} (torch {torch.__version__}); skipped {len(skipped)}:")
    for s in skipped:
        print(f"  {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
