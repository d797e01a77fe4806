"""What the z3 engine gives the solver for one obligation: the support of
its points (docs/semantics.md, "The z3 engine's encoding").

The violation of an obligation is a positive combination of strict
comparisons between a few time points ``P`` (its *points*).  Which orders of
``P`` some execution realises depends only on which points of ``P`` precede
which others through the precedence edges.  So the solver is given, per
obligation, the edges of one path for every ordered pair of its points that
a path joins (its *support*), found here by a bounded search over the edges
themselves; z3 derives every order from those edges.

* A refutation on the support is a refutation on the whole schedule: the
  support's edges are a subset of the schedule's, so "no execution of the
  support violates the obligation" covers every execution of the schedule.
  This holds whatever the search returned.
* A model of the support is turned into a run of the whole schedule
  (:meth:`Cones.run_from`): a topological order of every edge plus the order
  the model puts on ``P``.  If no such order exists the model is not used
  (the caller asks again on the complete region, :meth:`Cones.interval`).

This module does not use the graph engine's reachability (``graph.py``):
it keeps its own adjacency, topological order and searches, so that the z3
engine stays a cross-check of the hybrid one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InternalError
from ..semantics.precedence import Precedence


@dataclass(frozen=True)
class Path:
    """Edges (indices into the precedence columns) that lead from ``y`` to
    ``x``.  A long path found by :meth:`Cones.support` comes without its
    edges: its edges were checked one by one as the search tree grew
    (:meth:`Cones._graft`), and ``strict`` says what it proves."""

    y: int
    x: int
    edges: tuple[int, ...]
    length: int = 0  # the number of edges (also when they are not listed)
    strict: bool = False  # some edge is strict: t(y) < t(x); else t(y) <= t(x)


TREES = 512  # search trees kept for reuse (by their root)


class _Tree:
    """Paths from ``root``: the edge into each point, its depth and whether
    some edge on its path is strict."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.via: dict[int, int] = {root: -1}
        self.depth: dict[int, int] = {root: 0}
        self.strict: dict[int, bool] = {root: False}


