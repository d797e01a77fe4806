"""The eight host, event, allocator and phase patterns of issue 12, each
written as a schedule the way the engine's authors would write it (host work
on the ``host`` stream, host syncs, re-recorded events, the caching
allocator's alloc/free/record_stream; no pseudo-streams, no hand-made event
pairs standing in for the host), as the bug and as its fix, with the verdict
the runtime justifies.

Every schedule is checked by both engines and by the operational executor;
every counterexample of a violated property must have replayed.  The runtime
sources are in tests/litmus/catalogue.json and docs/semantics.md ("The host",
"Events", "Memory lifetime", "Phase").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest

from syncproof.engine.check import check_schedule
from syncproof.executor import explore
from syncproof.ir import Schedule, ScheduleBuilder
from syncproof.ir.builder import HOST, RankBuilder
from syncproof.result import PROPERTIES, Report

ENGINES = ("hybrid", "z3")
P, V, U = "proved", "violated", "unknown"


def verdicts(matching: str = P, deadlock: str = P, dataflow: str = P, race: str = P, phase: str = P) -> dict[str, str]:
    return {"matching": matching, "deadlock": deadlock, "dataflow": dataflow, "race": race, "phase": phase}


@cache
def _report(s: Schedule, engine: str) -> Report:
    return check_schedule(s, engine=engine)


def _executor(s: Schedule) -> dict[str, str]:
    got = explore(s).violated
    return {p: V if got.get(p) is True else P if got.get(p) is False else U for p in PROPERTIES}


def check(s: Schedule, want: dict[str, str], mentions: dict[str, tuple[str, ...]] | None = None) -> Report:
    """Both engines and the executor give ``want``; every counterexample replays."""
    rep = _report(s, "hybrid")
    for engine in ENGINES:
        r = _report(s, engine)
        got = {x.property: str(x.verdict) for x in r.results}
        assert got == want, f"{s.name} ({engine}): got {got}, want {want}"
        for x in r.results:
            if str(x.verdict) == V:
                cex = x.counterexample
                assert cex is not None and cex.replayed, f"{s.name} ({engine}) {x.property}: did not replay"
                for text in (mentions or {}).get(x.property, ()):
                    assert text in cex.sentence, f"{s.name} {x.property}: {text!r} not in {cex.sentence!r}"
    got = _executor(s)
    assert got == want, f"{s.name} (executor): got {got}, want {want}"
    return rep


def _one(name: str, build: Callable[[RankBuilder], object], *buffers: str) -> Schedule:
    b = ScheduleBuilder(name)
    for buf in buffers:
        b.buffer(buf, "i")
    r0, _ = b.ranks(0, 1)
    build(r0)
    return b.build()


# ------------------------------------------------------------------ 1. async scheduling, pinned input buffers
def _pinned(fix: str) -> Schedule:
    """Each step the host fills a reused pinned buffer and enqueues a
    non_blocking H2D copy of it; the copy reads its source when it runs."""
    def build(r: RankBuilder) -> None:
        for t in range(2):
            pin = f"pin[i={t}]" if fix == "fresh" else "pin[i=0]"
            r.compute(f"fill{t}", stream=HOST, writes={pin: f"input(t{t})"})
            r.compute(f"h2d{t}", stream="copy", reads={pin: f"input(t{t})"}, writes={f"x[i={t}]": f"input(t{t})"})
            if fix == "event":
                r.record("copied", stream="copy")  # recorded again every step
                r.sync(event="copied")  # event.synchronize() before the next refill
    return _one(f"pinned-{fix}", build, "pin", "x")


def test_pinned_buffer_refilled_while_the_copy_is_pending() -> None:
    check(_pinned("none"), verdicts(dataflow=V, race=V))


@pytest.mark.parametrize("fix", ["event", "fresh"])
def test_pinned_buffer_fixed_by_an_event_sync_or_a_fresh_buffer(fix: str) -> None:
    check(_pinned(fix), verdicts())


# ------------------------------------------------------------------ 2. host decisions before a device fence
def _kv_blocks(fenced: bool) -> Schedule:
    """Step N+1, already enqueued on rank 0, writes KV block 3.  The host
    returns the block to the pool and tells rank 1 (gloo, on the host), which
    writes a new request's KV into it by RDMA (a put)."""
    b = ScheduleBuilder(f"kv-blocks-{'fenced' if fenced else 'early'}")
    b.buffer("kv", "block")
    r0, r1 = b.ranks(0, 1)
    r0.compute("forward_n1", stream="compute", writes={"kv[block=3]": "kv(req A, step N+1)"})
    if fenced:
        r0.sync(target="compute")  # wait for the step before giving its blocks away
    r0.compute("free_blocks", stream=HOST)
    r0.send(1, stream=HOST, comm="gloo", name="block_3_free")
    r1.recv(0, stream=HOST, comm="gloo")
    r1.put(0, stream="nic", writes={"kv[block=3]": "kv(req B)"}, name="rdma_kv")
    return b.build()


