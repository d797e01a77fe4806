"""The explicit executor on small hand-built schedules, one verdict each."""

from __future__ import annotations

import pytest

from syncproof.executor import ExecResult, StateLimitExceeded, build_model, explore, replay
from syncproof.executor.replay import realize
from syncproof.ir import Schedule, ScheduleBuilder
from syncproof.result import Counterexample, CycleStep, Observation, Run

UNDECIDED = {"deadlock": None, "dataflow": None, "race": None, "phase": None}


def verdicts(schedule: Schedule) -> dict[str, bool | None]:
    res = explore(schedule)
    assert isinstance(res, ExecResult)
    return res.violated


def producer_consumer(*, sync: bool, wait_first: bool = False) -> Schedule:
    b = ScheduleBuilder("pc")
    b.buffer("x", i=4)
    r = b.rank(0)
    if wait_first:
        r.wait("e", stream="b")
        r.compute("consume", stream="b", reads={"x[i=0:4]": "h"})
        r.compute("produce", stream="a", writes={"x[i=0:4]": "h"})
        r.record("e", stream="a")
        return b.build()
    r.compute("produce", stream="a", writes={"x[i=0:4]": "h"})
    if sync:
        r.record("e", stream="a")
        r.wait("e", stream="b")
    r.compute("consume", stream="b", reads={"x[i=0:4]": "h"})
    return b.build()


# ------------------------------------------------------------- dataflow
def test_stale_read_without_wait() -> None:
    v = verdicts(producer_consumer(sync=False))
    assert v["matching"] is False
    assert v["dataflow"] is True
    assert v["race"] is True
    assert v["deadlock"] is False
    assert v["phase"] is False


def test_record_wait_fixes_stale_read() -> None:
    v = verdicts(producer_consumer(sync=True))
    assert v == {"matching": False, "deadlock": False, "dataflow": False, "race": False, "phase": False}


def test_wait_before_record_is_a_no_op() -> None:
    v = verdicts(producer_consumer(sync=True, wait_first=True))
    assert v["dataflow"] is True
    assert v["race"] is True
    assert v["deadlock"] is False  # the wait does not block: CUDA semantics


def test_init_values() -> None:
    b = ScheduleBuilder("init")
    b.buffer("w", i=4)
    b.init("w", "weights")
    b.rank(0).compute("mm", reads={"w[i=0:4]": "weights"})
    b.rank(1).compute("mm", reads={"w[i=1:3]": "weights"})
    assert verdicts(b.build())["dataflow"] is False

    # only rank 1 is initialised: rank 0 reads nothing
    b = ScheduleBuilder("init-rank")
    b.buffer("w", i=4)
    b.init("w", "weights", ranks=[1])
    b.rank(0).compute("mm", reads={"w[i=0:4]": "weights"})
    b.rank(1).compute("mm", reads={"w[i=0:4]": "weights"})
    res = explore(b.build())
    assert res.violated["dataflow"] is True
    assert "<nothing>" in res.witnesses["dataflow"]

    # a later init entry overrides an earlier one, only where it covers
    b = ScheduleBuilder("init-override")
    b.buffer("w", i=4)
    b.init("w", "old")
    b.init("w[i=2:4]", "new")
    b.rank(0).compute("lo", reads={"w[i=0:2]": "old"})
    b.rank(0).compute("hi", reads={"w[i=2:4]": "new"})
    assert verdicts(b.build())["dataflow"] is False
    b = ScheduleBuilder("init-override-bad")
    b.buffer("w", i=4)
    b.init("w", "old")
    b.init("w[i=2:4]", "new")
    b.rank(0).compute("all", reads={"w[i=0:4]": "old"})
    assert verdicts(b.build())["dataflow"] is True


def test_full_axis_includes_points_outside_every_interval() -> None:
    b = ScheduleBuilder("full")
    b.buffer("x", "i")  # unbounded axis
    b.rank(0).compute("w", writes={"x[i=0:4]": "v"})
    b.rank(0).compute("r", reads={"x": "v"})  # same stream: ordered
    # the whole axis also holds points no finite interval names
    assert verdicts(b.build())["dataflow"] is True


