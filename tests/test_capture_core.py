"""syncproof.capture: small PyTorch programs captured on CPU, each checked
with the engine.  Every bug is a real PyTorch bug class that a CPU run
never shows (the CPU runs ops in issue order); its fix is proved."""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from typing import Any

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

import syncproof.capture as cap  # noqa: E402
from syncproof.engine import check_schedule  # noqa: E402
from syncproof.ir import Schedule, dumps, loads  # noqa: E402
from syncproof.ir.ops import Kind  # noqa: E402

P, V = "proved", "violated"


@cache
def _verdicts(s: Schedule) -> dict[str, str]:
    return {x.property: str(x.verdict) for x in check_schedule(s).results}


def verdicts(s: Schedule) -> dict[str, str]:
    assert loads(dumps(s)) == s  # a captured schedule is a plain v2 document
    return _verdicts(s)


def ok(s: Schedule) -> None:
    got = verdicts(s)
    assert set(got.values()) == {P}, f"{s.name}: {got}\n{dumps(s)}"


def bad(s: Schedule, *props: str) -> dict[str, str]:
    got = verdicts(s)
    for p in props:
        assert got[p] == V, f"{s.name}: {p} is {got[p]}, want violated: {got}\n{dumps(s)}"
    assert got["matching"] == P and got["deadlock"] == P, got
    return got


def ops(s: Schedule, rank: int = 0) -> list[Any]:
    return list(s.by_rank[rank])


def names(s: Schedule, rank: int = 0) -> list[str]:
    return [o.name or "" for o in ops(s, rank) if o.kind is Kind.COMPUTE]


# ---------------------------------------------------------------- streams
def side_stream(rank: int, world: int, fix: bool) -> None:
    x = torch.randn(8, 8, device="cuda")
    side = torch.cuda.Stream()
    if fix:
        side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        y = x @ x
    torch.cuda.current_stream().wait_stream(side)
    (y + 1).sum().item()


def test_side_stream_without_wait_stream_races() -> None:
    s = cap.capture(side_stream, 1, False)
    bad(s, "race", "dataflow")
    streams = {o.stream for o in ops(s)}
    assert {"default", "stream1", "host"} <= streams


def test_side_stream_with_wait_stream_is_proved() -> None:
    ok(cap.capture(side_stream, 1, True))


def test_events_and_stream_names() -> None:
    def fn(rank: int, world: int) -> None:
        kv = torch.cuda.Stream(name="kv")
        x = torch.ones(4, device="cuda")
        done = torch.cuda.Event()
        done.record()
        kv.wait_event(done)
        with torch.cuda.stream(kv):
            x.mul_(2)
        assert torch.cuda.current_stream().name == "default"
        ev = kv.record_event()
        ev.wait()
        x.add_(1)
        torch.cuda.synchronize()
        assert x.tolist() == [3.0] * 4
    s = cap.capture(fn)
    ok(s)
    kinds = [(o.kind.value, o.stream) for o in ops(s) if o.kind in (Kind.RECORD, Kind.WAIT, Kind.SYNC)]
    assert ("wait", "kv") in kinds and ("sync", "host") in kinds


# -------------------------------------------------------------- allocator
def freed_without_record_stream(rank: int, world: int, fix: bool) -> None:
    side = torch.cuda.Stream()
    x = torch.randn(256, device="cuda")
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        y = x * 2
    if fix:
        x.record_stream(side)
    del x  # its block returns to the default stream's pool at once
    z = torch.randn(256, device="cuda")  # the same size class on the same stream: x's block
    torch.cuda.current_stream().wait_stream(side)
    (y + z).sum().item()


def test_missing_record_stream_with_reuse_is_violated() -> None:
    s = cap.capture(freed_without_record_stream, 1, False)
    allocs = [o for o in ops(s) if o.kind is Kind.ALLOC]
    assert any(o.reuses for o in allocs), dumps(s)
    bad(s, "race")


def test_record_stream_before_free_is_proved() -> None:
    s = cap.capture(freed_without_record_stream, 1, True)
    assert any(o.kind is Kind.RECORD_STREAM for o in ops(s))
    ok(s)


def test_allocator_pools_are_per_stream_and_size() -> None:
    def fn(rank: int, world: int) -> None:
        side = torch.cuda.Stream()
        a = torch.empty(100, device="cuda")  # 400 bytes: the 512-byte class
        del a
        with torch.cuda.stream(side):
            b = torch.empty(100, device="cuda")  # another stream: fresh memory
        c = torch.empty(1000, device="cuda")  # another size class: fresh memory
        d = torch.empty(120, device="cuda")  # 480 bytes: a's block
        del b, c, d
    allocs = [o for o in ops(cap.capture(fn)) if o.kind is Kind.ALLOC]
    assert [o.reuses for o in allocs] == [None, None, None, "s1"]


