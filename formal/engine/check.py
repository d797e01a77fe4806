"""Check a schedule: structural matching, then one solver call per property.

``check_schedule`` is the engine's entry point; it returns a
:class:`~syncproof.result.Report`.  Verdicts come only from the solver
(``unsat`` of the negated property is ``proved``; a model is ``violated``,
turned into a run and replayed on the independent executor) or from the
structural matcher; a limit gives ``unknown`` with the solver's reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np
import z3  # type: ignore[import-untyped]

from ..errors import InternalError, UsageError
from ..gcpause import gc_paused
from ..ir import Kind, Schedule
from ..result import PROPERTIES, Counterexample, Observation, PropertyResult, Report, Verdict
from ..semantics.matching import Matching, match
from ..semantics.memory import memory_view
from ..semantics.obligations import (
    MetaOb,
    OrderOb,
    OverlapOb,
    ReadOb,
    SampleOb,
    carried_values,
    message_obligations,
    phase_obligations,
    phase_steps,
    race_obligations,
    rank_classes,
    read_obligations,
    unsampled_steps,
)
from ..semantics.precedence import DATA, Edge, Precedence, build_precedence, end
from . import explain
from .graph import PrecedenceGraph, cyclic_edges, graph_of, shortest_strict_cycle, times_from_order
from .z3backend import Answer, ConeBackend, Z3Backend, apply_seed

ENGINES = ("hybrid", "z3")
# How the z3 engine encodes an obligation (docs/semantics.md, "The z3 engine's encoding"): "cone" (each
# obligation on its support) or "full" (every edge in one formula: the encoding of 0.2-0.4, kept to compare).
Z3_ENCODINGS = ("cone", "full")

AnyOb = ReadOb | OverlapOb | OrderOb | SampleOb | MetaOb


class Hybrid:
    """Decide on the precedence graph what pure precedence decides; send the
    rest (reads with a real choice among writers) to z3, built lazily."""

    def __init__(self, s: Schedule, prec: Precedence, graph: PrecedenceGraph, **limits: object) -> None:
        self.s, self.prec, self.graph, self.limits = s, prec, graph, limits
        self._z3: Z3Backend | None = None

    def z3(self) -> Z3Backend:
        if self._z3 is None:
            self._z3 = Z3Backend(self.prec, **self.limits)  # type: ignore[arg-type]
        return self._z3

    def find_violations(self, obs: Sequence[AnyOb], limit: int) -> tuple[list[Answer], str]:
        found: list[Answer] = []
        leftover: list[int] = []
        witnesses: dict[int, list[tuple[int, int]]] = {}
        if self.graph.queries is None:  # decide in bulk what one query decides; the rest one by one
            todo: Iterable[int] = np.flatnonzero(~self.graph.settled(obs)).tolist()
        else:  # recording queries (the benchmark): every obligation through decide
            todo = range(len(obs))
        for i in todo:
            verdict, witness = self.graph.decide(obs[i])
            if verdict == "solver":
                leftover.append(i)
            elif verdict == "violated":
                # only the first violation becomes a run; the others are named in one line
                found.append(Answer("sat", index=i))
                witnesses[i] = witness
                if len(found) >= limit:
                    return self._with_run(found, witnesses), "limit"
        if not leftover:
            return self._with_run(found, witnesses), "unsat"
        more, final = self.z3().find_violations([obs[i] for i in leftover], limit - len(found))
        for a in more:
            assert a.index is not None
            found.append(Answer("sat", index=leftover[a.index], times=a.times))
        found.sort(key=lambda a: a.index if a.index is not None else -1)
        return self._with_run(found, witnesses), final

    def _with_run(self, found: list[Answer], witnesses: dict[int, list[tuple[int, int]]]) -> list[Answer]:
        """Give the first violation (the one shown as a counterexample) its run."""
        if found and not found[0].times:
            i = found[0].index
            assert i is not None
            order = self.graph.run_order(witnesses[i])
            if order is None:
                raise InternalError(f"graph witness for obligation {i} is not realisable")
            found[0] = Answer("sat", index=i, times=times_from_order(self.prec.n_points, order))
        return found


NOT_REPLAYED = "replay switched off"


class Replayer:
    """Replays the counterexamples of one schedule on the independent
    executor, building the executor's model of the schedule once."""

    def __init__(self, s: Schedule, enabled: bool) -> None:
        self.s, self.enabled = s, enabled
        self._model: object | None = None

    def __call__(self, cex: Counterexample) -> Counterexample:
        if not self.enabled:
            return replace(cex, replay_note=NOT_REPLAYED)
        from ..executor import build_model, replay

        if self._model is None:
            self._model = build_model(self.s, light=True)
        ok, note = replay(self.s, cex, model=self._model)  # type: ignore[arg-type]
        return replace(cex, replayed=ok, replay_note=note)