def test_omitted_axis_with_extent_is_the_declared_range() -> None:
    b = ScheduleBuilder("extent")
    b.buffer("x", i=4)
    b.rank(0).compute("w", writes={"x[i=0:4]": "v"})
    b.rank(0).compute("r", reads={"x": "v"})
    # with an extent, "x" is x[i=0:4]: the write covers all of it
    assert verdicts(b.build())["dataflow"] is False


def test_overwrite_while_reading() -> None:
    b = ScheduleBuilder("clobber")
    b.buffer("x", i=2)
    b.init("x", "a")
    r = b.rank(0)
    r.compute("reader", stream="s0", reads={"x[i=0:2]": "a"})
    r.compute("writer", stream="s1", writes={"x[i=1]": "b"})
    res = explore(b.build())
    assert res.violated["dataflow"] is True
    assert res.violated["race"] is True


def test_own_write_does_not_break_own_read() -> None:
    b = ScheduleBuilder("inplace")
    b.buffer("x", i=2)
    b.init("x", "a")
    b.rank(0).compute("inplace", reads={"x[i=0:2]": "a"}, writes={"x[i=0:2]": "b"})
    b.rank(0).compute("next", reads={"x[i=0:2]": "b"})
    assert verdicts(b.build()) == {"matching": False, "deadlock": False, "dataflow": False,
                                   "race": False, "phase": False}


# ------------------------------------------------------------------ race
def test_race_between_streams() -> None:
    b = ScheduleBuilder("race")
    b.buffer("x", i=4)
    r = b.rank(0)
    r.compute("k1", stream="a", writes={"x[i=0:2]": "p"})
    r.compute("k2", stream="b", writes={"x[i=1:3]": "q"})
    v = verdicts(b.build())
    assert v["race"] is True
    assert v["dataflow"] is False


def test_disjoint_writes_do_not_race() -> None:
    b = ScheduleBuilder("norace")
    b.buffer("x", i=4)
    r = b.rank(0)
    r.compute("k1", stream="a", writes={"x[i=0:2]": "p"})
    r.compute("k2", stream="b", writes={"x[i=2:4]": "q"}, reads={"x[i=3]": None})
    assert verdicts(b.build())["race"] is False


# ----------------------------------------------------------- p2p / deadlock
def cross_sends(p2p: str) -> Schedule:
    b = ScheduleBuilder("cross", p2p=p2p)
    b.rank(0).send(1).recv(1)
    b.rank(1).send(0).recv(0)
    return b.build()


def test_p2p_cross_send_deadlocks() -> None:
    res = explore(cross_sends("rendezvous"))
    assert res.violated["matching"] is False
    assert res.violated["deadlock"] is True
    assert len(res.blocked) == 4


def test_eager_sends_avoid_cross_deadlock() -> None:
    res = explore(cross_sends("eager"))
    assert res.violated["deadlock"] is False
    assert res.blocked == ()


def test_recv_data_arrives() -> None:
    b = ScheduleBuilder("p2p-data")
    b.buffer("x", i=2)
    b.rank(0).compute("make", writes={"x": "v"}, stream="s").send(1, reads={"x": "v"}, size=8, stream="s")
    b.rank(1).recv(0, writes={"x": "v"}, size=8, stream="s").compute("use", reads={"x": "v"}, stream="s")
    v = verdicts(b.build())
    assert v == {"matching": False, "deadlock": False, "dataflow": False, "race": False, "phase": False}


def test_unmatched_send_is_a_matching_violation() -> None:
    b = ScheduleBuilder("lonely")
    b.rank(0).send(1)
    b.rank(1).recv(0, channel="other")
    res = explore(b.build())
    assert res.violated == {"matching": True, **UNDECIDED}
    assert len(res.unmatched) == 2