def test_kv_blocks_returned_before_the_step_that_writes_them_ends() -> None:
    check(_kv_blocks(False), verdicts(race=V))


def test_kv_blocks_returned_after_a_device_fence() -> None:
    check(_kv_blocks(True), verdicts())


# ------------------------------------------------------------------ 3. host reads a D2H result before event.sync
def _d2h(synced: bool) -> Schedule:
    def build(r: RankBuilder) -> None:
        r.compute("sampler", stream="compute", writes={"tok[i=0]": "tok(t0)"})
        r.record("sampled", stream="compute").wait("sampled", stream="copy")
        r.compute("d2h", stream="copy", reads={"tok[i=0]": "tok(t0)"}, writes={"tok_cpu[i=0]": "tok(t0)"})
        r.record("copied", stream="copy")
        if synced:
            r.sync(event="copied")
        r.compute("schedule_next", stream=HOST, reads={"tok_cpu[i=0]": "tok(t0)"})
        if not synced:
            r.sync(event="copied")  # too late
    return _one(f"d2h-{'synced' if synced else 'early'}", build, "tok", "tok_cpu")


def test_host_reads_the_copied_token_before_event_synchronize() -> None:
    check(_d2h(False), verdicts(dataflow=V, race=V))


def test_host_reads_the_copied_token_after_event_synchronize() -> None:
    check(_d2h(True), verdicts())


# ------------------------------------------------------------------ 4. overlap scheduler, shared index buffer
def _overlap(sched_waits_forward: bool, forward_waits_sched_early: bool = False) -> Schedule:
    """The schedule stream prepares step N+1's index buffer while step N's
    forward may still read it.  Step N+1's forward needs the schedule
    stream's work (fwd.wait_stream(sched)); the fix is the other wait:
    sched.wait_stream(fwd) before the index buffer is rewritten."""
    def build(r: RankBuilder) -> None:
        r.compute("prepare_n", stream="sched", writes={"idx[i=0]": "idx(N)"})
        r.record("sched_done", stream="sched").wait("sched_done", stream="fwd")
        if forward_waits_sched_early:  # a second wait in the direction already there: only costs throughput
            r.record("sched_done", stream="sched").wait("sched_done", stream="fwd")
        r.compute("forward_n", stream="fwd", reads={"idx[i=0]": "idx(N)"})
        if sched_waits_forward:
            r.record("fwd_done", stream="fwd").wait("fwd_done", stream="sched")
        r.compute("prepare_n1", stream="sched", writes={"idx[i=0]": "idx(N+1)"})
        r.record("sched_done", stream="sched").wait("sched_done", stream="fwd")
        r.compute("forward_n1", stream="fwd", reads={"idx[i=0]": "idx(N+1)"})
    name = f"overlap-{'fixed' if sched_waits_forward else 'bug'}{'-extra' if forward_waits_sched_early else ''}"
    return _one(name, build, "idx")