def _replay(s: Schedule, cex: Counterexample, replayer: Replayer) -> Counterexample:
    """Reproduce the counterexample on the independent executor."""
    return replayer(cex)


def _verdict_from_replay(prop: str, cex: Counterexample, n_obs: int, more: tuple[str, ...],
                         secs: float) -> PropertyResult:
    if not cex.replayed and cex.replay_note != NOT_REPLAYED:
        # Never claim a violation the independent executor cannot reproduce.
        return PropertyResult(prop, Verdict.UNKNOWN,
                              f"internal error: the counterexample did not replay ({cex.replay_note});"
                              " please report this schedule", None, n_obs, more, secs)
    return PropertyResult(prop, Verdict.VIOLATED, "", cex, n_obs, more, secs)


def _matching_result(s: Schedule, m: Matching, prec: Precedence, replay: Replayer) -> PropertyResult:
    t0 = time.perf_counter()
    if not m.problems:
        return PropertyResult("matching", Verdict.PROVED, "every send has its recv, every collective"
                              " instance has all members with the same kind, size and root",
                              None, len(m.pairs) + len(m.instances), (), time.perf_counter() - t0)
    matched = {o for p in m.pairs for o in p} | {o for inst in m.instances for o in inst.ops}
    matched |= {w for _, w in m.signals}
    unmatched = [op.id for op in s.ops if (op.kind.is_comm or op.kind is Kind.WAIT_SIGNAL) and op.id not in matched]
    size_bad = {o for p in m.problems if not p.culprits and len(p.stuck) == 2 for o in p.stuck}
    never = [end(o) for o in set(unmatched) | size_bad]
    run = explain.partial_run(prec, never)
    first = m.problems[0]
    blocked = tuple(o for o in range(len(s.ops)) if run.end[o] is None)
    cex = Counterexample("matching", first.sentence, first.culprit_ops,
                         Observation("hang", blocked=blocked), run, candidates=first.candidates)
    cex = _replay(s, cex, replay)
    more = tuple(p.sentence for p in m.problems[1:])
    return _verdict_from_replay("matching", cex, len(m.problems), more, time.perf_counter() - t0)


def _unknown(prop: str, reason: str) -> PropertyResult:
    return PropertyResult(prop, Verdict.UNKNOWN, reason)


def _witness(s: Schedule, prop: str, ob: ReadOb | OverlapOb | OrderOb | SampleOb | MetaOb, ans: Answer,
             prec: Precedence, orig: Schedule | None = None) -> Counterexample:
    """``s`` may be the memory view (regions renamed to allocator blocks);
    ``orig`` is the schedule as written, for the allocator's advice."""
    orig = orig or s
    run = explain.run_from_times(prec, ans.times)
    if isinstance(ob, ReadOb):
        obs, sentence, culprits, edge = explain.read_observation(s, ob, run)
        if len(culprits) == 2:
            sentence += explain.allocator_advice(orig, culprits[0], culprits[1], ob.region.buffer)
        return Counterexample(prop, sentence, culprits, obs, run, missing_edge=edge)
    if isinstance(ob, OverlapOb):
        obs, sentence = explain.overlap_observation(s, ob)
        sentence += explain.allocator_advice(orig, ob.a, ob.b, ob.region.buffer)
        return Counterexample(prop, sentence, (ob.a, ob.b), obs, run, missing_edge=(ob.a, ob.b))
    if isinstance(ob, OrderOb | SampleOb):
        obs, sentence, pair = explain.order_observation(s, ob, run)
        return Counterexample(prop, sentence, pair, obs, run, missing_edge=pair)
    culprits = (ob.op,) if ob.other is None else (ob.op, ob.other)
    return Counterexample(prop, ob.sentence, culprits, explain.meta_observation(ob), run)


