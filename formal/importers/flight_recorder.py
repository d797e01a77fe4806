"""Import PyTorch Flight Recorder dumps (one per rank) into a :class:`Job`.

A dump is what ``torch._C._distributed_c10d._dump_fr_trace()`` (a pickle) or
``_dump_fr_trace_json()`` (JSON) returns, or what the NCCL watchdog writes to
``TORCH_FR_DUMP_TEMP_FILE<rank>`` on a timeout.  It holds the last
``TORCH_FR_BUFFER_SIZE`` communication ops of the process (a ring buffer:
older ones are gone), each with its process group, its collective number on
that group (``collective_seq_id``), sizes, dtypes, state and, in the pickle,
the Python frames that issued it.  The rank is not in the dump: it is read
from the file name, which torch ends with the rank (``..._rank_3``).

What differs between backends (torch 2.13):

* NCCL dumps record send/recv (``nccl:send 0->1``, group-local ranks) and
  the states ``scheduled``/``started``/``completed``, and fill ``pg_config``
  with every group's members.
* gloo dumps record collectives only, leave ``state`` at ``scheduled`` (an
  op that finished is ``retired``; one still in flight is not), and have an
  empty ``pg_config``: group membership then comes from the profiler traces
  (``--profiler``), or is inferred from which ranks' dumps use each group.

Pickle safety: unpickling runs code named in the file.  The loader uses a
restricted unpickler that refuses every class and callable, so only the
built-in containers and scalars a dump consists of (dict, list, tuple, str,
bytes, int, float, bool, None) can come out of it; anything else is an error.

This module does not import torch.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ScheduleError
from ..inputs import parse_json
from .culprit import (
    DONE,
    CommOp,
    Group,
    Job,
    RankTrace,
    dtype_name,
    frames_label,
    kind_of,
    rank_list,
    user_frames,
)
from .documents import FR, MAX_COUNT, MAX_RANK, TRACE, Document, brief, fail, load_document, safe_loads
from .paths import files_under
from .profiler import (
    ProfilerTrace,
    assign_groups,
    display_names,
    group_table,
    number_collectives,
    trace_from_document,
)

__all__ = ["Dump", "dump_from_document", "load_flight_recorder", "parse_dump", "read_dump", "safe_loads"]

# (kind, input shapes, output shapes) as the Flight Recorder saw an op
View = tuple[str, tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]
_P2P_NAME = re.compile(r"^(send|recv)\s+([0-9]{1,7})\s*(->|<-)\s*([0-9]{1,7})$")


# ---------------------------------------------------------------- reading one dump
_fail = fail


def read_dump(path: str | Path) -> tuple[dict[str, Any], str]:
    """The dump as a dict, and its format ("pickle" or "json")."""
    d = load_document(path)
    if d.kind != FR:
        raise _fail(d.path, "a profiler trace (Chrome trace JSON), not a Flight Recorder dump",
                    "give it with the dumps (they are told apart by content) or with --profiler")
    return d.doc, d.fmt


_ENTRY_REQUIRED: dict[str, tuple[type, ...]] = {
    "record_id": (int,),
    "process_group": (list, tuple),
    "collective_seq_id": (int,),
    "profiling_name": (str,),
    "state": (str,),
    "input_sizes": (list,),
    "output_sizes": (list,),
    "time_created_ns": (int,),
}
_ENTRY_OPTIONAL: dict[str, tuple[type, ...]] = {
    "p2p_seq_id": (int,),
    "op_id": (int,),
    "pg_id": (int,),
    "is_p2p": (bool,),
    "retired": (bool,),
    "input_dtypes": (list,),
    "output_dtypes": (list,),
    "frames": (list,),
}


def _type_name(types: tuple[type, ...]) -> str:
    names = {int: "an integer", str: "a string", list: "a list", tuple: "a list", bool: "true/false",
             dict: "an object"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def _check_type(v: Any, types: tuple[type, ...]) -> bool:
    if bool not in types and isinstance(v, bool):
        return False
    return isinstance(v, types)


def _sizes(v: Any, path: Path, where: str) -> tuple[tuple[int, ...], ...]:
    if isinstance(v, list) and len(v) <= 4096 and all(
            isinstance(s, list | tuple) and len(s) <= 64
            and all(isinstance(d, int) and not isinstance(d, bool) for d in s) for s in v):
        for s in v:
            for d in s:
                if not 0 <= d <= MAX_COUNT:
                    raise _fail(path, f"{where}: dimension {brief(d)} is out of range (0 to 2^63-1)")
        return tuple(tuple(s) for s in v)
    raise _fail(path, f"{where} must be a list of shapes (lists of integers), got {brief(v)}")


def _count(v: int, path: Path, where: str, key: str) -> None:
    if not 0 <= v <= MAX_COUNT:
        raise _fail(path, f"{where}: {key!r} is {brief(v)}, out of range (0 to 2^63-1)")


@dataclass
class Dump:
    path: str
    rank: int
    fmt: str
    version: str
    backend: str | None
    pg_config: dict[str, tuple[str, tuple[int, ...]]]  # pg name -> (description, members); empty for gloo
    ops: list[CommOp]
    complete_from_start: bool
    records_p2p: bool
    group_descs: dict[str, str] = field(default_factory=dict)  # pg name -> description, from the entries
    warnings: list[str] = field(default_factory=list)


def parse_dump(path: str | Path, rank: int) -> Dump:
    """Read and check one rank's dump; every problem names the file and the entry."""
    doc, fmt = read_dump(path)
    return dump_from_document(doc, fmt, Path(path), rank)


