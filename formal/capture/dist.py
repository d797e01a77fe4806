"""``torch.distributed`` stand-ins with ProcessGroupNCCL's stream rules.

No process group is created: every rank runs in turn in this process, and
each call records what ProcessGroupNCCL enqueues (``ProcessGroupNCCL.cpp``):

* a collective runs on the group's internal NCCL stream (``nccl:<group>``),
  which first waits for the current stream (an event recorded on the current
  stream, waited on by the NCCL stream: ``syncStream``);
* its end is recorded on the NCCL stream; a synchronous call makes the
  current stream wait for it, an async one returns a :class:`Work` whose
  ``wait()`` does (``WorkNCCL::synchronizeStream``); ``barrier`` also blocks
  the host;
* its tensors are kept alive until it completes: a ``record_stream`` on the
  NCCL stream for each tensor the allocator handed out;
* each group is its own communicator; single ``send``/``recv`` use one
  communicator (and one NCCL stream) per pair of ranks, ``batch_isend_irecv``
  is one group call on the group's own communicator;
* a gloo group (or the CPU side of ``"cpu:gloo,cuda:nccl"``) runs its
  collectives on the host, synchronously.

The data is not exchanged (each rank runs alone): an all_reduce leaves its
tensor as it is, a recv leaves its buffer.  The values in the schedule are
exact all the same: a recv writes what its matched send read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..ir.builder import HOST
from .cuda import CudaStandIns, Patches
from .errors import CaptureError
from .recorder import DEVICE, Recorder, Storage, Val

WORLD = "world"


class Group:
    """A stand-in ProcessGroup: a name, its member ranks, its backend."""

    def __init__(self, name: str, ranks: list[int], backend: str, dist: Dist) -> None:
        self.name = name
        self.ranks = ranks
        self.backend = backend
        self._dist = dist

    @property
    def group_name(self) -> str:
        return self.name

    def rank(self) -> int:
        """This rank's index in the group, on the rank being captured."""
        return self.ranks.index(self._dist.rec.rs.rank)

    def size(self) -> int:
        return len(self.ranks)

    def __repr__(self) -> str:
        return f"<syncproof capture group {self.name!r} {self.ranks}>"


class Work:
    """A stand-in Work: ``wait()`` makes the current stream wait for the end
    of the operation."""

    def __init__(self, dist: Dist, event: str | None, rank: int, barrier: bool = False) -> None:
        self._dist = dist
        self.event = event
        self.rank = rank
        self.barrier = barrier

    def wait(self, timeout: Any = None) -> bool:
        if self.event is not None:
            rec = self._dist.rec
            if rec.rs.rank != self.rank:
                raise CaptureError("a Work of another rank was waited on")
            if self.barrier:
                rec.sync(event=self.event)  # a barrier's wait blocks the host
            else:
                rec.wait(self.event, rec.rs.current.name)
        return True

    def synchronize(self) -> None:
        self.wait()

    def is_completed(self) -> bool:
        if self.event is not None:
            self._dist.rec.sync(event=self.event)  # the host saw it finish
        return True

    def is_success(self) -> bool:
        return True

    def exception(self) -> None:
        return None

    def result(self) -> list[Any]:
        return []

    def get_future(self) -> Any:
        raise CaptureError("Work.get_future() cannot be captured; call work.wait()")


class P2POp:
    """A stand-in ``torch.distributed.P2POp``."""

    def __init__(self, op: Callable[..., Any], tensor: Any, peer: int | None = None, group: Any = None,
                 tag: int = 0, group_peer: int | None = None) -> None:
        self.op = op
        self.tensor = tensor
        self.peer = peer
        self.group = group
        self.tag = tag
        self.group_peer = group_peer