def test_overlap_scheduler_rewrites_the_index_buffer_under_the_forward() -> None:
    check(_overlap(False), verdicts(dataflow=V, race=V))


def test_overlap_scheduler_waits_for_the_forward_in_one_direction() -> None:
    check(_overlap(True), verdicts())


def test_overlap_scheduler_more_waits_the_other_way_do_not_fix_it() -> None:
    """Waiting more in the direction the schedule already has (fwd waits for
    sched) changes nothing but throughput: the race stays."""
    check(_overlap(False, True), verdicts(dataflow=V, race=V))
    check(_overlap(True, True), verdicts())


# ------------------------------------------------------------------ 5. caching allocator without record_stream
def _allocator(fix: str) -> Schedule:
    """A tensor allocated on the aux stream is consumed on the main stream
    after a correct event wait, then freed; the next allocation on the aux
    stream gets its block."""
    def build(r: RankBuilder) -> None:
        r.alloc("a", "aux")
        r.compute("produce", stream="aux", writes={"a": "a0"})
        r.record("a_ready", stream="aux").wait("a_ready", stream="main")
        r.compute("consume", stream="main", reads={"a": "a0"})
        if fix == "record_stream":
            r.record_stream("a", "main")
        if fix == "wait":  # keep it alive: the aux stream waits for the consumer before the block changes owner
            r.record("consumed", stream="main").wait("consumed", stream="aux")
        r.free("a")
        r.alloc("b", "aux", reuses="a")
        r.compute("produce_next", stream="aux", writes={"b": "b0"})
    return _one(f"allocator-{fix}", build, "a", "b")


def test_caching_allocator_reuses_a_block_another_stream_still_reads() -> None:
    check(_allocator("none"), verdicts(dataflow=V, race=V),
          mentions={"race": ("a.record_stream(main)",), "dataflow": ("a.record_stream(main)",)})


@pytest.mark.parametrize("fix", ["record_stream", "wait"])
def test_caching_allocator_fixed_by_record_stream_or_an_event(fix: str) -> None:
    check(_allocator(fix), verdicts())


# ------------------------------------------------------------------ 6. events re-recorded each iteration
def _loop(kind: str, iterations: int = 3) -> Schedule:
    """``ready`` is recorded every iteration (as nearly every PyTorch loop
    does); each wait binds to the latest record issued before it."""
    def build(r: RankBuilder) -> None:
        for it in range(iterations):
            if kind == "wait-first":  # the wait is issued before this iteration's record
                r.wait("ready", stream="b")
            r.compute(f"produce{it}", stream="a", writes={f"x[i={it}]": f"x(it{it})"})
            if kind == "v1-renamed":  # what the v1 hint produced: only the record renamed
                r.record("ready" if it == 0 else f"ready_{it}", stream="a")
            else:
                r.record("ready", stream="a")
            if kind != "wait-first":
                r.wait("ready", stream="b")
            r.compute(f"consume{it}", stream="b", reads={f"x[i={it}]": f"x(it{it})"})
    return _one(f"loop-{kind}", build, "x")


def test_event_recorded_every_iteration_is_proved() -> None:
    check(_loop("latest"), verdicts())


def test_the_v1_renaming_hint_was_a_false_alarm() -> None:
    """The v1 loader rejected the second record; its hint renamed the record
    but not the waits after it, which then bound to the first record."""
    check(_loop("v1-renamed"), verdicts(dataflow=V, race=V))


def test_a_wait_before_this_iterations_record_binds_to_the_previous_one() -> None:
    check(_loop("wait-first"), verdicts(dataflow=V, race=V))