def dump_from_document(doc: dict[Any, Any], fmt: str, p: Path, rank: int) -> Dump:
    """Check one rank's dump (already decoded); every problem names the file and the entry."""
    if "version" not in doc or not ({"entries", "pg_config", "pg_status"} & set(doc)):
        missing = "version" if "version" not in doc else "entries"
        raise _fail(p, f"missing key {missing!r}: not a Flight Recorder dump (its keys: "
                    f"{', '.join(brief(k, 30) for k in list(doc)[:8]) or 'none'})")
    version = doc["version"]
    if not isinstance(version, str) or not re.fullmatch(r"[0-9]{1,6}\.[0-9]{1,6}", version):
        raise _fail(p, f"\"version\" must be a string like \"2.10\", got {brief(version)}")
    warnings: list[str] = []
    if int(version.split(".")[0]) != 2:
        warnings.append(f"{p}: dump format version {version} (this importer knows 2.x)")
    entries = doc.get("entries", [])  # the JSON dump leaves "entries" out when there are none
    if not isinstance(entries, list):
        raise _fail(p, f"\"entries\" must be a list, got {type(entries).__name__}")
    pg_config: dict[str, tuple[str, tuple[int, ...]]] = {}
    raw_cfg = doc.get("pg_config", {})
    if not isinstance(raw_cfg, dict):
        raise _fail(p, f"\"pg_config\" must be an object, got {type(raw_cfg).__name__}")
    for name, cfg in raw_cfg.items():
        if not isinstance(name, str):
            raise _fail(p, f"pg_config: a group name must be a string, got {brief(name)}")
        if not isinstance(cfg, dict):
            raise _fail(p, f"pg_config[{brief(name)}] must be an object, got {type(cfg).__name__}")
        ranks = cfg.get("ranks", "[]")
        if isinstance(ranks, str):
            try:
                ranks = parse_json(ranks, str(p))
            except ScheduleError:
                raise _fail(p, f"pg_config[{brief(name)}].ranks is not a list of ranks: {brief(ranks)}") from None
        if not isinstance(ranks, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in ranks):
            raise _fail(p, f"pg_config[{brief(name)}].ranks must be a list of integers, got {brief(ranks)}")
        bad = next((r for r in ranks if not 0 <= r <= MAX_RANK), None)
        if bad is not None:
            raise _fail(p, f"pg_config[{brief(name)}].ranks: rank {brief(bad)} is out of range (0 to {MAX_RANK})")
        if len(set(ranks)) != len(ranks):
            raise _fail(p, f"pg_config[{brief(name)}].ranks lists a rank twice: {brief(ranks)}")
        if name == "" and not ranks:
            continue  # gloo's placeholder: no group information
        desc = cfg.get("desc", "")
        pg_config[name] = (desc if isinstance(desc, str) else "", tuple(sorted(ranks)))

    ops: list[CommOp] = []
    coal_key: list[tuple[str, bool, int | None]] = []  # per op: (pg, p2p?, the seq id its coalesced group shares)
    descs: dict[str, str] = {}
    backend: str | None = None
    records_p2p = False
    first_record: int | None = None
    for i, e in enumerate(entries):
        where = f"entry {i}"
        if not isinstance(e, dict):
            raise _fail(p, f"{where} must be an object, got {type(e).__name__}")
        if "record_id" in e and _check_type(e["record_id"], (int,)):
            where = f"entry {i} (record_id {brief(e['record_id'])})"
        for key, types in _ENTRY_REQUIRED.items():
            if key not in e:
                raise _fail(p, f"{where}: missing key {key!r}")
            if not _check_type(e[key], types):
                raise _fail(p, f"{where}: {key!r} must be {_type_name(types)}, got {brief(e[key])}")
        for key, types in _ENTRY_OPTIONAL.items():
            if key in e and e[key] is not None and not _check_type(e[key], types):
                raise _fail(p, f"{where}: {key!r} must be {_type_name(types)}, got {brief(e[key])}")
        for key in ("record_id", "collective_seq_id", "time_created_ns", "p2p_seq_id", "op_id", "pg_id"):
            if isinstance(e.get(key), int):
                _count(e[key], p, where, key)
        pgv = e["process_group"]
        if len(pgv) != 2 or not all(isinstance(x, str) for x in pgv):
            raise _fail(p, f"{where}: 'process_group' must be [name, description], got {brief(pgv)}")
        descs.setdefault(pgv[0], pgv[1] if pgv[1] != "undefined" else "")
        pname = e["profiling_name"]
        back, _sep, opname = pname.partition(":")
        if not _sep:
            raise _fail(p, f"{where}: profiling_name {brief(pname)} is not 'backend:op'")
        backend = backend or back
        if first_record is None:
            first_record = e["record_id"]
        opname = opname.strip()
        if opname == "coalesced" or opname.endswith(" coalesced"):
            # closes a coalesced group (ncclGroupStart/End: batch_isend_irecv, a coalescing manager):
            # its members are the entries of its group just before it that share its sequence number
            # (torch's own analyzer, find_coalesced_group, reads them the same way)
            _close_group(ops, coal_key, pgv[0], e, i)
            continue
        m = _P2P_NAME.match(opname)
        kind = m.group(1) if m else kind_of(opname)
        if kind is None:
            warnings.append(f"{p}: {where}: op {brief(pname)} is not a communication op syncproof knows; skipped")
            continue
        in_sizes = _sizes(e["input_sizes"], p, f"{where}: 'input_sizes'")
        out_sizes = _sizes(e["output_sizes"], p, f"{where}: 'output_sizes'")
        dtypes = e.get("input_dtypes") or e.get("output_dtypes") or []
        if not all(isinstance(d, str) for d in dtypes):
            raise _fail(p, f"{where}: dtypes must be strings, got {brief(dtypes)}")
        frames = []
        for j, fr in enumerate(e.get("frames") or []):
            if not (isinstance(fr, dict) and isinstance(fr.get("name"), str) and isinstance(fr.get("filename"), str)
                    and _check_type(fr.get("line"), (int,)) and 0 <= fr["line"] <= MAX_COUNT):
                raise _fail(p, f"{where}: frame {j} must be {{name, filename, line}}, got {brief(fr)}")
            frames.append((fr["name"], fr["filename"], fr["line"]))
        state = e["state"]
        if back == "gloo" or state not in ("scheduled", "started", "completed"):
            # gloo leaves every state at "scheduled": "retired" says the op is over
            state = DONE if e.get("retired") or state == DONE else "in_flight"
        op = CommOp(rank=rank, kind=kind, group=pgv[0], seq=e["collective_seq_id"], in_sizes=in_sizes,
                    out_sizes=out_sizes, dtype=dtype_name(dtypes[0]) if dtypes else None, state=state,
                    frames=user_frames(frames), time_ns=e["time_created_ns"], record_id=e["record_id"],
                    source="fr")
        if kind in ("send", "recv"):
            records_p2p = True
            op.seq = None
            assert m is not None
            a, arrow, b = int(m.group(2)), m.group(3), int(m.group(4))
            src, dst = (a, b) if arrow == "->" else (b, a)
            op.peer = dst if kind == "send" else src  # group-local; mapped to global below
        op.label = frames_label(op.frames) if op.frames else ""
        ops.append(op)
        is_p2p = kind in ("send", "recv")
        coal_key.append((pgv[0], is_p2p, e.get("p2p_seq_id") if is_p2p else e["collective_seq_id"]))
    if backend == "nccl" or backend is None:
        records_p2p = records_p2p or backend == "nccl"
    complete = first_record is None or first_record == 0
    return Dump(str(p), rank, fmt, version, backend, pg_config, ops, complete, records_p2p, descs, warnings)