class Dist:
    """The stand-in functions bound to one recorder."""

    def __init__(self, rec: Recorder, cuda: CudaStandIns) -> None:
        self.rec = rec
        self.cuda = cuda
        self.initialized = False
        self.world_group: Group | None = None
        self.created = 0
        self.streams: dict[tuple[int, str], Any] = {}
        self.made: list[Group] = []

    def start_rank(self) -> None:
        self.initialized = False
        self.created = 0
        self.world_group = None
        self.made = []

    # ------------------------------------------------------------ groups
    def init_process_group(self, backend: str | None = None, *args: Any, **kwargs: Any) -> None:
        self.initialized = True
        self.world_group = Group(WORLD, list(range(self.rec.world)), backend or "nccl", self)
        self.rec.groups.setdefault(WORLD, list(range(self.rec.world)))

    def is_initialized(self) -> bool:
        return self.initialized

    def destroy_process_group(self, group: Any = None) -> None:
        if group is None:
            self.initialized = False

    def group(self, group: Any) -> Group:
        if group is None:
            if self.world_group is None:
                raise CaptureError("torch.distributed is used before init_process_group()")
            return self.world_group
        if isinstance(group, Group):
            if self.rec.rs.rank not in group.ranks:
                raise CaptureError(f"rank {self.rec.rs.rank} uses group {group.name!r}, which it is not a member"
                                   " of")
            return group
        if isinstance(group, str):
            for g in self.known_groups():
                if g.name == group:
                    return g
            raise CaptureError(f"unknown process group name {group!r}")
        if isinstance(group, (list, tuple)) and all(isinstance(r, int) for r in group):
            members = sorted(int(r) for r in group)
            for g in self.known_groups():
                if g.ranks == members:
                    return g
            name = "ranks" + "-".join(map(str, members))
            self.rec.groups.setdefault(name, members)
            return Group(name, members, "nccl", self)
        raise CaptureError(f"a process group the capture does not know: {group!r} (use dist.new_group or a list"
                           " of ranks)")

    def known_groups(self) -> list[Group]:
        out = [self.world_group] if self.world_group is not None else []
        return out + self.made

    def new_group(self, ranks: Sequence[int] | None = None, timeout: Any = None, backend: str | None = None,
                  *args: Any, **kwargs: Any) -> Any:
        self.created += 1
        members = sorted(int(r) for r in ranks) if ranks is not None else list(range(self.rec.world))
        for r in members:
            if not 0 <= r < self.rec.world:
                raise CaptureError(f"new_group({list(members)}): rank {r} is outside the world of {self.rec.world}")
        name = f"pg{self.created}"
        old = self.rec.groups.setdefault(name, members)
        if old != members:
            raise CaptureError(f"new_group call #{self.created} makes group {members} on rank {self.rec.rs.rank}"
                               f" but {old} on an earlier rank: every rank must create the groups in one order")
        g = Group(name, members, backend or (self.world_group.backend if self.world_group else "nccl"), self)
        self.made = [x for x in self.made if x.name != name] + [g]
        if self.rec.rs.rank not in members:
            return NON_GROUP_MEMBER
        return g

    def get_rank(self, group: Any = None) -> int:
        if group is None and self.world_group is None:
            return self.rec.rs.rank
        g = self.group(group)
        return g.ranks.index(self.rec.rs.rank)

    def get_world_size(self, group: Any = None) -> int:
        if group is None and self.world_group is None:
            return self.rec.world
        return self.group(group).size()

    def get_backend(self, group: Any = None) -> str:
        return self.group(group).backend

    def get_global_rank(self, group: Any, group_rank: int) -> int:
        return self.group(group).ranks[group_rank]

    def get_group_rank(self, group: Any, global_rank: int) -> int:
        return self.group(group).ranks.index(global_rank)

    def get_process_group_ranks(self, group: Any) -> list[int]:
        return list(self.group(group).ranks)

    # ---------------------------------------------------------- streams
    def nccl_stream(self, key: str) -> str:
        rs = self.rec.rs
        s = self.streams.get((rs.rank, key))
        if s is None:
            s = self.streams[(rs.rank, key)] = self.cuda.Stream(name=f"nccl:{key}")
        return str(s.name)

    def on_host(self, g: Group, tensors: Sequence[Any], what: str) -> bool:
        """Whether this call runs on the host (gloo) or on NCCL streams."""
        locs = {self.rec.loc(t) for t in tensors}
        device = DEVICE in locs
        if device and len(locs) > 1:
            raise CaptureError(f"{what}: mixes CUDA and CPU tensors")
        backend = g.backend.lower()
        if device:
            if "nccl" not in backend:
                raise CaptureError(f"{what} on group {g.name!r} ({g.backend}) with CUDA tensors: the capture"
                                   " models NCCL for CUDA tensors")
            return False
        if not tensors:
            return "nccl" not in backend  # a barrier: NCCL's when the group has NCCL
        if "gloo" not in backend:
            raise CaptureError(f"{what} on group {g.name!r} ({g.backend}) with CPU tensors: NCCL needs CUDA"
                               " tensors (use a gloo group for CPU tensors)")
        return True

    def launch(self, what: str, g: Group, tensors: Sequence[Any], key: str, async_op: bool,
               body: Callable[[str], None], *, barrier: bool = False) -> Work | None:
        rec = self.rec
        rec.flush()
        if self.on_host(g, tensors, what):
            body(HOST)
            return Work(self, None, rec.rs.rank) if async_op else None
        cur = rec.rs.current.name
        stream = self.nccl_stream(key)
        pre = rec.new_event("pre")
        rec.record(pre, cur)
        rec.wait(pre, stream)
        body(stream)
        for t in tensors:  # the inputs and outputs are kept alive until the work completes
            s = rec.lookup(t, what)
            if s is not None:
                rec.mark(s, stream)
        end = rec.new_event("work")
        rec.record(end, stream)
        work = Work(self, end, rec.rs.rank, barrier)
        if not async_op:
            work.wait()
            return None
        return work

    # -------------------------------------------------------- accesses
    def reads(self, tensors: Sequence[Any], what: str) -> list[tuple[Storage, int, int, Val]]:
        return self.rec.read_accesses(self.rec.accesses(tensors, what))

    def writes(self, tensors: Sequence[Any], what: str) -> list[tuple[Storage, int, int, Val]]:
        return self.rec.write_accesses(self.rec.accesses(tensors, what))

    def coll(self, kind: str, g: Group, stream: str, reads: Any, writes: Any, **fields: Any) -> None:
        rs = self.rec.rs
        rs.instances[g.name] = rs.instances.get(g.name, 0) + 1
        self.rec.groups.setdefault(g.name, g.ranks)
        f = {"group": g.name, **{k: v for k, v in fields.items() if v is not None}}
        if rs.batch is not None:
            f["batch"] = rs.batch
        self.rec.push(kind, stream, f, reads, writes)

    @staticmethod
    def meta(t: Any) -> dict[str, Any]:
        return {"size": int(t.numel()), "dtype": str(t.dtype).replace("torch.", "")}

    # ------------------------------------------------------ collectives
    def all_reduce(self, tensor: Any, op: Any = None, group: Any = None, async_op: bool = False) -> Any:
        g = self.group(group)

        def body(stream: str) -> None:
            r = self.reads([tensor], "all_reduce")
            self.coll("all_reduce", g, stream, r, self.writes([tensor], "all_reduce"), **self.meta(tensor))
        return self.launch("all_reduce", g, [tensor], g.name, async_op, body)

    def all_gather_into_tensor(self, output_tensor: Any, input_tensor: Any, group: Any = None,
                               async_op: bool = False) -> Any:
        g = self.group(group)

        def body(stream: str) -> None:
            r = self.reads([input_tensor], "all_gather_into_tensor")
            w = self.writes([output_tensor], "all_gather_into_tensor")
            self.coll("all_gather", g, stream, r, w, **self.meta(input_tensor))
        return self.launch("all_gather_into_tensor", g, [output_tensor, input_tensor], g.name, async_op, body)

    def all_gather(self, tensor_list: list[Any], tensor: Any, group: Any = None, async_op: bool = False) -> Any:
        g = self.group(group)

        def body(stream: str) -> None:
            r = self.reads([tensor], "all_gather")
            self.coll("all_gather", g, stream, r, self.writes(tensor_list, "all_gather"), **self.meta(tensor))
        return self.launch("all_gather", g, [*tensor_list, tensor], g.name, async_op, body)

    def reduce_scatter_tensor(self, output: Any, input: Any, op: Any = None, group: Any = None,
                              async_op: bool = False) -> Any:
        g = self.group(group)

        def body(stream: str) -> None:
            r = self.reads([input], "reduce_scatter_tensor")
            w = self.writes([output], "reduce_scatter_tensor")
            self.coll("reduce_scatter", g, stream, r, w, **self.meta(output))
        return self.launch("reduce_scatter_tensor", g, [output, input], g.name, async_op, body)

    def reduce_scatter(self, output: Any, input_list: list[Any], op: Any = None, group: Any = None,
                       async_op: bool = False) -> Any:
        g = self.group(group)

        def body(stream: str) -> None:
            r = self.reads(input_list, "reduce_scatter")
            self.coll("reduce_scatter", g, stream, r, self.writes([output], "reduce_scatter"), **self.meta(output))
        return self.launch("reduce_scatter", g, [output, *input_list], g.name, async_op, body)

    def all_to_all_single(self, output: Any, input: Any, output_split_sizes: Sequence[int] | None = None,
                          input_split_sizes: Sequence[int] | None = None, group: Any = None,
                          async_op: bool = False) -> Any:
        g = self.group(group)
        n = g.size()

        def counts(t: Any, splits: Sequence[int] | None) -> list[int]:
            rows = int(t.shape[0]) if t.dim() else 1
            row = int(t.numel()) // rows if rows else 0
            if splits is None:
                if rows % n:
                    raise CaptureError(f"all_to_all_single: dim 0 ({rows}) does not split into {n} equal parts")
                return [rows // n * row] * n
            if len(splits) != n or sum(splits) != rows:
                raise CaptureError(f"all_to_all_single: split sizes {list(splits)} do not fit dim 0 ({rows}) and"
                                   f" {n} members")
            return [int(s) * row for s in splits]

        sent, received = counts(input, input_split_sizes), counts(output, output_split_sizes)

        def body(stream: str) -> None:
            r = self.reads([input], "all_to_all_single")
            w = self.writes([output], "all_to_all_single")
            self.coll("all_to_all", g, stream, r, w, dtype=self.meta(input)["dtype"], counts=sent,
                      recv_counts=received)
        return self.launch("all_to_all_single", g, [output, input], g.name, async_op, body)

    def all_to_all(self, output_tensor_list: list[Any], input_tensor_list: list[Any], group: Any = None,
                   async_op: bool = False) -> Any:
        g = self.group(group)

        def body(stream: str) -> None:
            r = self.reads(input_tensor_list, "all_to_all")
            w = self.writes(output_tensor_list, "all_to_all")
            self.coll("all_to_all", g, stream, r, w, counts=[int(t.numel()) for t in input_tensor_list],
                      recv_counts=[int(t.numel()) for t in output_tensor_list])
        return self.launch("all_to_all", g, [*output_tensor_list, *input_tensor_list], g.name, async_op, body)

    def broadcast(self, tensor: Any, src: int | None = None, group: Any = None, async_op: bool = False,
                  group_src: int | None = None) -> Any:
        g = self.group(group)
        root = src if src is not None else g.ranks[group_src or 0]
        if root not in g.ranks:
            raise CaptureError(f"broadcast from rank {root}, which is not in group {g.name!r}")

        def body(stream: str) -> None:
            rs = self.rec.rs
            key = ("bcast", g.name, rs.instances.get(g.name, 0))
            if rs.rank == root:
                self.coll("broadcast", g, stream, self.rec.message(key, tensor, "broadcast"), [], root=root,
                          **self.meta(tensor))
            else:
                self.coll("broadcast", g, stream, [], self.rec.receive(key, tensor, "broadcast"), root=root,
                          **self.meta(tensor))
        return self.launch("broadcast", g, [tensor], g.name, async_op, body)

    def reduce(self, tensor: Any, dst: int | None = None, op: Any = None, group: Any = None,
               async_op: bool = False, group_dst: int | None = None) -> Any:
        g = self.group(group)
        root = dst if dst is not None else g.ranks[group_dst or 0]

        def body(stream: str) -> None:
            r = self.reads([tensor], "reduce")
            w = self.writes([tensor], "reduce") if self.rec.rs.rank == root else []
            self.coll("reduce", g, stream, r, w, root=root, **self.meta(tensor))
        return self.launch("reduce", g, [tensor], g.name, async_op, body)

    def barrier(self, group: Any = None, async_op: bool = False, device_ids: Any = None) -> Any:
        g = self.group(group)

        def body(stream: str) -> None:
            self.coll("barrier", g, stream, [], [])
        return self.launch("barrier", g, [], g.name, async_op, body, barrier=True)

    # ------------------------------------------------------------- p2p
    def peer(self, g: Group, peer: int | None, group_peer: int | None, what: str) -> int:
        if peer is None and group_peer is not None:
            peer = g.ranks[group_peer]
        if peer is None:
            raise CaptureError(f"{what} without a peer (a recv from any source cannot be captured)")
        if peer == self.rec.rs.rank or peer not in g.ranks:
            raise CaptureError(f"{what}: peer {peer} is this rank or not in group {g.name!r}")
        return int(peer)

    def p2p_op(self, kind: str, g: Group, tensor: Any, peer: int, stream: str, comm: str | None) -> None:
        rec = self.rec
        rs = rec.rs
        src, dst = (rs.rank, peer) if kind == "send" else (peer, rs.rank)
        lo, hi = min(src, dst), max(src, dst)
        fifo_comm = comm or f"p2p:{lo}-{hi}"
        k = (kind, fifo_comm, src, dst)
        n = rs.fifo.get(k, 0)
        rs.fifo[k] = n + 1
        key = ("p2p", fifo_comm, src, dst, n)
        f: dict[str, Any] = {"to" if kind == "send" else "from": peer, **self.meta(tensor)}
        if comm is not None:
            f["comm"] = comm
        if rs.batch is not None:
            f["batch"] = rs.batch
        if kind == "send":
            rec.push("send", stream, f, rec.message(key, tensor, "send"), [])
        else:
            rec.push("recv", stream, f, [], rec.receive(key, tensor, "recv"))

    def p2p(self, kind: str, tensor: Any, peer: int | None, group: Any, group_peer: int | None,
            async_op: bool) -> Work | None:
        g = self.group(group)
        what = "isend" if kind == "send" else "irecv"
        p = self.peer(g, peer, group_peer, what)
        me = self.rec.rs.rank
        lo, hi = min(me, p), max(me, p)
        comm = None if g.name == WORLD else f"{g.name}:p2p:{lo}-{hi}"
        key = f"p2p:{lo}-{hi}" if g.name == WORLD else f"{g.name}:p2p:{lo}-{hi}"
        return self.launch(what, g, [tensor], key, async_op,
                           lambda stream: self.p2p_op(kind, g, tensor, p, stream, comm))

    def isend(self, tensor: Any, dst: int | None = None, group: Any = None, tag: int = 0,
              group_dst: int | None = None) -> Any:
        return self.p2p("send", tensor, dst, group, group_dst, True)

    def irecv(self, tensor: Any, src: int | None = None, group: Any = None, tag: int = 0,
              group_src: int | None = None) -> Any:
        return self.p2p("recv", tensor, src, group, group_src, True)

    def send(self, tensor: Any, dst: int | None = None, group: Any = None, tag: int = 0,
             group_dst: int | None = None) -> None:
        self.p2p("send", tensor, dst, group, group_dst, False)

    def recv(self, tensor: Any, src: int | None = None, group: Any = None, tag: int = 0,
             group_src: int | None = None) -> int:
        g = self.group(group)
        p = self.peer(g, src, group_src, "recv")
        self.p2p("recv", tensor, p, group, None, False)
        return p

    def batch_isend_irecv(self, p2p_op_list: list[Any]) -> list[Any]:
        if not p2p_op_list:
            raise CaptureError("batch_isend_irecv of an empty list")
        groups = {id(self.group(op.group)) for op in p2p_op_list}
        g = self.group(p2p_op_list[0].group)
        if len(groups) > 1:
            raise CaptureError("batch_isend_irecv with ops of several groups (torch requires one)")
        rs = self.rec.rs
        parts: list[tuple[str, Any, int]] = []
        for op in p2p_op_list:
            fn = op.op
            name = getattr(fn, "__name__", "")
            if name not in ("isend", "irecv"):
                raise CaptureError(f"batch_isend_irecv: a P2POp of {fn!r} (only isend and irecv)")
            kind = "send" if name == "isend" else "recv"
            parts.append((kind, op.tensor, self.peer(g, op.peer, op.group_peer, name)))

        def body(stream: str) -> None:
            rs.batches += 1
            rs.batch = f"gc{rs.batches}"
            try:
                for kind, t, p in parts:
                    self.p2p_op(kind, g, t, p, stream, g.name)
            finally:
                rs.batch = None
        work = self.launch("batch_isend_irecv", g, [t for _, t, _ in parts], g.name, True, body)
        return [work for _ in parts]

    # ------------------------------------------- functional collectives
    def pend(self, t: Any, work: Work | None) -> None:
        s = self.rec.lookup(t, "functional collective")
        if s is not None and work is not None and work.event is not None:
            self.rec.rs.pending_waits.setdefault(s.sid, []).append((work.event, ""))

    def f_all_reduce(self, self_: Any, reduceOp: str, group: Any, tag: str = "") -> Any:
        out = self_.clone(memory_format=torch.contiguous_format)
        self.pend(out, self.all_reduce(out, None, group, True))
        return out

    def f_all_gather_tensor(self, self_: Any, gather_dim: int, group: Any, tag: str = "") -> Any:
        g = self.group(group)
        inp = self_.contiguous()
        out = inp.new_empty((inp.shape[0] * g.size(), *inp.shape[1:]))
        self.pend(out, self.all_gather_into_tensor(out, inp, group, True))
        if gather_dim != 0:
            out = torch.cat(torch.chunk(out, g.size(), dim=0), dim=gather_dim)
        return out

    def f_reduce_scatter_tensor(self, self_: Any, reduceOp: str, scatter_dim: int, group: Any,
                                tag: str = "") -> Any:
        g = self.group(group)
        inp = self_
        if scatter_dim != 0:
            inp = torch.cat(torch.chunk(inp, g.size(), dim=scatter_dim))
        inp = inp.contiguous()
        out = inp.new_empty((inp.shape[0] // g.size(), *inp.shape[1:]))
        self.pend(out, self.reduce_scatter_tensor(out, inp, None, group, True))
        return out

    def f_all_to_all_single(self, self_: Any, output_split_sizes: list[int] | None,
                            input_split_sizes: list[int] | None, group: Any, tag: str = "") -> Any:
        inp = self_.contiguous()
        rows = sum(output_split_sizes) if output_split_sizes is not None else inp.shape[0]
        out = inp.new_empty((rows, *inp.shape[1:]))
        self.pend(out, self.all_to_all_single(out, inp, output_split_sizes, input_split_sizes, group, True))
        return out

    def f_broadcast(self, self_: Any, src: int, group: Any, tag: str = "") -> Any:
        out = self_.clone(memory_format=torch.contiguous_format)
        self.pend(out, self.broadcast(out, src, group, True))
        return out

    def f_wait_tensor(self, tensor: Any) -> Any:
        s = self.rec.lookup(tensor, "wait_tensor")
        if s is not None:
            self.rec.flush()
            self.rec.wait_pending([s], self.rec.rs.current.name)
        return tensor

    # ----------------------------------------------------------- install
    def install(self, patches: Patches) -> None:
        import torch.distributed as dist
        from torch.distributed import distributed_c10d as c10d

        world_holder = self

        class _GroupMeta(type):
            @property
            def WORLD(cls) -> Any:  # noqa: N802 (torch's name)
                return world_holder.world_group

        class group(metaclass=_GroupMeta):  # noqa: N801 (torch's name)
            pass

        class GroupMember(metaclass=_GroupMeta):
            NON_GROUP_MEMBER = NON_GROUP_MEMBER

        table: dict[str, Any] = {
            "init_process_group": self.init_process_group, "is_initialized": self.is_initialized,
            "destroy_process_group": self.destroy_process_group, "new_group": self.new_group,
            "get_rank": self.get_rank, "get_world_size": self.get_world_size, "get_backend": self.get_backend,
            "get_global_rank": self.get_global_rank, "get_group_rank": self.get_group_rank,
            "get_process_group_ranks": self.get_process_group_ranks,
            "all_reduce": self.all_reduce, "all_gather_into_tensor": self.all_gather_into_tensor,
            "all_gather": self.all_gather, "reduce_scatter_tensor": self.reduce_scatter_tensor,
            "reduce_scatter": self.reduce_scatter, "all_to_all_single": self.all_to_all_single,
            "all_to_all": self.all_to_all, "broadcast": self.broadcast, "reduce": self.reduce,
            "barrier": self.barrier, "send": self.send, "recv": self.recv, "isend": self.isend,
            "irecv": self.irecv, "batch_isend_irecv": self.batch_isend_irecv, "P2POp": P2POp,
            "group": group, "GroupMember": GroupMember, "is_available": lambda: True,
            "is_nccl_available": lambda: True, "is_gloo_available": lambda: True,
        }
        for name, value in table.items():
            for mod in (dist, c10d):
                if hasattr(mod, name) or mod is dist:
                    patches.set(mod, name, value)
        unsupported = ("gather", "scatter", "all_gather_object", "broadcast_object_list", "all_reduce_coalesced",
                       "monitored_barrier", "gather_object", "scatter_object_list", "send_object_list",
                       "recv_object_list", "all_gather_coalesced", "new_subgroups")
        for name in unsupported:
            def refuse(*_: Any, _name: str = name, **__: Any) -> Any:
                raise CaptureError(f"torch.distributed.{_name} is not supported by the capture")
            for mod in (dist, c10d):
                if hasattr(mod, name):
                    patches.set(mod, name, refuse)
        try:
            import torch.distributed._functional_collectives as fc
        except ImportError:  # pragma: no cover - torch without distributed
            return
        for name, value in (("all_reduce", self.f_all_reduce), ("all_gather_tensor", self.f_all_gather_tensor),
                            ("reduce_scatter_tensor", self.f_reduce_scatter_tensor),
                            ("all_to_all_single", self.f_all_to_all_single), ("broadcast", self.f_broadcast),
                            ("wait_tensor", self.f_wait_tensor)):
            patches.set(fc, name, value)


class _NonMember:
    def __repr__(self) -> str:
        return "<syncproof capture: not a member of this group>"


NON_GROUP_MEMBER: Any = _NonMember()


def set_rank_env(rank: int, world: int) -> dict[str, str | None]:
    """torchrun's variables for ``rank``; returns the old values."""
    old = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world)})
    return old


def restore_env(old: dict[str, str | None]) -> None:
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
