"""Screening the tables of a compact file (version 2) with numpy, all rows at
once, so that loading checks a million ops' worth of rows without a Python
call per check.

The screens are conservative: a row they pass surely passes every check the
row-by-row code (:func:`syncproof.ir.columnar._shape_fields` and the access
list checks) makes, and gets the same result from it.  A row they do not
pass goes through that code, whose messages and verdicts are the authority;
a test compares the two on rows that break each check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .ops import Access, Kind, Meta
from .region import FULL_HI, FULL_LO

if TYPE_CHECKING:
    import numpy as np

    from .schedule import Buffer

NONE = -(2**63)
_LIMIT = FULL_HI


def region_fit_mask(reg_buf: np.ndarray, bounds: np.ndarray, buffers: list[Buffer]) -> np.ndarray:
    """Per region: True if it lies inside its buffer's extents (what
    ``validate.region_fits`` says of it).  A region of the compact form has
    its buffer's axes, in their order, by construction: only the extents are
    left to check.  ``reg_buf`` and ``bounds`` are already checked for
    range and length."""
    import numpy as np

    n = len(reg_buf)
    if n == 0:
        return np.ones(0, dtype=bool)
    naxes = np.asarray([len(b.axes) for b in buffers], dtype=np.int64)
    ext_flat = np.asarray([-1 if e is None else e for b in buffers for _, e in b.axes] or [0], dtype=np.int64)
    buf_start = np.concatenate(([0], np.cumsum(naxes)[:-1])).astype(np.int64)
    rb = reg_buf.astype(np.int64)
    per = naxes[rb]  # pairs per region
    n_pairs = int(per.sum())
    if n_pairs == 0:
        return np.ones(n, dtype=bool)
    region_of_pair = np.repeat(np.arange(n), per)
    pair_start = np.concatenate(([0], np.cumsum(per)[:-1]))
    axis_pos = np.arange(n_pairs) - pair_start[region_of_pair]
    ext = ext_flat[buf_start[rb[region_of_pair]] + axis_pos]
    lo, hi = bounds[0::2], bounds[1::2]
    full = (lo == FULL_LO) & (hi == FULL_HI)
    pair_ok = (ext < 0) | full | ((lo >= 0) & (hi <= ext))
    bad_per_region = np.bincount(region_of_pair[~pair_ok], minlength=n)
    out: np.ndarray = bad_per_region == 0
    return out


def all_of_lists(offsets: np.ndarray, member_ok: np.ndarray) -> np.ndarray:
    """Per list (``offsets`` delimits them in ``member_ok``): True if every member is True."""
    import numpy as np

    bad = np.concatenate(([0], np.cumsum(~member_ok, dtype=np.int64)))
    out: np.ndarray = (bad[offsets[1:]] - bad[offsets[:-1]]) == 0
    return out


# the kinds of the row form, by code (columnar.ROW_KINDS), as properties the checks use
def _kind_table(row_kinds: tuple[Kind, ...]) -> dict[str, np.ndarray]:
    import numpy as np

    def col(pred: object) -> np.ndarray:
        return np.asarray([bool(pred(k)) for k in row_kinds], dtype=bool)  # type: ignore[operator]

    return {
        "p2p": col(lambda k: k is Kind.SEND or k is Kind.RECV),
        "coll": col(lambda k: k.is_collective),
        "bcast": col(lambda k: k is Kind.BROADCAST),
        "event": col(lambda k: k is Kind.RECORD or k is Kind.WAIT),
        "unsized": col(lambda k: k in (Kind.COMPUTE, Kind.RECORD, Kind.WAIT)),
        "send": col(lambda k: k is Kind.SEND),
        "recv": col(lambda k: k is Kind.RECV),
        "no_access": col(lambda k: k in (Kind.RECORD, Kind.WAIT, Kind.BARRIER)),
    }


def screen_shapes(rows: np.ndarray, row_kinds: tuple[Kind, ...], strings: list[str],
                  accs: Sequence[tuple[tuple[Access, ...], str | None, str | None, bool, bool]],
                  metas: Sequence[tuple[Meta, str | None, bool]],
                  group_map: dict[str, tuple[int, ...]], ranks: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per shape row (``rows``: n x 14, the columns of ``SHAPE_COLUMNS``):
    whether it surely passes ``_shape_fields`` (``ok``), and for those rows
    the verdict ``fine`` that ``_shape_fields`` gives.  Rows with a p2p
    mode, and rows of kind EXT, are never ``ok``: they take the row-by-row
    path.  ``accs`` and ``metas`` are the access lists and metadata rows as
    ``Tables`` decodes them: per access list its accesses, its fault as
    reads and as writes, and validate's verdict as reads and as writes; per
    metadata row, the metadata, its fault and validate's verdict."""
    import numpy as np

    n = len(rows)
    if n == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    code, stream, name, channel, group, event, dtype, p2p = (rows[:, i] for i in range(8))
    peer, root, size, reads, writes, meta = (rows[:, i] for i in range(8, 14))
    acc_len = np.asarray([len(a[0]) for a in accs], dtype=np.int64)
    r_bad = np.asarray([a[1] is not None for a in accs], dtype=bool)
    w_bad = np.asarray([a[2] is not None for a in accs], dtype=bool)
    r_fine = np.asarray([a[3] for a in accs], dtype=bool)
    w_fine = np.asarray([a[4] for a in accs], dtype=bool)
    m_bad = np.asarray([m[1] is not None for m in metas], dtype=bool)
    m_fine = np.asarray([m[2] for m in metas], dtype=bool)
    n_str, n_acc, n_meta = len(strings), len(acc_len), len(m_bad)
    # a table of no rows gets one dummy row: every row naming it is already not ok
    acc_len, r_bad, w_bad, r_fine, w_fine, m_bad, m_fine = (
        a if len(a) else np.zeros(1, dtype=a.dtype) for a in (acc_len, r_bad, w_bad, r_fine, w_fine, m_bad, m_fine))
    ok = (code >= 0) & (code < len(row_kinds))
    for c in (stream, name, channel):
        ok &= (c >= 0) & (c < n_str)
    for c in (group, event, dtype):
        ok &= (c >= -1) & (c < n_str)
    ok &= p2p == -1
    ok &= (reads >= 0) & (reads < n_acc) & (writes >= 0) & (writes < n_acc) & (meta >= 0) & (meta < n_meta)
    # from here on, index only with numbers made safe (a row not ok has its numbers replaced by 0)
    safe_code = np.where(ok, code, 0)

    def at(c: np.ndarray, limit: int) -> np.ndarray:
        return np.where(ok & (c >= 0) & (c < max(limit, 1)), c, 0)

    empty = np.asarray([s == "" for s in strings] or [False], dtype=bool)
    zero = np.asarray([s == "0" for s in strings] or [False], dtype=bool)
    known = np.asarray([s in group_map for s in strings] or [False], dtype=bool)
    kt = {k: v[safe_code] for k, v in _kind_table(row_kinds).items()}
    s_stream, s_channel = at(stream, n_str), at(channel, n_str)
    s_group, s_event, s_dtype = at(group, n_str), at(event, n_str), at(dtype, n_str)
    s_reads, s_writes, s_meta = at(reads, n_acc), at(writes, n_acc), at(meta, n_meta)
    ok &= ~empty[s_stream]
    ok &= (peer != NONE) == kt["p2p"]
    ok &= np.where(kt["p2p"], ~empty[s_channel], zero[s_channel])
    ok &= (group != -1) == kt["coll"]
    ok &= (root != NONE) == kt["bcast"]
    ok &= (event != -1) == kt["event"]
    for c, s in ((event, s_event), (group, s_group), (dtype, s_dtype)):
        ok &= (c == -1) | ~empty[s]
    ok &= ~kt["unsized"] | ((size == NONE) & (dtype == -1))
    for c in (peer, root, size):
        ok &= (c == NONE) | ((c > -_LIMIT) & (c < _LIMIT))
    has_r, has_w = acc_len[s_reads] > 0, acc_len[s_writes] > 0
    ok &= ~(kt["send"] & has_w) & ~(kt["recv"] & has_r) & ~(kt["no_access"] & (has_r | has_w))
    ok &= ~(r_bad[s_reads] & has_r) & ~(w_bad[s_writes] & has_w)
    ok &= ~m_bad[s_meta]
    fine = ok & r_fine[s_reads] & w_fine[s_writes] & m_fine[s_meta] & ((size == NONE) | (size >= 0))
    fine &= ~kt["coll"] | known[s_group]
    fine &= ~kt["p2p"] | np.isin(peer, np.asarray(ranks, dtype=np.int64))
    for j in np.flatnonzero(fine & kt["bcast"]).tolist():  # the root must be a member of the group
        fine[j] = int(root[j]) in group_map[strings[int(group[j])]]
    return ok, fine
