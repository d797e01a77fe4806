"""Who hung the job?  The per-rank communication trace of a (hung or
finished) multi-rank run, and the analysis that names the rank that caused
the first divergence.

The importers (:mod:`.flight_recorder`, :mod:`.profiler`) turn dumps and
traces into a :class:`Job`: for every rank, the communication ops it issued
in issue order, each with its process group and collective number, sizes,
dtype, state (completed, in flight, ...), a user-level label and the source
frames when the data has them.  :func:`analyse` then works in four steps:

1. **Align.**  The k-th collective a rank issues on a group (its collective
   number, as the Flight Recorder counts it) belongs to instance k of that
   group; sends and receives pair first in, first out per (source,
   destination, tag).  The first instance of a group where the members
   disagree (one never issued it, or they issued different kinds, sizes,
   dtypes or labels) is the group's *divergence*.
2. **Who waits for whom.**  Each rank's *frontier* is the first op it cannot
   finish: an instance some member never joined, a recv with no send, an op
   still in flight.  Each frontier names the ranks it waits for; following
   these edges gives chains that end at a rank that is not blocked (it
   skipped the op or crashed), at a mismatching instance, or in a cycle.
3. **The program.**  Every rank's sequence is compared with what all ranks
   do everywhere else: what usually follows an op (same kind, sizes, dtype
   and source location or label, with numbers such as the step and layer
   ignored), and what signature each source location usually has.  A rank
   whose op has never followed its predecessor anywhere else, while that
   predecessor is followed by something else elsewhere, departed from the
   program there; so did a rank whose op has a size or dtype that its source
   location never has elsewhere.  This is the majority program across time
   (earlier steps and layers) and across groups of the same shape.
4. **Decide.**  Among the ranks the waits point at, the ones that departed
   from the program are the culprits.  A strict majority inside a group of
   three or more decides a mismatch too.  When the evidence does not single
   out the culprit (no history yet, or ops the data does not record, such as
   send/recv in gloo dumps), the analysis says so and lists the candidates,
   most likely first.

Nothing here imports torch or z3.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

COLLECTIVE_KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "barrier",
                    "reduce", "gather", "scatter")
P2P_KINDS = ("send", "recv")
DONE = "completed"
IN_FLIGHT = ("started", "scheduled", "in_flight")

# Backend and API names -> our kind.  Flight Recorder profiling names
# ("gloo:all_reduce", "nccl:_all_gather_base"), c10d ops from the profiler
# ("c10d::allreduce_") and record_param_comms collective names all land here
# after the prefix is stripped.
_KIND_NAMES: dict[str, str] = {}
for _kind, _names in {
    "all_reduce": ("all_reduce", "allreduce", "allreduce_", "allreduce_coalesced", "allreduce_coalesced_",
                   "all_reduce_coalesced", "allreduce_sparse"),
    "all_gather": ("all_gather", "allgather", "allgather_", "_all_gather_base", "_allgather_base",
                   "_allgather_base_", "all_gather_base", "all_gather_into_tensor", "all_gather_single",
                   "all_gather_into_tensor_coalesced", "allgather_into_tensor_coalesced_", "allgather_coalesced_",
                   "ALLGATHER_coalesced", "all_gather_v", "all_gather_object"),
    "reduce_scatter": ("reduce_scatter", "reduce_scatter_", "_reduce_scatter_base", "_reduce_scatter_base_",
                       "reduce_scatter_base", "reduce_scatter_tensor", "reduce_scatter_single",
                       "reduce_scatter_tensor_coalesced", "reduce_scatter_tensor_coalesced_",
                       "REDUCE_SCATTER_coalesced", "reduce_scatter_v"),
    "all_to_all": ("all_to_all", "alltoall", "alltoall_", "alltoall_base", "alltoall_base_", "all_to_all_single",
                   "all_to_all_v_single", "all_to_allv"),
    "broadcast": ("broadcast", "broadcast_", "_broadcast_oop"),
    "barrier": ("barrier", "all_reduce_barrier", "monitored_barrier_"),
    "reduce": ("reduce", "reduce_", "_reduce_oop"),
    "gather": ("gather", "gather_"),
    "scatter": ("scatter", "scatter_"),
    "send": ("send", "isend"),
    "recv": ("recv", "recv_", "irecv", "recv_any_source_"),
}.items():
    for _n in _names:
        _KIND_NAMES[_n] = _kind
        _KIND_NAMES[_n.lower()] = _kind


def kind_of(name: str) -> str | None:
    """Our kind for a backend or API op name, or None if it is not communication."""
    base = name.split("::")[-1].split(":")[-1].strip().split(" ")[0]
    return _KIND_NAMES.get(base) or _KIND_NAMES.get(base.lower())


_DTYPES = {
    "float": "float32", "float32": "float32", "c10::float": "float32",
    "double": "float64", "float64": "float64",
    "half": "float16", "c10::half": "float16", "float16": "float16",
    "bfloat16": "bfloat16", "c10::bfloat16": "bfloat16",
    "long": "int64", "long int": "int64", "int64": "int64",
    "int": "int32", "int32": "int32",
    "short": "int16", "short int": "int16", "int16": "int16",
    "char": "int8", "signed char": "int8", "int8": "int8",
    "byte": "uint8", "unsigned char": "uint8", "uint8": "uint8",
    "bool": "bool",
    "complexfloat": "complex64", "c10::complex<float>": "complex64",
    "complexdouble": "complex128", "c10::complex<double>": "complex128",
    "float8_e4m3fn": "float8_e4m3fn", "float8_e5m2": "float8_e5m2",
}


def dtype_name(raw: str) -> str:
    """One spelling for the Flight Recorder's ``Float`` and the profiler's ``float``."""
    key = raw.strip().lower()
    return _DTYPES.get(key, key)


_LIBRARY_PATH = re.compile(r"(/|\\)(site-packages|dist-packages|torch|lib/python3[^/\\]*)(/|\\)|^<")


def user_frames(frames: Iterable[tuple[str, str, int]]) -> tuple[tuple[str, str, int], ...]:
    """The frames of the user's code (innermost first): library and
    standard-library frames dropped, file names shortened to their base name."""
    out = []
    for name, filename, line in frames:
        if _LIBRARY_PATH.search(filename.replace("\\", "/")):
            continue
        out.append((name, re.split(r"[/\\]", filename)[-1], line))
    return tuple(out)


def frames_label(frames: Sequence[tuple[str, str, int]], depth: int = 3) -> str:
    """``run_step:214 > layer_decode:190 > all_reduce:160`` (outermost first)."""
    inner = list(frames[:depth])
    return " > ".join(f"{n}:{ln}" for n, _f, ln in reversed(inner))


# ---------------------------------------------------------------- the trace
@dataclass
class CommOp:
    """One communication op as a rank issued it."""

    rank: int
    kind: str  # the user-level op (from the profiler when there is one), e.g. reduce_scatter
    ran_as: str = ""  # what the backend recorded when it differs (gloo runs reduce_scatter as all_reduce)
    group: str | None = None  # process-group key (the name torch gave it, e.g. "1")
    seq: int | None = None  # collective number on the group on this rank (the Flight Recorder's, from 1)
    peer: int | None = None  # global rank at the other end of a send/recv
    tag: int = 0
    in_sizes: tuple[tuple[int, ...], ...] = ()
    out_sizes: tuple[tuple[int, ...], ...] = ()
    dtype: str | None = None
    root: int | None = None
    state: str = "unknown"  # completed | started | scheduled | in_flight | unknown
    label: str = ""  # user-level label: record_function ranges (decode2/L1/mlp) or source frames
    frames: tuple[tuple[str, str, int], ...] = ()  # user frames, innermost first
    time_ns: int | None = None  # when it was issued (ns since the epoch)
    record_id: int | None = None
    source: str = "fr"  # fr | profiler | fr+profiler
    batch: str | None = None  # coalesced group (ncclGroupStart/End, batch_isend_irecv) it was issued in

    @property
    def is_p2p(self) -> bool:
        return self.kind in P2P_KINDS

    @property
    def is_collective(self) -> bool:
        return self.kind in COLLECTIVE_KINDS

    @property
    def numel(self) -> int:
        return sum(math.prod(s) for s in self.in_sizes)

    @property
    def out_numel(self) -> int:
        return sum(math.prod(s) for s in self.out_sizes)

    @property
    def done(self) -> bool:
        return self.state == DONE

    @property
    def in_flight(self) -> bool:
        return self.state in IN_FLIGHT

    @property
    def shown_kind(self) -> str:
        if self.ran_as and self.ran_as != self.kind:
            return f"{self.kind} (run as {self.ran_as})"
        return self.kind


@dataclass
class RankTrace:
    rank: int
    ops: list[CommOp] = field(default_factory=list)
    fr_file: str | None = None
    profiler_file: str | None = None
    backend: str | None = None
    complete_from_start: bool = True  # the rank's first op is in ``ops`` (no ring-buffer loss)
    p2p_visible: bool = True  # sends and recvs are recorded


@dataclass(frozen=True)
class Group:
    key: str  # the process-group name torch recorded ("0", "1", ...)
    name: str  # a readable unique name ("default_pg", "tp0")
    members: tuple[int, ...]
    how: str  # where membership came from: pg_config | profiler | inferred


@dataclass
class Job:
    name: str
    world: tuple[int, ...]
    groups: dict[str, Group]
    ranks: dict[int, RankTrace]
    missing: tuple[int, ...] = ()
    backend: str = "unknown"
    warnings: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def group_name(self, key: str | None) -> str:
        if key is None:
            return "?"
        g = self.groups.get(key)
        return g.name if g is not None else key

    def describe(self, op: CommOp, with_rank: bool = True) -> str:
        """``r1 all_reduce#16(tp0) [decode2/L1/mlp]``."""
        head = f"r{op.rank} " if with_rank else ""
        if op.is_p2p:
            arrow = "->" if op.kind == "send" else "<-"
            body = f"{op.kind}({arrow}{op.peer if op.peer is not None else '?'})"
        else:
            body = f"{op.shown_kind}"
            if op.seq is not None or op.group is not None:
                body += f"#{op.seq if op.seq is not None else '?'}({self.group_name(op.group)})"
        return f"{head}{body}" + (f" [{op.label}]" if op.label else "")