def test_a_record_stream_block_is_held_until_the_host_saw_the_stream_finish() -> None:
    """The allocator hands a block freed after record_stream(t) out again
    only once its events on t have completed; the model waits for a host
    sync that covers t (an earlier hand-out would invent a host wait)."""
    def fn(rank: int, world: int, sync: str) -> None:
        side = torch.cuda.Stream()
        x = torch.randn(64, device="cuda")
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            y = x * 2
        x.record_stream(side)
        del x
        a = torch.empty(64, device="cuda")  # held: fresh memory
        if sync == "stream":
            side.synchronize()
        elif sync == "device":
            torch.cuda.synchronize()
        b = torch.empty(64, device="cuda")
        del a, b, y
    for sync, reuses in (("none", [None, None, None, None]), ("stream", [None, None, None, "s1"]),
                         ("device", [None, None, None, "s1"])):
        s = cap.capture(fn, 1, sync)
        assert [o.reuses for o in ops(s) if o.kind is Kind.ALLOC] == reuses, sync
        ok(s)


# ------------------------------------------------------- the host, pinned
def pinned_refill(rank: int, world: int, fix: bool) -> None:
    pinned = torch.empty(64, pin_memory=True)
    assert pinned.is_pinned()
    pinned.fill_(1.0)  # host work
    dev = pinned.to("cuda", non_blocking=True)  # reads pinned when it runs on the stream
    copied = torch.cuda.Event()
    copied.record()
    if fix:
        copied.synchronize()
    pinned.fill_(2.0)  # the next step's input
    (dev * 2).sum().item()


def test_pinned_refill_before_the_event_is_violated() -> None:
    s = cap.capture(pinned_refill, 1, False)
    bad(s, "race", "dataflow")
    fills = [o for o in ops(s) if o.kind is Kind.COMPUTE and o.name == "aten.fill_"]
    assert fills and all(o.stream == "host" for o in fills)


def test_pinned_refill_after_event_synchronize_is_proved() -> None:
    ok(cap.capture(pinned_refill, 1, True))


def test_blocking_copies_and_item_are_host_syncs() -> None:
    def fn(rank: int, world: int) -> None:
        host = torch.ones(16)
        dev = host.cuda()  # pageable, blocking
        back = (dev * 3).cpu()  # blocking D2H
        host.fill_(0.0)  # safe: the copy has finished
        assert back[0].item() == 3.0
    s = cap.capture(fn)
    syncs = [o.target for o in ops(s) if o.kind is Kind.SYNC]
    assert syncs == ["default", "default"]
    ok(s)


def test_d2h_non_blocking_read_before_sync_is_violated() -> None:
    def fn(rank: int, world: int, fix: bool) -> None:
        dev = torch.ones(16, device="cuda") * 2
        out = dev.to("cpu", non_blocking=True)  # pinned, asynchronous
        assert out.is_pinned()
        if fix:
            torch.cuda.current_stream().synchronize()
        out.sum()  # host work reading the copy's destination
    bad(cap.capture(fn, 1, False), "race", "dataflow")
    ok(cap.capture(fn, 1, True))


# -------------------------------------------------------------- collectives
def async_all_reduce(rank: int, world: int, fix: bool) -> None:
    dist.init_process_group("nccl")
    x = torch.ones(64, device="cuda") * (rank + 1)
    work = dist.all_reduce(x, async_op=True)
    if fix:
        work.wait()
    y = x * 2  # reads the all_reduce's output on the default stream
    if not fix:
        work.wait()
    y.sum().item()


def test_async_all_reduce_read_before_wait_is_violated() -> None:
    s = cap.capture(async_all_reduce, 2, False)
    bad(s, "race", "dataflow")
    assert {o.stream for o in ops(s) if o.kind is Kind.ALL_REDUCE} == {"nccl:world"}


def test_async_all_reduce_read_after_wait_is_proved() -> None:
    ok(cap.capture(async_all_reduce, 2, True))


