"""Parametric proofs: properties of a whole *family* of schedules, for every
size, proved once with z3 over symbolic integers.

A concrete check enumerates the ops of one schedule.  The encodings here
describe the ordering rules a model's generator follows as constraints over
symbolic ranks, passes, steps and token positions (uninterpreted functions
give every op a start and an end time), state the property for symbolic
indices, and ask z3 whether the negation is satisfiable:

* ``unsat`` for every goal -> ``proved`` for all sizes (an induction, where
  a base case and a step are separate goals);
* ``sat`` -> ``violated``: z3's model is a counterexample assignment (sizes,
  indices, times) to the abstract rules;
* ``unknown`` or a resource limit -> ``unknown`` with z3's reason.

What is proved is a statement about the *rules*.  To tie the rules to the
generator, every encoding names the orderings it assumes, and
:func:`abstraction_gaps` checks each of them on the precedence graph of the
schedules the model actually builds at small sizes; :func:`prove` does that
first and answers ``unknown`` if an assumption does not hold.

Encodings:

``sp-causal`` (``variant=allgather|ring``): in the SP prefill, for every
number of partitions ``n >= 1``, every contiguous partition of every sequence
length (partition bounds are an uninterpreted increasing function), every
query token ``q`` and every key token ``j <= q``: the K/V of ``j`` comes from
a partition ``k <= i`` (``i`` owns ``q``), the attention of partition ``i``
reads it, and it reads it after its unique writer on that rank has ended
(ring: by induction on the distance ``i - k``, each hop forwards a correct
value).

``kv-steps``: for every prompt length and every decode step ``u``: every
cache slot ``p < u`` written by step ``p``'s append is complete before step
``u``'s attention (induction on ``u``), and the staging buffer of the append
is neither read early nor overwritten early.  Hence for every number of steps.

``ep-routing`` (``ep=N``, ``tokens=T``, ``capacity=C``): for every routing
(symbolic token counts ``c[r][s] >= 0`` with ``sum_s c[r][s] = T``), the
dispatch all-to-all writes every position the expert reads exactly once, and
the router's packed buffer is read exactly once; with ``capacity > 0`` the
receive buffer must also hold ``sum_r c[r][s]`` tokens for every routing.
"""

from __future__ import annotations

import importlib
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import z3  # type: ignore[import-untyped]

from ..errors import UsageError
from ..ir import Kind, Op, Schedule
from ..result import Verdict
from ..semantics.matching import match
from ..semantics.precedence import build_precedence, end, start

Params = Mapping[str, str | int]


# ------------------------------------------------------------------ results
@dataclass(frozen=True)
class Goal:
    name: str
    status: str  # "unsat" (holds), "sat" (fails), "unknown: ..."
    model: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class ParametricResult:
    name: str
    prop: str  # the property proved (as in result.PROPERTIES)
    verdict: Verdict
    claim: str
    goals: tuple[Goal, ...]
    reason: str = ""
    seconds: float = 0.0
    link: str = ""  # what the abstraction check covered

    @property
    def counterexample(self) -> dict[str, int] | None:
        for g in self.goals:
            if g.status == "sat":
                return dict(g.model)
        return None


@dataclass(frozen=True)
class EncodingParam:
    name: str
    default: str | int
    choices: tuple[str, ...] = ()
    lo: int = 0
    hi: int = 0


@dataclass(frozen=True)
class Encoding:
    name: str
    summary: str
    prop: str
    params: tuple[EncodingParam, ...]
    faults: tuple[str, ...]
    run: Callable[[dict[str, Any], str | None, Callable[[], z3.Solver]], tuple[str, list[Goal]]]
    link: Callable[[dict[str, Any]], tuple[str, list[str]]] | None = None


# ------------------------------------------------------------------ helpers
def _check(name: str, solver: z3.Solver, negated_goal: Any, show: list[Any], small: Any = None) -> Goal:
    """``unsat``: the goal holds.  On ``sat``, ``small`` (a constraint bounding the
    sizes) is tried as well, only to show a small counterexample when one exists."""
    solver.add(negated_goal)
    r = solver.check()
    if r == z3.unsat:
        return Goal(name, "unsat")
    if r == z3.sat:
        m = solver.model()
        if small is not None and solver.check(small) == z3.sat:
            m = solver.model()
        vals = []
        for v in show:
            val = m.eval(v, model_completion=True)
            vals.append((str(v), int(val.as_long())))
        return Goal(name, "sat", tuple(vals))
    return Goal(name, f"unknown: {solver.reason_unknown()}")


