"""The reference lower bound: the same reachability queries answered with
vectorised numpy, with no schedule semantics around them.

It topologically sorts the precedence graph level by level (Kahn's algorithm
on whole frontiers), computes vector clocks over the stream chains with
segment maxima, and answers every query ``(x, y)`` ("does event x precede
event y in every execution?") with one gather.  It is what the decision part
of a checker has to do at least; syncproof's time over this is its overhead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReferenceResult:
    seconds: float
    answers: np.ndarray
    levels: int


def reference_reach(n_points: int, u: np.ndarray, v: np.ndarray, chain: np.ndarray, pos: np.ndarray,
                    n_chains: int, qx: np.ndarray, qy: np.ndarray) -> ReferenceResult:
    t0 = time.perf_counter()
    # CSR of predecessors and successors
    order_v = np.argsort(v, kind="stable")
    pred_src = u[order_v]
    pred_ptr = np.zeros(n_points + 1, dtype=np.int64)
    np.add.at(pred_ptr, v + 1, 1)
    pred_ptr = np.cumsum(pred_ptr)
    order_u = np.argsort(u, kind="stable")
    succ_dst = v[order_u]
    succ_ptr = np.zeros(n_points + 1, dtype=np.int64)
    np.add.at(succ_ptr, u + 1, 1)
    succ_ptr = np.cumsum(succ_ptr)
    indeg = np.diff(pred_ptr).astype(np.int64)
    vc = np.full((n_points, max(1, n_chains)), -1, dtype=np.int32)
    own = chain >= 0
    frontier = np.flatnonzero(indeg == 0)
    levels = 0
    placed = 0
    while frontier.size:
        levels += 1
        placed += frontier.size
        # clocks of this level: max over predecessors, then the point itself
        starts, ends = pred_ptr[frontier], pred_ptr[frontier + 1]
        has = ends > starts
        if has.any():
            f = frontier[has]
            s_, e_ = starts[has], ends[has]
            lens = e_ - s_
            idx = np.repeat(s_ - np.concatenate(([0], np.cumsum(lens)[:-1])), lens) + np.arange(lens.sum())
            rows = vc[pred_src[idx]]
            seg = np.concatenate(([0], np.cumsum(lens)[:-1]))
            vc[f] = np.maximum.reduceat(rows, seg, axis=0)
        mine = frontier[own[frontier]]
        vc[mine, chain[mine]] = np.maximum(vc[mine, chain[mine]], pos[mine])
        # next frontier
        s2, e2 = succ_ptr[frontier], succ_ptr[frontier + 1]
        lens2 = e2 - s2
        if lens2.sum() == 0:
            break
        idx2 = np.repeat(s2 - np.concatenate(([0], np.cumsum(lens2)[:-1])), lens2) + np.arange(lens2.sum())
        targets = succ_dst[idx2]
        np.subtract.at(indeg, targets, 1)
        cand = np.unique(targets)
        frontier = cand[indeg[cand] == 0]
    if placed != n_points:
        answers = np.zeros(len(qx), dtype=bool)
    else:
        answers = (qx != qy) & (vc[qy, chain[qx]] >= pos[qx])
    return ReferenceResult(time.perf_counter() - t0, answers, levels)