def _one_line(s: Schedule, ob: ReadOb | OverlapOb | OrderOb | SampleOb | MetaOb) -> str:
    if isinstance(ob, ReadOb):
        return f"{s.label(ob.read)} may read {ob.region} without {ob.expected!r} in it"
    if isinstance(ob, OverlapOb):
        return f"{s.label(ob.a)} and {s.label(ob.b)} may overlap on {ob.region}"
    if isinstance(ob, OrderOb | SampleOb):
        return ob.why
    return ob.sentence


def _message_cex(s: Schedule, ob: MetaOb, prec: Precedence) -> Counterexample:
    """A receiver that declares another value than its sender carried: any
    run shows it (matching is deterministic), so the run is one topological
    order of the schedule."""
    recv, send = s.ops[ob.op], s.ops[ob.other if ob.other is not None else ob.op]
    carried = carried_values(send) or []
    declared = ", ".join(sorted(w.value or "" for w in recv.writes))
    obs = Observation("message", a=recv.id, b=send.id, region=", ".join(str(w.region) for w in recv.writes),
                      expected=declared, seen=tuple(carried))
    return Counterexample("dataflow", ob.sentence, (recv.id, send.id), obs, explain.partial_run(prec),
                          missing_edge=None)


def _property(s: Schedule, prop: str, obs: Sequence[AnyOb],
              backend: Z3Backend | ConeBackend | Hybrid, prec: Precedence, max_cex: int, replay: Replayer,
              proved_text: str, pre: Sequence[MetaOb] = (), orig: Schedule | None = None,
              noop_waits: Sequence[int] = (), events: Sequence[tuple[int, int]] = ()) -> PropertyResult:
    """``pre``: violations already decided without a solver (the values
    messages carry); they come first."""
    t0 = time.perf_counter()
    left = max(0, max_cex - len(pre))
    if left or not pre:
        found, final = backend.find_violations(obs, max(left, 1) if not pre else left)
    else:
        found, final = [], "limit"
    secs = time.perf_counter() - t0
    n_obs = len(obs) + len(pre)
    if pre:
        cex = _replay(s, _message_cex(s, pre[0], prec), replay)
        more = [ob.sentence for ob in pre[1:]] + [_one_line(s, obs[a.index]) for a in found if a.index is not None]
        if final == "limit":
            more.append(f"(stopped after {max_cex} violations; more may exist: raise --max-cex)")
        elif final.startswith("unknown"):
            more.append(f"(the solver gave up on the rest: {final.removeprefix('unknown: ')})")
        return _verdict_from_replay(prop, cex, n_obs, tuple(more), time.perf_counter() - t0)
    if not found:
        if final == "unsat":
            return PropertyResult(prop, Verdict.PROVED, proved_text, None, len(obs), (), secs)
        return PropertyResult(prop, Verdict.UNKNOWN, f"solver gave up ({final.removeprefix('unknown: ')})",
                              None, len(obs), (), secs)
    first = found[0]
    assert first.index is not None
    cex = _witness(s, prop, obs[first.index], first, prec, orig)
    if noop_waits:
        note = explain.noop_wait_note(s, cex.culprits, noop_waits)
        if note:
            cex = replace(cex, sentence=cex.sentence + note)
    if events and "re-recorded" in s.features:
        note = explain.stale_wait_note(s, cex.culprits, events)
        if note:
            cex = replace(cex, sentence=cex.sentence + note)
    cex = _replay(s, cex, replay)
    more = [_one_line(s, obs[a.index]) for a in found[1:] if a.index is not None]
    if final == "limit":
        more.append(f"(stopped after {max_cex} violations; more may exist: raise --max-cex)")
    elif final.startswith("unknown"):
        more.append(f"(the solver gave up on the rest: {final.removeprefix('unknown: ')})")
    return _verdict_from_replay(prop, cex, len(obs), tuple(more), secs)