class Timeline:
    """Start/end times of the ops of an abstract schedule: ``S(op, *idx)`` and
    ``E(op, *idx)`` are uninterpreted integer functions of the op's indices."""

    def __init__(self) -> None:
        self._f: dict[tuple[str, str, int], Any] = {}

    def _fun(self, kind: str, op: str, arity: int) -> Any:
        key = (kind, op, arity)
        if key not in self._f:
            self._f[key] = z3.Function(f"{kind}_{op}", *([z3.IntSort()] * arity), z3.IntSort())
        return self._f[key]

    def S(self, op: str, *idx: Any) -> Any:
        return self._fun("S", op, len(idx))(*idx)

    def E(self, op: str, *idx: Any) -> Any:
        return self._fun("E", op, len(idx))(*idx)

    def ops(self, op: str, *idx: Any) -> Any:
        """An op takes time."""
        return self.S(op, *idx) < self.E(op, *idx)


# ------------------------------------------------------------------ sp-causal
def _sp_causal(p: dict[str, Any], fault: str | None, solver: Callable[[], z3.Solver]) -> tuple[str, list[Goal]]:
    ring = p["variant"] == "ring"
    n, i, k, q, j = z3.Ints("n i k q j")
    bound = z3.Function("bound", z3.IntSort(), z3.IntSort())  # partition r = [bound(r), bound(r+1))
    structure = [
        n >= 1, bound(0) == 0, i >= 0, i < n, k >= 0, k < n,
        bound(i) < bound(i + 1), bound(k) < bound(k + 1),
        # two instances of "bound is increasing" (valid for every contiguous partition)
        z3.Implies(i + 1 <= k, bound(i + 1) <= bound(k)), z3.Implies(k + 1 <= i, bound(k + 1) <= bound(i)),
        bound(i) <= q, q < bound(i + 1), bound(k) <= j, j < bound(k + 1), j >= 0, j <= q,
        bound(i) >= i, bound(k) >= k,  # non-empty partitions
    ]
    small = z3.And(n <= 4, bound(n) <= 16, q <= 16)
    T = Timeline()
    goals: list[Goal] = []
    show = [n, i, k, q, j, bound(i), bound(i + 1)]
    if not ring:
        rules = []
        for r in (i, k):
            rules += [T.ops(o, r) for o in ("qkv", "rec_local", "wait_local", "gather", "rec_all", "wait_all",
                                             "attn")]
            rules += [T.E("qkv", r) < T.S("rec_local", r),  # compute: qkv, record, wait, attn
                      T.E("rec_local", r) < T.S("wait_all", r), T.E("wait_all", r) < T.S("attn", r),
                      T.E("wait_local", r) < T.S("gather", r),  # comm: wait, all_gather, record
                      T.E("gather", r) < T.S("rec_all", r)]
            if fault != "no-wait-local":
                rules.append(T.E("rec_local", r) < T.E("wait_local", r))
            if fault != "no-wait-kv":
                rules.append(T.E("rec_all", r) < T.E("wait_all", r))
        # one all-gather instance: nobody leaves before everybody has arrived
        rules += [T.S("gather", x) < T.E("gather", y) for x in (i, k) for y in (i, k)]
        # The writer of slot j on rank i: its own qkv (k = i) or the all-gather, whose payload
        # for partition k is what rank k's all-gather reads (written by rank k's qkv).
        good = z3.And(k <= i, j >= 0, j < bound(i + 1),
                      z3.Implies(k == i, T.E("qkv", i) < T.S("attn", i)),
                      z3.Implies(k != i, z3.And(T.E("gather", i) < T.S("attn", i), T.E("qkv", k) < T.S("gather", k))))
        s = solver()
        s.add(*structure, *rules)
        goals.append(_check("attention of partition i sees K/V of every j <= q", s, z3.Not(good), show, small))
        return ("for every n >= 1, every contiguous partition of the sequence into n parts, every query token q"
                " and key token j <= q: the attention of q's partition reads j's K/V after its writer ended",
                goals)
    # ring: rank r receives partition r-1-ps at pass ps from rank r-1 and forwards partition r-ps at pass ps
    r, ps = z3.Ints("r ps")

    def rank_rules(x: Any) -> list[Any]:
        out = [T.ops("qkv", x), T.ops("rec_local", x), T.ops("wait_local", x), T.ops("diag", x),
               T.E("qkv", x) < T.S("rec_local", x), T.E("qkv", x) < T.S("diag", x),
               T.E("wait_local", x) < T.S("send", x, 0)]
        if fault != "no-wait-local":
            out.append(T.E("rec_local", x) < T.E("wait_local", x))
        return out

    def pass_rules(x: Any, y: Any) -> list[Any]:
        """Rank x, pass y: comm stream recv(y) -> record(y) -> send(y+1); compute waits record(y)."""
        out = [T.ops("send", x, y), T.ops("recv", x, y), T.ops("rec", x, y), T.ops("wait", x, y),
               T.ops("block", x, y),
               T.E("recv", x, y) < T.S("rec", x, y), T.E("rec", x, y) < T.S("send", x, y + 1),
               T.E("wait", x, y) < T.S("block", x, y),
               # a recv ends after rank x-1's send of the same pass started (data); the other
               # direction (the send waits for its recv) holds only for large messages and is
               # not assumed: the proof holds for every message size
               T.S("send", x - 1, y) < T.E("recv", x, y)]
        if fault != "no-wait-kv":
            out.append(T.E("rec", x, y) < T.E("wait", x, y))
        return out

    def written(x: Any, kk: Any) -> Any:
        """When slot kk of rank x got its (only) write."""
        return z3.If(kk == x, T.E("qkv", x), T.E("recv", x, x - 1 - kk))

    # Step of the induction on the hop distance: if slot k of rank r-1 holds kv(k), rank r-1 forwards
    # it at pass (r-1)-k after it was written, so rank r's recv of pass r-1-k writes kv(k).
    s = solver()
    s.add(*structure, k >= 0, k < r, r < n)
    s.add(*rank_rules(r - 1), *pass_rules(r - 1, r - 2 - k), *pass_rules(r, r - 1 - k))
    fwd = r - 1 - k
    step_ok = z3.And(fwd >= 0, fwd <= n - 2, written(r - 1, k) < T.S("send", r - 1, fwd))
    goals.append(_check("step: a forwarded partition is sent after it arrived", s, z3.Not(step_ok),
                        [n, r, k, fwd], small))
    # Attention: partition i reads slot k (k <= i) after its write: the diagonal block after its own qkv,
    # block k after the recv of pass i-1-k.
    s = solver()
    s.add(*structure, *rank_rules(i), *pass_rules(i, i - 1 - k))
    blk_start = z3.If(k == i, T.S("diag", i), T.S("block", i, i - 1 - k))
    good = z3.And(k <= i, j >= 0, j < bound(i + 1), written(i, k) < blk_start,
                  z3.Implies(k < i, z3.And(i - 1 - k >= 0, i - 1 - k <= n - 2)))
    goals.append(_check("attention of partition i sees K/V of every j <= q", s, z3.Not(good), show, small))
    goals.insert(0, Goal("base: a rank's own partition is written by its own qkv", "unsat"))
    return ("for every n >= 1, every contiguous partition, every q and j <= q: partition i's attention reads"
            " j's K/V after it arrived, and every hop forwards the value it received (induction on i - k)", goals)