def test_size_mismatch_is_a_matching_violation() -> None:
    b = ScheduleBuilder("size")
    b.rank(0).send(1, size=4)
    b.rank(1).recv(0, size=8)
    res = explore(b.build())
    assert res.violated["matching"] is True
    # a size-mismatched transfer never completes, as the engine assumes
    assert set(res.unmatched) == {0, 1}


# ------------------------------------------------------------ collectives
def test_collective_order_mismatch() -> None:
    b = ScheduleBuilder("coll-mismatch")
    b.group("tp", [0, 1])
    b.rank(0).all_reduce("tp").all_gather("tp")
    b.rank(1).all_gather("tp").all_reduce("tp")
    res = explore(b.build())
    assert res.violated == {"matching": True, **UNDECIDED}
    assert len(res.unmatched) == 4


def test_collectives_on_two_groups_in_opposite_order_deadlock() -> None:
    b = ScheduleBuilder("coll-cycle")
    b.group("g1", [0, 1])
    b.group("g2", [0, 1])
    b.rank(0).all_reduce("g1").all_reduce("g2")
    b.rank(1).all_reduce("g2").all_reduce("g1")
    v = verdicts(b.build())
    assert v["matching"] is False
    assert v["deadlock"] is True


def test_one_group_on_two_streams_is_serialized_by_its_communicator() -> None:
    # v1 flagged this as a possible deadlock; NCCL runs one communicator's ops
    # in issue order whatever the stream (enqueue.cc), so instance #1 cannot
    # start before #0 ends and every run completes.
    b = ScheduleBuilder("coll-streams")
    b.group("tp", [0, 1])
    b.rank(0).all_reduce("tp", stream="a").all_gather("tp", stream="b")
    b.rank(1).all_reduce("tp", stream="a").all_gather("tp", stream="a")
    s = b.build()
    res = explore(s)
    assert res.violated["matching"] is False
    assert res.blocked == ()
    assert res.violated["deadlock"] is False
    # a run where the all_gather (op 1) starts before the all_reduce (op 0) ends is refused
    model = build_model(s, light=True)
    _, why = realize(model, Run(start=(1, 2, 3, 6), end=(5, 8, 4, 7)))
    assert why == (f"at time 2, the start of {s.label(1)} is not enabled: {s.label(0)} has not ended"
                   " (the previous op of its communicator on its rank)")


def test_collective_output_needs_the_instance() -> None:
    b = ScheduleBuilder("coll-data")
    b.group("tp", [0, 1])
    b.buffer("h", i=2)
    for rb in b.ranks(0, 1):
        rb.compute("mlp", stream="c", writes={"h": "partial"})
        rb.all_reduce("tp", stream="c", reads={"h": "partial"}, writes={"h": "sum"})
        rb.compute("next", stream="c", reads={"h": "sum"})
    v = verdicts(b.build())
    assert v == {"matching": False, "deadlock": False, "dataflow": False, "race": False, "phase": False}


# ---------------------------------------------------------------- phase
def test_phase_step_overlap_on_one_rank() -> None:
    b = ScheduleBuilder("steps")
    b.rank(0).compute("s0", phase="decode", step=0, seqs=[0], stream="a")
    b.rank(0).compute("s1", phase="decode", step=1, seqs=[0], stream="b")
    assert verdicts(b.build())["phase"] is True


def test_phase_steps_on_two_ranks_need_only_the_sampler() -> None:
    b = ScheduleBuilder("steps-ranks")
    b.rank(0).compute("s0", phase="decode", step=0, seqs=[0])
    b.rank(1).compute("s1", phase="decode", step=1, seqs=[0])
    s = b.build()
    assert verdicts(s)["phase"] is False  # per rank (docs/format.md)
    assert explore(s, phase_rule="global").violated["phase"] is True  # the stricter rule


def test_phase_step_starts_before_token_is_sampled() -> None:
    b = ScheduleBuilder("sampler")
    b.rank(0).compute("sample", phase="decode", step=0, seqs=[0], sample=True)
    b.rank(1).compute("s1", phase="decode", step=1, seqs=[0])
    res = explore(b.build())
    assert res.violated["phase"] is True
    assert "sampled" in res.witnesses["phase"]


