"""The litmus catalogue (tests/litmus/): tiny schedules, each tied to the
documented runtime rule it encodes, with the verdict of every property under
runtime model v2 (docs/semantics.md).

Every litmus is checked by both engines and by the operational executor; the
verdicts must equal the catalogue's, and every counterexample of a violated
property must have replayed.  Deadlock violations also state which kinds of
blocking edge their cycle needs: switching that kind off (``"p2p": "eager"``
drops message edges, ``"progress": "concurrent"`` drops progress edges) must
make the deadlock go away, and switching off a kind it does not need must
not.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from syncproof.engine.check import check_schedule
from syncproof.executor import explore
from syncproof.ir import Schedule, load
from syncproof.result import PROPERTIES, Report

LITMUS_DIR = Path(__file__).parent / "litmus"
CATALOGUE: dict[str, Any] = json.loads((LITMUS_DIR / "catalogue.json").read_text(encoding="utf-8"))
ENTRIES: dict[str, dict[str, Any]] = CATALOGUE["litmus"]
SOURCES: dict[str, dict[str, Any]] = CATALOGUE["sources"]
NAMES = sorted(ENTRIES)
ENGINES = ("hybrid", "z3")
VERDICTS = ("proved", "violated", "unknown")
BLOCKING_KINDS = ("message", "progress")
DEADLOCKS = [n for n in NAMES if ENTRIES[n]["expected"]["deadlock"] == "violated"]


def _marks(name: str) -> list[pytest.MarkDecorator]:
    """A litmus whose rule is normative (DESIGN.md) but outside the current
    contract carries ``pending``; its verdict tests are expected to fail
    until the rule lands (not strict: passing early is fine)."""
    pending = ENTRIES[name].get("pending")
    return [pytest.mark.xfail(reason=pending, strict=False)] if pending else []


def _params(names: list[str], *extra: tuple[str, ...], verdicts: bool = True) -> list[Any]:
    out = []
    for n in names:
        marks = _marks(n) if verdicts else []
        if extra:
            for e in extra[0]:
                out.append(pytest.param(n, e, id=f"{n}-{e}", marks=marks))
        else:
            out.append(pytest.param(n, id=n, marks=marks))
    return out


@cache
def schedule(name: str) -> Schedule:
    return load(LITMUS_DIR / ENTRIES[name]["file"])


def _with(s: Schedule, drop: tuple[str, ...]) -> Schedule:
    """``s`` with the named kinds of blocking edge switched off."""
    changes: dict[str, str] = {}
    if "message" in drop:
        changes["p2p"] = "eager"
    if "progress" in drop:
        changes["progress"] = "concurrent"
    return dataclasses.replace(s, **changes) if changes else s


@cache
def report(name: str, engine: str, drop: tuple[str, ...] = ()) -> Report:
    return check_schedule(_with(schedule(name), drop), engine=engine)


def engine_verdicts(rep: Report) -> dict[str, str]:
    return {r.property: str(r.verdict) for r in rep.results}


@cache
def executor_verdicts(name: str, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The executor's verdict per property: ``violated`` maps a property to
    True (violated), False (proved) or None (not decided: unknown)."""
    res = explore(_with(schedule(name), drop))
    violated = res.violated
    out = {}
    for p in PROPERTIES:
        v = violated.get(p)
        out[p] = "violated" if v is True else "proved" if v is False else "unknown"
    return out


def _diff(got: dict[str, str], want: dict[str, str]) -> str:
    return ", ".join(f"{p}: got {got.get(p)}, want {want[p]}" for p in PROPERTIES if got.get(p) != want[p])


# ------------------------------------------------------------------ the catalogue itself
def test_catalogue_is_large_enough() -> None:
    assert len(ENTRIES) >= 78


# runtime model v2 part 2 (issue 12): the host, host syncs, re-recorded events, the allocator
HOST_RULES = ("H1", "H2", "H3", "H4", "H5")


@pytest.mark.parametrize("rule", HOST_RULES)
def test_every_host_rule_has_its_litmus(rule: str) -> None:
    """Each part-2 rule is pinned by a litmus that proves a schedule, and
    (except H5, which only removes edges) by one that shows the bug without
    the sync it provides."""
    mine = [n for n in NAMES if rule in ENTRIES[n]["semantics"]]
    assert any(all(v == "proved" for v in ENTRIES[n]["expected"].values()) for n in mine), rule
    if rule != "H5":
        assert any("violated" in ENTRIES[n]["expected"].values() for n in mine), rule


def test_no_litmus_is_pending_any_more() -> None:
    """The batch-wide-op phase rule landed with issue 12."""
    assert [n for n in NAMES if ENTRIES[n].get("pending")] == []


def test_every_litmus_file_is_in_the_catalogue() -> None:
    files = {p.name for p in LITMUS_DIR.glob("*.json")} - {"catalogue.json"}
    listed = {e["file"] for e in ENTRIES.values()}
    assert files - listed == set(), "litmus files missing from catalogue.json"
    assert listed - files == set(), "catalogue entries without a file"
    for name, e in ENTRIES.items():
        assert e["file"] == f"{name}.json"