def _gave_up(note: str) -> bool:
    """Did a cycle search stop at a solver limit (z3 said unknown)?"""
    return note.startswith("core extraction gave unknown")


def check_schedule(s: Schedule, properties: Iterable[str] = PROPERTIES, *, engine: str = "hybrid",
                   timeout: float | None = None, rlimit: int | None = None,
                   memory_mb: int | None = None, max_cex: int = 3, replay: bool = True,
                   choices: str = "auto", z3_encoding: str = "cone") -> Report:
    """Check ``properties`` of ``s`` and return the report.

    A schedule with choices (DESIGN.md section 2c) is checked for every
    assignment (``engine/choices.py``); ``choices`` picks the method:
    ``"auto"``, ``"enumerate"`` or ``"symbolic"``.

    ``timeout`` (seconds), ``rlimit`` (z3 resource units, reproducible) and
    ``memory_mb`` bound each solver call; hitting one gives ``unknown``.
    ``z3_encoding`` (internal, for benchmarks): how ``engine="z3"`` encodes
    an obligation, one of :data:`Z3_ENCODINGS`.
    """
    from .. import apiguard

    apiguard.instance(s, Schedule, "check_schedule", "s", "a Schedule (syncproof.load reads one)")
    apiguard.choice(choices, ("auto", "enumerate", "symbolic"), "check_schedule", "choices")
    timeout = apiguard.optional_number(timeout, "check_schedule", "timeout", hi=1_000_000)
    apiguard.optional_integer(rlimit, "check_schedule", "rlimit", 1, 2**32 - 1)
    apiguard.optional_integer(memory_mb, "check_schedule", "memory_mb", 1, 2**32 - 1)
    apiguard.integer(max_cex, "check_schedule", "max_cex", 1, 100_000)
    apiguard.flag(replay, "check_schedule", "replay")
    apply_seed()  # SYNCPROOF_Z3_SEED, checked on every check (a bad one is a usage error whatever gets solved)
    if s.choices or "choice" in s.features:  # (an op with an OpChoice)
        from .choices import check_choices
        return check_choices(s, properties, method=choices, engine=engine, timeout=timeout, rlimit=rlimit,
                             memory_mb=memory_mb, max_cex=max_cex, replay=replay)
    try:
        with gc_paused():
            return _check_schedule(s, properties, engine=engine, timeout=timeout, rlimit=rlimit,
                                   memory_mb=memory_mb, max_cex=max_cex, replay=replay, z3_encoding=z3_encoding)
    except z3.Z3Exception as exc:  # a resource limit hit inside z3 (out of memory): the verdict is unknown
        msg = exc.value.decode() if isinstance(exc.value, bytes) else str(exc.value)
        why = f"solver gave up: z3 stopped with {msg!r}" + (f" (--memory {memory_mb} MB)" if memory_mb else "")
        props = tuple(p for p in PROPERTIES if p in tuple(properties))
        return Report(s.name, s.source, len(s.ops), tuple(_unknown(p, why) for p in props), engine)
    finally:
        if memory_mb is not None:
            z3.set_param("memory_max_size", 0)  # the limit is global in z3: lift it for later checks