def _close_group(ops: list[CommOp], keys: list[tuple[str, bool, int | None]], pg: str, end: dict[str, Any],
                 index: int) -> None:
    """Mark the members of the coalesced group that entry ``end`` closes."""
    want: set[tuple[bool, int | None]] = set()
    if end.get("is_p2p") is not False:  # True, or an older dump without is_p2p: either kind
        want.add((True, end.get("p2p_seq_id")))
    if end.get("is_p2p") is not True:
        want.add((False, end["collective_seq_id"]))
    members: list[int] = []
    for j in range(len(ops) - 1, -1, -1):
        g, p2p, seq = keys[j]
        key = (p2p, seq)
        if g != pg:
            continue  # another group's entry in between (torch's analyzer skips those too)
        if key not in want or ops[j].batch is not None:
            break
        members.append(j)
    if len(members) < 2:
        return
    for j in members:
        ops[j].batch = f"{pg}#{index}"


# ---------------------------------------------------------------- a directory of dumps
_RANK_IN_NAME = re.compile(r"(?<![0-9])([0-9]{1,7})(?:\.(?:pkl|pickle|json|bin|dump|txt|gz))*$")


def rank_from_name(path: Path) -> int:
    """The rank a dump's file name ends in (torch names dumps ``<prefix><rank>``)."""
    m = _RANK_IN_NAME.search(path.name)
    if m is None:
        raise _fail(path, "cannot tell the rank from the file name (torch names dumps <prefix><rank>,"
                    " e.g. nccl_trace_rank_3)", "rename it to end in its rank, or move it out of the directory")
    r = int(m.group(1))
    if r > MAX_RANK:
        raise _fail(path, f"rank {r} (from the file name) is over the limit of {MAX_RANK}")
    return r