def rank_list(ranks: Iterable[int]) -> str:
    """``0, 2, 5-131071``: ranks in order, runs of three or more as a range."""
    rs = sorted(set(ranks))
    parts: list[str] = []
    i = 0
    while i < len(rs):
        j = i
        while j + 1 < len(rs) and rs[j + 1] == rs[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{rs[i]}-{rs[j]}")
        else:
            parts.extend(str(r) for r in rs[i:j + 1])
        i = j + 1
    return ", ".join(parts)


def candidates_text(cands: Sequence[int], head: int = 12) -> str:
    """``rank 3, rank 0``, in the given order; past ``head`` of them, the rest as ranges."""
    text = ", ".join(f"rank {r}" for r in cands[:head])
    if len(cands) > head:
        text += f", then ranks {rank_list(cands[head:])} ({len(cands)} in all)"
    return text


# ---------------------------------------------------------------- results
@dataclass
class Culprit:
    rank: int
    op: str  # the kind of the op at fault: all_reduce, send, ...
    label: str
    what: str  # skipped | out of order | wrong size | wrong dtype | wrong kind | never sent | ...
    group: str | None = None
    seq: int | None = None
    peer: int | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"rank": self.rank, "op": self.op, "label": self.label, "what": self.what}
        if self.group is not None:
            d["group"] = self.group
        if self.seq is not None:
            d["seq"] = self.seq
        if self.peer is not None:
            d["peer"] = self.peer
        return d

    def text(self) -> str:
        where = ""
        if self.group is not None:
            where = f" #{self.seq}" if self.seq is not None else ""
            where += f" on {self.group}"
        elif self.peer is not None:
            where = f" {'to' if self.op == 'send' else 'from'} rank {self.peer}"
        return f"rank {self.rank}: {self.op}{where}" + (f" [{self.label}]" if self.label else "") + f" ({self.what})"


@dataclass
class Analysis:
    verdict: str  # "clean" or "fault"
    decided: bool
    summary: str
    culprits: list[Culprit] = field(default_factory=list)
    candidates: list[int] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    blocked: dict[int, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.verdict == "fault" else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "decided": self.decided,
            "summary": self.summary,
            "culprits": [c.to_json() for c in self.culprits],
            "candidates": list(self.candidates),
            "reasoning": list(self.reasoning),
            "blocked": {str(r): t for r, t in sorted(self.blocked.items())},
        }

    def text(self) -> str:
        lines = [f"verdict: {self.verdict}" + ("" if self.verdict == "clean" else
                                               f" ({'decided' if self.decided else 'cannot decide'})")]
        if not self.culprits:
            lines.append(f"  {self.summary}")
        if self.culprits:
            lines.append("culprit" + ("s" if len(self.culprits) > 1 else "") + ":")
            lines.extend(f"  {c.text()}" for c in self.culprits)
        if not self.decided and self.candidates and self.verdict != "clean":
            lines.append("candidates (most likely first): " + candidates_text(self.candidates))
        if self.reasoning:
            lines.append("why:")
            lines.extend(f"  - {r}" for r in self.reasoning)
        if self.blocked:
            lines.append("where each rank is:")
            rows = sorted(self.blocked.items())
            i = 0
            while i < len(rows):  # runs of ranks with the same line (e.g. many without data) as one line
                j = i
                while j + 1 < len(rows) and rows[j + 1][1] == rows[i][1] and rows[j + 1][0] == rows[j][0] + 1:
                    j += 1
                head = f"r{rows[i][0]}" if j - i < 2 else f"r{rows[i][0]}-r{rows[j][0]}"
                lines.append(f"  {head}: {rows[i][1]}")
                if 0 < j - i < 2:
                    lines.extend(f"  r{r}: {t}" for r, t in rows[i + 1:j + 1])
                i = j + 1
        return "\n".join(lines)


