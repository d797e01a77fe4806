"""CI's smoke benchmark: a 10^4-op schedule, checked and compared with the
reference lower bound in the same run.  Absolute times differ between
machines; the ratio measured side by side does not, so this fails only when
the ratio grows 3x over the committed one (benchmarks/results/smoke.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "benchmarks" / "results" / "smoke.json"


def test_smoke_benchmark_ratio_has_not_regressed() -> None:
    pytest.importorskip("numpy")
    from syncproof.bench.run import run_one

    # the better of two runs: a shared machine adds noise to both sides
    row = min((run_one(10_000, "decode") for _ in range(2)), key=lambda r: r["ratio_to_reference"])
    assert row["verdict"] == "proved"
    assert row["reference_agrees"] is True, "the reference and the engine answered a reachability query differently"
    baseline = json.loads(BASELINE.read_text(encoding="utf-8"))
    limit = 3 * baseline["ratio_to_reference"]
    print(f"ratio {row['ratio_to_reference']} (committed {baseline['ratio_to_reference']}, limit {limit:.2f});"
          f" check {row['seconds']} s, reference {row['reference_seconds']} s")
    assert row["ratio_to_reference"] <= limit, (
        f"syncproof's decision time over the reference grew from {baseline['ratio_to_reference']} to"
        f" {row['ratio_to_reference']} (> 3x): a performance regression"
    )


def test_fault_gives_a_replayed_counterexample_at_scale() -> None:
    from syncproof.bench.generators import schedule_of_size
    from syncproof.engine import check_schedule

    s = schedule_of_size(5_000, fault=True)
    rep = check_schedule(s, properties=["dataflow"])
    df = rep.result("dataflow")
    assert df.verdict.value == "violated"
    assert df.counterexample is not None and df.counterexample.replayed