def test_phase_steps_ordered_by_p2p() -> None:
    b = ScheduleBuilder("steps-ok")
    b.rank(0).compute("s0", phase="decode", step=0, seqs=[0], sample=True, stream="s").send(1, stream="s")
    b.rank(1).recv(0, stream="s").compute("s1", phase="decode", step=1, seqs=[0], stream="s")
    assert verdicts(b.build())["phase"] is False
    assert explore(b.build(), phase_rule="global").violated["phase"] is False


def test_phase_steps_of_other_sequences_may_overlap() -> None:
    b = ScheduleBuilder("steps-seqs")
    b.rank(0).compute("s0", phase="decode", step=0, seqs=[0], stream="a")
    b.rank(0).compute("s1", phase="decode", step=1, seqs=[1], stream="b")
    assert verdicts(b.build())["phase"] is False


def test_phase_groups_are_consecutive_per_sequence() -> None:
    # step 0 of the sequence exists only on rank 1, so on rank 0 the prefill
    # and step 1 are not consecutive groups: nothing orders them there.
    b = ScheduleBuilder("gap")
    b.rank(0).compute("p", phase="prefill", stream="a")
    b.rank(0).compute("d1", phase="decode", step=1, stream="b")
    b.rank(1).compute("d0", phase="decode", step=0)
    assert verdicts(b.build())["phase"] is False
    assert explore(b.build(), phase_rule="global").violated["phase"] is True


def test_prefill_before_decode() -> None:
    b = ScheduleBuilder("prefill")
    b.rank(0).compute("p", phase="prefill", stream="a")
    b.rank(0).compute("d", phase="decode", step=0, stream="b")
    assert verdicts(b.build())["phase"] is True


def test_sp_in_decode() -> None:
    b = ScheduleBuilder("sp-decode")
    b.rank(0).compute("attn", phase="decode", step=0, sp="0/2")
    assert verdicts(b.build())["phase"] is True
    b = ScheduleBuilder("sp-prefill")
    b.rank(0).compute("attn", phase="prefill", sp="0/2")
    assert verdicts(b.build())["phase"] is False


def test_decode_tokens_split_in_one_step() -> None:
    b = ScheduleBuilder("tokens")
    b.rank(0).compute("a", phase="decode", step=3, seqs=[0], tokens="10:11")
    b.rank(1).compute("b", phase="decode", step=3, seqs=[0], tokens="11:12")
    assert verdicts(b.build())["phase"] is True


# ------------------------------------------------------------------ limits
def test_state_limit() -> None:
    b = ScheduleBuilder("big")
    r = b.rank(0)
    for s in range(4):
        r.compute("k", stream=f"s{s}")
        r.compute("k", stream=f"s{s}")
    with pytest.raises(StateLimitExceeded):
        explore(b.build(), max_states=50)
    assert explore(b.build()).states == 5**4


# ------------------------------------------------------------------ replay
def cex(prop: str, obs: Observation, run: Run | None, cycle: tuple[CycleStep, ...] = ()) -> Counterexample:
    return Counterexample(property=prop, sentence="", culprits=(), observation=obs, run=run, cycle=cycle)


def test_replay_stale_read() -> None:
    s = producer_consumer(sync=False)  # op 0 produce (a), op 1 consume (b)
    bad = Run(start=(3, 1), end=(4, 2))
    obs = Observation("read", a=1, region="x[i=0:4]", expected="h", seen=("<nothing>",))
    assert replay(s, cex("dataflow", obs, bad)) == (True, "")
    good = Run(start=(1, 3), end=(2, 4))
    ok, why = replay(s, cex("dataflow", obs, good))
    assert not ok and "sees h" in why
    wrong_seen = Observation("read", a=1, region="x[i=0:4]", expected="h", seen=("g",))
    assert replay(s, cex("dataflow", wrong_seen, bad))[0] is False


