"""Import PyTorch profiler traces (Kineto's Chrome trace JSON, one per rank).

What a trace gives, per rank: the communication calls the host made, in
issue order (the ``c10d::*`` ops: ``c10d::allreduce_``,
``c10d::_allgather_base_``, ``c10d::send``, ``c10d::recv_``, ...), with
their tensor shapes, the peer of every send/recv, and the
``record_function`` ranges around each call, which become the op's label
(``decode2/L1/mlp``).  The trace header (``distributedInfo``) lists the
process groups the rank belongs to with their members.

What it may lack: NCCL runs add a ``record_param_comms`` event with the
process group, sizes and dtype of each call; gloo runs do not, so a gloo
collective does not say which group it used.  Then the group comes from the
Flight Recorder dump of the same rank (``syncproof import flight-recorder DIR
--profiler ...``, matched by time), or, for a trace on its own, from the rule
"the rank's only group other than the default one" (said in a warning; if the
rank is in several such groups the collective stays unassigned).

This module does not import torch.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ScheduleError, UsageError
from ..inputs import finite_number, parse_json
from .culprit import CommOp, Group, Job, RankTrace, dtype_name, kind_of
from .documents import FR, MAX_COUNT, MAX_RANK, Document, brief, fail, load_document
from .paths import files_under

# c10d op -> (input arg, output arg, peer/root arg in "Concrete Inputs", tag arg)
_C10D_ARGS: dict[str, tuple[int | None, int | None, int | None, int | None]] = {
    "allreduce_": (0, 0, None, None),
    "allreduce_coalesced_": (0, 0, None, None),
    "allgather_": (1, 0, None, None),
    "_allgather_base_": (1, 0, None, None),
    "allgather_coalesced_": (1, 0, None, None),
    "allgather_into_tensor_coalesced_": (1, 0, None, None),
    "reduce_scatter_": (1, 0, None, None),
    "_reduce_scatter_base_": (1, 0, None, None),
    "reduce_scatter_tensor_coalesced_": (1, 0, None, None),
    "alltoall_": (1, 0, None, None),
    "alltoall_base_": (1, 0, None, None),
    "broadcast_": (0, 0, 2, None),
    "reduce_": (0, 0, 2, None),
    "gather_": (1, 0, 3, None),
    "scatter_": (1, 0, 3, None),
    "barrier": (None, None, None, None),
    "monitored_barrier_": (None, None, None, None),
    "send": (0, None, 2, 3),
    "recv_": (None, 0, 2, 3),
    "recv_any_source_": (None, 0, None, 2),
}
_BACKEND_PREFIX = re.compile(r"^(nccl|ncclx|gloo|xccl|rccl|rcclx|mccl|hccl|ucc|mpi):")
_NOT_A_DTYPE = {"", "tensorlist", "scalar", "scalarlist", "genericlist", "string", "none", "device", "layout"}


@dataclass
class ProfilerTrace:
    path: str
    rank: int
    world_size: int | None
    backend: str | None
    groups: list[tuple[str, str, tuple[int, ...]]]  # (pg name, description, member ranks)
    ops: list[CommOp]
    end_ns: dict[int, int] = field(default_factory=dict)  # id(op) -> end of the host call (ns)
    absolute_clock: bool = True
    warnings: list[str] = field(default_factory=list)


_fail = fail


#: The largest time stamp or duration accepted in a trace, in microseconds (about 30 years).
MAX_TRACE_US = 1e15


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _time_us(v: Any) -> bool:
    """A time stamp or duration in a trace: a finite number within range."""
    return finite_number(v) and abs(v) <= MAX_TRACE_US


def _rank_from_name(path: Path) -> int | None:
    m = re.search(r"(?<![0-9])([0-9]{1,7})(?:\.[A-Za-z]+)*$", path.name)
    if m is None or int(m.group(1)) > MAX_RANK:
        return None
    return int(m.group(1))


def _dim(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _shapes(dims: Any, typ: Any) -> tuple[tuple[int, ...], ...]:
    if not isinstance(dims, list) or not dims or len(dims) > 4096:
        return ()
    if all(_dim(x) for x in dims) and len(dims) <= 64:
        shapes: tuple[tuple[int, ...], ...] = (tuple(dims),)
    elif all(isinstance(x, list) and len(x) <= 64 and all(_dim(y) for y in x) for x in dims):
        shapes = tuple(tuple(x) for x in dims)
    else:
        return ()
    if any(not 0 <= d <= MAX_COUNT for sh in shapes for d in sh):
        raise ValueError(f"a tensor dimension out of range (0 to 2^63-1): {brief(dims)}")
    return shapes


def _dtype(typ: Any) -> str | None:
    if isinstance(typ, str) and typ.strip().lower() not in _NOT_A_DTYPE:
        return dtype_name(typ)
    return None


def _int_arg(v: Any) -> int | None:
    """An integer argument (a number, or a string of ASCII digits), or None."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v if abs(v) <= MAX_COUNT else None
    if isinstance(v, str) and re.fullmatch(r"-?[0-9]{1,18}", v.strip()):
        return int(v)
    return None