def test_sync_all_reduce_and_group_communicators() -> None:
    def fn(rank: int, world: int) -> None:
        dist.init_process_group("nccl")
        tp = dist.new_group([0, 1])
        assert dist.get_rank(tp) == rank and dist.get_world_size() == world
        x = torch.ones(8, device="cuda")
        dist.all_reduce(x, group=tp)  # synchronous: the current stream waits
        out = torch.empty(16, device="cuda")
        dist.all_gather_into_tensor(out, x * 2)
        dist.barrier()
        (out.sum() + x.sum()).item()
    s = cap.capture(fn, 2)
    ok(s)
    colls = [(o.kind.value, o.group, o.stream) for o in ops(s, 1) if o.kind.value in ("all_reduce", "all_gather",
                                                                                    "barrier")]
    assert colls == [("all_reduce", "pg1", "nccl:pg1"), ("all_gather", "world", "nccl:world"),
                     ("barrier", "world", "nccl:world")]


def test_all_to_all_single() -> None:
    def fn(rank: int, world: int, splits: bool) -> None:
        dist.init_process_group("nccl")
        inp = torch.arange(8.0, device="cuda") + rank
        if splits:
            send = [2, 6] if rank == 0 else [3, 5]
            recv = [2, 3] if rank == 0 else [6, 5]
            out = torch.empty(sum(recv), device="cuda")
            dist.all_to_all_single(out, inp, recv, send)
        else:
            out = torch.empty(8, device="cuda")
            dist.all_to_all_single(out, inp)
        (out * 2).sum().item()
    s = cap.capture(fn, 2, True)
    ok(s)
    a2a = [o for o in ops(s) if o.kind is Kind.ALL_TO_ALL][0]
    assert list(a2a.counts or ()) == [2, 6] and list(a2a.recv_counts or ()) == [2, 3]
    ok(cap.capture(fn, 2, False))


def test_broadcast_and_relay_carry_the_senders_values() -> None:
    def fn(rank: int, world: int) -> None:
        dist.init_process_group("nccl")
        buf = torch.empty(8, device="cuda")
        if rank == 0:
            buf.copy_(torch.arange(8.0))
            dist.send(buf, 1)
        elif rank == 1:
            dist.recv(buf, 0)
            dist.send(buf[2:6], 2)  # a view: bytes 8:24 of the buffer
        else:
            part = torch.empty(4, device="cuda")
            dist.recv(part, 1)
            part.sum().item()
        tok = torch.zeros(1, dtype=torch.long, device="cuda")
        dist.broadcast(tok, 0)
        cpu = dist.new_group(backend="gloo")
        h = torch.ones(2)
        dist.all_reduce(h, group=cpu)  # gloo: host work
        (tok + 1).item()
    s = cap.capture(fn, 3)
    ok(s)
    sent = [o for o in ops(s, 0) if o.kind is Kind.SEND][0]
    relayed = [o for o in ops(s, 1) if o.kind is Kind.SEND][0]
    got = [o for o in ops(s, 2) if o.kind is Kind.RECV][0]
    assert str(relayed.reads[0].region).endswith("[byte=8:24]")
    assert {a.value for a in got.writes} == {a.value for a in sent.reads}
    root = [o for o in ops(s, 0) if o.kind is Kind.BROADCAST][0]
    member = [o for o in ops(s, 2) if o.kind is Kind.BROADCAST][0]
    assert {a.value for a in member.writes} == {a.value for a in root.reads}
    assert [o.stream for o in ops(s, 1) if o.kind is Kind.ALL_REDUCE] == ["host"]


def test_functional_all_reduce_waits_at_first_use() -> None:
    import torch.distributed._functional_collectives as funcol

    def fn(rank: int, world: int) -> None:
        dist.init_process_group("nccl")
        x = torch.ones(8, device="cuda")
        y = funcol.all_reduce(x, "sum", dist.group.WORLD)
        (y * 2).sum().item()
    s = cap.capture(fn, 2)
    ok(s)
    waits = [o for o in ops(s) if o.kind is Kind.WAIT and o.stream == "default"]
    assert waits, dumps(s)


# -------------------------------------------------------------------- p2p
def pipeline(rank: int, world: int, wait_first: bool) -> None:
    dist.init_process_group("nccl")
    if rank == 0:
        act = torch.randn(16, device="cuda")
        dist.isend(act, 1).wait()
        act.add_(1)  # the next microbatch reuses the buffer: ordered by work.wait()
    else:
        act = torch.empty(16, device="cuda")
        work = dist.irecv(act, 0)
        if wait_first:
            work.wait()
        (act * 2).sum().item()
        work.wait()


