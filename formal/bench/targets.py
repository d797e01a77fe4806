"""The scale targets of the project (issue 5) and how a benchmark run meets them.

Each target is judged only on runs that measure it: a 10^4-op run says
nothing about the 10^6-op target, and says so.  The figures are the
benchmark's own (``run_one``); nothing here times anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MILLION = 900_000  # "a 1,000,000-op schedule": the generator lands within a few percent


@dataclass(frozen=True)
class TargetResult:
    name: str
    goal: str
    measured: str  # the figure, or why it was not measured
    met: bool | None  # None: not measured by these runs

    @property
    def status(self) -> str:
        return "not measured" if self.met is None else "met" if self.met else "NOT met"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "goal": self.goal, "measured": self.measured, "met": self.met}


def _big(rows: list[dict[str, Any]], *, fault: bool, engine: str = "hybrid") -> dict[str, Any] | None:
    big = [r for r in rows if r["ops"] >= MILLION and r["fault"] == fault and r["engine"] == engine]
    return max(big, key=lambda r: r["ops"]) if big else None


def judge(rows: list[dict[str, Any]], growth: float | None) -> list[TargetResult]:
    out: list[TargetResult] = []
    clean = _big(rows, fault=False)
    if clean is None:
        out.append(TargetResult("1e6-clean-time", "10^6 ops, all properties, proved clean: <= 30 s", "run --ops"
                                " 1000000 to measure", None))
        out.append(TargetResult("1e6-clean-memory", "10^6 ops: peak <= 4 GiB", "run --ops 1000000 to measure", None))
    else:
        ok = clean["verdict"] == "proved"
        out.append(TargetResult(
            "1e6-clean-time", "10^6 ops, all properties, proved clean: <= 30 s",
            f"{clean['ops']:,} ops: check {clean['seconds']:.1f} s (+ {clean['load_seconds']:.1f} s to build and"
            f" load), verdict {clean['verdict']}", ok and clean["seconds"] <= 30))
        out.append(TargetResult("1e6-clean-memory", "10^6 ops: peak <= 4 GiB",
                                f"{clean['peak_mb']:,.0f} MB", clean["peak_mb"] <= 4096))
    faulty = _big(rows, fault=True)
    if faulty is None:
        out.append(TargetResult("1e6-fault-time", "10^6 ops with one fault: counterexample, run and picture of its"
                                " cone, <= 30 s", "run --ops 1000000 --fault to measure", None))
    else:
        render = sum(p["seconds"] for p in faulty["phases"] if p["phase"] == "rendering")
        total = faulty["seconds"] + render
        found = faulty["verdict"].startswith("violated")
        out.append(TargetResult(
            "1e6-fault-time", "10^6 ops with one fault: counterexample, run and picture of its cone, <= 30 s",
            f"{faulty['ops']:,} ops: {total:.1f} s (check {faulty['seconds']:.1f} s, picture {render:.1f} s),"
            f" verdict {faulty['verdict']}", found and total <= 30))
    ratios = [(r["ops"], r["ratio_to_reference"]) for r in rows if r.get("ratio_to_reference") is not None]
    if ratios:
        worst = max(ratios, key=lambda x: x[1])
        out.append(TargetResult("ratio-to-reference", "decision part within 10x of the reference lower bound",
                                "worst " + f"{worst[1]}x at {worst[0]:,} ops", worst[1] <= 10))
    else:
        out.append(TargetResult("ratio-to-reference", "decision part within 10x of the reference lower bound",
                                "no clean hybrid run with the reference", None))
    z3 = [r for r in rows if r["engine"] == "z3" and not r["verdict"].startswith("unknown")]
    if z3:
        best = max(z3, key=lambda r: r["ops"])
        out.append(TargetResult("z3-alone", "--engine z3 alone: >= 200,000 ops in <= 60 s",
                                f"{best['ops']:,} ops in {best['seconds']:.1f} s",
                                best["ops"] >= 200_000 and best["seconds"] <= 60))
    else:
        out.append(TargetResult("z3-alone", "--engine z3 alone: >= 200,000 ops in <= 60 s",
                                "run --engine z3 to measure", None))
    if growth is None:
        out.append(TargetResult("growth", "cost growth close to linear in ops", "needs two sizes or more", None))
    else:
        out.append(TargetResult("growth", "cost growth close to linear in ops (exponent <= 1.2)",
                                f"check time ~ ops^{growth}", growth <= 1.2))
    return out


def table(results: list[TargetResult]) -> str:
    lines = ["targets:"]
    for t in results:
        lines.append(f"  [{t.status:>12}] {t.goal}: {t.measured}")
    return "\n".join(lines)