# ---------------------------------------------------------------- analysis
def _norm_label(label: str) -> str:
    return re.sub(r"\d+", "#", label)


def _sig(op: CommOp, job: Job) -> tuple[object, ...]:
    """What must agree between the members of one instance (or a send and its recv)."""
    if op.is_p2p:
        return (op.kind, op.numel)
    if op.kind == "all_to_all":
        return (op.kind, op.dtype)
    return (op.kind, _numels(op.in_sizes), _numels(op.out_sizes), op.dtype, op.root)


def _numels(sizes: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    """Element counts: gloo records an all_gather's output as [2, 2, 8] where the API saw [4, 8]."""
    return tuple(math.prod(s) for s in sizes)


def _sig_equal(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Signatures agree, an unknown dtype (None) matching any."""
    if len(a) != len(b):
        return False
    return all(x == y or x is None or y is None for x, y in zip(a, b, strict=True))


def _shape_key(op: CommOp, job: Job) -> tuple[object, ...]:
    """The part of an op that the program fixes, independent of which group
    or peer: kind, group size or peer offset, sizes, dtype."""
    if op.is_p2p:
        off = (op.peer - op.rank) if op.peer is not None else None
        return (op.kind, off, _numels(op.in_sizes or op.out_sizes))
    g = job.groups.get(op.group) if op.group is not None else None
    size = len(g.members) if g is not None and g.how != "inferred" else None  # inferred: may lack ranks
    return (op.kind, size, _numels(op.in_sizes), _numels(op.out_sizes), op.dtype)


def _site(op: CommOp, labels: bool) -> tuple[object, ...] | None:
    """Where in the program an op comes from: its record_function label with
    numbers elided (``decode#/L#/mlp``) when the job has profiler labels, else
    its source frames (function and line of each user frame)."""
    if labels:
        return ("label", _norm_label(op.label)) if op.label and op.source != "fr" else None
    if op.frames:
        return ("frames",) + tuple((n, ln) for n, _f, ln in op.frames)
    return None


def _role(op: CommOp, job: Job) -> tuple[object, ...]:
    """Kind and group size (or direction): ops of one role at one source
    location must agree on sizes and dtype."""
    return _shape_key(op, job)[:2]


def _key(op: CommOp, job: Job, labels: bool) -> tuple[object, ...]:
    return (_shape_key(op, job), _site(op, labels))


def _what_differs(a: CommOp, b: CommOp) -> str:
    if a.kind != b.kind:
        return "wrong kind"
    if a.dtype is not None and b.dtype is not None and a.dtype != b.dtype:
        return "wrong dtype"
    if _numels(a.in_sizes) != _numels(b.in_sizes) or _numels(a.out_sizes) != _numels(b.out_sizes):
        return "wrong size"
    if a.root != b.root:
        return "wrong root"
    return "issued from a different place"


def state_text(op: CommOp) -> str:
    return {"in_flight": "in flight", "unknown": "issued"}.get(op.state, op.state)


def sizes_text(op: CommOp) -> str:
    parts = []
    if op.in_sizes:
        parts.append("in " + ",".join(str(list(s)) for s in op.in_sizes))
    if op.out_sizes and op.out_sizes != op.in_sizes:
        parts.append("out " + ",".join(str(list(s)) for s in op.out_sizes))
    if op.dtype:
        parts.append(op.dtype)
    return " ".join(parts)


@dataclass
class _Instance:
    group: str
    seq: int
    present: dict[int, CommOp]
    absent: list[int]  # members with data that never issued it
    unknown: list[int]  # members whose data does not say
    status: str  # ok | absent | conflict | label | stalled


@dataclass
class _Frontier:
    rank: int
    op: CommOp
    kind: str  # absent | conflict | label | p2p | p2p_size | stalled
    waits: list[int]
    inst: _Instance | None = None
    partner_index: int | None = None  # p2p: the FIFO number that has no partner


@dataclass
class _Deviation:
    rank: int
    index: int
    op: CommOp
    kind: str  # order | signature
    text: str
    what: str = "out of order"


class _Analyser:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.labels = any(op.source != "fr" and op.label for rt in job.ranks.values() for op in rt.ops)
        self.index: dict[int, int] = {}  # id(op) -> position in its rank's list
        for rt in job.ranks.values():
            for i, op in enumerate(rt.ops):
                self.index[id(op)] = i

    # ---- step 1: align collectives
    def align(self) -> None:
        job = self.job
        self.cols: dict[str, dict[int, dict[int, CommOp]]] = defaultdict(lambda: defaultdict(dict))
        for rt in job.ranks.values():
            for op in rt.ops:
                if op.is_collective and op.group is not None and op.seq is not None:
                    self.cols[op.group][rt.rank].setdefault(op.seq, op)
        self.instances: dict[str, list[_Instance]] = {}
        self.first_div: dict[str, _Instance] = {}
        for key, g in job.groups.items():
            per = self.cols.get(key, {})
            if not per:
                continue
            starts = []
            for m in g.members:
                mt = job.ranks.get(m)
                if mt is None or m not in per:
                    continue
                if not mt.complete_from_start:
                    starts.append(min(per[m]))
            lo = max(starts) if starts else min(min(v) for v in per.values())
            hi = max(max(v) for v in per.values())
            insts = []
            seqs = sorted({k for v in per.values() for k in v if lo <= k <= hi})
            for k in seqs:
                present = {m: per[m][k] for m in g.members if m in per and k in per[m]}
                absent, unknown = [], []
                for m in g.members:
                    if m in present:
                        continue
                    mt = job.ranks.get(m)
                    has_data = mt is not None and (mt.complete_from_start or m in per)
                    if has_data and (m not in per or max(per[m]) < k or mt is not None and mt.complete_from_start):
                        absent.append(m)
                    else:
                        unknown.append(m)
                status = "ok"
                ops = list(present.values())
                if absent and present:
                    status = "absent"
                elif len(ops) >= 2 and not self._agree(ops):
                    status = "conflict"
                elif len(ops) >= 2 and self._sites_differ(ops):
                    status = "label"
                elif ops and not absent and not unknown and any(o.in_flight for o in ops) and \
                        all(not o.done for o in ops):
                    status = "stalled"
                inst = _Instance(key, k, present, absent, unknown, status)
                insts.append(inst)
                if status != "ok" and key not in self.first_div:
                    self.first_div[key] = inst
            self.instances[key] = insts
        self.inst_of: dict[int, _Instance] = {}
        for insts in self.instances.values():
            for inst in insts:
                for op in inst.present.values():
                    self.inst_of[id(op)] = inst

    def _sites_differ(self, ops: Sequence[CommOp]) -> bool:
        """Members issued one instance from different places: different
        labels (numbers elided), or, without labels, different source frames."""
        sites = [_site(o, self.labels) for o in ops]
        return None not in sites and len(set(sites)) > 1

    def _agree(self, ops: Sequence[CommOp]) -> bool:
        sigs = [_sig(o, self.job) for o in ops]
        if not all(_sig_equal(sigs[0], s) for s in sigs[1:]):
            return False
        if ops[0].kind == "all_to_all" and all(o.in_sizes and o.out_sizes for o in ops):
            return sum(o.numel for o in ops) == sum(o.out_numel for o in ops)
        return True

    # ---- step 1b: pair sends and receives
    def pair(self) -> None:
        job = self.job
        sends: dict[tuple[int, int, int], list[CommOp]] = defaultdict(list)
        recvs: dict[tuple[int, int, int], list[CommOp]] = defaultdict(list)
        for rt in job.ranks.values():
            if not rt.p2p_visible:
                continue
            for op in rt.ops:
                if op.peer is None:
                    continue
                if op.kind == "send":
                    sends[(op.rank, op.peer, op.tag)].append(op)
                elif op.kind == "recv":
                    recvs[(op.peer, op.rank, op.tag)].append(op)
        self.p2p_state: dict[int, tuple[str, int, CommOp | None]] = {}  # id(op) -> (status, n, partner)
        self.p2p_problems: list[tuple[CommOp, CommOp]] = []
        for key in set(sends) | set(recvs):
            src, dst, _tag = key
            ss, rr = sends.get(key, []), recvs.get(key, [])
            src_seen = src in job.ranks and job.ranks[src].p2p_visible
            dst_seen = dst in job.ranks and job.ranks[dst].p2p_visible
            for n in range(max(len(ss), len(rr))):
                a = ss[n] if n < len(ss) else None
                b = rr[n] if n < len(rr) else None
                if a is not None and b is not None:
                    known = bool(a.in_sizes) and bool(b.out_sizes)
                    status = "size" if known and a.numel != b.out_numel else "ok"
                    self.p2p_state[id(a)] = (status, n, b)
                    self.p2p_state[id(b)] = (status, n, a)
                    if status == "size":
                        self.p2p_problems.append((a, b))
                elif a is not None:
                    self.p2p_state[id(a)] = ("unpaired" if dst_seen else
                                             "missing" if dst not in job.ranks else "unknown", n, None)
                elif b is not None:
                    self.p2p_state[id(b)] = ("unpaired" if src_seen else
                                             "missing" if src not in job.ranks else "unknown", n, None)

    # ---- step 2: frontiers and waits
    def frontiers(self) -> None:
        self.front: dict[int, _Frontier] = {}
        for r, rt in self.job.ranks.items():
            for op in rt.ops:
                f = self._blocks(op)
                if f is not None:
                    self.front[r] = f
                    break

    def _blocks(self, op: CommOp) -> _Frontier | None:
        if op.is_collective:
            inst = self.inst_of.get(id(op))
            if inst is None:
                return None  # outside the aligned window, or no group known
            if inst.status == "ok":
                return None
            if op.done and inst.status in ("absent", "stalled"):
                return None  # the Flight Recorder saw it finish
            if inst.status == "absent":
                return _Frontier(op.rank, op, "absent", inst.absent + inst.unknown, inst)
            if inst.status in ("conflict", "label"):
                if op.done:
                    return None
                others = [m for m in inst.present if m != op.rank]
                return _Frontier(op.rank, op, inst.status, others, inst)
            return _Frontier(op.rank, op, "stalled", [], inst)
        if op.is_p2p:
            st = self.p2p_state.get(id(op))
            if st is None:
                return None
            status, n, _partner = st
            last = self.job.ranks[op.rank].ops[-1] is op
            if (status == "unpaired" or status == "missing" and last) and not op.done:
                return _Frontier(op.rank, op, "p2p", [op.peer] if op.peer is not None else [], partner_index=n)
            if status == "size" and not op.done:
                return _Frontier(op.rank, op, "p2p_size", [op.peer] if op.peer is not None else [],
                                 partner_index=n)
        return None

    # ---- step 3: the program
    def program(self) -> None:
        job = self.job
        keys: dict[int, tuple[object, ...]] = {}
        trans: Counter[tuple[object, object]] = Counter()
        source_count: Counter[object] = Counter()
        site_sigs: dict[object, Counter[tuple[object, ...]]] = defaultdict(Counter)
        seqs: dict[int, list[tuple[object, CommOp | None]]] = {}
        for r, rt in job.ranks.items():
            seq: list[tuple[object, CommOp | None]] = []
            if rt.complete_from_start:
                seq.append((("START",), None))
            for op in rt.ops:
                k = _key(op, job, self.labels)
                keys[id(op)] = k
                seq.append((k, op))
                site = _site(op, self.labels)
                if site is not None:
                    site_sigs[(site, _role(op, job))][_shape_key(op, job)] += 1
            seqs[r] = seq
            for (a, _oa), (b, _ob) in zip(seq, seq[1:], strict=False):
                trans[(a, b)] += 1
                source_count[a] += 1
        self._keys = keys
        self.deviations: dict[int, list[_Deviation]] = defaultdict(list)
        for r, seq in seqs.items():
            for i in range(1, len(seq)):
                a, op_a = seq[i - 1]
                b, op_b = seq[i]
                assert op_b is not None
                op = op_b
                # signature: this op's source location never has this signature elsewhere
                site = _site(op, self.labels)
                if site is not None:
                    cnt = site_sigs[(site, _role(op, job))].copy()
                    mine = _shape_key(op, job)
                    cnt[mine] -= 1
                    total = sum(cnt.values())
                    if cnt[mine] <= 0 and total >= 2:
                        best, nbest = cnt.most_common(1)[0]
                        if nbest * 2 > total:
                            ref = self._example(site, best)
                            what = _what_differs(op, ref) if ref is not None else "wrong signature"
                            self.deviations[r].append(_Deviation(
                                r, i - 1, op, "signature",
                                f"rank {r} issued {job.describe(op, False)} with {sizes_text(op)}; the same"
                                f" op has {sizes_text(ref) if ref else best} everywhere else ({nbest} times)",
                                what))
                            continue
                # order: what follows a's op everywhere else never follows it this way
                if trans[(a, b)] - 1 <= 0 and source_count[a] - 1 >= 1:
                    usual = Counter({bb: n for (aa, bb), n in trans.items() if aa == a and bb != b})
                    if usual:
                        texts = []
                        what = "out of order"
                        for j, (nb, cnt_b) in enumerate(usual.most_common(2)):
                            ex = self._example_key(nb, op_a.group if op_a is not None else op.group)
                            if j == 0 and ex is not None and ex.kind == op.kind and op.is_collective:
                                differs = _what_differs(op, ex)
                                if differs in ("wrong size", "wrong dtype"):
                                    what = differs
                            texts.append(f"{self._pattern(ex) if ex else 'something else'} ({cnt_b}"
                                         f" time{'s' if cnt_b != 1 else ''})")
                        prev = "its first op" if op_a is None else job.describe(op_a, False)
                        usual_text = " or ".join(texts)
                        lead = "the other ranks start with" if op_a is None else \
                            f"after {self._pattern(op_a)} the ranks issue"
                        self.deviations[r].append(_Deviation(
                            r, i - 1, op, "order",
                            f"{lead} {usual_text}, never what rank {r} did:"
                            f" issued {job.describe(op, False)} {'first' if op_a is None else f'after {prev}'}"
                            + (f" ({sizes_text(op)})" if what != "out of order" else ""), what))

    def _pattern(self, op: CommOp) -> str:
        """An op as the program knows it: kind, group or peer offset, label with numbers elided."""
        job = self.job
        if op.is_p2p:
            off = (op.peer - op.rank) if op.peer is not None else None
            body = f"{op.kind}({'->' if op.kind == 'send' else '<-'}rank{'' if off is None else f'{off:+d}'})"
        else:
            g = job.groups.get(op.group) if op.group is not None else None
            body = f"{op.shown_kind}({g.name if g else '?'})"
        label = _norm_label(op.label) if op.label and op.source != "fr" else \
            (frames_label(op.frames) if op.frames else "")
        return body + (f" [{label}]" if label else "") + (f" {sizes_text(op)}" if not label else "")

    def _example(self, site: object, shape: tuple[object, ...]) -> CommOp | None:
        for rt in self.job.ranks.values():
            for op in rt.ops:
                if _site(op, self.labels) == site and _shape_key(op, self.job) == shape:
                    return op
        return None

    def _example_key(self, key: object, group: str | None = None) -> CommOp | None:
        """An op with this key: one on ``group`` when there is one (the key
        leaves the group out, and the text should not name another group)."""
        first = None
        for rt in self.job.ranks.values():
            for op in rt.ops:
                if self._keys.get(id(op)) == key:
                    if group is None or op.group == group:
                        return op
                    first = first or op
        return first

    # ---- helpers for text
    def _time(self, op: CommOp | None) -> float:
        return float(op.time_ns) if op is not None and op.time_ns is not None else math.inf

    def _blocked_text(self) -> dict[int, str]:
        out: dict[int, str] = {}
        job = self.job
        missing = set(job.missing)
        for r in job.world:
            if r in missing:
                out[r] = "no dump (missing)" if r not in job.ranks else "no data"
                continue
            rt = job.ranks[r]
            f = self.front.get(r)
            n_c = sum(1 for o in rt.ops if o.is_collective)
            n_p = sum(1 for o in rt.ops if o.is_p2p)
            count = f"{n_c} collectives" + (f", {n_p} send/recv" if rt.p2p_visible else
                                             " (send/recv not recorded)")
            if f is not None:
                state = state_text(f.op)
                waits = ""
                if f.waits:
                    waits = "; waits for " + ", ".join(f"rank {w}" for w in sorted(set(f.waits)))
                out[r] = f"{count}; stuck at {job.describe(f.op, False)} ({state}){waits}"
            else:
                last = rt.ops[-1] if rt.ops else None
                if last is None:
                    out[r] = f"{count}; issued nothing"
                else:
                    out[r] = f"{count}; not blocked in a recorded op (last: {job.describe(last, False)}," \
                             f" {state_text(last)})"
        return out

    # ---- step 4: decide
    def decide(self) -> Analysis:
        job = self.job
        self.align()
        self.pair()
        self.frontiers()
        self.program()
        blocked = self._blocked_text()

        # roots: where the chains of waits end, and mismatches
        roots: list[tuple[float, str, list[int], str, object]] = []  # (time, kind, ranks, text, data)
        for key, inst in self.first_div.items():
            gname = job.group_name(key)
            ops = sorted(inst.present.values(), key=lambda o: o.rank)
            t = min((self._time(o) for o in ops), default=math.inf)
            if inst.status == "absent":
                waiting = ", ".join(job.describe(o) + f" ({state_text(o)})" for o in ops)
                roots.append((t, "absent", inst.absent, f"{gname} agrees up to #{inst.seq - 1}; at #{inst.seq}"
                              f" {waiting}, and rank{'s' if len(inst.absent) > 1 else ''}"
                              f" {', '.join(map(str, inst.absent))} never issued it", inst))
            elif inst.status in ("conflict", "label"):
                descr = "; ".join(f"{job.describe(o)}: {sizes_text(o)}" for o in ops)
                roots.append((t, inst.status, sorted(inst.present), f"{gname} #{inst.seq} does not match: {descr}",
                              inst))
            elif inst.status == "stalled":
                roots.append((t, "stalled", sorted(inst.present), f"every member of {gname} entered #{inst.seq}"
                              f" with matching ops, and it is still in flight", inst))
        for a, b in self.p2p_problems:
            roots.append((min(self._time(a), self._time(b)), "p2p_size", [a.rank, b.rank],
                          f"{job.describe(a)} sends {a.numel} elements but {job.describe(b)} expects {b.out_numel}",
                          (a, b)))
        # waits on ranks that are not blocked, or missing
        waited: dict[int, list[_Frontier]] = defaultdict(list)
        for f in self.front.values():
            for w in f.waits:
                waited[w].append(f)
        for x, fs in waited.items():
            if x in self.front:
                continue
            t = min(self._time(f.op) for f in fs)
            what = ", ".join(f"{job.describe(f.op)}" for f in fs)
            if x not in job.ranks:
                roots.append((t, "missing", [x], f"rank {x} has no dump, and {what} wait{'s' if len(fs) == 1 else ''}"
                              f" for it", fs))
            elif any(f.kind == "p2p" for f in fs):
                roots.append((t, "unpaired", [x], f"{what} wait{'s' if len(fs) == 1 else ''} for rank {x},"
                              f" which is not blocked in any recorded op", fs))
        # cycles of waits among blocked ranks
        for cyc in _cycles({r: [w for w in f.waits if w in self.front] for r, f in self.front.items()}):
            t = min(self._time(self.front[r].op) for r in cyc)
            chain = " -> ".join(f"r{r}" for r in cyc + [cyc[0]])
            steps = "; ".join(f"r{r} waits in {job.describe(self.front[r].op, False)}" for r in cyc)
            roots.append((t, "cycle", list(cyc), f"the waits form a cycle {chain} ({steps})", cyc))
        # a size or dtype that the op's source location never has elsewhere is a fault by itself
        for r, devs in sorted(self.deviations.items()):
            sig = [d for d in devs if d.kind == "signature"]
            if sig:
                roots.append((self._time(sig[0].op), "deviation", [r], sig[0].text, sig[0]))
        # a rank with no data: nothing shows what it did, so the run cannot be called clean
        listed = {x for _t, _k, rs, _tx, _d in roots for x in rs}
        silent = [x for x in job.missing if x not in listed]
        if silent:
            roots.append((math.inf, "missing", silent, f"rank{'s' if len(silent) > 1 else ''} {rank_list(silent)}"
                          f" left no data: nothing shows what {'they' if len(silent) > 1 else 'it'} did", None))

        if not roots:
            stuck = [r for r, f in self.front.items()]
            summary = "no divergence in the data: every rank's ops match"
            if job.missing:
                summary += f" (no data from rank{'s' if len(job.missing) > 1 else ''}"\
                           f" {rank_list(job.missing)})"
            reasoning = self._alignment_notes()
            if stuck:
                reasoning.append("ops still in flight with every member present: " +
                                 ", ".join(job.describe(self.front[r].op) for r in stuck))
            no_dtype = sum(1 for rt in job.ranks.values() for o in rt.ops if o.is_collective and o.dtype is None)
            if no_dtype:
                reasoning.append(f"{no_dtype} collectives have no dtype in the data (gloo profiler traces record"
                                 " none for tensor lists): a dtype mismatch there would not show")
            return Analysis("clean", True, summary, reasoning=reasoning, blocked=blocked)

        roots.sort(key=lambda x: x[0])
        reasoning = [text for _t, _k, _r, text, _d in roots]
        reasoning += self._frames_notes(roots)

        # candidates in order of the roots
        candidates: list[int] = []
        seen: set[int] = set()
        for _t, _k, rs, _text, _d in roots:
            for r in rs:
                if r not in seen:
                    seen.add(r)
                    candidates.append(r)
        blind = [r for r in job.world if r in job.ranks and not job.ranks[r].p2p_visible]
        unknown_state = [r for r in job.world if r in job.ranks and r not in self.front]

        # 1. a strict majority inside one group of three or more
        _t0, kind0, ranks0, _text0, _data0 = roots[0]
        for _t, kind, _rs, _text, data in roots:
            if kind != "conflict" or not isinstance(data, _Instance) or len(data.present) < 3:
                continue
            maj = self._majority(data)
            if maj is not None:
                culprits = [self._culprit_at(data, r, data.present[maj]) for r in sorted(data.present)
                            if not _sig_equal(_sig(data.present[r], job), _sig(data.present[maj], job))]
                reasoning.append(f"most members of {job.group_name(data.group)} issued"
                                 f" {job.describe(data.present[maj], False)} ({sizes_text(data.present[maj])})")
                return self._result(True, culprits, candidates, reasoning, blocked)
            break

        # 2. the program: candidates that departed from it
        first_dev: dict[int, _Deviation] = {}
        for r, devs in self.deviations.items():
            limit = self.index.get(id(self.front[r].op), len(job.ranks[r].ops)) if r in self.front else \
                len(job.ranks[r].ops)
            devs = [d for d in devs if d.index <= limit]
            if devs:  # the strongest evidence first: a wrong size or dtype, then order, then the first op
                first_dev[r] = min(devs, key=lambda d: (d.kind != "signature",
                                                        d.text.startswith("the other ranks start"), d.index))
        pool = list(candidates)
        if blind:  # a rank not blocked in a recorded op may be blocked in an unrecorded send/recv
            pool += [r for r in unknown_state if r not in pool]
        deviants = [r for r in pool if r in first_dev]
        for r in deviants:
            if first_dev[r].text in reasoning:
                continue
            reasoning.append(f"rank {r} departs from the program: {first_dev[r].text}")
        others = sorted(r for r in pool if r not in first_dev and r in job.ranks)
        if len(deviants) == 1:
            x = deviants[0]
            if others:
                waiters = [w for w in others if w in self.front]
                reasoning.append(f"rank{'s' if len(others) > 1 else ''} {rank_list(others)}"
                                 f" follow{'s' if len(others) == 1 else ''} the program"
                                 + ((" up to where they wait" if len(others) > 1 else " up to where it waits")
                                    if waiters else ""))
            culprit = self._culprit_for(x, first_dev[x], roots)
            return self._result(True, [culprit], [x] + [c for c in candidates if c != x], reasoning, blocked)
        if len(deviants) > 1:
            reasoning.append(f"ranks {', '.join(map(str, deviants))} all depart from the program at the"
                             " same point; the data cannot tell which of them is wrong")
            cands = deviants + [c for c in candidates if c not in deviants]
            return self._result(False, [], cands, reasoning, blocked)

        # 3. no program evidence: a rank that is not blocked anywhere never issued the op
        if kind0 in ("absent", "unpaired"):
            xs = ranks0
            hidden = [x for x in xs if x in job.ranks and not job.ranks[x].p2p_visible]
            if not hidden and all(x in job.ranks for x in xs):
                culprits = [self._culprit_absent(x, roots[0]) for x in xs]
                reasoning.append(f"rank{'s' if len(xs) > 1 else ''} {', '.join(map(str, xs))}"
                                 f" {'are' if len(xs) > 1 else 'is'} not blocked in any op the data records,"
                                 " so the op was never issued")
                return self._result(True, culprits, candidates, reasoning, blocked)
            reasoning.append(
                "the dumps do not record send/recv (gloo), so a rank that is not inside a recorded"
                " collective may be blocked in a send or recv: "
                + ", ".join(f"rank {r}" for r in unknown_state if r in xs or r in pool)
                + "; give the profiler traces (--profiler) to decide")
            cands = list(candidates)
            cands += [r for r in unknown_state if r not in cands]
            have = set(cands)
            cands += [r for r in job.missing if r not in have]
            # a hidden rank may wait in a recv for a rank that skipped its send and went on into the
            # collective where it now waits: the ranks waiting for a hidden one are candidates too
            late = [f.rank for f in self.front.values()
                    if f.rank not in have and any(w in xs for w in f.waits)]
            if late:
                them = f"rank{'s' if len(xs) > 1 else ''} {rank_list(xs)}"
                reasoning.append(f"rank{'s' if len(late) > 1 else ''} {rank_list(late)}, waiting for {them},"
                                 f" may have skipped a send that {them} waits for in turn")
            cands = self._by_activity(cands) + sorted(r for r in late if r not in cands)
            reasoning.append("candidates are listed by how recently each was active when the others got stuck"
                             " (a rank that kept going skipped something; one idle since long before was"
                             " probably waiting)")
            return self._result(False, [], cands, reasoning, blocked)
        if kind0 == "missing":
            reasoning.append(f"rank{'s' if len(ranks0) > 1 else ''} {rank_list(ranks0)} left no"
                             " dump (crashed, or the dump was not collected); nothing in the other dumps"
                             " departs from the program")
        elif kind0 in ("conflict", "label", "p2p_size"):
            reasoning.append("no history tells which side is right (a group of two, and no earlier"
                             " occurrence of these ops)")
        cands = list(candidates) + [r for r in job.missing if r not in seen]
        return self._result(False, [], cands, reasoning, blocked)

    def _by_activity(self, cands: list[int]) -> list[int]:
        job = self.job
        stuck_times = [self._time(f.op) for f in self.front.values()]
        t_stuck = min(stuck_times, default=math.inf)

        def gap(r: int) -> tuple[int, float]:
            rt = job.ranks.get(r)
            if rt is None or not rt.ops:
                return (1, 0.0)
            waiters = [self._time(f.op) for f in self.front.values() if r in f.waits]
            t_ref = min(waiters, default=t_stuck)
            last = max(self._time(o) if o.time_ns is not None else -math.inf for o in rt.ops)
            if math.isinf(t_ref) or math.isinf(last):
                return (0, math.inf)
            return (0, t_ref - last)

        return sorted(cands, key=gap)

    def _majority(self, inst: _Instance) -> int | None:
        job = self.job
        ranks = sorted(inst.present)
        for r in ranks:
            agree = [m for m in ranks if _sig_equal(_sig(inst.present[m], job), _sig(inst.present[r], job))]
            if len(agree) * 2 > len(ranks):
                return r
        return None

    def _culprit_at(self, inst: _Instance, rank: int, ref: CommOp | None) -> Culprit:
        op = inst.present[rank]
        what = _what_differs(op, ref) if ref is not None else "mismatch"
        if ref is not None and what == "wrong kind" and self._out_of_order(inst, rank):
            what = "out of order"
        elif ref is not None and what == "issued from a different place" and self._ahead(inst, rank):
            if self._swapped(inst, rank, ref):
                what = "out of order"
            else:
                # the rank went on to the next op of the program: it skipped the one the others issued here
                # (the next instances then pair up one op off, unnoticed when the sizes agree)
                early = op.label or self.job.describe(op, False)
                return Culprit(rank, ref.kind, ref.label, f"skipped; issued {early} in its place, and the group"
                               " ran on one op off", self.job.group_name(inst.group), inst.seq)
        return Culprit(rank, op.kind, op.label, what, self.job.group_name(inst.group), inst.seq)

    def _swapped(self, inst: _Instance, rank: int, ref: CommOp) -> bool:
        """The rank's op at k+1 comes from where the others' op k comes from (two ops swapped)."""
        insts = {i.seq: i for i in self.instances.get(inst.group, [])}
        nxt = insts.get(inst.seq + 1)
        if nxt is None or rank not in nxt.present:
            return False
        mine = nxt.present[rank]
        if self.labels and mine.label and ref.label and mine.source != "fr" and ref.source != "fr":
            return mine.label == ref.label  # the very op (step and layer numbers too), one place later
        if _site(mine, self.labels) != _site(ref, self.labels):
            return False
        after = insts.get(inst.seq + 2)  # a swap realigns the group; a skip leaves it one op off
        return after is None or not self._sites_differ(list(after.present.values()))

    def _ahead(self, inst: _Instance, rank: int) -> bool:
        """The rank's op at k comes from where the others' op k+1 comes from."""
        nxt = next((i for i in self.instances.get(inst.group, []) if i.seq == inst.seq + 1), None)
        if nxt is None:
            return False
        mine = _site(inst.present[rank], self.labels)
        return any(_site(o, self.labels) == mine for m, o in nxt.present.items() if m != rank)

    def _out_of_order(self, inst: _Instance, rank: int) -> bool:
        """The rank's op at k is what the others issue at k+1 (a swap)."""
        nxt = next((i for i in self.instances.get(inst.group, []) if i.seq == inst.seq + 1), None)
        if nxt is None:
            # the others are stuck at k: compare with the usual successor in the program
            return True
        mine = inst.present[rank]
        others = [o for m, o in nxt.present.items() if m != rank]
        return any(_sig_equal(_sig(mine, self.job), _sig(o, self.job)) for o in others)

    def _culprit_for(self, x: int, dev: _Deviation, roots: list[tuple[float, str, list[int], str, object]]) \
            -> Culprit:
        job = self.job
        # a wrong signature: the op itself
        if dev.kind == "signature":
            op = dev.op
            return Culprit(x, op.kind, op.label, dev.what, job.group_name(op.group) if op.group else None,
                           op.seq, op.peer if op.is_p2p else None)
        # x took part in a mismatching instance: its op there
        for _t, kind, _rs, _text, data in roots:
            if kind in ("conflict", "label") and isinstance(data, _Instance) and x in data.present:
                ref = next((o for m, o in data.present.items() if m != x), None)
                return self._culprit_at(data, x, ref)
        # others wait for something x never issued
        for root in roots:
            if x in root[2] and root[1] in ("absent", "unpaired", "cycle"):
                c = self._culprit_absent(x, root)
                if c is not None:
                    return c
        for f in self.front.values():
            if x in f.waits:
                missing = self._missing_for(x, f)
                if missing is not None:
                    return missing
        op = dev.op
        return Culprit(x, op.kind, op.label, dev.what, job.group_name(op.group) if op.group else None,
                       op.seq, op.peer if op.is_p2p else None)

    def _culprit_absent(self, x: int, root: tuple[float, str, list[int], str, object]) -> Culprit:
        _t, kind, _rs, _text, data = root
        if isinstance(data, _Instance):
            ref = min(data.present.values(), key=lambda o: o.rank)
            return Culprit(x, ref.kind, ref.label, "skipped", self.job.group_name(data.group), data.seq)
        for f in sorted(self.front.values(), key=lambda f: self._time(f.op)):
            if x in f.waits:
                c = self._missing_for(x, f)
                if c is not None:
                    return c
        return Culprit(x, "?", "", "never issued the op the others wait for")

    def _missing_for(self, x: int, f: _Frontier) -> Culprit | None:
        op = f.op
        if f.kind == "absent" and f.inst is not None:
            return Culprit(x, op.kind, op.label, "skipped", self.job.group_name(f.inst.group), f.inst.seq)
        if f.kind == "p2p" and op.peer == x:
            other = "send" if op.kind == "recv" else "recv"
            return Culprit(x, other, op.label, f"never {'sent' if other == 'send' else 'received'}"
                           f" #{f.partner_index} {'to' if other == 'send' else 'from'} rank {op.rank}",
                           peer=op.rank)
        return None

    def _result(self, decided: bool, culprits: list[Culprit], candidates: list[int], reasoning: list[str],
                blocked: dict[int, str]) -> Analysis:
        if decided and culprits:
            summary = "; ".join(c.text() for c in culprits)
        else:
            summary = ("the data cannot single out the culprit; candidates: "
                       + candidates_text(candidates))
        return Analysis("fault", decided, summary, culprits, candidates, reasoning + self._alignment_notes(),
                        blocked)

    def _alignment_notes(self) -> list[str]:
        notes = []
        for key, insts in self.instances.items():
            if insts and insts[0].seq > 1:
                notes.append(f"{self.job.group_name(key)}: the ring buffers start at collective #{insts[0].seq};"
                             " earlier ones are not compared")
        return notes

    def _frames_notes(self, roots: list[tuple[float, str, list[int], str, object]]) -> list[str]:
        out = []
        for _t, _kind, _rs, _text, data in roots[:1]:
            if isinstance(data, _Instance):
                for r, op in sorted(data.present.items()):
                    if op.frames:
                        out.append(f"source of r{r}'s #{data.seq}: {frames_label(op.frames, 4)}")
        return out


def _cycles(graph: dict[int, list[int]]) -> list[list[int]]:
    """Elementary cycles found by following the first wait of each rank (each
    rank waits for one op, so cycles through it are what matter), deduplicated."""
    seen: set[frozenset[int]] = set()
    out: list[list[int]] = []
    for start in sorted(graph):
        path: list[int] = []
        pos: dict[int, int] = {}
        node: int | None = start
        while node is not None and node not in pos:
            pos[node] = len(path)
            path.append(node)
            nxt = graph.get(node) or []
            node = nxt[0] if nxt else None
        if node is not None:
            cyc = path[pos[node]:]
            if len(cyc) > 1 and frozenset(cyc) not in seen:
                seen.add(frozenset(cyc))
                i = cyc.index(min(cyc))
                out.append(cyc[i:] + cyc[:i])
    return out


def analyse(job: Job) -> Analysis:
    """Name the rank(s) that caused the first divergence of ``job``, or say
    that the data cannot decide and list the candidates."""
    return _Analyser(job).decide()


# ---------------------------------------------------------------- the schedule
def window_starts(job: Job) -> dict[str, int]:
    """Per group, the first collective number every member's data covers
    (ring buffers drop the oldest entries, at different points per rank)."""
    out: dict[str, int] = {}
    for key, g in job.groups.items():
        starts = []
        lows = []
        for m in g.members:
            rt = job.ranks.get(m)
            if rt is None:
                continue
            seqs = [op.seq for op in rt.ops if op.group == key and op.is_collective and op.seq is not None]
            if seqs:
                lows.append(min(seqs))
                if not rt.complete_from_start:
                    starts.append(min(seqs))
        if lows:
            out[key] = max(starts) if starts else min(lows)
    return out


def _default_group_name(job: Job) -> str:
    """The name of the default process group (the one send/recv without a
    ``group`` argument use)."""
    for g in job.groups.values():
        if set(g.members) == set(job.world) and g.name == "default_pg":
            return g.name
    for g in job.groups.values():
        if set(g.members) == set(job.world):
            return g.name
    return "default_pg"


def p2p_comm(job: Job, op: CommOp, backend: str | None) -> str:
    """The communicator of a send/recv.  ProcessGroupNCCL runs a single p2p op
    on a two-rank communicator of its own per pair of ranks within the
    process group (``getKeySendRecv``), and a p2p op inside a coalesced group
    (``batch_isend_irecv``) on the group's own communicator
    (``getKeyFromDevice``: "treat it like a collective").  NCCL ignores the
    tag; gloo matches by tag, so there a non-zero tag is a FIFO of its own."""
    g = job.groups.get(op.group) if op.group is not None else None
    pg = g.name if g is not None else _default_group_name(job)
    if op.batch is not None:
        return pg
    assert op.peer is not None
    lo, hi = sorted((op.rank, op.peer))
    name = f"{pg}:{lo}-{hi}"
    if op.tag and (backend or "").startswith("gloo"):
        name += f":tag{op.tag}"
    return name


def job_to_schedule_dict(job: Job) -> dict[str, Any]:
    """The job as a syncproof schedule document (format v2): every rank's
    communication ops in issue order on one host stream, ``comm`` (the calls
    block the host, as gloo's do).  A collective runs on its process group's
    communicator (its ``group``); a send/recv on the per-pair communicator
    ProcessGroupNCCL creates inside its process group (``"{pg}:{lo}-{hi}"``),
    or, when the dump shows it coalesced, on the group's communicator, and
    ops the dump shows coalesced (a ``coalesced`` entry closing them) form one
    group call (``batch``).  Collectives before the common window of a group,
    collectives whose group is unknown, and send/recv the data does not
    record on both sides are left out (the warnings say so)."""
    starts = window_starts(job)
    used_groups: set[str] = set()
    ranks: dict[str, list[dict[str, Any]]] = {str(r): [] for r in job.world}
    world = set(job.world)
    dropped = Counter[str]()
    for r in job.world:
        rt = job.ranks.get(r)
        if rt is None:
            continue
        out = ranks[str(r)]
        batch_of: list[str | None] = []  # the coalesced group of each op in ``out``
        for op in rt.ops:
            d: dict[str, Any] = {"op": op.kind, "stream": "comm"}
            name = op.label
            if op.is_collective:
                g = job.groups.get(op.group) if op.group is not None else None
                if g is None or op.seq is None or op.rank not in g.members:
                    dropped["collectives with no known group"] += 1
                    continue
                if op.seq < starts.get(g.key, 1):
                    dropped["collectives before the window every member's dump covers"] += 1
                    continue
                d["group"] = g.name
                used_groups.add(g.key)
                if op.kind in ("reduce", "gather", "scatter") or (op.kind == "broadcast" and op.root is None):
                    # rooted ops whose root the data does not give: a broadcast from the lowest member
                    d["op"] = "broadcast"
                    d["root"] = min(g.members)
                    name = f"{op.kind} (root not recorded)" + (f" {op.label}" if op.label else "")
                elif op.kind == "broadcast":
                    d["root"] = op.root
                if op.ran_as and op.ran_as != op.kind:
                    name = f"(run as {op.ran_as})" + (f" {name}" if name else "")
                if op.kind not in ("all_to_all", "barrier") and op.in_sizes:
                    d["size"] = op.numel
            else:
                src = job.ranks.get(op.peer) if op.peer is not None else None
                if op.peer is None or op.peer == r or op.peer not in world or not rt.p2p_visible or \
                        src is None or not src.p2p_visible:
                    dropped["sends/recvs whose other side the data does not record"] += 1
                    continue
                d["to" if op.kind == "send" else "from"] = op.peer
                d["comm"] = p2p_comm(job, op, rt.backend or job.backend)
                sizes = op.in_sizes if op.kind == "send" else op.out_sizes
                if sizes:
                    d["size"] = sum(math.prod(s) for s in sizes)
            if op.dtype:
                d["dtype"] = op.dtype
            if name:
                d["name"] = name
            out.append(d)
            batch_of.append(op.batch)
        _mark_batches(out, batch_of, r)
    desc = (f"Imported from {len(job.sources)} file(s) ({job.backend}); ops in issue order on one host stream."
            + ("" if not job.missing else f" No data for rank(s) {rank_list(job.missing)}."))
    if dropped:
        desc += " Left out: " + "; ".join(f"{n} {what}" for what, n in dropped.items()) + "."
    return {
        "syncproof": 2,
        "name": job.name,
        "description": desc,
        "groups": {job.groups[k].name: list(job.groups[k].members) for k in sorted(used_groups)},
        "ranks": ranks,
    }


def _mark_batches(ops: list[dict[str, Any]], batch_of: list[str | None], rank: int) -> None:
    """Give the ops of one coalesced group a ``batch`` id when at least two of
    them are left and they are consecutive (the format's rule for a group
    call); a group the import split or cut down to one op stays plain ops."""
    where: dict[str, list[int]] = {}
    for i, b in enumerate(batch_of):
        if b is not None:
            where.setdefault(b, []).append(i)
    for b, idx in where.items():
        if len(idx) < 2 or idx[-1] - idx[0] != len(idx) - 1:
            continue
        for i in idx:
            ops[i]["batch"] = f"r{rank}:{b}"


def job_to_schedule(job: Job) -> Any:
    """The job as a validated :class:`~syncproof.ir.Schedule`."""
    from ..ir import schedule_from_dict

    return schedule_from_dict(job_to_schedule_dict(job), f"<import {job.name}>")