def classify_files(paths: Sequence[str | Path]) -> tuple[list[tuple[int, Document]], list[Document]]:
    """Every file under ``paths`` (directories or files), told apart by its
    content: (rank, document) for the Flight Recorder dumps, and the
    profiler traces.  Hidden files and subdirectories of a directory are not
    read; any other file that is neither is an error naming it, and so is a
    second dump, or a second trace, for one rank."""
    files = files_under(paths, "the directory is empty (expected Flight Recorder dumps and/or profiler traces,"
                        " one per rank)")
    dumps: list[tuple[int, Document]] = []
    traces: list[Document] = []
    by_rank: dict[int, str] = {}
    for f in files:
        d = load_document(f)
        if d.kind == TRACE:
            traces.append(d)
            continue
        r = rank_from_name(f)
        if r in by_rank:
            raise _fail(f, f"duplicate rank {r}: {by_rank[r]} is also a Flight Recorder dump of rank {r}",
                        "keep one dump per rank (pickle or JSON, not both)")
        by_rank[r] = str(f)
        dumps.append((r, d))
    return sorted(dumps, key=lambda x: x[0]), traces


def dump_files(paths: Sequence[str | Path]) -> list[tuple[int, Path]]:
    """(rank, file) for every Flight Recorder dump under ``paths``."""
    return [(r, Path(d.path)) for r, d in classify_files(paths)[0]]