def _sp_link(p: dict[str, Any]) -> tuple[str, list[str]]:
    reg = _registry()
    gaps: list[str] = []
    sizes = range(1, 6)
    for n in sizes:
        s = reg.build("sp", {"sp": n, "chunk": 2, "layers": 1, "steps": 0, "variant": p["variant"]}, None)
        hb = HappensBefore(s)
        for r in range(n):
            ops = _ops(s, r, layer=0)
            qkv, attn = ops.compute("qkv"), None
            if p["variant"] == "allgather":
                attn = ops.compute("attn")
                if n > 1:
                    ag = ops.kind(Kind.ALL_GATHER)
                    gaps += hb.need(end(qkv), start(ag), f"n={n} r={r}: qkv -> all_gather")
                    gaps += hb.need(end(ag), start(attn), f"n={n} r={r}: all_gather -> attn")
                gaps += hb.need(end(qkv), start(attn), f"n={n} r={r}: qkv -> attn")
            else:
                sends = [o.id for o in ops.kind_all(Kind.SEND)]
                recvs = [o.id for o in ops.kind_all(Kind.RECV)]
                blocks = ops.compute_all("attn_block")
                gaps += hb.need(end(qkv), start(ops.compute("attn_diag")), f"n={n} r={r}: qkv -> diag")
                if sends:
                    gaps += hb.need(end(qkv), start(sends[0]), f"n={n} r={r}: qkv -> send 0")
                for y, rv in enumerate(recvs):
                    gaps += hb.need(end(rv), start(blocks[y]), f"n={n} r={r}: recv {y} -> block {y}")
                    if y + 1 < len(sends):
                        gaps += hb.need(end(rv), start(sends[y + 1]), f"n={n} r={r}: recv {y} -> send {y + 1}")
                    src = s.by_rank[r - 1]
                    peer = [o for o in src if o.kind is Kind.SEND and o.meta.layer == 0][y]
                    if (peer.id, rv) not in hb.pairs:
                        gaps.append(f"n={n} r={r}: recv {y} is not matched with rank {r - 1}'s send {y}")
    return f"sp (variant={p['variant']}) for n = 1..5", gaps