def test_replay_rejects_inadmissible_run() -> None:
    s = producer_consumer(sync=True)  # 0 produce, 1 record, 2 wait, 3 consume
    run = Run(start=(1, 3, 2, 5), end=(4, 6, 3, 7))  # the wait ends before the record
    obs = Observation("read", a=3, region="x", expected="h")
    ok, why = replay(s, cex("dataflow", obs, run))
    assert not ok and "not admissible" in why


def test_replay_overlap_and_order() -> None:
    b = ScheduleBuilder("race")
    b.buffer("x", i=4)
    r = b.rank(0)
    r.compute("k1", stream="a", writes={"x[i=0:2]": "p"})
    r.compute("k2", stream="b", writes={"x[i=1:3]": "q"})
    s = b.build()
    overlapping = Run(start=(1, 2), end=(3, 4))
    serial = Run(start=(1, 3), end=(2, 4))
    obs = Observation("overlap", a=0, b=1, region="x[i=1]")
    assert replay(s, cex("race", obs, overlapping))[0] is True
    assert replay(s, cex("race", obs, serial))[0] is False
    order = Observation("order", a=0, b=1)
    assert replay(s, cex("race", order, overlapping))[0] is True
    assert replay(s, cex("race", order, serial))[0] is False


def test_replay_hang_and_cycle() -> None:
    s = cross_sends("rendezvous")  # 0 send r0, 1 recv r0, 2 send r1, 3 recv r1
    run = Run(start=(1, None, 2, None), end=(None, None, None, None))
    hang = Observation("hang", blocked=(0, 1, 2, 3))
    assert replay(s, cex("deadlock", hang, run)) == (True, "")
    assert replay(s, cex("deadlock", Observation("hang", blocked=(0, 2)), run))[0] is False
    cyc = (CycleStep(0, 3, "rendezvous"), CycleStep(2, 1, "rendezvous"))
    assert replay(s, cex("deadlock", Observation("cycle"), None, cyc)) == (True, "")
    assert replay(cross_sends("eager"), cex("deadlock", Observation("cycle"), None, cyc))[0] is False


def test_replay_meta() -> None:
    b = ScheduleBuilder("tokens")
    b.rank(0).compute("a", phase="decode", step=3, seqs=[0], tokens="10:11")
    b.rank(1).compute("b", phase="decode", step=3, seqs=[0], tokens="11:12", sp="1/2")
    s = b.build()
    assert replay(s, cex("phase", Observation("meta", a=0, b=1), None))[0] is True
    assert replay(s, cex("phase", Observation("meta", a=1), None))[0] is True
    assert replay(s, cex("phase", Observation("meta", a=0), None))[0] is False


def test_replay_with_a_prebuilt_model() -> None:
    s = producer_consumer(sync=False)  # op 0 produce (a), op 1 consume (b)
    model = build_model(s, light=True)
    obs = Observation("read", a=1, region="x[i=0:4]", expected="h", seen=("<nothing>",))
    runs = (Run(start=(3, 1), end=(4, 2)), Run(start=(1, 3), end=(2, 4)), Run(start=(1, 3), end=(4, 2)))
    for run in runs:
        for o in (obs, Observation("overlap", a=0, b=1), Observation("order", a=0, b=1)):
            c = cex("dataflow", o, run)
            assert replay(s, c, model=model) == replay(s, c)
    assert replay(s, cex("dataflow", obs, runs[0]), model=model) == (True, "")
    with pytest.raises(ValueError):
        replay(producer_consumer(sync=False), cex("dataflow", obs, runs[0]), model=model)


def synced() -> tuple[Schedule, Run]:
    """0 produce (a), 1 record (a), 2 wait (b), 3 consume (b), and a run of it."""
    return producer_consumer(sync=True), Run(start=(1, 3, 5, 7), end=(2, 4, 6, 8))