# ------------------------------------------------------------------ 7. host blocking
def _sync_then_copy(synced: bool) -> Schedule:
    def build(r: RankBuilder) -> None:
        r.compute("produce", stream="a", writes={"x[i=0]": "x(new)"})
        if synced:
            r.sync(target="a")  # a.synchronize()
        r.compute("copy", stream="b", reads={"x[i=0]": "x(new)"}, writes={"y[i=0]": "x(new)"})
    return _one(f"sync-then-copy-{synced}", build, "x", "y")


def test_stream_synchronize_then_a_copy_is_proved() -> None:
    """Without a host sync op this was a false race: the copy is enqueued
    after a.synchronize() has returned."""
    check(_sync_then_copy(True), verdicts())


def test_a_copy_without_the_synchronize_races() -> None:
    check(_sync_then_copy(False), verdicts(dataflow=V, race=V))


def _host_recv(recv_first: bool) -> Schedule:
    """Rank 0 blocks on a gloo recv on the host; rank 1 needs rank 0's NCCL
    data on the host (stream.synchronize()) before its gloo send."""
    b = ScheduleBuilder(f"host-recv-{'first' if recv_first else 'last'}")
    b.buffer("x", "i").init("x", "x0")
    r0, r1 = b.ranks(0, 1)
    if recv_first:
        r0.recv(1, stream=HOST, comm="gloo")
    r0.send(1, reads={"x[i=0]": "x0"})
    if not recv_first:
        r0.recv(1, stream=HOST, comm="gloo")
    r1.recv(0, writes={"x[i=0]": "x0"})
    r1.sync(target="comm")
    r1.send(0, stream=HOST, comm="gloo")
    return b.build()


def test_a_host_recv_before_the_send_it_waits_for_hangs() -> None:
    s = _host_recv(True)
    rep = check(s, verdicts(deadlock=V, dataflow=U, race=U, phase=U))
    dl = next(r for r in rep.results if r.property == "deadlock")
    assert dl.counterexample is not None
    assert "whatever the message sizes" in dl.counterexample.sentence  # a data cycle: no blocking edge needed


def test_the_send_enqueued_before_the_host_recv_is_proved() -> None:
    check(_host_recv(False), verdicts())


# ------------------------------------------------------------------ 8. phase: a batch-level op
def _phase(synced: bool) -> Schedule:
    """Decode step 0 has per-sequence attention and a batch-wide sampler (no
    seqs); step 1's attention runs on another stream."""
    def build(r: RankBuilder) -> None:
        r.compute("attn", stream="a", writes={"h[i=0]": "h(t0)"}, phase="decode", step=0, seqs=[0, 1])
        r.compute("sampler", stream="a", writes={"tok[i=0]": "tok(t0)"}, phase="decode", step=0, sample=True)
        if synced:
            r.record("sampled", stream="a").wait("sampled", stream="b")
        r.compute("attn", stream="b", writes={"h[i=1]": "h(t1)"}, phase="decode", step=1, seqs=[0, 1])
    return _one(f"phase-batch-op-{synced}", build, "h", "tok")


def test_a_step_overlapping_the_previous_one_is_found_despite_a_batch_wide_op() -> None:
    s = _phase(False)
    rep = check(s, verdicts(phase=V))
    assert not any("no op marked" in w for w in rep.warnings), rep.warnings  # the step has a sampler


def test_the_synced_decode_loop_with_a_batch_wide_sampler_is_proved() -> None:
    rep = check(_phase(True), verdicts())
    assert not any("no op marked" in w for w in rep.warnings), rep.warnings


def test_every_pattern_uses_the_host_model_not_pseudo_streams() -> None:
    """The patterns are written with the host stream and its kinds, never
    with a made-up stream standing in for the host."""
    built = [_pinned("event"), _kv_blocks(True), _d2h(True), _allocator("record_stream"), _host_recv(True),
             _sync_then_copy(True)]
    for s in built:
        assert "host" in s.features, s.name
        assert not any("host" in op.stream and op.stream != HOST for op in s.ops), s.name
