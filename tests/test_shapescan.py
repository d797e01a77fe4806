"""The numpy screens of a compact file's tables (syncproof.ir.shapescan)
agree with the row-by-row checks they stand in for: a row the screen passes
gets, from ``_shape_fields``, fields and a verdict equal to what the fast
path uses; an access list's verdict equals ``accesses_are_fine``; a
region's equals ``region_fits``.  Rows are taken from the examples and
random schedules, then broken one column at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from strategies import schedules

from syncproof.ir import load
from syncproof.ir.columnar import EXT, NONE, ROW_KINDS, SHAPE_COLUMNS, Tables, _shape_fields, shape_of_row
from syncproof.ir.compact import compact_bytes, compact_document
from syncproof.ir.ops import Meta, Op
from syncproof.ir.region import FULL_HI
from syncproof.ir.schedule import Schedule, op_features
from syncproof.ir.shapescan import all_of_lists, region_fit_mask, screen_shapes
from syncproof.ir.validate import accesses_are_fine, region_fits

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
WIDTH = len(SHAPE_COLUMNS)


def _tables(s: Schedule) -> Tables | None:
    doc = compact_document(compact_bytes(s), "t.spz")
    for lst in doc["ranks"].values():
        return lst.tables  # type: ignore[no-any-return]
    return None


def _decoded(s: Schedule) -> tuple[Tables, list[Any], list[Any], dict[str, Any]] | None:
    t = _tables(s)
    if t is None:
        return None
    buffers = {b.name: b for b in s.buffers}
    blist = list(buffers.values())
    regions = t._regions(blist)
    accs = t._access_lists(regions, region_fit_mask(t.sec["reg_buf"], t.sec["reg_bounds"], blist))
    return t, accs, t._metas(), buffers


def _mutants(rows: np.ndarray, n_str: int, n_acc: int, n_meta: int) -> np.ndarray:
    """Each row as it is, and with one column at a time set to a value that breaks a check or may."""
    values = [-2, -1, 0, 1, 2, n_str - 1, n_str, n_acc - 3, n_acc - 2, n_acc - 1, n_acc, n_meta - 2, n_meta - 1,
              n_meta, NONE, FULL_HI, -FULL_HI,
              FULL_HI - 1, 7, len(ROW_KINDS), EXT]
    out = [rows]
    for c in range(WIDTH):
        for v in values:
            m = rows.copy()
            m[:, c] = v
            out.append(m)
    return np.concatenate(out)


def _agree(s: Schedule) -> tuple[int, int]:
    """Compares the screen with ``_shape_fields`` on ``s``'s rows and their
    mutants; returns how many rows the screen passed and how many rows there were."""
    got = _decoded(s)
    if got is None:
        return 0, 0
    t, accs, metas, _ = got
    strings = [*t.strings, "", "0", "host", "zz"]  # strings that checks single out, at fresh numbers
    # faulty rows at the ends of the tables (the mutants point there), and one validate refuses
    some = next((a[0] for a in accs if a[0]), ())
    accs = [*accs, (some, None, None, False, False), (some, "bad reads", None, False, True),
            (some, None, "bad writes", True, False)]
    metas = [*metas, (metas[0][0] if metas else Meta(), None, False), (Meta(), "bad metadata", False)]
    rows = t.sec["shape"].reshape(-1, WIDTH).astype(np.int64)
    rows = rows[rows[:, 0] != EXT]
    if len(rows) == 0:
        return 0, 0
    group_map, ranks = dict(s.groups), list(s.ranks)
    mutants = _mutants(rows, len(strings), len(accs), len(metas))
    ok, fine = screen_shapes(mutants, ROW_KINDS, strings, accs, metas, group_map, ranks)
    for j in np.flatnonzero(ok).tolist():
        row = mutants[j].tolist()
        scalar = _shape_fields(row, strings, len(strings), accs, metas, group_map, set(ranks), 2)
        assert not isinstance(scalar, str), f"the screen passed row {row}, which _shape_fields refuses: {scalar}"
        fields, s_fine, members, peer = scalar
        assert bool(fine[j]) is s_fine, f"row {row}: screen says fine={bool(fine[j])}, _shape_fields {s_fine}"
        assert (fields, members, peer) == shape_of_row(row, strings, accs, metas, group_map)
        probe = object.__new__(Op)
        probe.__dict__.update(fields)
        assert op_features(probe) <= {"host"}, f"row {row} shows {op_features(probe)}"
        assert ("host" in op_features(probe)) is (fields["stream"] == "host")
    # the unchanged rows that _shape_fields passes, but for a p2p mode, all pass the screen
    for j in range(len(rows)):
        row = rows[j].tolist()
        scalar = _shape_fields(row, strings, len(strings), accs, metas, group_map, set(ranks), 2)
        if not isinstance(scalar, str) and row[SHAPE_COLUMNS.index("p2p")] == -1:
            assert ok[j], f"the screen sends the good row {row} the slow way"
    return int(ok.sum()), len(mutants)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_screen_agrees_with_shape_fields_on_the_examples(path: Path) -> None:
    passed, total = _agree(load(path))
    assert passed < total or total == 0  # the mutants are not all passed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules(max_ranks=3, max_ops=10))
def test_screen_agrees_with_shape_fields_on_random_schedules(s: Schedule) -> None:
    _agree(s)


def test_the_screen_refuses_what_each_check_refuses() -> None:
    """Breaking a good row in each way _shape_fields names gives a row the screen sends the slow way."""
    s = load(ROOT / "examples" / "tp-allreduce-wait.json")
    got = _decoded(s)
    assert got is not None
    t, accs, metas, _ = got
    rows = t.sec["shape"].reshape(-1, WIDTH).astype(np.int64)
    strings = t.strings
    group_map, ranks = dict(s.groups), list(s.ranks)
    ok, _ = screen_shapes(rows, ROW_KINDS, strings, accs, metas, group_map, ranks)
    assert ok.all()
    broken = 0
    for c in range(WIDTH):
        for v in (-3, NONE, len(strings) + 5, FULL_HI):
            m = rows.copy()
            m[:, c] = v
            ok_m, _ = screen_shapes(m, ROW_KINDS, strings, accs, metas, group_map, ranks)
            for j in range(len(m)):
                if isinstance(_shape_fields(m[j].tolist(), strings, len(strings), accs, metas, group_map,
                                            set(ranks), 2), str):
                    assert not ok_m[j]
                    broken += 1
    assert broken > 50


def test_access_list_verdicts_equal_accesses_are_fine() -> None:
    """Per access list, the verdict from the region screen equals validate's,
    with regions moved outside their extents."""
    checked = 0
    for path in EXAMPLES[:30]:
        s = load(path)
        t = _tables(s)
        if t is None or len(t.sec["reg_bounds"]) == 0:
            continue
        buffers = {b.name: b for b in s.buffers}
        blist = list(buffers.values())
        for shift in (0, 10**6, -(10**6)):
            t.sec = {k: np.array(v) for k, v in t.sec.items()}
            bounds = t.sec["reg_bounds"]
            finite = (bounds > -FULL_HI) & (bounds < FULL_HI)
            bounds[finite] += shift
            if not ((bounds[0::2] < bounds[1::2]).all()):
                continue
            regions = t._regions(blist)
            mask = region_fit_mask(t.sec["reg_buf"], t.sec["reg_bounds"], blist)
            assert mask.tolist() == [region_fits(buffers, r) for r in regions]
            for accs, r_fault, w_fault, r_fine, w_fine in t._access_lists(regions, mask):
                if r_fault is None:
                    assert r_fine is accesses_are_fine(buffers, accs, False)
                    checked += 1
                if w_fault is None:
                    assert w_fine is accesses_are_fine(buffers, accs, True)
            bounds[finite] -= shift
    assert checked > 100


def test_all_of_lists() -> None:
    offsets = np.asarray([0, 0, 2, 3, 6])
    member = np.asarray([True, False, True, True, True, True])
    assert all_of_lists(offsets, member).tolist() == [True, False, True, True]