def test_replay_tampered_runs() -> None:
    s, run = synced()
    order = Observation("order", a=0, b=3)  # consume starts before produce ends: never
    assert replay(s, cex("race", order, run)) == (False, f"{s.label(3)} does not start before {s.label(0)} ends")
    # swap the times of the wait and the consume
    swapped = Run(start=(1, 3, 7, 5), end=(2, 4, 8, 6))
    assert replay(s, cex("race", order, swapped)) == (
        False, f"the run is not admissible: at time 5, the start of {s.label(3)} is not enabled:"
               f" the previous op on its stream, {s.label(2)}, has not ended")
    # the record never ends, so the wait cannot end
    no_record_end = Run(start=run.start, end=(2, None, 6, 8))
    ok, why = replay(s, cex("race", order, no_record_end))
    assert (ok, why) == (False, f"the run is not admissible: at time 6, the end of {s.label(2)} is not enabled:"
                                f" {s.label(1)} has not ended (the record it waits for)")
    # an end without a start, an end before its start, a wrong length
    ok, why = replay(s, cex("race", order, Run(start=(1, None, 5, 7), end=run.end)))
    assert why == f"the run is not admissible: {s.label(1)} ends at 4 but never starts"
    ok, why = replay(s, cex("race", order, Run(start=(1, 3, 5, 9), end=run.end)))
    assert why == f"the run is not admissible: {s.label(3)} ends at 8 before it starts at 9"
    ok, why = replay(s, cex("race", order, Run(start=(1, 3, 5), end=(2, 4, 6))))
    assert why == "the run is not admissible: the run gives times for 3/3 ops but the schedule has 4"


def test_replay_orders_events_at_one_time_greedily() -> None:
    s, _ = synced()
    model = build_model(s, light=True)
    # every event at time 0: starts first, each as soon as it is enabled
    order, why = realize(model, Run(start=(0, 0, 0, 0), end=(0, 0, 0, 0)))
    assert why == ""
    assert order == [("start", 0), ("start", 2), ("end", 0), ("start", 1), ("end", 1), ("end", 2),
                     ("start", 3), ("end", 3)]
    assert replay(s, cex("race", Observation("order", a=0, b=3), Run((0, 0, 0, 0), (0, 0, 0, 0))))[0] is False
    # the wait ends at the time its record starts, so before the record ends
    order, why = realize(model, Run(start=(0, 1, 0, 2), end=(1, 2, 1, 3)))
    assert order is None
    assert why == (f"at time 1, the end of {s.label(2)} is not enabled: {s.label(1)} has not ended"
                   " (the record it waits for)")
    # without ties, realize gives the events in time order
    order, why = realize(model, Run(start=(1, 3, 5, 7), end=(2, 4, 6, 8)))
    assert order == [("start", 0), ("end", 0), ("start", 1), ("end", 1), ("start", 2), ("end", 2),
                     ("start", 3), ("end", 3)]
    # two kernels that start and end together overlap
    b = ScheduleBuilder("race")
    b.buffer("x", i=4)
    b.rank(0).compute("k1", stream="a", writes={"x[i=0:2]": "p"})
    b.rank(0).compute("k2", stream="b", writes={"x[i=1:3]": "q"})
    race = b.build()
    assert replay(race, cex("race", Observation("overlap", a=0, b=1), Run((1, 1), (2, 2)))) == (True, "")


def test_replay_hang_needs_later_ops() -> None:
    # rank 0's all-reduce (op 0) can end only once rank 1's (op 1) has started:
    # a maximal run ends both, whichever op comes first
    b = ScheduleBuilder("coll")
    b.group("g", [0, 1])
    b.rank(0).all_reduce("g")
    b.rank(1).all_reduce("g")
    s = b.build()
    assert replay(s, cex("deadlock", Observation("cycle"), None, (CycleStep(0, 1, "x"),))) == (
        False, "a complete run exists: every op ends")
    ok, why = replay(s, cex("deadlock", Observation("hang", blocked=(0,)), Run((1, None), (None, None))))
    assert not ok and why.startswith("the ops that never end differ from the observation (not blocked: ")