def _rank_arg(v: Any, path: Path, what: str) -> int | None:
    """A rank or world size from the trace header: None when absent, an error when out of range."""
    if v is None:
        return None
    r = _int_arg(v)
    if r is None or not 0 <= r <= MAX_RANK + 1:
        raise _fail(path, f"{what} is {brief(v)}: not a rank (0 to {MAX_RANK})")
    return r


def _parse_ranks(v: Any, path: Path) -> tuple[int, ...] | None:
    if isinstance(v, str):
        try:
            v = parse_json(v, str(path))
        except ScheduleError:
            return None
    if isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        bad = next((x for x in v if not 0 <= x <= MAX_RANK), None)
        if bad is not None:
            raise _fail(path, f"distributedInfo.pg_config: rank {brief(bad)} is out of range (0 to {MAX_RANK})")
        return tuple(v)
    return None


def load_trace(path: str | Path) -> ProfilerTrace:
    """Read one rank's trace.  Malformed input raises a ScheduleError naming the file."""
    d = load_document(path)
    if d.kind == FR:
        raise _fail(d.path, "a Flight Recorder dump, not a profiler trace",
                    "give the dumps to `syncproof import flight-recorder` (traces may sit next to them)")
    return trace_from_document(d)


def trace_from_document(d: Document) -> ProfilerTrace:
    """Check one rank's trace (already decoded).  Malformed input raises a
    ScheduleError naming the file and the event."""
    p = Path(d.path)
    doc = d.doc
    if isinstance(doc, list):
        events, header = doc, {}
    elif isinstance(doc, dict):
        if "traceEvents" not in doc:
            raise _fail(p, "no \"traceEvents\": not a Chrome trace",
                        "give the JSON that prof.export_chrome_trace() writes")
        events, header = doc["traceEvents"], doc
    else:
        raise _fail(p, f"a profiler trace is a JSON object, got {type(doc).__name__}")
    if not isinstance(events, list):
        raise _fail(p, f"\"traceEvents\" must be a list, got {type(events).__name__}")
    warnings: list[str] = []
    dist = header.get("distributedInfo")
    rank = None
    world_size = None
    backend = None
    groups: list[tuple[str, str, tuple[int, ...]]] = []
    if isinstance(dist, dict):
        rank = _rank_arg(dist.get("rank"), p, "distributedInfo.rank")
        if rank is not None and rank > MAX_RANK:
            raise _fail(p, f"distributedInfo.rank is {rank}: not a rank (0 to {MAX_RANK})")
        world_size = _rank_arg(dist.get("world_size"), p, "distributedInfo.world_size")
        backend = dist.get("backend") if isinstance(dist.get("backend"), str) else None
        cfg = dist.get("pg_config")
        items = cfg if isinstance(cfg, list) else list(cfg.values()) if isinstance(cfg, dict) else []
        for item in items:
            if not isinstance(item, dict):
                continue
            name = item.get("pg_name")
            ranks = _parse_ranks(item.get("ranks"), p)
            if isinstance(name, str) and ranks is not None:
                desc = item.get("pg_desc") if isinstance(item.get("pg_desc"), str) else ""
                groups.append((name, str(desc), ranks))
    if rank is None:
        rank = _rank_from_name(p)
        if rank is None:
            raise _fail(p, "cannot tell the rank: the trace has no distributedInfo.rank and the file name"
                        " does not end in a number", "name the files like rank_0.json")
    base = header.get("baseTimeNanoseconds")
    if base is not None and not (finite_number(base) and 0 <= base <= MAX_COUNT // 2):
        raise _fail(p, f"\"baseTimeNanoseconds\" must be a time in nanoseconds, got {brief(base)}")
    absolute = base is not None
    base_ns = int(base) if base is not None else 0

    # Collect complete events per thread.
    per_tid: dict[object, list[dict[str, Any]]] = defaultdict(list)
    for i, ev in enumerate(events):
        if not isinstance(ev, dict):
            raise _fail(p, f"event {i} is not an object: {str(ev)[:60]}")
        if ev.get("ph") != "X":
            continue
        name = ev.get("name")
        if not isinstance(name, str):
            raise _fail(p, f"event {i}: \"name\" must be a string, got {brief(name)}")
        if not _time_us(ev.get("ts")) or not _time_us(ev.get("dur")) or ev["dur"] < 0:
            raise _fail(p, f"event {i} ({brief(name)}): \"ts\" and \"dur\" must be finite numbers of"
                        f" microseconds (dur at least 0, both at most {MAX_TRACE_US:g}),"
                        f" got {brief(ev.get('ts'))} and {brief(ev.get('dur'))}")
        args = ev.get("args", {})
        if not isinstance(args, dict):
            raise _fail(p, f"event {i} ({brief(name)}): \"args\" must be an object")
        thread = (ev.get("pid"), ev.get("tid"))
        if not all(x is None or isinstance(x, str | int | float) for x in thread):
            raise _fail(p, f"event {i} ({brief(name)}): \"pid\" and \"tid\" must be numbers or strings,"
                        f" got {brief(thread[0])} and {brief(thread[1])}")
        ev["_index"] = i
        per_tid[thread].append(ev)

    ops: list[tuple[float, CommOp]] = []
    end_ns: dict[int, int] = {}
    for _tid, evs in per_tid.items():
        evs.sort(key=lambda e: (float(e["ts"]), -float(e["dur"])))
        stack: list[dict[str, Any]] = []  # open user ranges
        open_calls: list[tuple[dict[str, Any], CommOp]] = []  # open c10d calls on this thread
        for ev in evs:
            ts, dur, name = float(ev["ts"]), float(ev["dur"]), ev["name"]
            while stack and float(stack[-1]["ts"]) + float(stack[-1]["dur"]) <= ts:
                stack.pop()
            while open_calls and float(open_calls[-1][0]["ts"]) + float(open_calls[-1][0]["dur"]) < ts:
                open_calls.pop()
            cat = ev.get("cat", "")
            args = ev.get("args", {})
            if name.startswith("c10d::"):
                try:
                    op = _c10d_op(name, args, rank)
                except ValueError as exc:
                    raise _fail(p, f"event {ev['_index']} ({brief(name)}): {exc}") from None
                if op is None:
                    continue
                op.label = "/".join(str(s["name"]) for s in stack)
                op.time_ns = base_ns + int(ts * 1000)
                end_ns[id(op)] = base_ns + int((ts + dur) * 1000)
                ops.append((ts, op))
                open_calls.append((ev, op))
                continue
            if name == "record_param_comms":
                if open_calls:
                    _enrich(open_calls[-1][1], args, rank)
                else:
                    try:
                        op = _param_comms_op(args, rank)
                    except ValueError as exc:
                        raise _fail(p, f"event {ev['_index']} ({brief(name)}): {exc}") from None
                    if op is not None:
                        op.label = "/".join(str(s["name"]) for s in stack)
                        op.time_ns = base_ns + int(ts * 1000)
                        end_ns[id(op)] = base_ns + int((ts + dur) * 1000)
                        ops.append((ts, op))
                continue
            if _BACKEND_PREFIX.match(name):
                if open_calls:  # the backend's own range inside the call: take the dtype from it
                    host = open_calls[-1][1]
                    if host.dtype is None:
                        types = args.get("Input type")
                        if isinstance(types, list) and types:
                            host.dtype = _dtype(types[0])
                continue
            if cat == "user_annotation" and not name.startswith("ProfilerStep#"):
                stack.append(ev)
    ops.sort(key=lambda x: x[0])
    if not ops:
        warnings.append(f"{p}: no communication ops (c10d::*) in the trace")
    return ProfilerTrace(str(p), rank, world_size, backend, groups, [o for _t, o in ops], end_ns, absolute,
                         warnings)


def _c10d_op(name: str, args: dict[str, Any], rank: int) -> CommOp | None:
    base = name.split("::", 1)[1]
    kind = kind_of(base)
    if kind is None:
        return None  # c10d bookkeeping ops (e.g. c10d::_wait_tensor) are not communication
    spec = _C10D_ARGS.get(base, (0, 0, None, None))
    dims = args.get("Input Dims")
    types = args.get("Input type")
    concrete = args.get("Concrete Inputs")
    dims = dims if isinstance(dims, list) else []
    types = types if isinstance(types, list) else []
    concrete = concrete if isinstance(concrete, list) else []
    i_in, i_out, i_peer, i_tag = spec

    def at(lst: list[Any], i: int | None) -> Any:
        return lst[i] if i is not None and i < len(lst) else None

    op = CommOp(rank=rank, kind=kind, source="profiler")
    op.in_sizes = _shapes(at(dims, i_in), at(types, i_in)) if i_in is not None else ()
    op.out_sizes = _shapes(at(dims, i_out), at(types, i_out)) if i_out is not None else ()
    op.dtype = _dtype(at(types, i_in if i_in is not None else i_out))
    peer = _int_arg(at(concrete, i_peer))
    if kind in ("send", "recv"):
        op.peer = peer  # group-local; mapped to a global rank once the group is known
        op.tag = _int_arg(at(concrete, i_tag)) or 0
    elif peer is not None:
        op.root = peer
    return op


def _enrich(op: CommOp, args: dict[str, Any], rank: int) -> None:
    """record_param_comms (NCCL and newer backends): group, sizes, dtype."""
    pg = args.get("Process Group Name")
    if isinstance(pg, str) and pg:
        op.group = pg
    dt = args.get("dtype")
    if isinstance(dt, str) and dt:
        op.dtype = dtype_name(dt)
    if op.is_p2p and op.peer is None:
        key = "Dst Rank" if op.kind == "send" else "Src Rank"
        op.peer = _int_arg(args.get(key))


def _param_comms_op(args: dict[str, Any], rank: int) -> CommOp | None:
    name = args.get("Collective name")
    if not isinstance(name, str):
        return None
    kind = kind_of(name)
    if kind is None:
        return None
    op = CommOp(rank=rank, kind=kind, source="profiler")
    n_in, n_out = _int_arg(args.get("In msg nelems")), _int_arg(args.get("Out msg nelems"))
    op.in_sizes = ((n_in,),) if n_in is not None and n_in >= 0 else ()
    op.out_sizes = ((n_out,),) if n_out is not None and n_out >= 0 else ()
    _enrich(op, args, rank)
    return op


# ---------------------------------------------------------------- a job from traces alone
def group_table(traces: Sequence[ProfilerTrace]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """pg name -> (description, members), merged over the ranks' trace headers."""
    table: dict[str, tuple[str, tuple[int, ...]]] = {}
    said: dict[str, str] = {}  # pg name -> the trace that gave its members first
    for t in traces:
        for name, desc, ranks in t.groups:
            if name in table and set(table[name][1]) != set(ranks):
                raise _fail(t.path, f"process group {brief(name)} has members {brief(list(ranks))} here but"
                            f" {brief(list(table[name][1]))} in {said[name]}")
            if len(set(ranks)) != len(ranks):
                raise _fail(t.path, f"process group {brief(name)} lists a rank twice: {brief(list(ranks))}")
            table[name] = (desc, tuple(sorted(ranks)))
            said.setdefault(name, t.path)
    return table


def display_names(table: dict[str, tuple[str, tuple[int, ...]]]) -> dict[str, str]:
    """Readable unique group names: the description when it is unique, else ``desc.name``."""
    descs = [d for d, _m in table.values()]
    out = {}
    for key, (desc, _m) in table.items():
        if desc and desc != "undefined" and descs.count(desc) == 1:
            out[key] = desc
        elif desc and desc != "undefined":
            out[key] = f"{desc}.{key}"
        else:
            out[key] = f"pg{key}"
    return out


def default_group(table: dict[str, tuple[str, tuple[int, ...]]], world: Sequence[int]) -> str | None:
    for key, (desc, _members) in table.items():
        if desc == "default_pg":
            return key
    for key, (_desc, members) in table.items():
        if set(members) == set(world):
            return key
    return None


def assign_groups(rt: RankTrace, table: dict[str, tuple[str, tuple[int, ...]]], world: Sequence[int],
                  warnings: list[str], used_by_rank: set[str] | None = None) -> None:
    """Give collectives without a group the rank's only candidate group, map
    group-local peers and roots to global ranks, and number the collectives
    of each group (from 1, as the Flight Recorder does) where the number is
    not known yet."""
    dflt = default_group(table, world)
    mine = [k for k, (_d, m) in table.items() if rt.rank in m]
    non_default = [k for k in mine if k != dflt]
    guess: str | None = None
    why = ""
    if used_by_rank and len(used_by_rank) == 1:
        guess, why = next(iter(used_by_rank)), "the only group its Flight Recorder entries use"
    elif len(non_default) == 1:
        guess, why = non_default[0], "its only group besides the default one"
    elif not non_default and dflt is not None and rt.rank in table.get(dflt, ("", ()))[1]:
        guess, why = dflt, "it belongs to no other group"
    unassigned = 0
    n_guessed = 0
    for op in rt.ops:
        if op.is_collective and op.group is None:
            if guess is not None:
                op.group = guess
                n_guessed += 1
            else:
                unassigned += 1
    if guess is not None and n_guessed:
        desc = table.get(guess, ("", ()))[0] or guess
        warnings.append(f"rank {rt.rank}: the trace does not say which group {n_guessed} collective(s) used;"
                        f" assumed {desc!r} ({why})")
    if unassigned:
        warnings.append(f"rank {rt.rank}: cannot tell the group of {unassigned} collective(s) (the rank is in"
                        f" groups {', '.join(table[k][0] or k for k in non_default)}); they are not matched."
                        " Give the Flight Recorder dumps too: syncproof import flight-recorder DIR --profiler ...")
    for op in rt.ops:
        members = table.get(op.group, ("", ()))[1] if op.group is not None else ()
        if op.is_p2p and op.peer is not None and op.source == "profiler" and members and \
                0 <= op.peer < len(members):
            op.peer = sorted(members)[op.peer]
        if op.root is not None and op.source == "profiler" and members and 0 <= op.root < len(members):
            op.root = sorted(members)[op.root]


def number_collectives(rt: RankTrace, warnings: list[str]) -> bool:
    """Fill in missing collective numbers per group, counting from the known
    ones (or from 1).  Returns False when the known numbers contradict the count."""
    ok = True
    by_group: dict[str, list[CommOp]] = defaultdict(list)
    for op in rt.ops:
        if op.is_collective and op.group is not None:
            by_group[op.group].append(op)
    for g, ops in by_group.items():
        anchors = [i for i, o in enumerate(ops) if o.seq is not None]
        if not anchors:
            for i, o in enumerate(ops):
                o.seq = i + 1
            continue
        first = anchors[0]
        for i in range(first - 1, -1, -1):
            ops[i].seq = (ops[i + 1].seq or 1) - 1
        for i in range(first + 1, len(ops)):
            if ops[i].seq is None:
                ops[i].seq = (ops[i - 1].seq or 0) + 1
            elif ops[i].seq != (ops[i - 1].seq or 0) + 1 and ops[i].seq != ops[i - 1].seq:
                ok = False
        if (ops[0].seq or 1) < 1:
            ok = False
            warnings.append(f"rank {rt.rank}: the profiler trace and the dump disagree on how many"
                            f" collectives ran on group {g}; numbering may be off")
    return ok


def load_profiler_job(paths: Sequence[str | Path], world: int | None = None, name: str | None = None) -> Job:
    """A job from profiler traces alone (one per rank)."""
    files = expand_paths(paths)
    traces = []
    for f in files:
        d = load_document(f)
        if d.kind == FR:
            raise _fail(d.path, "a Flight Recorder dump, not a profiler trace",
                        "read dumps and traces together: syncproof import flight-recorder DIR")
        traces.append(trace_from_document(d))
    seen: dict[int, str] = {}
    for t in traces:
        if t.rank in seen:
            raise _fail(t.path, f"duplicate rank {t.rank}: {seen[t.rank]} is rank {t.rank} too",
                        "give one trace per rank")
        seen[t.rank] = t.path
    warnings: list[str] = [w for t in traces for w in t.warnings]
    table = group_table(traces)
    n = max([world or 0] + [t.world_size or 0 for t in traces] + [t.rank + 1 for t in traces]
            + [max(m) + 1 for _d, m in table.values() if m])
    world_ranks = tuple(range(n))
    if not table:
        warnings.append("the traces list no process groups (no distributedInfo in their header): collectives"
                        " are not matched across ranks; give the Flight Recorder dumps too")
    names = display_names(table)
    groups = {k: Group(k, names[k], m, "profiler") for k, (_d, m) in table.items()}
    ranks: dict[int, RankTrace] = {}
    for t in sorted(traces, key=lambda t: t.rank):
        rt = RankTrace(t.rank, list(t.ops), None, t.path, t.backend, True, True)
        assign_groups(rt, table, world_ranks, warnings)
        number_collectives(rt, warnings)
        ranks[t.rank] = rt
    backend = next((t.backend for t in traces if t.backend), "unknown") or "unknown"
    missing = tuple(r for r in world_ranks if r not in ranks)
    return Job(name or _job_name(paths), world_ranks, groups, ranks, missing, backend, warnings,
               [t.path for t in traces])


def _job_name(paths: Sequence[str | Path]) -> str:
    p = Path(paths[0])
    return (p.name if p.is_dir() else p.parent.name) or "trace"


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Trace files: the files given, and the files inside the directories given."""
    files = files_under(paths, "the directory has no trace files")
    if not files:
        raise UsageError("give at least one profiler trace")
    return files