class Cones:
    """Adjacency of the precedence edges of ``prec``, a topological rank of
    every point, and the searches the z3 engine's encoding needs."""

    def __init__(self, prec: Precedence, guide: Callable[[int, int], bool] | None = None) -> None:
        self.prec = prec
        self.guide = guide
        self._trees: dict[int, _Tree] = {}
        n = prec.n_points
        u, v, strict = prec.u, prec.v, prec.strict
        by_u = np.argsort(u, kind="stable")
        self._s_ptr: list[int] = np.concatenate(([0], np.cumsum(np.bincount(u, minlength=n)))).tolist()
        self._s_dst: list[int] = v[by_u].tolist()
        self._s_edge: list[int] = by_u.tolist()  # edge index of each successor entry
        by_v = np.argsort(v, kind="stable")
        self._p_ptr: list[int] = np.concatenate(([0], np.cumsum(np.bincount(v, minlength=n)))).tolist()
        self._p_src: list[int] = u[by_v].tolist()
        self._p_edge: list[int] = by_v.tolist()  # edge index of each predecessor entry
        self.u: list[int] = u.tolist()
        self.v: list[int] = v.tolist()
        self.strict: list[bool] = strict.tolist()
        self.order = self._kahn({})
        rank = np.full(n, n, dtype=np.int64)  # points a sort cannot place (on a cycle) rank last
        rank[np.asarray(self.order, dtype=np.int64)] = np.arange(len(self.order), dtype=np.int64)
        self.rank: list[int] = rank.tolist()

    # --------------------------------------------------------------- orders
    def _kahn(self, more: dict[int, list[int]]) -> list[int]:
        """A topological order of every edge plus the ``more`` edges; short
        when they close a cycle."""
        n = self.prec.n_points
        indeg = np.bincount(self.prec.v, minlength=n).tolist()
        for vs in more.values():
            for q in vs:
                indeg[q] += 1
        from .graph import _kahn

        return _kahn(n, self._s_ptr, self._s_dst, indeg, more)

    def certificate(self) -> tuple[int, ...] | None:
        """An execution of the whole schedule, checked against every edge: one
        time per point (its place in a topological order), or None when the
        sort cannot place every point (a cycle: the caller asks z3)."""
        n = self.prec.n_points
        if len(self.order) != n:
            return None
        times = np.zeros(n, dtype=np.int64)
        times[np.asarray(self.order, dtype=np.int64)] = np.arange(n, dtype=np.int64)
        if not satisfies(self.prec, times):
            return None
        return tuple(times.tolist())

    def run_from(self, atoms: Sequence[tuple[int, int]]) -> tuple[int, ...] | None:
        """A run of the whole schedule in which every ``(x, y)`` of ``atoms``
        has ``t(x) < t(y)``: a topological order of every edge plus the atoms
        as edges.  None when no such run exists (they close a cycle).  The
        run is checked against every edge and every atom before it is
        returned."""
        more: dict[int, list[int]] = {}
        for x, y in atoms:
            more.setdefault(x, []).append(y)
        order = self._kahn(more)
        n = self.prec.n_points
        if len(order) != n:
            return None
        run = np.zeros(n, dtype=np.int64)
        run[np.asarray(order, dtype=np.int64)] = np.arange(n, dtype=np.int64)
        if not satisfies(self.prec, run):
            return None
        if any(not run[x] < run[y] for x, y in atoms):
            return None
        return tuple(run.tolist())

    # ------------------------------------------------------------- searches
    def support(self, atoms: Iterable[tuple[int, int]], short: int = 8) -> list[Path]:
        """The paths z3 is given for a violation made of the strict
        comparisons ``atoms`` (``(x, y)``: ``t(x) < t(y)``): one path from
        ``y`` to ``x2`` for every two atoms ``(x, y)``, ``(x2, y2)`` that a
        path joins so (a run contradicts a set of true atoms only through a
        cycle of atoms and such paths: docs/semantics.md).  A path of at most
        ``short`` edges lists them; a longer one only says what it proves.

        With a ``guide`` (a reachability oracle, the graph engine's), pairs it
        says no path joins are left out, and a path is walked back from
        ``x2``, each step to a predecessor the guide says ``y`` reaches.  The
        guide is only a hint: the path is made of real edges, checked as the
        tree grows, and a walk that breaks off falls back to the unguided
        search.  So a wrong guide can cost time or lose a path (then the
        model does not extend to a run and the complete region is asked: see
        ``z3backend.ConeBackend``), never give z3 a fact the schedule lacks."""
        pairs = list(atoms)
        lefts = {x for x, _ in pairs}
        wanted = {y: sorted(x for x in lefts if self.rank[x] > self.rank[y]) for y in {y for _, y in pairs}}
        if self.guide is not None and len(wanted) > 2:
            wanted = self._covers(pairs)
        out: list[Path] = []
        for y in sorted(wanted):
            targets = wanted[y]
            if not targets:
                continue
            tree = self._tree(y)
            found: list[int] = []
            lost: set[int] = set()
            reach = self.guide
            for x in targets:
                if reach is None:
                    lost.add(x)
                elif not reach(y, x):
                    continue  # no path, says the guide (if it is wrong, a model shows it: see above)
                elif self._walk(tree, x, reach):
                    found.append(x)
                else:
                    lost.add(x)
            if lost:  # unguided, or the guide's path broke off: search for one
                found += self._search(tree, lost)
            for x in found:
                n = tree.depth[x]
                edges = self._tree_path(tree, x) if n <= short else ()
                out.append(Path(y, x, edges, n, tree.strict[x]))
        return out

    def _tree(self, root: int) -> _Tree:
        """The tree of paths from ``root`` grown so far (obligations in a row
        share roots), the most recent :data:`TREES` kept."""
        tree = self._trees.pop(root, None)
        if tree is None:
            tree = _Tree(root)
            if len(self._trees) >= TREES:
                del self._trees[next(iter(self._trees))]
        self._trees[root] = tree  # now the most recent
        return tree

    def _covers(self, pairs: list[tuple[int, int]]) -> dict[int, list[int]]:
        """The pairs of points of ``pairs`` to join by a path: those the guide
        says are joined with no point of ``pairs`` between them.  Every
        joined pair (a right side before a left side) is then joined by a
        chain of them (the transitive reduction).  The guide is only a hint
        here too: a pair it wrongly leaves out only loses a path."""
        reach, rank = self.guide, self.rank
        assert reach is not None
        pts = sorted({p for a in pairs for p in a}, key=rank.__getitem__)
        out: dict[int, list[int]] = {p: [] for p in pts}
        for k, q in enumerate(pts):
            chosen: list[int] = []
            for p in reversed(pts[:k]):  # latest first: a later cover hides the earlier points it reaches
                if rank[p] < rank[q] and reach(p, q) and not any(reach(p, c) for c in chosen):
                    chosen.append(p)
                    out[p].append(q)
        return out

    def _tree_path(self, tree: _Tree, x: int) -> tuple[int, ...]:
        edges = []
        w = x
        while w != tree.root:
            e = tree.via[w]
            edges.append(e)
            w = self.u[e]
        return tuple(reversed(edges))

    def _graft(self, tree: _Tree, steps: list[tuple[int, int]]) -> None:
        """Add ``steps`` (point, edge into it), listed from the far end back to
        a point of the tree, checking each edge: it must lead from the point
        before it (already in the tree) to its point."""
        u, v, strict = self.u, self.v, self.strict
        for w, e in reversed(steps):
            p = u[e]
            if v[e] != w or p not in tree.via:
                raise InternalError(f"edge {e} does not lead from the search tree to point {w}")
            tree.via[w] = e
            tree.depth[w] = tree.depth[p] + 1
            tree.strict[w] = tree.strict[p] or strict[e]

    def _walk(self, tree: _Tree, x: int, reach: Callable[[int, int], bool]) -> bool:
        """Walk back from ``x`` to the tree of paths from its root, each step
        to the predecessor earliest in the rank that the guide says the root
        reaches; add the steps to the tree.  False if it broke off."""
        ptr, src, pedge, rank = self._p_ptr, self._p_src, self._p_edge, self.rank
        y, via = tree.root, tree.via
        lo = rank[y]
        steps: list[tuple[int, int]] = []  # (point, edge into it)
        w = x
        while w not in via:
            lo_j, hi_j = ptr[w], ptr[w + 1]
            if hi_j - lo_j == 1:  # one predecessor: every path into w comes through it
                p = src[lo_j]
                if p != y and rank[p] <= lo:
                    return False
                steps.append((w, pedge[lo_j]))
                w = p
                continue
            best, best_j = -1, -1
            for j in range(lo_j, hi_j):
                p = src[j]
                if p in via:
                    best, best_j = p, j
                    break
                if rank[p] > lo and (best < 0 or rank[p] < rank[best]) and reach(y, p):
                    best, best_j = p, j
            if best < 0:
                return False
            steps.append((w, pedge[best_j]))
            w = best
        self._graft(tree, steps)
        return True

    def _search(self, tree: _Tree, targets: set[int]) -> list[int]:
        """Unguided: a depth-first search from the tree through points no later
        than its last target in the topological rank (a path only goes
        forward in it).  The targets reached, their paths added to the tree."""
        rank, ptr, dst, eid, u = self.rank, self._s_ptr, self._s_dst, self._s_edge, self.u
        via = tree.via
        bound = max(rank[x] for x in targets)
        seen = set(via)
        stack = [p for p in via if rank[p] <= bound]  # every point of the tree has a path from the root
        found: dict[int, int] = {}
        reached: list[int] = [x for x in targets if x in via]
        left = len(targets) - len(reached)
        while stack and left:
            p = stack.pop()
            for j in range(ptr[p], ptr[p + 1]):
                q = dst[j]
                if q in seen or rank[q] > bound:
                    continue
                seen.add(q)
                found[q] = eid[j]
                if q in targets:
                    left -= 1
                    reached.append(q)
                stack.append(q)
        for x in reached:  # graft the search's paths to the targets onto the tree
            steps = []
            w = x
            while w not in via:
                steps.append((w, found[w]))
                w = u[found[w]]
            self._graft(tree, steps)
        return reached

    def fact(self, path: Path) -> bool | None:
        """Check ``path`` against the edges: consecutive edges of the schedule
        from ``path.y`` to ``path.x``.  The fact it proves: True for
        ``t(y) < t(x)`` (some edge is strict), False for ``t(y) <= t(x)``;
        None if it is no such path (then it proves nothing)."""
        w = path.y
        strict = False
        n = len(self.u)
        for e in path.edges:
            if not 0 <= e < n or self.u[e] != w:
                return None
            strict = strict or self.strict[e]
            w = self.v[e]
        if w != path.x or not path.edges:
            return None
        return strict

    def interval(self, points: Iterable[int]) -> set[int]:
        """Edge indices of the complete region of ``points``: every edge
        between two points that lie on some path from one of ``points`` to
        another (descendants of ``points`` that are also ancestors of them).
        Every path between two of ``points`` lies in it (docs/semantics.md)."""
        pts = set(points)
        if not pts:
            return set()
        rank = self.rank
        lo, hi = min(rank[p] for p in pts), max(rank[p] for p in pts)
        down = self._closure(pts, self._s_ptr, self._s_dst, lambda q: rank[q] <= hi)
        up = self._closure(pts, self._p_ptr, self._p_src, lambda q: rank[q] >= lo)
        region = (down & up) | pts
        out: set[int] = set()
        for p in region:
            for j in range(self._s_ptr[p], self._s_ptr[p + 1]):
                if self._s_dst[j] in region:
                    out.add(self._s_edge[j])
        return out

    @staticmethod
    def _closure(start: set[int], ptr: list[int], adj: list[int], keep: Callable[[int], bool]) -> set[int]:
        seen = set(start)
        stack = list(start)
        while stack:
            p = stack.pop()
            for q in adj[ptr[p]:ptr[p + 1]]:
                if q not in seen and keep(q):
                    seen.add(q)
                    stack.append(q)
        return seen


def satisfies(prec: Precedence, times: np.ndarray) -> bool:
    """Do ``times`` satisfy every edge of ``prec`` (``<`` strict, ``<=`` not)?"""
    tu, tv = times[prec.u], times[prec.v]
    return bool(np.all(np.where(prec.strict, tu < tv, tu <= tv)))


def edge_text(cones: Cones, edges: Iterable[int]) -> list[str]:
    """The SMT-LIB assertions of the given edges."""
    u, v, strict = cones.u, cones.v, cones.strict
    return [f"(assert ({'<' if strict[e] else '<='} t{u[e]} t{v[e]}))" for e in edges]