def load_flight_recorder(paths: Sequence[str | Path], profiler: Sequence[str | Path] = (),
                         world: int | None = None, name: str | None = None) -> Job:
    """Read one dump per rank (and optionally one profiler trace per rank)
    into a :class:`Job`.  ``paths`` and ``profiler`` may each hold dumps,
    traces or both (directories or files): the content tells them apart.
    Raises a ScheduleError naming the file on bad input."""
    found, trace_docs = classify_files(list(paths) + list(profiler))
    if not found and not trace_docs:
        raise _fail(paths[0] if paths else "", "no Flight Recorder dump or profiler trace given")
    dumps = [dump_from_document(d.doc, d.fmt, Path(d.path), r) for r, d in found]
    traces: list[ProfilerTrace] = []
    seen: dict[int, str] = {}
    for td in trace_docs:
        t = trace_from_document(td)
        if t.rank in seen:
            raise _fail(t.path, f"duplicate rank {t.rank}: {seen[t.rank]} is also a profiler trace of rank"
                        f" {t.rank}", "give one profiler trace per rank")
        seen[t.rank] = t.path
        traces.append(t)
    warnings: list[str] = [w for d in dumps for w in d.warnings] + [w for t in traces for w in t.warnings]
    versions = {d.version for d in dumps}
    if len(versions) > 1:
        warnings.append(f"the dumps have different format versions: {', '.join(sorted(versions))}")
    backends = {d.backend for d in dumps if d.backend}
    backend = "/".join(sorted(backends)) or next((t.backend for t in traces if t.backend), None) or "unknown"

    # group membership: the dumps' pg_config, else the profiler headers, else inferred
    table: dict[str, tuple[str, tuple[int, ...]]] = {}
    how: dict[str, str] = {}
    for d in dumps:
        for key, (desc, members) in d.pg_config.items():
            if key in table and set(table[key][1]) != set(members):
                raise _fail(d.path, f"pg_config says group {key!r} has members {list(members)}, another dump"
                            f" says {list(table[key][1])}")
            table[key] = (desc, members)
            how[key] = "pg_config"
    prof_table = group_table(traces) if traces else {}
    for key, (desc, members) in prof_table.items():
        if key not in table:
            table[key] = (desc, members)
            how[key] = "profiler"
    n = max([world or 0] + [d.rank + 1 for d in dumps] + [t.rank + 1 for t in traces]
            + [t.world_size or 0 for t in traces] + [max(m) + 1 for _d, m in table.values() if m])
    world_ranks = tuple(range(n))
    users: dict[str, set[int]] = defaultdict(set)
    descs: dict[str, str] = {}
    for d in dumps:
        for op in d.ops:
            if op.group is not None:
                users[op.group].add(d.rank)
    for d in dumps:
        descs.update({k: v for k, v in d.group_descs.items() if v})
    inferred = []
    for key, rs in users.items():
        if key in table:
            continue
        desc = descs.get(key, "")
        members = world_ranks if desc == "default_pg" else tuple(sorted(rs))
        table[key] = (desc, members)
        how[key] = "inferred"
        inferred.append(key)
    names = display_names(table)
    if inferred:
        warnings.append("group membership inferred from which dumps use each group (the dumps' pg_config is"
                        " empty, as gloo leaves it): " + ", ".join(f"{names[k]} = {list(table[k][1])}"
                                                               for k in sorted(inferred))
                        + "; give --profiler traces for the real membership")
    groups = {k: Group(k, names[k], m, how[k]) for k, (_d, m) in table.items()}

    ranks: dict[int, RankTrace] = {}
    trace_of = {t.rank: t for t in traces}
    views: dict[View, set[tuple[str, str, tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]]] = {}
    for d in dumps:
        ops = list(d.ops)
        for op in ops:  # group-local p2p ranks -> global
            if op.is_p2p and op.peer is not None and op.group in table:
                ordered = sorted(table[op.group][1])
                if op.peer < len(ordered):
                    op.peer = ordered[op.peer]
        rt = RankTrace(d.rank, ops, d.path, None, d.backend, d.complete_from_start, d.records_p2p)
        tr = trace_of.get(d.rank)
        if tr is not None:
            _merge(rt, tr, table, world_ranks, warnings, views)
        ranks[d.rank] = rt
    for r, t in trace_of.items():
        if r in ranks:
            continue
        rt = RankTrace(r, list(t.ops), None, t.path, t.backend, True, True)
        assign_groups(rt, table, world_ranks, warnings)
        number_collectives(rt, warnings)
        ranks[r] = rt
        warnings.append(f"rank {r}: no Flight Recorder dump; using its profiler trace alone")
    if views:  # entries no trace covers: see them as the traces do, where that is unambiguous
        for rt in ranks.values():
            for op in rt.ops:
                if op.source == "fr" and op.is_collective:
                    view = views.get((op.kind, op.in_sizes, op.out_sizes))
                    if view is not None and len(view) == 1:
                        op.kind, op.ran_as, op.in_sizes, op.out_sizes = next(iter(view))
    missing = tuple(r for r in world_ranks if r not in ranks)
    have_dump = {d.rank for d in dumps}
    no_dump = tuple(r for r in world_ranks if r not in have_dump)
    if no_dump:
        warnings.insert(0, f"no Flight Recorder dump for rank{'s' if len(no_dump) > 1 else ''}"
                        f" {rank_list(no_dump)} (crashed, or the dump was not collected)")
    sources = [d.path for d in dumps] + [t.path for t in traces]
    return Job(name or _name(paths), world_ranks, groups, ranks, missing, backend, warnings, sources)