def test_isend_irecv_two_ranks() -> None:
    s = cap.capture(pipeline, 2, True)
    ok(s)
    send = [o for o in ops(s, 0) if o.kind is Kind.SEND][0]
    recv = [o for o in ops(s, 1) if o.kind is Kind.RECV][0]
    assert send.stream == recv.stream == "nccl:p2p:0-1"
    # the recv writes what the send read: the value travels with the message
    sent = {a.value for a in send.reads}
    got = {a.value for a in recv.writes}
    assert sent == got and len(sent) == 1


def test_irecv_read_before_wait_is_violated() -> None:
    bad(cap.capture(pipeline, 2, False), "race", "dataflow")


def test_batch_isend_irecv_is_one_group_call() -> None:
    def fn(rank: int, world: int) -> None:
        dist.init_process_group("nccl")
        peer = 1 - rank
        out = torch.full((4,), float(rank), device="cuda")
        inp = torch.empty(4, device="cuda")
        reqs = dist.batch_isend_irecv([dist.P2POp(dist.isend, out, peer), dist.P2POp(dist.irecv, inp, peer)])
        for r in reqs:
            r.wait()
        (inp + 1).sum().item()
    s = cap.capture(fn, 2)
    ok(s)
    parts = [o for o in ops(s) if o.kind in (Kind.SEND, Kind.RECV)]
    assert len(parts) == 2 and parts[0].batch == parts[1].batch is not None
    assert {o.comm for o in parts} == {"world"}


# ------------------------------------------------------- names, meta, errors
def test_module_paths_and_meta() -> None:
    class Attn(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(8, 8)

        def forward(self, x: Any) -> Any:
            return self.proj(x).relu()

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList([Attn(), Attn()])

        def forward(self, x: Any) -> Any:
            for i, layer in enumerate(self.layers):
                with cap.meta(layer=i):
                    x = layer(x)
            return x

    def fn(rank: int, world: int) -> None:
        model = Model().cuda()
        with torch.no_grad(), torch.profiler.record_function("phase=decode step=3"):
            model(torch.randn(2, 8, device="cuda")).sum().item()
    s = cap.capture(fn)
    ok(s)
    mm = [o for o in ops(s) if o.kind is Kind.COMPUTE and o.name and "addmm" in o.name]
    assert [o.name for o in mm] == ["model.layers.0.proj/aten.addmm", "model.layers.1.proj/aten.addmm"]
    assert [o.meta.layer for o in mm] == [0, 1]
    assert {o.meta.phase for o in mm} == {"decode"} and {o.meta.step for o in mm} == {3}


def test_opaque_kernel() -> None:
    def fn(rank: int, world: int, fix: bool) -> None:
        x = torch.ones(8, device="cuda")
        side = torch.cuda.Stream()
        if fix:
            side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = torch.empty(8, device="cuda")
            cap.opaque("triton_rmsnorm", reads=[x], writes=[out])
    bad(cap.capture(fn, 1, False), "race")
    s = cap.capture(fn, 1, True)
    ok(s)
    assert "triton_rmsnorm" in names(s)
    cap.opaque("outside", reads=[], writes=[])  # outside a capture: nothing


def test_unclassifiable_op_raises() -> None:
    def fn(rank: int, world: int) -> None:
        torch.ones(4, device="cuda") + torch.ones(4)  # CUDA raises: tensors on two devices
    with pytest.raises(cap.CaptureError, match="aten.add"):
        cap.capture(fn)


def test_stand_ins_are_removed_after_a_capture() -> None:
    real_stream, real_all_reduce, real_cuda = torch.cuda.Stream, dist.all_reduce, torch.Tensor.cuda

    def fn(rank: int, world: int) -> None:
        assert torch.cuda.is_available()
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        cap.capture(fn)
    assert torch.cuda.Stream is real_stream and dist.all_reduce is real_all_reduce
    assert torch.Tensor.cuda is real_cuda and "cuda" not in torch.Tensor.__dict__
    assert not torch.cuda.is_available() or torch.version.cuda is not None


def test_capture_script(tmp_path: Any) -> None:
    script = tmp_path / "prog.py"
    script.write_text("import sys, torch\n"
                      "def main(rank, world):\n"
                      "    x = torch.ones(4, device='cuda') * len(sys.argv)\n"
                      "    x.sum().item()\n")
    s = cap.capture_script(script, world=2, argv=["a", "b"])
    assert s.name == "prog" and set(s.ranks) == {0, 1}
    ok(s)


def test_import_syncproof_does_not_import_torch() -> None:
    code = "import sys, syncproof, syncproof.capture, syncproof.cli; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
