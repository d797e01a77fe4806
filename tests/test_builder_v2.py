"""The builder's format-version-2 API: communicators, per-message p2p
modes, group calls, counts, weak completion, rooted collectives,
one-sided put / wait_signal, and the host (host work, host syncs, the
caching allocator: issue 12)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from syncproof.bench.generators import schedule_of_size
from syncproof.errors import ScheduleError
from syncproof.ir import Kind, ScheduleBuilder, dumps, loads, schedule_to_dict
from syncproof.ir.builder import HOST

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "formal" / "schema" / "schedule-v2.schema.json")
                    .read_text(encoding="utf-8"))
_V2_KEYS = {"comm", "p2p", "batch", "signal", "counts", "recv_counts", "completion"}


def _valid(doc: dict[str, Any]) -> None:
    errors = [e.message for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(doc)]
    assert errors == []


def _two(name: str = "t", **kw: Any) -> ScheduleBuilder:
    b = ScheduleBuilder(name, **kw)
    b.group("g", [0, 1]).buffer("x", "i").buffer("y", "i").init("x", "x0")
    b.ranks(0, 1)
    return b


def test_defaults_are_the_v2_defaults() -> None:
    b = _two()
    doc = b.to_dict()
    assert doc["syncproof"] == 2 and "p2p" not in doc and "progress" not in doc
    s = b.build()
    assert s.p2p == "any" and s.progress == "any"


@pytest.mark.parametrize("p2p, progress", [("rendezvous", "any"), ("eager", "concurrent"), ("any", "concurrent")])
def test_modes_are_written_when_not_the_default(p2p: str, progress: str) -> None:
    b = _two(p2p=p2p, progress=progress)
    doc = b.to_dict()
    assert doc.get("p2p", "any") == p2p and doc.get("progress", "any") == progress
    s = b.build()
    assert (s.p2p, s.progress) == (p2p, progress)
    assert loads(dumps(s)) == s


def test_bad_mode_is_a_schedule_error() -> None:
    with pytest.raises(ScheduleError, match="progress mode 'sometimes' is unknown"):
        _two(progress="sometimes").build()
    with pytest.raises(ScheduleError, match="p2p mode 'blocking' is unknown"):
        _two(p2p="blocking").build()


def test_send_recv_comm_p2p_batch() -> None:
    b = _two()
    r0, r1 = b.ranks(0, 1)
    r0.send(1, reads={"x[i=0]": "x0"}, comm="pp", p2p="eager", batch="b", dtype="bf16", size=2)
    r0.recv(1, writes={"y[i=0]": "x0"}, comm="pp", batch="b")
    r1.recv(0, writes={"y[i=0]": "x0"}, comm="pp", p2p="rendezvous", batch="b")
    r1.send(0, reads={"x[i=0]": "x0"}, comm="pp", batch="b")
    s = b.build()
    send = s.by_rank[0][0]
    assert (send.comm, send.p2p, send.batch, send.dtype, send.size) == ("pp", "eager", "b", "bf16", 2)
    assert s.by_rank[1][0].p2p == "rendezvous"
    assert all(op.communicator == "pp" for op in s.ops)
    assert loads(dumps(s)) == s
    _valid(json.loads(dumps(s)))


def test_collective_v2_keywords() -> None:
    b = _two()
    b.group("ep", [0, 1, 2])
    b.rank(2)
    for r in b.ranks(0, 1):
        r.all_reduce("g", comm="fast", completion="weak", reads={"x[i=0]": "x0"}, writes={"y[i=0]": "s"})
        r.all_gather("g", counts=(1, 2), batch="gc")
        r.reduce_scatter("g", counts=[3, 4], batch="gc")
        r.broadcast("g", 0, p2p="eager")
    counts = {0: ([0, 1, 2], [0, 3, 6]), 1: ([3, 4, 5], [1, 4, 7]), 2: ([6, 7, 8], [2, 5, 8])}
    for rk, (c, rc) in counts.items():
        b.rank(rk).all_to_all("ep", counts=c, recv_counts=rc)
    s = b.build()
    ar, ag, rs, bc, a2a = s.by_rank[0]
    assert (ar.comm, ar.completion, ar.communicator) == ("fast", "weak", "fast")
    assert ag.counts == (1, 2) and ag.batch == "gc" and rs.counts == (3, 4) and rs.batch == "gc"
    assert bc.p2p == "eager" and bc.root == 0
    assert a2a.counts == (0, 1, 2) and a2a.recv_counts == (0, 3, 6)
    assert b.to_dict()["ranks"]["0"][1]["counts"] == [1, 2]  # a tuple is written as a JSON list
    assert loads(dumps(s)) == s
    _valid(json.loads(dumps(s)))


@pytest.mark.parametrize("kind", ["reduce", "gather", "scatter"])
def test_rooted_collectives(kind: str) -> None:
    b = _two()
    for r in b.ranks(0, 1):
        getattr(r, kind)("g", 1, reads={"x[i=0]": "x0"}, p2p="rendezvous", comm="c", completion="weak",
                         batch="b", size=4, dtype="f32", name="n", layer=2)
    s = b.build()
    op = s.by_rank[0][0]
    assert (op.kind, op.group, op.root, op.p2p, op.comm, op.completion, op.batch) == (
        Kind(kind), "g", 1, "rendezvous", "c", "weak", "b")
    assert op.meta.layer == 2 and op.size == 4 and op.dtype == "f32" and op.name == "n"
    assert s.label(op) == f"r0/comm: {kind}#0(g) n L2"
    assert loads(dumps(s)) == s
    _valid(json.loads(dumps(s)))


def test_rooted_collective_with_a_root_outside_the_group() -> None:
    b = _two()
    b.rank(0).gather("g", 5)
    with pytest.raises(ScheduleError) as e:
        b.build()
    assert str(e.value) == "<builder t>: rank 0, op 0 (gather on comm): gather root 5 is not in group 'g'"


def test_put_and_wait_signal() -> None:
    b = _two()
    b.buffer("sym", slot=4)
    r0, r1 = b.ranks(0, 1)
    r0.put(1, stream="copy", reads={"x[i=0]": "x0"}, writes={"sym[slot=1]": "x0"}, signal="ready", size=8,
           dtype="bf16", name="dispatch", layer=0)
    r0.put(1, writes={"sym[slot=2]": "x0"})
    r1.wait_signal(0, "ready", stream="compute", name="w", layer=0)
    r1.compute("use", reads={"sym[slot=1]": "x0"})
    s = b.build()
    put, bare = s.by_rank[0]
    assert (put.kind, put.peer, put.signal, put.stream, put.size, put.dtype) == (Kind.PUT, 1, "ready", "copy", 8,
                                                                                "bf16")
    assert str(put.writes[0].region) == "sym[slot=1]" and put.communicator is None
    assert bare.signal is None and bare.stream == "comm"
    wsig = s.by_rank[1][0]
    assert (wsig.kind, wsig.peer, wsig.signal, wsig.stream) == (Kind.WAIT_SIGNAL, 0, "ready", "compute")
    assert s.label(put) == "r0/copy: put(->1,ready)#0 dispatch L0"
    assert s.label(wsig) == "r1/compute: wait_signal(<-0,ready)#0 w L0"
    assert loads(dumps(s)) == s
    _valid(json.loads(dumps(s)))


def test_put_to_itself_is_a_schedule_error() -> None:
    b = _two()
    b.rank(1)
    b.rank(0).put(0, writes={"x": "v"})
    with pytest.raises(ScheduleError, match=r"rank 0, op 0 \(put on comm\): put to its own rank 0"):
        b.build()


# ------------------------------------------------------------------ group calls
def test_group_call_stamps_its_parts() -> None:
    b = _two()
    r0, r1 = b.ranks(0, 1)
    with r0.group_call() as call:
        r0.send(1, reads={"x[i=0]": "x0"})
        r0.recv(1, writes={"y[i=0]": "x0"})
    r0.compute("after")
    with r1.group_call("pair") as named:
        r1.recv(0, writes={"y[i=0]": "x0"})
        r1.send(0, reads={"x[i=0]": "x0"})
    assert (call, named) == ("gc0", "pair")
    s = b.build()
    assert [op.batch for op in s.by_rank[0]] == ["gc0", "gc0", None]
    assert [op.batch for op in s.by_rank[1]] == ["pair", "pair"]
    assert loads(dumps(s)) == s


def test_group_call_ids_are_unique_per_rank() -> None:
    b = _two()
    for _ in range(3):
        for r in b.ranks(0, 1):
            with r.group_call():
                r.all_reduce("g")
                r.barrier("g")
    s = b.build()
    for rk in (0, 1):
        assert [op.batch for op in s.by_rank[rk]] == ["gc0", "gc0", "gc1", "gc1", "gc2", "gc2"]
    assert b.rank(0) is b.rank(0)  # one builder per rank: its group call is seen by every caller


def test_nested_group_call_joins_the_outer_one() -> None:
    b = _two()
    r = b.rank(0)
    b.rank(1)
    with r.group_call() as outer:
        r.all_reduce("g")
        with r.group_call() as inner:
            r.all_gather("g")
        with r.group_call(outer):
            r.barrier("g")
    assert inner == outer == "gc0"
    assert [op.batch for op in b.build().by_rank[0]] == ["gc0"] * 3
    with (r.group_call("a"), pytest.raises(ValueError, match="group call 'b' opened inside group call 'a'"),
          r.group_call("b")):
        pass


def test_group_call_refuses_an_op_that_cannot_be_a_part() -> None:
    b = _two()
    r = b.rank(0)
    r.compute("before")
    with r.group_call("b"):
        r.all_reduce("g")
        with pytest.raises(ValueError, match=r"rank 0, op 2 \(compute on compute\): a compute cannot be part"
                                             " of group call 'b'"):
            r.compute("mm")
        with pytest.raises(ValueError, match="rank 0, op 2 .*: a record cannot be part"):
            r.record("e", stream="comm")
        with pytest.raises(ValueError, match="rank 0, op 2 .*: a put cannot be part"):
            r.put(1)
        with pytest.raises(ValueError, match=r"batch='other' inside group call 'b'"):
            r.all_reduce("g", batch="other")
        r.all_reduce("g", batch="b")  # the same id is fine
    assert [d.get("batch") for d in b.to_dict()["ranks"]["0"]] == [None, "b", "b"]


def test_group_call_ends_on_an_exception() -> None:
    b = _two()
    r = b.rank(0)
    with pytest.raises(RuntimeError), r.group_call():
        r.all_reduce("g")
        raise RuntimeError
    r.compute("after")  # no longer inside the group call
    assert "batch" not in b.to_dict()["ranks"]["0"][-1]


def test_group_call_id_must_be_a_string() -> None:
    r = _two().rank(0)
    with pytest.raises(ValueError, match="non-empty string"), r.group_call(""):
        pass


def test_group_call_on_two_streams_is_a_schedule_error() -> None:
    b = _two()
    r = b.rank(0)
    b.rank(1)
    with r.group_call():
        r.send(1, stream="a")
        r.recv(1, stream="b")
    with pytest.raises(ScheduleError) as e:
        b.build()
    assert str(e.value).startswith("<builder t>: rank 0, op 1 (recv on b): group call 'gc0' has parts on streams"
                                   " 'a' and 'b'")


def test_batch_given_twice_apart_is_a_schedule_error() -> None:
    b = _two()
    r = b.rank(0)
    b.rank(1)
    r.send(1, batch="b").compute("mm").recv(1, batch="b")
    with pytest.raises(ScheduleError, match=r"rank 0, op 2 \(recv on comm\): group call 'b' is not one run"):
        b.build()


# ------------------------------------------------------------------ v1 ops stay as they were
def test_v1_ops_carry_only_the_keys_they_set() -> None:
    b = _two()
    r = b.rank(0)
    b.rank(1)
    r.send(1).recv(1).send(1, channel="act", size=4, name="s").all_reduce("g").broadcast("g", 0)
    r.compute("mm", reads={}, writes=None).record("e", stream="s").wait("e", stream="t")
    assert b.to_dict()["ranks"]["0"] == [
        {"op": "send", "stream": "comm", "to": 1},
        {"op": "recv", "stream": "comm", "from": 1},
        {"op": "send", "stream": "comm", "to": 1, "channel": "act", "size": 4, "name": "s"},
        {"op": "all_reduce", "stream": "comm", "group": "g"},
        {"op": "broadcast", "stream": "comm", "group": "g", "root": 0},
        {"op": "compute", "stream": "compute", "name": "mm"},
        {"op": "record", "stream": "s", "event": "e"},
        {"op": "wait", "stream": "t", "event": "e"},
    ]


def test_meta_set_to_none_is_dropped() -> None:
    b = _two()
    b.rank(1)
    b.rank(0).send(1, layer=None, mb=1, batch=None, comm=None)
    assert b.to_dict()["ranks"]["0"] == [{"op": "send", "stream": "comm", "to": 1, "mb": 1}]


def test_generated_benchmark_schedules_use_no_v2_field() -> None:
    """Only the eager marking of the tiny token messages (the bench's
    sampled tokens are a few bytes), no other v2 field and no host op."""
    doc = schedule_to_dict(schedule_of_size(2000))
    assert doc["syncproof"] == 2
    used = [(op["op"], k, op[k]) for ops in doc["ranks"].values() for op in ops for k in _V2_KEYS & op.keys()]
    assert {(kind, k, v) for kind, k, v in used} <= {("send", "p2p", "eager"), ("recv", "p2p", "eager")}
    assert not any(op["stream"] == HOST for ops in doc["ranks"].values() for op in ops)


# ------------------------------------------------------------------ the host and the allocator (issue 12)
def _host() -> ScheduleBuilder:
    b = ScheduleBuilder("h")
    b.group("g", [0, 1]).buffer("pin").buffer("a", "i").buffer("b", "i").buffer("c", "j")
    b.ranks(0, 1)
    return b


def test_host_methods_write_host_ops() -> None:
    b = _host()
    r = b.rank(0)
    r.compute("fill", stream=HOST, writes={"pin": "in"})
    r.alloc("a", "side", layer=0)
    r.compute("h2d", stream="side", reads={"pin": "in"}, writes={"a": "in"})
    r.record("e", stream="side").wait("e", stream="main")
    r.compute("use", stream="main", reads={"a": "in"})
    r.record_stream("a", "main").free("a").alloc("b", "side", reuses="a", name="next")
    r.record("e", stream="main")  # recorded again: allowed
    r.sync(event="e").sync(target="side").all_reduce("g", name="ar").sync(of="ar", name="wait_ar").sync()
    b.rank(1).all_reduce("g")
    ops = b.to_dict()["ranks"]["0"]
    assert ops[1] == {"op": "alloc", "stream": "host", "buffer": "a", "target": "side", "layer": 0}
    assert ops[6:9] == [{"op": "record_stream", "stream": "host", "buffer": "a", "target": "main"},
                         {"op": "free", "stream": "host", "buffer": "a"},
                         {"op": "alloc", "stream": "host", "buffer": "b", "target": "side", "reuses": "a",
                          "name": "next"}]
    assert ops[10:] == [{"op": "sync", "stream": "host", "event": "e"},
                        {"op": "sync", "stream": "host", "target": "side"},
                        {"op": "all_reduce", "stream": "comm", "group": "g", "name": "ar"},
                        {"op": "sync", "stream": "host", "of": "ar", "name": "wait_ar"},
                        {"op": "sync", "stream": "host"}]
    s = b.build()
    kinds = [op.kind for op in s.by_rank[0]]
    assert {Kind.SYNC, Kind.ALLOC, Kind.FREE, Kind.RECORD_STREAM} <= set(kinds)
    assert all(op.on_host for op in s.by_rank[0] if op.kind in (Kind.SYNC, Kind.ALLOC, Kind.FREE,
                                                                 Kind.RECORD_STREAM))
    assert s.by_rank[0][0].on_host and s.by_rank[0][0].kind is Kind.COMPUTE
    assert s.by_rank[0][8].reuses == "a" and s.by_rank[0][13].of == "ar"
    assert loads(dumps(s)) == s
    _valid(json.loads(dumps(s)))
    _valid(b.to_dict())


def test_host_ops_cannot_be_parts_of_a_group_call() -> None:
    b = _host()
    r = b.rank(0)
    with r.group_call("gc"):
        r.all_reduce("g")
        with pytest.raises(ValueError, match=r"rank 0, op 1 \(sync on host\): a sync cannot be part of group call"):
            r.sync()
        with pytest.raises(ValueError, match="a alloc cannot be part"):
            r.alloc("a", "s")
        with pytest.raises(ValueError, match="a free cannot be part"):
            r.free("a")
        with pytest.raises(ValueError, match="a record_stream cannot be part"):
            r.record_stream("a", "s")


_BUILD_ERRORS = [
    ("alloc-reuses-not-freed", lambda r: r.alloc("a", "s").alloc("b", "s", reuses="a"),
     "<builder h>: rank 0, op 1 (alloc on host): alloc of 'b' reuses the block of 'a', which rank 0 has not freed"
     " before it (hint: free 'a' first)"),
    ("reuse-across-allocation-streams", lambda r: r.alloc("a", "s").free("a").alloc("b", "t", reuses="a"),
     "<builder h>: rank 0, op 2 (alloc on host): alloc of 'b' on stream 't' reuses the block of 'a', allocated on"
     " stream 's': the caching allocator hands a freed block only to allocations on the stream it was allocated"
     " on"),
    ("reuse-with-other-axes", lambda r: r.alloc("a", "s").free("a").alloc("c", "s", reuses="a"),
     "<builder h>: rank 0, op 2 (alloc on host): alloc of 'c' reuses the block of 'a', but their axes differ"
     " (hint: declare both buffers with the same axes)"),
    ("free-before-alloc", lambda r: r.free("a"),
     "<builder h>: rank 0, op 0 (free on host): free of 'a', which rank 0 has not allocated before it"
     " (hint: add an alloc of 'a' before it)"),
    ("record-stream-after-free", lambda r: r.alloc("a", "s").free("a").record_stream("a", "t"),
     "<builder h>: rank 0, op 2 (record_stream on host): record_stream of 'a' after it was freed (at op 1)"),
    ("allocated-twice", lambda r: r.alloc("a", "s").alloc("a", "s"),
     "<builder h>: rank 0, op 1 (alloc on host): buffer 'a' is allocated twice on rank 0 (first at op 0)"
     " (hint: give each allocation its own buffer name)"),
    ("sync-with-two-targets", lambda r: r.sync(event="e", target="s"),
     "<builder h>: rank 0, op 0 (sync on host): a sync waits for one thing: an \"event\" (event.synchronize()),"
     " a \"target\" stream (stream.synchronize()) or the op named in \"of\" (work.wait(), .item()); none of them"
     " is torch.cuda.synchronize()"),
    ("sync-of-an-op-not-issued-before", lambda r: r.sync(of="ar").all_reduce("g", name="ar"),
     "<builder h>: rank 0, op 0 (sync on host): sync waits for op 'ar', but rank 0 issues no op of that name"
     " before it"),
    ("alloc-of-an-undeclared-buffer", lambda r: r.alloc("aa", "s"),
     "<builder h>: rank 0, op 0 (alloc on host): buffer 'aa' is not declared (hint: did you mean 'a'?)"),
]


@pytest.mark.parametrize(("case", "build", "message"), _BUILD_ERRORS, ids=[c[0] for c in _BUILD_ERRORS])
def test_host_mistakes_are_schedule_errors_naming_rank_and_op(case: str, build: Any, message: str) -> None:
    b = _host()
    build(b.rank(0))
    with pytest.raises(ScheduleError) as e:
        b.build()
    assert str(e.value) == message


def test_a_sync_written_on_a_device_stream_is_a_schedule_error() -> None:
    b = _host()
    b.rank(0)._ops.append({"op": "sync", "stream": "compute", "target": "compute"})  # as a hand-made document
    with pytest.raises(ScheduleError) as e:
        b.build()
    assert str(e.value) == ("<builder h>: rank 0, op 0 (sync): a sync runs on the host, so its stream is 'host',"
                            " got 'compute' (hint: drop \"stream\" or write \"stream\": \"host\"; name the"
                            " device stream in \"target\")")


def test_an_event_recorded_every_iteration_builds() -> None:
    b = _host()
    r = b.rank(0)
    for it in range(3):
        r.compute(f"produce{it}", stream="a", writes={f"a[i={it}]": f"v{it}"})
        r.record("ready", stream="a").wait("ready", stream="b")
        r.compute(f"consume{it}", stream="b", reads={f"a[i={it}]": f"v{it}"})
    s = b.build()
    assert sum(op.kind is Kind.RECORD for op in s.ops) == 3