def _name(paths: Sequence[str | Path]) -> str:
    p = Path(paths[0]).resolve()
    if p.is_file():
        p = p.parent
    # fixtures keep dumps in <scenario>/pickle or <scenario>/json: name the job after the scenario
    if p.name in ("pickle", "json", "dumps", "fr") and p.parent.name:
        return p.parent.name
    return p.name or "flight-recorder"



def _merge(rt: RankTrace, t: ProfilerTrace, table: dict[str, tuple[str, tuple[int, ...]]],
           world: Sequence[int], warnings: list[str],
           views: dict[View, set[tuple[str, str, tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]]]) \
        -> None:
    """Merge one rank's profiler trace into its dump: the trace gives the
    issue order, labels and send/recv; the dump gives groups, collective
    numbers, states and frames.  An entry belongs to the host call during
    which the Flight Recorder created it (both use the host's clock)."""
    fr_ops = rt.ops
    prof = t.ops
    used: set[int] = set()
    pair: dict[int, CommOp] = {}  # id(fr op) -> profiler op
    slack = 1_000_000  # 1 ms
    by_class: dict[bool, list[CommOp]] = {
        p2p: sorted((q for q in prof if q.is_p2p == p2p and q.time_ns is not None), key=lambda q: q.time_ns or 0)
        for p2p in (False, True)}
    starts = {p2p: [q.time_ns or 0 for q in qs] for p2p, qs in by_class.items()}
    for f in fr_ops:
        created = f.time_ns
        if created is None:
            continue
        qs, st = by_class[f.is_p2p], starts[f.is_p2p]
        best = None
        # the host call that was running when the entry was created: the latest one that started before it
        hi = bisect.bisect_right(st, created)
        for j in range(hi - 1, max(hi - 16, 0) - 1, -1):
            q = qs[j]
            if id(q) not in used and created <= t.end_ns.get(id(q), 0):
                best = q
                break
        if best is None:  # clocks a little apart: the unused call that starts nearest, within the slack
            lo_i, hi_i = bisect.bisect_left(st, created - slack), bisect.bisect_right(st, created + slack)
            near = [q for q in qs[lo_i:hi_i] if id(q) not in used]
            best = min(near, key=lambda q: abs((q.time_ns or 0) - created), default=None)
        if best is not None:
            used.add(id(best))
            pair[id(f)] = best
    n_coll = sum(1 for f in fr_ops if f.is_collective)
    if n_coll and not pair:
        # no common clock: pair the collectives from the end (both stop at the hang)
        fc = [f for f in fr_ops if f.is_collective]
        pc = [q for q in prof if q.is_collective]
        for f, q in zip(reversed(fc), reversed(pc), strict=False):
            pair[id(f)] = q
            used.add(id(q))
        warnings.append(f"rank {rt.rank}: the profiler trace and the dump share no clock; their collectives"
                        " were paired by order from the end")
    merged: list[CommOp] = []
    by_prof = {id(q): f for f in fr_ops if id(f) in pair for q in [pair[id(f)]]}
    for q in prof:
        hit = by_prof.get(id(q))
        if hit is None:
            merged.append(q)
            continue
        f = hit
        f.label = q.label or f.label
        fr_view = (f.kind, f.in_sizes, f.out_sizes)
        if q.kind != f.kind:  # the API's view: gloo records reduce_scatter as the all_reduce it runs
            f.ran_as, f.kind = f.kind, q.kind
        f.in_sizes = q.in_sizes or f.in_sizes
        f.out_sizes = q.out_sizes or f.out_sizes
        views.setdefault(fr_view, set()).add((f.kind, f.ran_as, f.in_sizes, f.out_sizes))
        if f.is_p2p and f.peer is None:
            f.peer = q.peer
        if q.root is not None and f.root is None:
            members = sorted(table.get(f.group or "", ("", ()))[1])
            f.root = members[q.root] if 0 <= q.root < len(members) else q.root
        if f.dtype is None:
            f.dtype = q.dtype
        f.source = "fr+profiler"
        merged.append(f)
    # entries outside the profiler's window (or the trace's gaps): by time
    rest = [f for f in fr_ops if id(f) not in pair]
    if rest:
        out: list[CommOp] = []
        pending = sorted(rest, key=lambda o: o.time_ns or 0)
        for op in merged:
            while pending and op.time_ns is not None and (pending[0].time_ns or 0) < op.time_ns:
                out.append(pending.pop(0))
            out.append(op)
        out.extend(pending)
        merged = out
    rt.ops = merged
    rt.profiler_file = t.path
    rt.p2p_visible = True
    used_groups = {f.group for f in fr_ops if f.is_collective and f.group is not None}
    assign_groups(rt, table, world, warnings, used_groups)
    if not number_collectives(rt, warnings):
        warnings.append(f"rank {rt.rank}: collective numbers from the dump and the trace disagree")
    # the trace covers the run from its start when every collective now has a number from 1
    firsts = defaultdict(list)
    for op in rt.ops:
        if op.is_collective and op.group is not None and op.seq is not None:
            firsts[op.group].append(op.seq)
    if firsts and all(min(v) == 1 for v in firsts.values()):
        rt.complete_from_start = True
