"""Exact decisions on the precedence graph, for what pure precedence decides.

Every constraint of an execution is an edge ``u -> v`` (``t(u) < t(v)``, or
``<=`` into a collective's arrival point).  For two op events ``x != y``:

* ``x`` precedes ``y`` in every execution  iff  there is a path ``x ~> y``
  (every such path has a strict edge);
* otherwise some execution has ``t(y) < t(x)``: adding the edge ``y -> x``
  closes no cycle.

More generally, a set of extra edges can be realised by one execution iff the
graph with them stays acyclic; each obligation below reduces to such a test,
and a violation's run is a topological order of the graph with the witness
edges added.  Reachability uses vector clocks over the streams (each stream
is a chain of events), so a query is one comparison.  Reads with several
writers of the expected value need a real choice and are left to z3.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from functools import cached_property
from itertools import product

import numpy as np

from ..ir import Schedule
from ..semantics.memo import shared
from ..semantics.obligations import MetaOb, OrderOb, OverlapOb, PerRank, ReadOb, SampleOb
from ..semantics.precedence import Edge, Precedence, end, start

AnyOb = ReadOb | OverlapOb | OrderOb | SampleOb | MetaOb
Witness = list[tuple[int, int]]  # extra edges (u, v): t(u) < t(v)


class PrecedenceGraph:
    """The graph of ``prec`` (give it ``prec.data`` for dataflow, race and
    phase).  With ``clocks=False`` only acyclicity is decided (the graph of
    every edge class, for deadlock)."""

    def __init__(self, s: Schedule, prec: Precedence, clocks: bool = True) -> None:
        self.prec = prec
        n = prec.n_points
        u, v = prec.u, prec.v
        # chains: every (rank, stream) is a totally ordered chain of events
        # (the parts of a group call, unordered among themselves, on extra chains)
        chain = np.full(n, -1, dtype=np.int64)
        pos = np.zeros(n, dtype=np.int64)
        chains = prec.chains or tuple(
            np.fromiter([op.id for op in ops], dtype=np.int64, count=len(ops)) for ops in s.streams.values())
        for c, ids in enumerate(chains):
            k = 2 * np.arange(len(ids), dtype=np.int64)
            chain[2 * ids] = c
            chain[2 * ids + 1] = c
            pos[2 * ids] = k
            pos[2 * ids + 1] = k + 1
        self._chain_a, self._pos_a = chain, pos
        self.n_chains = len(chains)
        self.queries: list[tuple[int, int]] | None = None  # set to [] to record reach() calls
        # predecessors in CSR form, each point's edges in edge order
        pred_ptr = np.concatenate(([0], np.cumsum(np.bincount(v, minlength=n)))).astype(np.int64)
        pred_src = u[np.argsort(v, kind="stable")]
        npred = np.diff(pred_ptr)
        has = npred > 0
        first = np.where(has, pred_src[np.minimum(pred_ptr[:-1], max(0, len(pred_src) - 1))], 0)
        # A point whose only predecessor is the previous event of its own chain
        # *shares* it: it is placed right after it and knows what it knows.
        shares = (npred == 1) & (chain >= 0) & (chain[first] == chain)
        # The end of a collective member has two predecessors: its own start,
        # which precedes the instance's arrival point, and that point.  So it
        # knows exactly what the arrival point knows and shares its row.
        second = pred_src[np.minimum(pred_ptr[:-1] + 1, max(0, len(pred_src) - 1))]
        arrival = prec.instance_base
        coll_end = (npred == 2) & (first == np.arange(n) - 1) & (second >= arrival) & (chain >= 0)
        shares |= coll_end
        merge = has & ~shares
        rep = np.where(shares, np.where(coll_end, second, first), np.arange(n, dtype=np.int64))
        while True:  # follow the sharing back to a merge point or a source
            nxt = rep[rep]
            if np.array_equal(nxt, rep):
                break
            rep = nxt
        # Kahn's algorithm on merge points alone: a merge point is ready when
        # the point each predecessor shares with is placed.  The graph is
        # acyclic iff all merge points get placed (a cycle has a merge point).
        # (Numbered among the points of that graph alone, merge points and sources, in point order: the
        # same FIFO order, on lists a fraction of the points long.)
        into = merge[v]
        nodes = np.flatnonzero(merge | ~has)  # (a point with no predecessor shares nothing)
        number = np.zeros(n, dtype=np.int64)
        number[nodes] = np.arange(len(nodes), dtype=np.int64)
        cu, cv = number[rep[u[into]]], number[v[into]]
        c_ptr = np.concatenate(([0], np.cumsum(np.bincount(cu, minlength=len(nodes))))).tolist()
        c_dst = cv[np.argsort(cu, kind="stable")].tolist()
        indeg = np.bincount(cv, minlength=len(nodes)).tolist()
        placed, level_ends = _kahn_levels(number[np.flatnonzero(~has)].tolist(), c_ptr, c_dst, indeg)
        merge_order = nodes[np.array(placed, dtype=np.int64)]
        # the level of each placed point: no point is a predecessor of another of its level
        level = np.repeat(np.arange(len(level_ends)), np.diff(np.concatenate(([0], level_ends)))) \
            if placed else np.zeros(0, dtype=np.int64)
        is_merge = merge[merge_order]
        self._placed = (merge_order, level, rep)  # for ``orders_forward``
        merge_order, merge_level = merge_order[is_merge], level[is_merge]
        self.acyclic = len(merge_order) == int(merge.sum())
        self._pred = (pred_ptr, pred_src)
        self.rows = np.full((1, max(1, self.n_chains)), -1, dtype=np.int32)
        self._row_of_a = np.zeros(n, dtype=np.int64)
        if self.acyclic and clocks:
            self._clocks(pred_ptr, pred_src, merge, rep, merge_order, merge_level)

    # Each point's chain, position on it and row of ``rows``, as lists (made on first use: the engine's
    # own queries read the arrays; the redundancy pass reads these in its loops)
    @cached_property
    def chain(self) -> list[int]:
        return self._chain_a.tolist()  # type: ignore[no-any-return]

    @cached_property
    def pos(self) -> list[int]:
        return self._pos_a.tolist()  # type: ignore[no-any-return]

    @cached_property
    def row_of(self) -> list[int]:
        return self._row_of_a.tolist()  # type: ignore[no-any-return]

    @cached_property
    def _csr(self) -> tuple[list[int], list[int], list[int]]:
        """Successors in CSR form and in-degrees, as lists, for full topological sorts."""
        n, u, v = self.prec.n_points, self.prec.u, self.prec.v
        ptr = np.concatenate(([0], np.cumsum(np.bincount(u, minlength=n)))).tolist()
        return ptr, v[np.argsort(u, kind="stable")].tolist(), np.bincount(v, minlength=n).tolist()

    @cached_property
    def order(self) -> list[int]:
        """A topological order of every point (Kahn's, FIFO); short when cyclic."""
        ptr, dst, indeg = self._csr
        return _kahn(self.prec.n_points, ptr, dst, list(indeg))

    @property
    def succ(self) -> list[list[int]]:
        """Successor lists (made on request; the engine itself reads the CSR form)."""
        ptr, dst, _ = self._csr
        return [dst[ptr[p]:ptr[p + 1]] for p in range(self.prec.n_points)]

    def _clocks(self, pred_ptr: np.ndarray, pred_src: np.ndarray, merge: np.ndarray, rep: np.ndarray,
                merge_order: np.ndarray, merge_level: np.ndarray) -> None:
        """``rows[row_of[p]][c]``: the last position on chain c that reaches p; -1 if none.

        A point that shares its chain predecessor shares its row too: its
        knowledge of other chains is the same, and its own chain is compared
        by position in ``reach``.  So rows are made only at *merge points*,
        where a sync edge brings knowledge in, and the entry of a row for its
        own chain may be stale, which ``reach`` never reads; when rows are
        merged, each predecessor's own position is written explicitly.

        Merge points are visited in topological order, a level at a time (see
        ``_kahn_levels``: no merge point of a level precedes another of it,
        so their rows are independent).  A level of at least
        :data:`LEVEL_IN_BULK` merge points is made with a few numpy calls for
        all of them; a smaller one point by point."""
        n = self.prec.n_points
        row_id = np.zeros(n, dtype=np.int64)
        merge_ids = np.flatnonzero(merge)
        row_id[merge_ids] = np.arange(1, len(merge_ids) + 1)
        row_of = row_id[rep]  # sources (no predecessor) keep row 0: nothing reaches them
        rows = np.full((len(merge_ids) + 1, max(1, self.n_chains)), -1, dtype=np.int32)
        self.rows = rows
        self._row_of_a = row_of
        if not len(merge_order):
            return
        chain_a, pos_a = self._chain_a, self._pos_a
        # every (merge point, predecessor) pair, in merge order: the rows merged, and the positions a
        # predecessor on another chain writes (its own entry may be stale)
        lo = pred_ptr[merge_order]
        cnt = pred_ptr[merge_order + 1] - lo
        starts = np.cumsum(cnt) - cnt  # each merge point's first pair
        at = np.arange(int(cnt.sum()), dtype=np.int64) - np.repeat(starts - lo, cnt)
        q = pred_src[at]
        q_row = row_of[q]
        p_row = row_of[merge_order]
        cq = chain_a[q]
        width = rows.shape[1]
        fix_at = np.flatnonzero((cq >= 0) & (cq != np.repeat(chain_a[merge_order], cnt)))
        # one fix per (merge point, chain), the highest position (two predecessors may share a chain), in
        # merge order: (merge point's index in merge order) * width + chain, sorted
        point_of_pair = np.repeat(np.arange(len(merge_order), dtype=np.int64), cnt)
        keys, inverse = np.unique(point_of_pair[fix_at] * width + cq[fix_at], return_inverse=True)
        fix_pos = np.full(len(keys), -1, dtype=np.int32)
        np.maximum.at(fix_pos, inverse.reshape(-1), pos_a[q[fix_at]].astype(np.int32))
        fix_point, fix_chain = np.divmod(keys, width)
        fix_row = p_row[fix_point]
        # where each level starts among the merge points, the pairs and the fixes
        level_start = np.flatnonzero(np.diff(merge_level, prepend=-1)).tolist() + [len(merge_order)]
        pair_start = np.concatenate((starts, [len(q)])).tolist()
        fix_start = np.searchsorted(fix_point, np.arange(len(merge_order) + 1)).tolist()
        bulk = LEVEL_IN_BULK
        levels = list(zip(level_start, level_start[1:], strict=False))
        # what the point-by-point levels read, as lists (made only when some level is small)
        small = any(b - a < bulk for a, b in levels)
        starts_l, q_row_l, p_row_l = (starts.tolist(), q_row.tolist(), p_row.tolist()) if small else ([], [], [])
        # in bulk, the merge points of two predecessors (most: the chain's own and one sync edge) take one
        # maximum of two gathered row sets; the others (a collective's arrival) a reduceat over theirs
        two = cnt == 2
        two_at, many_at = np.flatnonzero(two), np.flatnonzero(~two)
        two_p, two_q0, two_q1 = p_row[two_at], q_row[starts[two_at]], q_row[starts[two_at] + 1]
        many_p = p_row[many_at]
        many_pairs = np.concatenate([np.arange(starts[i], starts[i] + cnt[i]) for i in many_at.tolist()]) \
            if len(many_at) else np.zeros(0, dtype=np.int64)
        many_q = q_row[many_pairs]
        many_off = np.cumsum(cnt[many_at]) - cnt[many_at]
        cuts = np.arange(len(merge_order) + 1)
        two_start = np.searchsorted(two_at, cuts).tolist()
        many_start = np.searchsorted(many_at, cuts).tolist()
        many_pair_start = np.concatenate((many_off, [len(many_q)])).tolist()
        maximum = np.maximum
        reduce_rows = np.maximum.reduceat
        flat = rows.reshape(-1)  # scalar access through a 1-D view is cheaper
        fix_row_l, fix_chain_l, fix_pos_l = (fix_row.tolist(), fix_chain.tolist(), fix_pos.tolist()) if small \
            else ([], [], [])
        for a, b in levels:
            fa, fb = fix_start[a], fix_start[b]
            if b - a >= bulk:
                ta, tb = two_start[a], two_start[b]
                if tb > ta:
                    rows[two_p[ta:tb]] = maximum(rows[two_q0[ta:tb]], rows[two_q1[ta:tb]])
                ma, mb = many_start[a], many_start[b]
                if mb > ma:
                    o = many_pair_start[ma]
                    rows[many_p[ma:mb]] = reduce_rows(rows[many_q[o:many_pair_start[mb]]], many_off[ma:mb] - o,
                                                      axis=0)
                if fb > fa:  # (each (row, chain) once: a plain store of the maximum is right)
                    r, c = fix_row[fa:fb], fix_chain[fa:fb]
                    rows[r, c] = maximum(rows[r, c], fix_pos[fa:fb])
                continue
            for i in range(a, b):
                row = rows[p_row_l[i]]
                s0, s1 = starts_l[i], pair_start[i + 1]
                if s1 - s0 == 2:  # the usual merge: the chain predecessor and one sync edge
                    maximum(rows[q_row_l[s0]], rows[q_row_l[s0 + 1]], out=row)
                else:
                    row[:] = rows[q_row_l[s0]]
                    for k in range(s0 + 1, s1):
                        maximum(row, rows[q_row_l[k]], out=row)
            for k in range(fa, fb):
                j = fix_row_l[k] * width + fix_chain_l[k]
                if flat[j] < fix_pos_l[k]:
                    flat[j] = fix_pos_l[k]

    def orders_forward(self, u: np.ndarray, v: np.ndarray) -> bool:
        """Do the edges ``u -> v`` all go forward in one topological order of
        this acyclic graph?  Then adding them leaves it acyclic (the order
        stays topological).  False says nothing: ask a graph with them.

        The order: a point's key is the Kahn level of the merge point (or
        source) whose knowledge it shares, then its position on its chain.
        Every edge goes up in it: an edge into a merge point from a level
        below (the merge point is placed after what its predecessors share),
        an edge to a point that shares its source from a lower position on
        the same chain, or, for a collective member's end, from the
        instance's arrival point (position 0, off the chains).  That is not
        taken on trust: the graph's own edges are tested too, so True always
        means a topological order of both edge sets was found."""
        if not self.acyclic:
            raise ValueError("orders_forward needs an acyclic graph")
        if not len(u):
            return True
        placed, level, rep = self._placed
        point_level = np.zeros(self.prec.n_points, dtype=np.int64)
        point_level[placed] = level
        span = int(self._pos_a.max(initial=0)) + 1
        key = point_level[rep] * span + self._pos_a
        return bool(np.all(key[u] < key[v]) and np.all(key[self.prec.u] < key[self.prec.v]))

    def reach(self, x: int, y: int) -> bool:
        """Does op event ``x`` precede op event ``y`` in every execution?"""
        if x == y:
            return False
        if self.queries is not None:
            self.queries.append((x, y))
        chain, pos = self._chain_a, self._pos_a
        cx = chain[x]
        if cx == chain[y]:
            return bool(pos[x] < pos[y])
        return bool(self.rows[self._row_of_a[y], cx] >= pos[x])

    def reach_many(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """``reach`` for many pairs of op events at once (not recorded in ``queries``)."""
        if not self.acyclic:
            raise ValueError("reachability is defined on an acyclic graph only")
        cx = self._chain_a[xs]
        px = self._pos_a[xs]
        same = cx == self._chain_a[ys]
        other = self.rows[self._row_of_a[ys], np.maximum(cx, 0)] >= px
        out: np.ndarray = (xs != ys) & np.where(same, px < self._pos_a[ys], other)
        return out

    def settled(self, obs: Sequence[AnyOb]) -> np.ndarray:
        """Which obligations one reachability query each proves, decided in
        bulk: a read with one writer of its value and nothing else, a race
        pair, an order between two single ops.  True means proved; False
        means "ask ``decide``" (which also builds the witness).  Obligations
        kept per class of identical ranks are decided from the class
        representative's queries, shifted, without making them."""
        idx, xs, ys = one_query_obligations(obs)
        out = np.zeros(len(obs), dtype=bool)
        if len(idx):
            np.logical_or.at(out, idx, self.reach_many(xs, ys))
        return out

    def run_order(self, extra: Witness) -> list[int] | None:
        """A topological order of the graph plus ``extra`` edges (None: cyclic)."""
        n = self.prec.n_points
        ptr, dst, indeg0 = self._csr
        indeg = list(indeg0)
        more: dict[int, list[int]] = {}
        for u, v in extra:
            more.setdefault(u, []).append(v)
            indeg[v] += 1
        order = _kahn(n, ptr, dst, indeg, more)
        return order if len(order) == n else None

    # ------------------------------------------------------------ decisions
    def decide(self, ob: AnyOb) -> tuple[str, Witness]:
        """("proved", []), ("violated", witness edges) or ("solver", []) when
        the obligation has a real choice the graph cannot settle alone."""
        r = self.reach
        if isinstance(ob, OrderOb):
            for a in ob.before:
                for b in ob.after:
                    if not r(end(a), start(b)):
                        return "violated", [(start(b), end(a))]
            return "proved", []
        if isinstance(ob, SampleOb):
            for b in ob.after:
                if not any(r(end(g), start(b)) for g in ob.samples):
                    return "violated", [(start(b), end(g)) for g in ob.samples]
            return "proved", []
        if isinstance(ob, OverlapOb):
            a, b = ob.a, ob.b
            # a's access lasts until every op of a_until ∪ {a} ended (likewise b):
            # they overlap iff start(a) < end(mb) and start(b) < end(ma) for some
            # ma, mb; each such pair is two edges that no path can contradict
            # unless a precedence already orders it (start < end of one op)
            for ma in ob.a_until or (a,):
                for mb in ob.b_until or (b,):
                    if not r(end(mb), start(a)) and not r(end(ma), start(b)):
                        extra = [(start(a), end(mb)), (start(b), end(ma))]
                        if (ma == a and mb == b) or self.realisable(extra):
                            return "violated", extra
            return "proved", []
        if isinstance(ob, MetaOb):
            return "violated", []
        return self._read(ob)

    def realisable(self, extra: Witness) -> bool:
        """Can one execution satisfy all the ``extra`` edges (between op
        events) at once?  Exactly when the small graph on their endpoints,
        with the extra edges and an edge wherever the schedule already orders
        two endpoints, has no cycle: a cycle of the whole graph plus the extra
        edges splits into extra edges and old paths between their endpoints."""
        nodes = sorted({x for e in extra for x in e})
        edges = list(extra)
        for x in nodes:
            for y in nodes:
                if x != y and self.reach(x, y):
                    edges.append((x, y))
        return not _has_cycle(nodes, edges)

    def _read_choices(self, ob: ReadOb) -> tuple[str, Witness]:
        """A stale read with several writers of the expected value: the value
        at the read's start is wrong iff every good write either ends after
        the read starts or is overwritten by a bad write before it (and, if
        the cell starts with the expected value, some bad write lands before
        the read).  Search the combinations of those options for one that a
        single execution realises; too many combinations go to z3."""
        sr = start(ob.read)
        options: list[list[Witness]] = []
        for g in ob.good:
            eg = end(g)
            options.append([[(sr, eg)]] + [[(eg, end(b)), (end(b), sr)] for b in ob.bad])
        if ob.init_good:
            if not ob.bad:
                return "proved", []
            options.append([[(end(b), sr)] for b in ob.bad])
        total = 1
        for opts in options:
            total *= len(opts)
        if total > MAX_CHOICES:
            return "solver", []
        for combo in product(*options):
            extra = [edge for part in combo for edge in part]
            if self.realisable(extra):
                return "violated", extra
        return "proved", []

    def _read(self, ob: ReadOb) -> tuple[str, Witness]:
        r = self.reach
        sr = start(ob.read)
        for b in ob.bad:  # torn: a bad write lands while the read runs (until its last reader ends)
            eb = end(b)
            for m in ob.until or (ob.read,):
                em = end(m)
                if not r(eb, sr) and not r(em, eb):
                    extra = [(sr, eb), (eb, em)]
                    if m == ob.read or self.realisable(extra):
                        return "violated", extra
        if len(ob.good) + (1 if ob.init_good else 0) > 1:
            return self._read_choices(ob)
        if ob.init_good:  # stale iff some bad write can land before the read
            for b in ob.bad:
                if not r(sr, end(b)):
                    return "violated", [(end(b), sr)]
            return "proved", []
        if not ob.good:
            return "violated", []  # nothing ever writes the expected value here
        g = end(ob.good[0])
        if not r(g, sr):
            return "violated", [(sr, g)]
        for b in ob.bad:  # overwritten between the good write and the read
            eb = end(b)
            if not r(eb, g) and not r(sr, eb):
                return "violated", [(g, eb), (eb, sr)]
        return "proved", []


MAX_CHOICES = 512


@shared
def graph_of(s: Schedule, prec: Precedence) -> PrecedenceGraph:
    """``PrecedenceGraph(s, prec)``; inside ``semantics.memo.sharing()``,
    made once for the check and the redundancy pass that reads it."""
    return PrecedenceGraph(s, prec)


def _has_cycle(nodes: Sequence[int], edges: Sequence[tuple[int, int]]) -> bool:
    adj: dict[int, list[int]] = {x: [] for x in nodes}
    for u, v in edges:
        adj[u].append(v)
    state: dict[int, int] = {}  # 1 on the stack, 2 done

    def visit(x: int) -> bool:
        state[x] = 1
        for y in adj[x]:
            st = state.get(y, 0)
            if st == 1 or (st == 0 and visit(y)):
                return True
        state[x] = 2
        return False

    return any(state.get(x, 0) == 0 and visit(x) for x in nodes)


def one_query_obligations(obs: Sequence[AnyOb]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_queries` of ``obs``; a list kept per class of identical ranks
    (``PerRank``) is read from each class representative's queries, shifted
    to the other ranks, without making their obligations."""
    if not isinstance(obs, PerRank):
        return _queries(obs)
    known: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    idx_l, xs_l, ys_l = [], [], []
    for (items, d), first in zip(obs.parts, obs.starts, strict=True):
        q = known.get(id(items))
        if q is None:
            q = known[id(items)] = _queries(items)
        idx_l.append(q[0] + first)
        xs_l.append(q[1] + 2 * d)
        ys_l.append(q[2] + 2 * d)
    idx = np.concatenate(idx_l) if idx_l else np.zeros(0, dtype=np.int64)
    xs = np.concatenate(xs_l) if xs_l else idx
    ys = np.concatenate(ys_l) if ys_l else idx
    return idx, xs, ys


def _queries(obs: Sequence[AnyOb]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the obligations one query each can prove: their index, and the
    query's two op events (``x`` must precede ``y``); a race pair gives two
    queries, either of which proves it."""
    idx: list[int] = []
    xs: list[int] = []
    ys: list[int] = []
    for i, ob in enumerate(obs):
        t = type(ob)
        if t is ReadOb:
            if not ob.bad and len(ob.good) == 1 and ob.init != ob.expected:  # type: ignore[union-attr]
                idx.append(i)
                xs.append(2 * ob.good[0] + 1)  # type: ignore[union-attr]
                ys.append(2 * ob.read)  # type: ignore[union-attr]
        elif t is OverlapOb and not ob.a_until and not ob.b_until:  # type: ignore[union-attr]
            idx += (i, i)
            xs += (2 * ob.a + 1, 2 * ob.b + 1)  # type: ignore[union-attr]
            ys += (2 * ob.b, 2 * ob.a)  # type: ignore[union-attr]
        elif t is OrderOb and len(ob.before) == 1 and len(ob.after) == 1:  # type: ignore[union-attr]
            idx.append(i)
            xs.append(2 * ob.before[0] + 1)  # type: ignore[union-attr]
            ys.append(2 * ob.after[0])  # type: ignore[union-attr]
    return (np.array(idx, dtype=np.int64), np.array(xs, dtype=np.int64), np.array(ys, dtype=np.int64))


def _kahn(n: int, ptr: list[int], dst: list[int], indeg: list[int],
          more: dict[int, list[int]] | None = None) -> list[int]:
    """Kahn's algorithm on the CSR form (``indeg`` is consumed): the same
    order as :func:`topological_order` on the successor lists (plus the
    ``more`` edges after each point's own)."""
    return _kahn_from([p for p in range(n) if indeg[p] == 0], ptr, dst, indeg, more)


def _kahn_levels(queue: list[int], ptr: list[int], dst: list[int], indeg: list[int],
                 more: dict[int, list[int]] | None = None) -> tuple[list[int], list[int]]:
    """Kahn's algorithm (FIFO) from the given ready points, on the CSR form
    plus the ``more`` edges after each point's own (``queue`` is extended and
    returned, ``indeg`` consumed); and where each level ends in the order:
    level 0 is ``queue``, level k+1 the points made ready while level k is
    placed.  (In FIFO order a level's points come after all of the level
    before: a point is ready once its last predecessor is placed.)"""
    ends: list[int] = []
    i = 0
    while i < len(queue):
        end_of_level = len(queue)
        ends.append(end_of_level)
        while i < end_of_level:
            p = queue[i]
            i += 1
            for q in dst[ptr[p]:ptr[p + 1]]:
                indeg[q] -= 1
                if indeg[q] == 0:
                    queue.append(q)
            if more and p in more:
                for q in more[p]:
                    indeg[q] -= 1
                    if indeg[q] == 0:
                        queue.append(q)
    return queue, ends


#: A level of the clocks' pass with at least this many merge points is made in bulk (see ``_clocks``).
LEVEL_IN_BULK = 6


def _kahn_from(queue: list[int], ptr: list[int], dst: list[int], indeg: list[int],
               more: dict[int, list[int]] | None = None) -> list[int]:
    """Kahn's algorithm from the given ready points (``queue`` is extended and returned)."""
    return _kahn_levels(queue, ptr, dst, indeg, more)[0]


def topological_order(n: int, succ: Sequence[Sequence[int]], blocked: set[int] | None = None) -> list[int]:
    """Kahn's algorithm.  Points on a cycle, points in ``blocked`` and
    everything after either are left out."""
    blocked = blocked or set()
    indeg = [0] * n
    for vs in succ:
        for v in vs:
            indeg[v] += 1
    queue = deque(p for p in range(n) if indeg[p] == 0 and p not in blocked)
    order: list[int] = []
    while queue:
        p = queue.popleft()
        order.append(p)
        for q in succ[p]:
            indeg[q] -= 1
            if indeg[q] == 0 and q not in blocked:
                queue.append(q)
    return order


def times_from_order(n_points: int, order: Sequence[int]) -> tuple[int, ...]:
    times = np.zeros(n_points, dtype=np.int64)
    times[np.asarray(order, dtype=np.int64)] = np.arange(len(order), dtype=np.int64)
    return tuple(times.tolist())


def shortest_strict_cycle(edges: Sequence[Edge]) -> list[Edge]:
    """The shortest cycle through at least one strict edge (BFS from the head
    of every strict edge back to its tail).  Such a cycle is itself a proof
    that no execution exists: it forces t < t."""
    adj: dict[int, list[Edge]] = {}
    for ed in edges:
        adj.setdefault(ed.u, []).append(ed)
    best: list[Edge] = []
    for first in edges:
        if not first.strict:
            continue
        prev: dict[int, Edge | None] = {first.v: None}
        queue = deque([first.v])
        while queue and first.u not in prev:
            x = queue.popleft()
            for ed in adj.get(x, ()):
                if ed.v not in prev:
                    prev[ed.v] = ed
                    queue.append(ed.v)
        if first.u not in prev:
            continue
        path: list[Edge] = []
        x = first.u
        while x != first.v:
            step = prev[x]
            assert step is not None
            path.append(step)
            x = step.u
        cycle = [first] + path[::-1]
        if not best or len(cycle) < len(best):
            best = cycle
            if len(best) <= 2:
                break
    return best


def cyclic_edges(prec: Precedence, order: Sequence[int]) -> list[Edge]:
    """Edges among the points a topological sort could not place: every
    cycle lies there."""
    placed = set(order)
    return [ed for ed in prec.edges if ed.u not in placed and ed.v not in placed]
