"""The recorder: what one capture saw, rank by rank, and the schedule it
becomes.

Memory is tracked per storage.  Each storage the program touches is one
buffer ``s<id>`` with one axis ``byte`` (its size; a device storage's extent
is its allocator block, so that a reused block has the same axes), and every
access is the byte range of the tensor view, ``s3[byte=0:512]``.  Values are
``s<id>v<version>``: every write of an op puts a new version; every read
expects the value the program reads when it runs one op at a time in issue
order, which is what the CPU run does.  A recv (or a broadcast member) writes
what its sender read: those values are links, resolved once every rank has
been captured.

This module imports torch; :mod:`syncproof.capture` imports it only when a
capture starts.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils import _pytree as pytree

from ..ir.builder import HOST, RankBuilder, ScheduleBuilder
from ..ir.schedule import Schedule
from .allocator import AllocatorModel, Block, size_class
from .errors import CaptureError

DEVICE, PINNED, PAGEABLE = "device", "pinned", "pageable"
HOST_SIDE = (PINNED, PAGEABLE)
DEFAULT_STREAM = "default"

# aten ops (by base name) that allocate and launch nothing
EMPTY_OPS = frozenset({"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "empty_permuted"})
# ops whose tensor arguments give only a shape, a dtype or a device: no data is read
NO_READ_OPS = frozenset({"zeros_like", "ones_like", "full_like", "rand_like", "randn_like", "randint_like",
                         "new_zeros", "new_ones", "new_full", "empty_like", "new_empty", "new_empty_strided"})
# in-place ops that overwrite their mutated argument without reading it
OVERWRITE_OPS = frozenset({"copy_", "fill_", "zero_", "normal_", "uniform_", "random_", "exponential_",
                           "geometric_", "cauchy_", "log_normal_", "bernoulli_", "set_", "_copy_from"})
# ops about metadata only
METADATA_OPS = frozenset({"is_pinned", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "size",
                          "stride", "numel", "dim", "is_same_size", "_has_compatible_shallow_copy_type",
                          "is_coalesced", "is_contiguous", "storage_offset", "_nested_tensor_size",
                          "record_stream", "_version", "is_complex", "is_floating_point", "is_nonzero_meta"})
# device ops whose output size depends on the data: CUDA copies a count back and synchronizes the stream
SYNCING_OPS = frozenset({"nonzero", "masked_select", "_unique", "_unique2", "unique_dim", "unique_consecutive",
                         "unique_dim_consecutive", "bincount", "histc"})
COPY_OPS = frozenset({"_to_copy", "copy_", "_copy_from"})


@dataclass(eq=False)
class Link:
    """A message received on this rank: its values are those its sender read
    (``key`` names the message); ``fallback`` when there is no sender."""

    key: tuple[Any, ...]
    fallback: str


@dataclass(frozen=True)
class FromLink:
    """Storage bytes holding a received message: byte ``b`` holds the
    message's byte ``b - base``."""

    link: Link
    base: int


Val = str | FromLink | None


@dataclass(eq=False)
class Storage:
    sid: int
    key: int
    ref: Any  # StorageWeakRef: expires when the storage is freed
    nbytes: int
    extent: int
    loc: str
    version: int = 0
    los: list[int] = field(default_factory=list)  # pieces, sorted: [lo, hi) holds vals[i]
    his: list[int] = field(default_factory=list)
    vals: list[Val] = field(default_factory=list)
    block: Block | None = None
    marks: set[str] = field(default_factory=set)  # streams marked with record_stream

    @property
    def buf(self) -> str:
        return f"s{self.sid}"

    def read(self, lo: int, hi: int) -> list[tuple[int, int, Val]]:
        out: list[tuple[int, int, Val]] = []
        i = bisect.bisect_right(self.his, lo)
        pos = lo
        while pos < hi and i < len(self.los):
            plo, phi = self.los[i], self.his[i]
            if plo >= hi:
                break
            if plo > pos:
                out.append((pos, plo, None))
                pos = plo
            end = min(phi, hi)
            out.append((pos, end, self.vals[i]))
            pos = end
            i += 1
        if pos < hi:
            out.append((pos, hi, None))
        return out

    def write(self, lo: int, hi: int, val: Val) -> None:
        los, his, vals = self.los, self.his, self.vals
        i = bisect.bisect_right(his, lo)  # the first piece ending after lo
        j = i
        while j < len(los) and los[j] < hi:
            j += 1
        new: list[tuple[int, int, Val]] = []
        if i < j and los[i] < lo:
            new.append((los[i], lo, vals[i]))  # a FromLink keeps its base: byte b still holds message byte b - base
        new.append((lo, hi, val))
        if i < j and his[j - 1] > hi:
            new.append((hi, his[j - 1], vals[j - 1]))
        los[i:j] = [p[0] for p in new]
        his[i:j] = [p[1] for p in new]
        vals[i:j] = [p[2] for p in new]