# ------------------------------------------------------------------ kv-steps
def _kv_steps(p: dict[str, Any], fault: str | None, solver: Callable[[], z3.Solver]) -> tuple[str, list[Goal]]:
    P, u, x = z3.Ints("P u p")
    T = Timeline()

    def step_rules(t: Any) -> list[Any]:
        """Step t: compute fence(t) -> qkv -> record_a -> attn -> ... -> fence(t+1);
        cache wait_a -> append -> record_c -> (next step) wait_a."""
        out = [T.ops(o, t) for o in ("fence", "qkv", "rec_a", "wait_a", "append", "rec_c", "attn")]
        out += [T.E("fence", t) < T.S("qkv", t), T.E("qkv", t) < T.S("rec_a", t),
                T.E("rec_a", t) < T.S("attn", t), T.E("attn", t) < T.S("fence", t + 1),
                T.E("wait_a", t) < T.S("append", t), T.E("append", t) < T.S("rec_c", t),
                T.E("rec_c", t) < T.S("wait_a", t + 1)]
        if fault != "append-before-qkv":
            out.append(T.E("rec_a", t) < T.E("wait_a", t))
        if fault != "no-append-wait":
            out.append(T.E("rec_c", t) < T.E("fence", t + 1))
        return out

    def inv(t: Any) -> Any:
        # slot p (P <= p < t) is written only by step p's append, which ended before step t's attention
        return z3.Implies(z3.And(x >= P, x < t), T.E("append", x) < T.S("attn", t))

    goals: list[Goal] = []
    show = [P, u, x]
    small = z3.And(P <= 4, u <= 8)
    s = solver()
    s.add(P >= 0, *step_rules(P), *step_rules(P + 1))
    goals.append(_check("base: step P+1 reads slot P after step P's append", s, z3.Not(inv(P + 1)), show, small))
    s = solver()
    s.add(P >= 0, u >= P + 1, inv(u), *step_rules(u), *step_rules(u + 1), *step_rules(x))
    goals.append(_check("step: the invariant of step u holds at step u+1", s, z3.Not(inv(u + 1)), show, small))
    s = solver()
    s.add(P >= 0, u >= P, *step_rules(u), *step_rules(u + 1))
    staging = z3.And(T.E("qkv", u) < T.S("append", u), T.E("append", u) < T.E("qkv", u + 1))
    goals.append(_check("staging: the append reads qkv's output, before the next step overwrites it", s,
                        z3.Not(staging), show, small))
    return ("for every prompt length P and every decode step u >= P+1: every cache slot P <= p < u is complete"
            " before step u's attention (induction on u), and the append's input is read after it is written"
            " and before it is overwritten; hence for every number of decode steps", goals)


def _kv_link(p: dict[str, Any]) -> tuple[str, list[str]]:
    reg = _registry()
    gaps: list[str] = []
    for steps in range(1, 6):
        s = reg.build("kv", {"tp": 1, "layers": 1, "steps": steps, "phase": "decode", "prompt": 3}, None)
        hb = HappensBefore(s)
        ops = _ops(s, 0, layer=0)
        qkv, app, attn = ops.compute_all("qkv"), ops.compute_all("kv_append"), ops.compute_all("attn")
        for t in range(steps):
            gaps += hb.need(end(qkv[t]), start(app[t]), f"steps={steps} t={t}: qkv -> append")
            if t + 1 < steps:
                gaps += hb.need(end(app[t]), start(attn[t + 1]), f"steps={steps} t={t}: append -> next attn")
                gaps += hb.need(end(app[t]), start(qkv[t + 1]), f"steps={steps} t={t}: append -> next qkv")
                gaps += hb.need(end(attn[t]), start(attn[t + 1]), f"steps={steps} t={t}: attn -> next attn")
    return "kv (tp=1, one layer) for 1..5 decode steps", gaps