def _check_schedule(s: Schedule, properties: Iterable[str], *, engine: str, timeout: float | None,
                    rlimit: int | None, memory_mb: int | None, max_cex: int, replay: bool,
                    z3_encoding: str = "cone") -> Report:
    props = tuple(properties)
    for p in props:
        if p not in PROPERTIES:
            raise UsageError(f"unknown property {p!r}; choose from {', '.join(PROPERTIES)}")
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if z3_encoding not in Z3_ENCODINGS:
        raise UsageError(f"unknown z3 encoding {z3_encoding!r}; choose from {', '.join(Z3_ENCODINGS)}")
    t_all = time.perf_counter()
    timings: list[tuple[str, float]] = []

    def lap(name: str, t: float) -> float:
        now = time.perf_counter()
        timings.append((name, now - t))
        return now

    t = time.perf_counter()
    m = match(s)
    full = build_precedence(s, m)
    prec = full.data  # dataflow, race and phase hold for every message size: data edges only
    t = lap("structure", t)
    warnings = tuple(
        f"{s.label(w)} is issued before any record of its event: in CUDA such a wait does nothing,"
        " and syncproof treats it so" for w in m.noop_waits
    )
    phase_pass = phase_steps(s) if "phase" in props else None
    if phase_pass is not None:
        warnings += tuple(unsampled_steps(s, phase_pass))
        t = lap("phase pass", t)
    results: dict[str, PropertyResult] = {}
    replayer = Replayer(s, replay)
    results["matching"] = _matching_result(s, m, full, replayer)
    rest = [p for p in props if p != "matching"]
    if results["matching"].verdict is not Verdict.PROVED:
        why = "not checked: the ops do not match (see matching), so no complete execution exists"
        for p in rest:
            results[p] = _unknown(p, why)
        return _report(s, props, results, t_all, warnings, timings, engine)

    limits = {"timeout_s": timeout, "rlimit": rlimit, "memory_mb": memory_mb}
    backend: Z3Backend | ConeBackend | Hybrid
    data_cycle: list[Edge] = []  # no execution at all: hangs at every message size
    cycle: list[Edge] = []  # a hang that needs blocking edges (large messages, kernels not co-running)
    t_dead = time.perf_counter()
    deadlock_unknown = ""
    if engine == "z3":
        z3_kind = ConeBackend if z3_encoding == "cone" else Z3Backend
        backend = (ConeBackend(prec, timeout_s=timeout, rlimit=rlimit, memory_mb=memory_mb, guide=s)
                   if z3_encoding == "cone" else Z3Backend(prec, timeout_s=timeout, rlimit=rlimit, memory_mb=memory_mb))
        t = lap("encode", t)
        base = backend.check_base()
        t = lap("base", t)
        if base.status == "unknown":
            for p in rest:
                results[p] = _unknown(p, f"solver gave up on the schedule itself ({base.reason})")
            return _report(s, props, results, t_all, warnings, timings, engine)
        if base.status == "unsat":
            data_cycle, note = backend.deadlock_cycle()
            if not data_cycle and _gave_up(note):  # no run exists, but a limit stopped the search for its cycle
                for p in rest:
                    results[p] = _unknown(p, "solver gave up: no execution exists, but the search for the cycle of"
                                             f" waits hit the solver limit ({note})")
                return _report(s, props, results, t_all, warnings, timings, engine)
            if not data_cycle:
                raise InternalError(f"no execution exists but no cycle was found ({note})")
        elif full.has_blocking and "deadlock" in rest:
            fb = z3_kind(full, timeout_s=timeout, rlimit=rlimit, memory_mb=memory_mb)
            fbase = fb.check_base()
            if fbase.status == "unsat":
                cycle, note = fb.deadlock_cycle()
                if not cycle and _gave_up(note):
                    deadlock_unknown = ("solver gave up: no run with blocking edges exists, but the search for the"
                                        f" cycle of waits hit the solver limit ({note})")
                elif not cycle:
                    raise InternalError(f"no blocking execution exists but no cycle was found ({note})")
            elif fbase.status == "unknown":
                deadlock_unknown = f"solver gave up on the schedule with blocking edges ({fbase.reason})"
            t = lap("base:blocking", t)
    else:
        graph = graph_of(s, prec)
        backend = Hybrid(s, prec, graph, **limits)
        t = lap("graph", t)
        if not graph.acyclic:
            data_cycle = shortest_strict_cycle(cyclic_edges(prec, graph.order))
            if not data_cycle:
                raise InternalError("the precedence graph has a cycle but no strict cycle was found")
        elif full.has_blocking and "deadlock" in rest:
            blocking = full.cls != DATA
            # the blocking edges go forward in an order of the data graph: no cycle; else ask their graph
            fg = graph if graph.orders_forward(full.u[blocking], full.v[blocking]) \
                else PrecedenceGraph(s, full, clocks=False)
            if not fg.acyclic:
                cycle = shortest_strict_cycle(cyclic_edges(full, fg.order))
                if not cycle:
                    raise InternalError("the blocking graph has a cycle but no strict cycle was found")
            t = lap("graph:blocking", t)
    if data_cycle or cycle:
        cyc = data_cycle or cycle
        steps = explain.cycle_steps(s, full, cyc)
        never = {ed.v for ed in cyc}
        run = explain.partial_run(full, never)
        ops_in_cycle = tuple(dict.fromkeys(o for st in steps for o in (st.op, st.next_op)))
        blocked = tuple(o for o in range(len(s.ops)) if run.end[o] is None)
        cex = Counterexample("deadlock", explain.cycle_sentence(s, steps), ops_in_cycle,
                             Observation("cycle", blocked=blocked), run, cycle=steps)
        cex = _replay(s, cex, replayer)
        results["deadlock"] = _verdict_from_replay("deadlock", cex, 1, (), time.perf_counter() - t_dead)
    if data_cycle:
        for p in rest:
            if p != "deadlock":
                results[p] = _unknown(p, "not checked: the schedule deadlocks whatever the message sizes (see"
                                         " deadlock), so no complete execution exists")
        return _report(s, props, results, t_all, warnings, timings, engine)
    if deadlock_unknown:
        results["deadlock"] = _unknown("deadlock", deadlock_unknown)
    elif "deadlock" in rest and not cycle:
        results["deadlock"] = PropertyResult("deadlock", Verdict.PROVED, _deadlock_text(s, full), None, 1, (),
                                             time.perf_counter() - t_dead)

    texts = {
        "dataflow": "every read sees exactly its expected values in every execution, for every message size,"
                    " and every receiver gets the value it declares",
        "race": "no two conflicting accesses can overlap in time, for every message size",
        "phase": "no SP in decode; on every rank each decode step starts after the previous step has"
                 " finished there, and after the previous token is sampled",
    }
    classes = None
    mem = memory_view(s)  # accesses renamed to the allocator block they touch
    if {"dataflow", "race"} & set(rest):
        classes = rank_classes(mem)
        t = lap("symmetry", t)
    for p in rest:
        if p == "deadlock":
            continue
        pre: list[MetaOb] = []
        if p == "dataflow":
            obs: Sequence[AnyOb] = read_obligations(mem, classes=classes)
            pre, trusted = message_obligations(s, m)
            if trusted:
                warnings += (f"{trusted} receiver{'s' if trusted != 1 else ''} (recv or broadcast member)"
                             " declare a value that their sender does not declare: the received value is"
                             " taken on trust there; give the send's reads a value to have it checked",)
        elif p == "race":
            obs = race_obligations(mem, classes=classes)
        else:
            obs = phase_obligations(s, phase_pass)
        t = lap(f"obligations:{p}", t)
        results[p] = _property(mem if p != "phase" else s, p, obs, backend, prec, max_cex, replayer, texts[p], pre,
                               orig=s, noop_waits=m.noop_waits, events=m.events)
        t = lap(f"decide:{p}", t)
    return _report(s, props, results, t_all, warnings, timings, engine)


def _deadlock_text(s: Schedule, full: Precedence) -> str:
    if s.p2p == "eager":
        msgs = "with every message buffered (p2p: eager, as the schedule asserts)"
    elif s.p2p == "rendezvous":
        msgs = "with every message blocking until its receiver posts (p2p: rendezvous)"
    else:
        msgs = "even when every message is larger than the transport's buffer and blocks"
    prog = ("kernels of different communicators progress side by side, as the schedule asserts"
            if s.progress == "concurrent" else "even when NCCL runs no two communicators' kernels side by side")
    return (f"no cycle of waits: every run can finish, {msgs}, and {prog}; every communicator's ops run in"
            " issue order on every rank")


def _report(s: Schedule, props: Sequence[str], results: dict[str, PropertyResult], t0: float,
            warnings: tuple[str, ...], timings: list[tuple[str, float]], engine: str) -> Report:
    ordered = tuple(results[p] for p in PROPERTIES if p in props or p == "matching")
    ordered = tuple(r for r in ordered if r.property in props)
    return Report(s.name, s.source, len(s.ops), ordered, engine, time.perf_counter() - t0, warnings,
                  tuple(timings))