@dataclass
class OpRec:
    kind: str
    stream: str
    fields: dict[str, Any]
    reads: list[tuple[Storage, int, int, Val]]
    writes: list[tuple[Storage, int, int, Val]]
    meta: dict[str, Any]


@dataclass
class Message:
    """What a send (or a broadcast root) read: its pieces in the sender's
    storage bytes, starting at ``start``."""

    start: int
    nbytes: int
    pieces: list[tuple[int, int, Val]]


class RankState:
    """Everything the capture knows about one rank."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.ops: list[OpRec] = []
        self.storages: dict[int, Storage] = {}
        self.allocator = AllocatorModel()
        self.streams = 0
        self.events = 0
        self.fifo: dict[tuple[str, str, int, int], int] = {}  # (send|recv, comm, src, dst) -> count
        self.instances: dict[str, int] = {}  # group -> collectives issued
        self.batches = 0
        self.batch: str | None = None
        self.pending_waits: dict[int, list[tuple[str, str]]] = {}  # storage sid -> (event, nccl stream)
        self.current: Any = None  # the current stand-in stream
        self.default: Any = None
        self.positions: dict[str, int] = {}  # stream -> ops issued on it
        self.recorded: dict[str, tuple[str, int]] = {}  # event -> (stream, position) of its latest record


def tensors_in(value: Any) -> list[Any]:
    return [x for x in pytree.tree_leaves(value) if isinstance(x, torch.Tensor)]


class Recorder:
    """One capture: the ranks' ops, storages, groups and messages."""

    def __init__(self, world: int, name: str) -> None:
        self.world = world
        self.name = name
        self.ranks: list[RankState] = []
        self.rs: RankState = RankState(0)
        self.sids = 0
        self.buffers: dict[str, int] = {}
        self.inits: list[tuple[str, str, int]] = []
        self.messages: dict[tuple[Any, ...], Message] = {}
        self.groups: dict[str, list[int]] = {}
        self.meta_stack: list[tuple[dict[str, Any], str | None]] = []
        self.module_stack: list[str] = []
        self.targets: list[str | None] = []
        self.suspended = 0
        self.warnings: list[str] = []

    # ------------------------------------------------------------ ranks
    def start_rank(self, rank: int, make_stream: Any) -> None:
        self.rs = RankState(rank)
        self.ranks.append(self.rs)
        self.rs.default = make_stream(DEFAULT_STREAM)
        self.rs.current = self.rs.default
        self.meta_stack.clear()
        self.module_stack.clear()
        self.targets.clear()

    def end_rank(self) -> None:
        self.flush()

    # ------------------------------------------------------------- meta
    def push_meta(self, fields: dict[str, Any], scope: str | None) -> None:
        self.meta_stack.append((fields, scope))

    def pop_meta(self) -> None:
        if self.meta_stack:
            self.meta_stack.pop()

    def current_meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for fields, _ in self.meta_stack:
            out.update(fields)
        if "step" in out and out.get("phase") != "decode":
            del out["step"]  # the format allows a step on decode ops only
        return out

    def op_name(self, base: str) -> str:
        parts = [self.module_stack[-1]] if self.module_stack else []
        parts += [scope for _, scope in self.meta_stack if scope]
        parts.append(base)
        return "/".join(parts)

    # ---------------------------------------------------------- storages
    def storage_key(self, t: Any, where: str) -> tuple[Any, int]:
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError, TypeError) as exc:
            raise CaptureError(f"{where}: a tensor without a plain storage ({type(t).__name__},"
                               f" layout {getattr(t, 'layout', '?')}): {exc}") from None
        return st, int(st._cdata)

    def lookup(self, t: Any, where: str) -> Storage | None:
        st, key = self.storage_key(t, where)
        s = self.rs.storages.get(key)
        if s is not None and s.ref.expired():
            self._freed(s)
            return None
        if s is not None and st.nbytes() > s.nbytes:
            raise CaptureError(f"{where}: storage {s.buf} grew from {s.nbytes} to {st.nbytes()} bytes (resize_);"
                               " a resized storage cannot be captured")
        return s

    def register(self, t: Any, loc: str, where: str, *, preexisting: bool = False) -> Storage:
        st, key = self.storage_key(t, where)
        self.sids += 1
        nbytes = int(st.nbytes())
        extent = size_class(nbytes) if loc == DEVICE else max(nbytes, 1)
        s = Storage(self.sids, key, StorageWeakRef(st), nbytes, extent, loc)  # type: ignore[no-untyped-call]
        self.rs.storages[key] = s
        self.buffers[s.buf] = extent
        if loc == DEVICE and not preexisting:
            block, reuses = self.rs.allocator.alloc(s.buf, self.rs.current.name, nbytes)
            s.block = block
            self.push("alloc", HOST, {"buffer": s.buf, "target": self.rs.current.name, "reuses": reuses})
        if preexisting and nbytes:
            s.version = 0
            value = f"{s.buf}v0"
            s.write(0, nbytes, value)
            self.inits.append((f"{s.buf}[byte=0:{nbytes}]", value, self.rs.rank))
        return s

    def storage(self, t: Any, where: str) -> Storage:
        """The storage of ``t``; one never seen (made before the capture, or
        by code the capture does not see) holds an initial value."""
        s = self.lookup(t, where)
        if s is None:
            _, key = self.storage_key(t, where)
            for other in self.ranks:
                o = other.storages.get(key)
                if other is not self.rs and o is not None and o.loc == DEVICE and not o.ref.expired():
                    raise CaptureError(f"{where}: a CUDA tensor made on rank {other.rank} is used on rank"
                                       f" {self.rs.rank}: each rank's function must make its own tensors (keep"
                                       " models and buffers out of module globals and caches)")
            s = self.register(t, PAGEABLE, where, preexisting=True)
        return s

    def loc(self, t: Any) -> str:
        s = self.lookup(t, "location")
        return PAGEABLE if s is None else s.loc

    def flush(self) -> None:
        """Emit the frees of the storages that died since the last op."""
        dead = [s for s in self.rs.storages.values() if s.ref.expired()]
        for s in dead:
            self._freed(s)

    def _freed(self, s: Storage) -> None:
        if self.rs.storages.get(s.key) is s:
            del self.rs.storages[s.key]
        self.rs.pending_waits.pop(s.sid, None)
        if s.block is not None:
            self.push("free", HOST, {"buffer": s.buf})
            pos = self.rs.positions
            self.rs.allocator.free(s.block, {t: pos.get(t, 0) for t in s.marks})
            s.block = None

    @staticmethod
    def span(t: Any) -> tuple[int, int] | None:
        """The byte range of ``t``'s view in its storage (the bounding range
        of a strided view), or None for an empty tensor."""
        n = t.numel()
        if n == 0:
            return None
        es = t.element_size()
        extent = 1 + sum((d - 1) * abs(st) for d, st in zip(t.shape, t.stride(), strict=True))
        lo = t.storage_offset() * es
        return lo, lo + extent * es

    # ---------------------------------------------------------- emitting
    def push(self, kind: str, stream: str, fields: dict[str, Any],
             reads: Sequence[tuple[Storage, int, int, Val]] = (),
             writes: Sequence[tuple[Storage, int, int, Val]] = ()) -> OpRec:
        op = OpRec(kind, stream, fields, list(reads), list(writes), self.current_meta())
        rs = self.rs
        rs.ops.append(op)
        if stream != HOST:
            rs.positions[stream] = rs.positions.get(stream, 0) + 1
            if kind == "record":
                rs.recorded[fields["event"]] = (stream, rs.positions[stream])
        elif kind == "sync":
            self._observe(fields)
        return op

    def _observe(self, f: dict[str, Any]) -> None:
        """What a host sync tells the allocator model: work it saw finish."""
        rs = self.rs
        if "target" in f:
            rs.allocator.observe(f["target"], rs.positions.get(f["target"], 0))
        elif "event" in f:
            if f["event"] in rs.recorded:
                rs.allocator.observe(*rs.recorded[f["event"]])
        elif "of" not in f:
            rs.allocator.observe(None, 0)

    def mark(self, s: Storage, stream: str) -> None:
        """``record_stream``: ``s``'s block is held back at its free until
        the host has seen ``stream``'s work finish."""
        if s.block is not None and s.block.stream != stream:
            s.marks.add(stream)
            self.push("record_stream", HOST, {"buffer": s.buf, "target": stream})

    def accesses(self, tensors: Iterable[Any], where: str) -> dict[Storage, list[tuple[int, int]]]:
        """Byte intervals per storage, merged."""
        per: dict[Storage, list[tuple[int, int]]] = {}
        for t in tensors:
            sp = self.span(t)
            if sp is None:
                continue
            s = self.storage(t, where)
            per.setdefault(s, []).append(sp)
        for s, ivs in per.items():
            ivs.sort()
            merged: list[tuple[int, int]] = []
            for lo, hi in ivs:
                if merged and lo <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
                else:
                    merged.append((lo, hi))
            per[s] = merged
        return per

    def read_accesses(self, per: dict[Storage, list[tuple[int, int]]]) -> list[tuple[Storage, int, int, Val]]:
        out: list[tuple[Storage, int, int, Val]] = []
        for s, ivs in per.items():
            for lo, hi in ivs:
                out.extend((s, a, b, v) for a, b, v in s.read(lo, hi))
        return out

    def write_accesses(self, per: dict[Storage, list[tuple[int, int]]],
                       value: dict[Storage, Val] | None = None) -> list[tuple[Storage, int, int, Val]]:
        """New versions of the storages in ``per`` (or the given values),
        applied to the value map."""
        out: list[tuple[Storage, int, int, Val]] = []
        for s, ivs in per.items():
            s.version += 1
            v: Val = value[s] if value is not None and s in value else f"{s.buf}v{s.version}"
            for lo, hi in ivs:
                if isinstance(v, FromLink):
                    v = FromLink(v.link, lo) if v.base < 0 else v
                s.write(lo, hi, v)
                out.append((s, lo, hi, v))
        return out

    def wait_pending(self, read: Iterable[Storage], stream: str) -> None:
        """Functional collectives: the first use of the output waits for the
        work on the current stream (``AsyncCollectiveTensor``)."""
        for s in read:
            pend = self.rs.pending_waits.pop(s.sid, None)
            for event, _ in pend or ():
                self.push("wait", stream, {"event": event})

    def kernel(self, name: str, stream: str, reads: Sequence[Any], writes: Sequence[Any],
               fresh: Sequence[Storage] = (), where: str = "") -> OpRec:
        """One op on ``stream`` reading ``reads`` and writing ``writes`` (and
        the whole of each fresh storage)."""
        where = where or name
        rper = self.accesses(reads, where)
        if stream != HOST:
            self.wait_pending(rper, stream)
        r = self.read_accesses(rper)
        wper = self.accesses(writes, where)
        for s in fresh:
            if s.nbytes:
                wper[s] = [(0, s.nbytes)]
        w = self.write_accesses(wper)
        return self.push("compute", stream, {"name": name}, r, w)

    def new_event(self, prefix: str = "e") -> str:
        self.rs.events += 1
        return f"{prefix}{self.rs.events}"

    def record(self, event: str, stream: str) -> None:
        self.flush()
        self.push("record", stream, {"event": event})

    def wait(self, event: str, stream: str) -> None:
        self.flush()
        self.push("wait", stream, {"event": event})

    def sync(self, **fields: Any) -> None:
        self.flush()
        self.push("sync", HOST, {k: v for k, v in fields.items() if v is not None})

    def record_stream(self, t: Any, stream: str) -> None:
        self.flush()
        s = self.lookup(t, "Tensor.record_stream")
        if s is None or s.loc != DEVICE:
            raise CaptureError("Tensor.record_stream on a tensor that is not a CUDA tensor (torch raises too)")
        self.mark(s, stream)

    def opaque(self, name: str, reads: Sequence[Any], writes: Sequence[Any]) -> None:
        self.flush()
        ts = [*reads, *writes]
        for t in ts:
            if not isinstance(t, torch.Tensor):
                raise CaptureError(f"syncproof.capture.opaque({name!r}): reads and writes must be tensors,"
                                   f" got {type(t).__name__}")
        locs = {self.loc(t) for t in ts}
        stream = self.rs.current.name if DEVICE in locs else HOST
        self.kernel(self.op_name(name), stream, reads, writes, where=f"opaque {name!r}")

    # ----------------------------------------------------------- messages
    def message(self, key: tuple[Any, ...], t: Any, where: str) -> list[tuple[Storage, int, int, Val]]:
        """The reads of a send (or broadcast root) of ``t``, remembered as
        message ``key``."""
        per = self.accesses([t], where)
        reads = self.read_accesses(per)
        sp = self.span(t)
        if sp is not None:
            self.messages[key] = Message(sp[0], sp[1] - sp[0], [(lo, hi, v) for _, lo, hi, v in reads])
        return reads

    def receive(self, key: tuple[Any, ...], t: Any, where: str) -> list[tuple[Storage, int, int, Val]]:
        per = self.accesses([t], where)
        values: dict[Storage, Val] = {}
        for s in per:
            values[s] = FromLink(Link(key, f"{s.buf}v{s.version + 1}"), -1)
        return self.write_accesses(per, values)

    def resolve(self, v: Val, lo: int, hi: int, depth: int = 0) -> list[tuple[int, int, str | None]]:
        if not isinstance(v, FromLink):
            return [(lo, hi, v)]
        msg = self.messages.get(v.link.key)
        if msg is None or depth > 64:
            return [(lo, hi, v.link.fallback)]
        shift = msg.start - v.base  # receiver byte b <-> sender byte b + shift
        out: list[tuple[int, int, str | None]] = []
        pos = lo
        for plo, phi, pv in msg.pieces:
            a, b = max(plo - shift, lo), min(phi - shift, hi)
            if a >= b:
                continue
            if a > pos:
                out.append((pos, a, v.link.fallback))
            out.extend((x - shift, y - shift, w) for x, y, w in self.resolve(pv, a + shift, b + shift, depth + 1))
            pos = b
        if pos < hi:
            out.append((pos, hi, v.link.fallback))
        return out

    # ------------------------------------------------------------ output
    def regions(self, accesses: Sequence[tuple[Storage, int, int, Val]], write: bool) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for s, lo, hi, v in accesses:
            for a, b, w in self.resolve(v, lo, hi):
                if write and w is None:  # a message of unwritten memory: the recv's own value
                    w = v.link.fallback if isinstance(v, FromLink) else f"{s.buf}v?"
                out[f"{s.buf}[byte={a}:{b}]"] = w
        return out

    def build(self) -> Schedule:
        b = ScheduleBuilder(self.name, description=self.description())
        for g, members in self.groups.items():
            b.group(g, members)
        for buf, extent in self.buffers.items():
            b.buffer(buf, byte=extent)
        for region, value, rank in self.inits:
            b.init(region, value, ranks=[rank])
        for rs in self.ranks:
            self.emit_rank(rs, b.rank(rs.rank))
        for r in range(self.world):
            b.rank(r)
        b.to_dict()["description"] = self.description()  # with the notes emitting made
        return b.build(f"<capture {self.name}>")

    def description(self) -> str:
        text = f"Captured from PyTorch by syncproof.capture ({self.world} rank{'s' if self.world != 1 else ''})."
        if self.warnings:
            text += " Capture notes: " + "; ".join(dict.fromkeys(self.warnings)) + "."
        return text

    def emit_rank(self, rs: RankState, rb: RankBuilder) -> None:
        recorded: set[str] = set()
        for op in rs.ops:
            if op.kind == "record":
                recorded.add(op.fields["event"])
        for op in rs.ops:
            f = dict(op.fields)
            m = op.meta
            k = op.kind
            if k in ("wait", "sync") and "event" in f and f["event"] not in recorded:
                self.warnings.append(f"rank {rs.rank}: a {k} on event {f['event']!r}, which is never recorded,"
                                     " is a no-op (CUDA) and was left out")
                continue
            reads = self.regions(op.reads, False) or None
            writes = self.regions(op.writes, True) or None
            if k == "compute":
                rb.compute(f["name"], stream=op.stream, reads=reads, writes=writes, **m)
            elif k == "send":
                rb.send(f["to"], stream=op.stream, reads=reads, size=f.get("size"), dtype=f.get("dtype"),
                        comm=f.get("comm"), batch=f.get("batch"), name=f.get("name"), **m)
            elif k == "recv":
                rb.recv(f["from"], stream=op.stream, writes=writes, size=f.get("size"), dtype=f.get("dtype"),
                        comm=f.get("comm"), batch=f.get("batch"), name=f.get("name"), **m)
            elif k == "record":
                rb.record(f["event"], stream=op.stream, **m)
            elif k == "wait":
                rb.wait(f["event"], stream=op.stream, **m)
            elif k == "sync":
                rb.sync(event=f.get("event"), target=f.get("target"), of=f.get("of"), **m)
            elif k == "alloc":
                rb.alloc(f["buffer"], f["target"], reuses=f.get("reuses"), **m)
            elif k == "free":
                rb.free(f["buffer"], **m)
            elif k == "record_stream":
                rb.record_stream(f["buffer"], f["target"], **m)
            else:
                rb.collective(k, f["group"], stream=op.stream, reads=reads, writes=writes, size=f.get("size"),
                              root=f.get("root"), dtype=f.get("dtype"), name=f.get("name"), comm=f.get("comm"),
                              batch=f.get("batch"), counts=f.get("counts"), recv_counts=f.get("recv_counts"), **m)