# ------------------------------------------------------------------ ep-routing
def _ep_routing(p: dict[str, Any], fault: str | None, solver: Callable[[], z3.Solver]) -> tuple[str, list[Goal]]:
    n, tokens, cap = int(p["ep"]), int(p["tokens"]), int(p["capacity"])
    c = [[z3.Int(f"c_{a}_{b}") for b in range(n)] for a in range(n)]
    base = [c[a][b] >= 0 for a in range(n) for b in range(n)]
    base += [z3.Sum(c[a]) == tokens for a in range(n)]
    goals: list[Goal] = []
    show = [c[a][b] for a in range(n) for b in range(n)]
    x = z3.Int("x")

    def off(a: int, b: int) -> Any:  # where sender a's tokens land in receiver b's buffer
        if fault == "padded-read":
            return z3.IntVal(a * tokens)  # the senders write padded slots ...
        return z3.Sum([c[a2][b] for a2 in range(a)]) if a else z3.IntVal(0)

    bad = []
    for b in range(n):
        total = z3.Sum([c[a][b] for a in range(n)])  # ... but the expert reads densely
        covers = [z3.And(off(a, b) <= x, x < off(a, b) + c[a][b]) for a in range(n)]
        none = z3.And(*[z3.Not(cv) for cv in covers])
        two = z3.Or(*[z3.And(covers[a], covers[a2]) for a in range(n) for a2 in range(a + 1, n)]) if n > 1 \
            else z3.BoolVal(False)
        bad.append(z3.And(x >= 0, x < total, z3.Or(none, two)))
    s = solver()
    s.add(*base)
    goals.append(_check("dispatch: every position an expert reads is written exactly once", s, z3.Or(*bad), show))
    bad = []
    for a in range(n):
        soff = [z3.Sum(c[a][:b]) if b else z3.IntVal(0) for b in range(n)]
        covers = [z3.And(soff[b] <= x, x < soff[b] + c[a][b]) for b in range(n)]
        none = z3.And(*[z3.Not(cv) for cv in covers])
        two = z3.Or(*[z3.And(covers[b], covers[b2]) for b in range(n) for b2 in range(b + 1, n)]) if n > 1 \
            else z3.BoolVal(False)
        bad.append(z3.And(x >= 0, x < tokens, z3.Or(none, two)))
    s = solver()
    s.add(*base)
    goals.append(_check("router/combine: every packed token is sent, and returned, exactly once", s, z3.Or(*bad),
                        show))
    if cap > 0:
        s = solver()
        s.add(*base)
        over = z3.Or(*[z3.Sum([c[a][b] for a in range(n)]) > cap for b in range(n)])
        goals.append(_check(f"capacity: every receive buffer of {cap} tokens holds what arrives", s, over, show))
    return (f"for every routing of {tokens} tokens per rank over {n} ranks (symbolic counts, zero allowed):"
            " the buffers an all-to-all reads and writes are covered exactly"
            + (f", within a capacity of {cap}" if cap else ""), goals)


# ------------------------------------------------------------------ links
class HappensBefore:
    """``a`` before ``b`` in every execution of a concrete schedule: a path in its
    precedence graph (the hybrid engine's exact criterion), by breadth-first search."""

    def __init__(self, s: Schedule) -> None:
        m = match(s)
        prec = build_precedence(s, m).data  # what holds for every message size
        self.succ: list[list[tuple[int, bool]]] = [[] for _ in range(prec.n_points)]
        for e in prec.edges:
            self.succ[e.u].append((e.v, e.strict))
        self.pairs = set(m.pairs)
        self.s = s

    def before(self, u: int, v: int) -> bool:
        seen = {(u, False)}
        todo = deque([(u, False)])
        while todo:
            x, strict = todo.popleft()
            for y, st in self.succ[x]:
                key = (y, strict or st)
                if y == v and key[1]:
                    return True
                if key not in seen:
                    seen.add(key)
                    todo.append(key)
        return False

    def need(self, u: int, v: int, what: str) -> list[str]:
        return [] if self.before(u, v) else [f"{what}: not ordered in the generated schedule"]


@dataclass
class _ops:
    s: Schedule
    rank: int
    layer: int
    mine: list[Op] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mine = [o for o in self.s.by_rank[self.rank] if o.meta.layer == self.layer]

    def compute_all(self, name: str) -> list[int]:
        return [o.id for o in self.mine if o.kind is Kind.COMPUTE and o.name == name]

    def compute(self, name: str) -> int:
        return self.compute_all(name)[0]

    def kind_all(self, kind: Kind) -> list[Op]:
        return [o for o in self.mine if o.kind is kind]

    def kind(self, kind: Kind) -> int:
        return self.kind_all(kind)[0].id