def test_every_source_is_cited_with_its_document() -> None:
    for key, src in SOURCES.items():
        assert src.get("document"), key
        assert src.get("section"), key
        assert src.get("quote") or src.get("note"), f"{key}: give the sentence, or say why there is none"
    used = {s for e in ENTRIES.values() for s in e["sources"]}
    assert used <= set(SOURCES)
    assert set(SOURCES) <= used, f"unused sources: {sorted(set(SOURCES) - used)}"


@pytest.mark.parametrize("name", NAMES)
def test_entry_is_complete(name: str) -> None:
    e = ENTRIES[name]
    assert e["rule"].strip(), "every litmus says the rule it encodes"
    assert e["sources"], "every litmus cites a source"
    for s in e["sources"]:
        assert s in SOURCES, f"unknown source {s!r}"
    assert any(SOURCES[s].get("quote") for s in e["sources"]) or e.get("note") or any(
        SOURCES[s].get("note") for s in e["sources"]), "a documented sentence, or a note saying why there is none"
    assert set(e["expected"]) == set(PROPERTIES)
    assert set(e["expected"].values()) <= set(VERDICTS)
    if e["expected"]["deadlock"] == "violated":
        needs = e["deadlock_needs"]
        assert set(needs) <= set(BLOCKING_KINDS)
        assert e["cycle_needs_blocking"] is bool(needs)
    else:
        assert "deadlock_needs" not in e and "cycle_needs_blocking" not in e
    if e["expected"]["matching"] != "proved":
        assert all(e["expected"][p] == "unknown" for p in PROPERTIES if p != "matching"), \
            "without matching nothing else is decided"


@pytest.mark.parametrize("name", NAMES)
def test_litmus_is_tiny_and_loads(name: str) -> None:
    doc = json.loads((LITMUS_DIR / ENTRIES[name]["file"]).read_text(encoding="utf-8"))
    want_version = 1 if "v1" in ENTRIES[name]["semantics"] else 2
    assert doc["syncproof"] == want_version
    s = schedule(name)
    assert s.name == name
    assert 2 <= len(s.ranks) <= 3
    # the allocator litmus need a tensor's whole lifetime (alloc, use, mark, free, reuse)
    assert 2 <= len(s.ops) <= (10 if "H4" in ENTRIES[name]["semantics"] else 8)


# ------------------------------------------------------------------ verdicts
@pytest.mark.parametrize(("name", "engine"), _params(NAMES, ENGINES))
def test_engine_verdicts(name: str, engine: str) -> None:
    want = ENTRIES[name]["expected"]
    got = engine_verdicts(report(name, engine))
    assert got == want, f"{name} ({engine}): {_diff(got, want)}"


@pytest.mark.parametrize(("name", "engine"), _params(NAMES, ENGINES, verdicts=False))
def test_engine_counterexamples_replay(name: str, engine: str) -> None:
    rep = report(name, engine)
    for r in rep.results:
        if str(r.verdict) != "violated":
            continue
        cex = r.counterexample
        assert cex is not None, f"{r.property} is violated without a counterexample"
        assert cex.replayed, f"{r.property}: the counterexample did not replay ({cex.replay_note})"
        for text in ENTRIES[name].get("mentions", {}).get(r.property, ()):
            assert text in cex.sentence, f"{r.property}: the sentence should name {text!r}: {cex.sentence}"


@pytest.mark.parametrize("name", _params(NAMES))
def test_executor_verdicts(name: str) -> None:
    want = ENTRIES[name]["expected"]
    got = executor_verdicts(name)
    assert got == want, f"{name} (executor): {_diff(got, want)}"


# ------------------------------------------------------------------ which blocking edges a deadlock needs
CHECKERS = ENGINES + ("executor",)


def _deadlock(name: str, checker: str, drop: tuple[str, ...]) -> str:
    if checker == "executor":
        return executor_verdicts(name, drop)["deadlock"]
    return engine_verdicts(report(name, checker, drop))["deadlock"]


@pytest.mark.parametrize(("name", "checker"), _params(DEADLOCKS, CHECKERS))
def test_deadlock_needs_exactly_its_blocking_edges(name: str, checker: str) -> None:
    needs = set(ENTRIES[name]["deadlock_needs"])
    for drop in (("message",), ("progress",), BLOCKING_KINDS):
        want = "proved" if needs & set(drop) else "violated"
        got = _deadlock(name, checker, drop)
        assert got == want, (f"{name} ({checker}) with {' and '.join(drop)} edges switched off: deadlock {got},"
                             f" want {want} (the cycle needs {sorted(needs) or 'no blocking edge'})")


def test_semantics_page_names_every_litmus_and_source() -> None:
    """docs/semantics.md ties every rule to its litmus and its source key."""
    text = (Path(__file__).parent.parent / "docs" / "semantics.md").read_text(encoding="utf-8")
    assert [n for n in NAMES if f"`{n}`" not in text] == []
    assert [k for k in SOURCES if f"`{k}`" not in text] == []
    for rule in HOST_RULES:
        assert f"### Rule {rule}" in text, rule