def _registry() -> Any:
    return importlib.import_module("syncproof.models.registry")


# ------------------------------------------------------------------ registry
ENCODINGS: dict[str, Encoding] = {
    e.name: e for e in (
        Encoding("sp-causal", "SP prefill causal order, every partition count and sequence length", "dataflow",
                 (EncodingParam("variant", "allgather", ("allgather", "ring")),),
                 ("no-wait-kv", "no-wait-local"), _sp_causal, _sp_link),
        Encoding("kv-steps", "KV cache step ordering, every number of decode steps (induction)", "dataflow", (),
                 ("no-append-wait", "append-before-qkv"), _kv_steps, _kv_link),
        Encoding("ep-routing", "MoE all-to-all buffers, every routing (symbolic token counts)", "dataflow",
                 (EncodingParam("ep", 4, lo=1, hi=8), EncodingParam("tokens", 4, lo=1, hi=64),
                  EncodingParam("capacity", 0, lo=0, hi=4096)),
                 ("padded-read",), _ep_routing),
    )
}


def _params(enc: Encoding, params: Params) -> dict[str, Any]:
    out: dict[str, Any] = {p.name: p.default for p in enc.params}
    known = {p.name: p for p in enc.params}
    for key, raw in params.items():
        if key not in known:
            raise UsageError(f"parametric proof {enc.name} has no parameter {key!r}; it takes:"
                             f" {', '.join(known) or 'none'}")
        spec = known[key]
        if spec.choices:
            if str(raw) not in spec.choices:
                raise UsageError(f"{enc.name}: {key}={raw!r} is not one of {', '.join(spec.choices)}")
            out[key] = str(raw)
        else:
            try:
                v = int(raw)
            except (TypeError, ValueError):
                raise UsageError(f"{enc.name}: {key} takes an integer, got {raw!r}") from None
            if not spec.lo <= v <= spec.hi:
                raise UsageError(f"{enc.name}: {key}={v} is out of range {spec.lo}..{spec.hi}")
            out[key] = v
    return out


def prove(name: str, params: Params | None = None, fault: str | None = None, *, timeout: float | None = None,
          rlimit: int | None = 20_000_000, link: bool = True) -> ParametricResult:
    """Run one parametric proof.  ``link`` first checks the encoding's assumed
    orderings on schedules the model generates at small sizes."""
    if name not in ENCODINGS:
        raise UsageError(f"unknown parametric proof {name!r}; choose from {', '.join(ENCODINGS)}")
    enc = ENCODINGS[name]
    if fault is not None and fault not in enc.faults:
        raise UsageError(f"parametric proof {name} has no fault {fault!r}; its faults:"
                         f" {', '.join(enc.faults) or 'none'}")
    p = _params(enc, params or {})
    t0 = time.perf_counter()
    link_text = ""
    if link and enc.link is not None:
        link_text, gaps = enc.link(p)
        if gaps:
            return ParametricResult(name, enc.prop, Verdict.UNKNOWN, "", (), "the encoding's assumptions do not"
                                    f" hold for the generated schedules ({link_text}): " + "; ".join(gaps[:3]),
                                    time.perf_counter() - t0, link_text)

    def solver() -> z3.Solver:
        s = z3.Solver()
        if timeout is not None:
            s.set("timeout", max(1, int(timeout * 1000)))
        if rlimit is not None:
            s.set("rlimit", int(rlimit))
        return s

    claim, goals = enc.run(p, fault, solver)
    secs = time.perf_counter() - t0
    if any(g.status == "sat" for g in goals):
        bad = next(g for g in goals if g.status == "sat")
        model = ", ".join(f"{k}={v}" for k, v in bad.model)
        return ParametricResult(name, enc.prop, Verdict.VIOLATED, claim, tuple(goals),
                                f"{bad.name}: fails for {model}", secs, link_text)
    unknown = [g for g in goals if g.status.startswith("unknown")]
    if unknown:
        return ParametricResult(name, enc.prop, Verdict.UNKNOWN, claim, tuple(goals),
                                f"{unknown[0].name}: z3 gave up ({unknown[0].status.removeprefix('unknown: ')})",
                                secs, link_text)
    return ParametricResult(name, enc.prop, Verdict.PROVED, claim, tuple(goals), "", secs, link_text)


def list_encodings() -> list[Encoding]:
    return list(ENCODINGS.values())
