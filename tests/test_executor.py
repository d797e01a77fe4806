"""The explicit executor on small hand-built schedules, one verdict each."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from syncproof.executor import ExecResult, StateLimitExceeded, build_model, explore, replay
from syncproof.executor.explicit import _event_deps
from syncproof.executor.mechanism import DEADLOCK
from syncproof.executor.replay import realize
from syncproof.ir import Schedule, ScheduleBuilder, loads
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


# =================================================================== v2
# Each test below encodes one sentence of DESIGN.md §2b / the v2 contract on
# a tiny schedule, with the verdicts the operational model gives.

def v2(doc: str) -> Schedule:
    """A schedule from format-version-2 JSON text."""
    return loads(doc)


HOLDS = {"matching": False, "deadlock": False, "dataflow": False, "race": False, "phase": False}


# ----------------------------------------------------- capacity 0 / buffered
def test_cross_sends_hang_only_when_messages_block() -> None:
    # p2p "any": deadlock is decided at capacity 0 (large messages block), the
    # other properties with buffered messages, where every run completes
    res = explore(cross_sends("any"))
    assert res.violated == {**HOLDS, "deadlock": True}
    assert len(res.blocked) == 4
    assert "capacity 0" in res.witnesses["deadlock"]


def test_rendezvous_schedule_leaves_data_properties_undecided_when_it_hangs() -> None:
    res = explore(cross_sends("rendezvous"))
    assert res.violated == {"matching": False, "deadlock": True, "dataflow": None, "race": None, "phase": None}


def test_one_eager_message_breaks_the_cross_send_cycle() -> None:
    b = ScheduleBuilder("cross-one-eager")
    b.rank(0).send(1, p2p="eager").recv(1)
    b.rank(1).send(0).recv(0)
    assert verdicts(b.build()) == HOLDS
    # overrides that contradict each other (eager on the send, rendezvous on its recv) assert
    # nothing: that message may block (a deadlock with the other, rendezvous, one) or be buffered
    # (so the data setting has runs that finish, and dataflow is decided)
    b = ScheduleBuilder("cross-override", p2p="eager")
    b.rank(0).send(1, p2p="eager").recv(1)
    b.rank(1).send(0, p2p="rendezvous").recv(0, p2p="rendezvous")
    res = explore(b.build())
    assert res.violated["deadlock"] is True
    assert res.violated["dataflow"] is False
    # with one rendezvous override and no contradiction, rendezvous edges count for every property
    b = ScheduleBuilder("cross-rendezvous", p2p="eager")
    b.rank(0).send(1).recv(1)
    b.rank(1).send(0, p2p="rendezvous").recv(0, p2p="rendezvous")
    res = explore(b.build())
    assert res.violated["deadlock"] is True
    assert res.violated["dataflow"] is None


def put_after_message(p2p: str) -> Schedule:
    """rank 1 reads z (expects its initial value) before it receives; rank 0
    sends, then puts a new value into rank 1's z.  Only a blocking send
    (capacity 0) keeps the put after rank 1's read."""
    return v2(f'''{{"syncproof": 2, "name": "put-after-send", "p2p": "{p2p}",
      "buffers": {{"z": {{"i": 1}}}}, "init": [{{"region": "z", "value": "old"}}],
      "ranks": {{
        "0": [{{"op": "send", "stream": "s", "to": 1}},
              {{"op": "put", "stream": "s", "to": 1, "writes": {{"z": "new"}}}}],
        "1": [{{"op": "compute", "stream": "s", "name": "use", "reads": {{"z": "old"}}}},
              {{"op": "recv", "stream": "s", "from": 0}}]}}}}''')


def test_buffered_send_lets_a_later_put_overtake() -> None:
    res = explore(put_after_message("any"))
    assert res.violated == {**HOLDS, "dataflow": True, "race": True}
    assert "r1/s: use" in res.witnesses["dataflow"]
    # declared rendezvous, the send ends only after the recv has started
    assert verdicts(put_after_message("rendezvous")) == HOLDS
    # eager: buffered for every property
    assert explore(put_after_message("eager")).violated["dataflow"] is True


def test_replay_uses_the_setting_of_the_property() -> None:
    s = put_after_message("any")  # 0 send, 1 put (r0); 2 use, 3 recv (r1)
    # the send ends (2) before the recv starts (7): buffered
    run = Run(start=(1, 3, 5, 7), end=(2, 4, 6, 8))
    obs = Observation("order", a=2, b=1)  # the put starts before use ends
    assert replay(s, cex("dataflow", obs, run)) == (True, "")
    ok, why = replay(s, cex("deadlock", obs, run))
    assert not ok and why == (f"the run is not admissible: at time 2, the end of {s.label(0)} is not enabled:"
                              f" {s.label(3)} has not started (a receiver of its message (capacity 0: the"
                              " message cannot be buffered))")
    # a read observation: the put lands (4) before use starts (5)
    read = Observation("read", a=2, region="z", expected="old", seen=("new",))
    assert replay(s, cex("dataflow", read, run)) == (True, "")
    # and a race between the put (rank 0) and the read on rank 1 it writes into
    overlap = Run(start=(1, 3, 4, 7), end=(2, 6, 5, 8))
    assert replay(s, cex("race", Observation("overlap", a=1, b=2, region="z"), overlap)) == (True, "")


# ------------------------------------------------------------- group calls
def batched_cross(batch: bool) -> Schedule:
    b = ScheduleBuilder("sendrecv")
    for me, peer in ((0, 1), (1, 0)):
        r = b.rank(me)
        if batch:
            with r.group_call():
                r.send(peer).recv(peer)
        else:
            r.send(peer).recv(peer)
    return b.build()


def test_group_call_is_one_node_that_never_blocks_itself() -> None:
    assert explore(batched_cross(batch=False)).violated["deadlock"] is True
    assert verdicts(batched_cross(batch=True)) == HOLDS


def test_group_call_parts_start_before_any_ends() -> None:
    s = batched_cross(batch=True)  # r0: 0 send, 1 recv; r1: 2 send, 3 recv
    model = build_model(s, light=True)
    # parts of one group call are unordered: the recv may start first
    ok = Run(start=(2, 1, 3, 4), end=(6, 5, 8, 7))
    assert realize(model, ok)[1] == ""
    # but no part ends before every part has started
    early = Run(start=(1, 4, 2, 3), end=(3.5, 6, 7, 8))  # type: ignore[arg-type]
    _, why = realize(model, early)
    assert why == (f"at time 3.5, the end of {s.label(0)} is not enabled: {s.label(1)} has not started"
                   " (a part of its group call)")


def test_op_after_a_group_call_waits_for_every_part() -> None:
    b = ScheduleBuilder("after-call")
    b.buffer("x", i=1)
    r = b.rank(0)
    with r.group_call():
        r.send(1).recv(1, writes={"x": "got"})
    r.compute("use", stream="comm", reads={"x": "got"})
    r1 = b.rank(1)
    with r1.group_call():
        r1.recv(0).send(0)
    assert verdicts(b.build()) == HOLDS


# ------------------------------------------------ communicators and progress
def crossed_communicators(progress: str, same_stream: bool) -> Schedule:
    b = ScheduleBuilder("crossed", progress=progress)
    b.group("g1", [0, 1])
    b.group("g2", [0, 1])
    b.rank(0).all_reduce("g1", stream="a").all_reduce("g2", stream="a" if same_stream else "b")
    b.rank(1).all_reduce("g2", stream="a").all_reduce("g1", stream="a" if same_stream else "b")
    return b.build()


def test_crossed_launch_order_of_two_communicators_deadlocks() -> None:
    # on one stream: a real cycle, whatever the progress
    for progress in ("any", "concurrent"):
        res = explore(crossed_communicators(progress, same_stream=True))
        assert res.violated == {"matching": False, "deadlock": True, "dataflow": None, "race": None,
                                "phase": None}
    # on two streams: a hang only because NCCL does not promise that two
    # communicators' kernels progress side by side
    res = explore(crossed_communicators("any", same_stream=False))
    assert res.violated == {**HOLDS, "deadlock": True}
    assert "serial progress" in res.witnesses["deadlock"]
    assert verdicts(crossed_communicators("concurrent", same_stream=False)) == HOLDS


def test_one_communicator_serializes_p2p_across_streams() -> None:
    # two sends to one peer on two streams use one communicator (p2p:0-1):
    # the second starts only after the first ends, so a recv-first order on
    # rank 1 cannot invert them.  Rank 1 receives them on two streams.
    b = ScheduleBuilder("p2p-streams", p2p="eager")
    b.buffer("x", i=2)
    b.rank(0).send(1, stream="a", reads={"x[i=0]": None}).send(1, stream="b", reads={"x[i=1]": None})
    b.rank(1).recv(0, stream="a", writes={"x[i=0]": "m0"}).recv(0, stream="b", writes={"x[i=1]": "m1"})
    s = b.build()
    model = build_model(s, light=True)
    _, why = realize(model, Run(start=(1, 2, 3, 5), end=(4, 7, 6, 8)))
    assert why == (f"at time 2, the start of {s.label(1)} is not enabled: {s.label(0)} has not ended"
                   " (the previous op of its communicator on its rank)")
    # on another channel (another communicator) the second send may overtake
    b2 = ScheduleBuilder("p2p-channels", p2p="eager")
    b2.rank(0).send(1, stream="a").send(1, stream="b", channel="c1")
    b2.rank(1).recv(0, stream="a").recv(0, stream="b", channel="c1")
    assert realize(build_model(b2.build(), light=True), Run(start=(1, 2, 3, 5), end=(4, 7, 6, 8)))[1] == ""


def test_serial_progress_orders_different_communicators_in_issue_order() -> None:
    s = crossed_communicators("any", same_stream=False)  # r0: 0 g1 (a), 1 g2 (b); r1: 2 g2, 3 g1
    model = build_model(s, light=True)
    run = Run(start=(1, 2, 3, 4), end=(5, 6, 7, 8))
    assert realize(model, run)[1] == ""  # concurrent progress: fine
    _, why = realize(model, run, DEADLOCK)
    assert why.startswith(f"at time 2, the start of {s.label(1)} is not enabled: {s.label(0)} has not ended"
                          " (the previous communication issued on its rank")


def test_replay_cycle_with_a_partial_run() -> None:
    s = crossed_communicators("any", same_stream=False)
    # each rank started its first collective; the second never starts (serial progress)
    cyc = (CycleStep(0, 3, "x"), CycleStep(3, 2, "x"))
    part = Run(start=(1, None, 2, None), end=(None,) * 4)
    assert replay(s, cex("deadlock", Observation("cycle", blocked=(0, 1, 2, 3)), part, cyc)) == (True, "")
    assert replay(s, cex("deadlock", Observation("cycle"), None, cyc)) == (True, "")
    # a run that stops early is no witness that nothing more can happen
    short = Run(start=(1, None, None, None), end=(None,) * 4)
    ok, why = replay(s, cex("deadlock", Observation("cycle"), short, cyc))
    assert not ok and why == f"the run is not maximal: the start of {s.label(2)} can still happen after it"
    # with concurrent progress there is no cycle
    ok, why = replay(crossed_communicators("concurrent", same_stream=False),
                     cex("deadlock", Observation("cycle"), None, cyc))
    assert (ok, why) == (False, "a complete run exists: every op ends")


# ------------------------------------------------------- rooted collectives
def test_broadcast_is_a_pipeline_from_the_root() -> None:
    # root 0 broadcasts, then sends to rank 1, which receives before joining
    # the broadcast: a hang only when the broadcast blocks (capacity 0)
    b = ScheduleBuilder("bcast-pipeline")
    b.group("g", [0, 1])
    b.rank(0).broadcast("g", 0, stream="c").send(1, stream="c")
    b.rank(1).recv(0, stream="c").broadcast("g", 0, stream="c")
    res = explore(b.build())
    assert res.violated == {**HOLDS, "deadlock": True}
    # a member never ends before the root has started
    s = b.build()  # r0: 0 bcast, 1 send; r1: 2 recv, 3 bcast
    model = build_model(s, light=True)
    assert realize(model, Run(start=(1, 3, 4, 7), end=(2, 5, 6, 8)))[1] == ""
    b2 = ScheduleBuilder("bcast-member-first")
    b2.group("g", [0, 1])
    b2.rank(0).broadcast("g", 0)
    b2.rank(1).broadcast("g", 0)
    s2 = b2.build()
    _, why = realize(build_model(s2, light=True), Run(start=(3, 1), end=(4, 2)))
    assert why == (f"at time 2, the end of {s2.label(1)} is not enabled: {s2.label(0)} has not started"
                   " (a member of its collective instance)")


def test_eager_broadcast_does_not_hang() -> None:
    b = ScheduleBuilder("bcast-eager")
    b.group("g", [0, 1])
    b.rank(0).broadcast("g", 0, stream="c", p2p="eager").send(1, stream="c")
    b.rank(1).recv(0, stream="c").broadcast("g", 0, stream="c")
    assert verdicts(b.build()) == HOLDS


def test_reduce_is_a_pipeline_into_the_root() -> None:
    b = ScheduleBuilder("reduce-pipeline")
    b.group("g", [0, 1])
    b.rank(0).recv(1, stream="c").reduce("g", 0, stream="c")
    b.rank(1).reduce("g", 0, stream="c").send(0, stream="c")
    s = b.build()  # r0: 0 recv, 1 reduce (root); r1: 2 reduce, 3 send
    assert explore(s).violated == {**HOLDS, "deadlock": True}
    model = build_model(s, light=True)
    assert realize(model, Run(start=(4, 6, 1, 3), end=(5, 7, 2, 8)))[1] == ""  # the leaf ends first
    b2 = ScheduleBuilder("reduce-root-first")
    b2.group("g", [0, 1])
    b2.rank(0).reduce("g", 0)
    b2.rank(1).reduce("g", 0)
    s2 = b2.build()
    model2 = build_model(s2, light=True)
    assert realize(model2, Run(start=(3, 1), end=(4, 2)))[1] == ""  # the leaf ends before the root starts
    _, why = realize(model2, Run(start=(1, 3), end=(2, 4)))  # the root ends before the leaf starts
    assert why == (f"at time 2, the end of {s2.label(0)} is not enabled: {s2.label(1)} has not started"
                   " (a member of its collective instance)")


def test_all_reduce_members_wait_for_each_other_at_every_capacity() -> None:
    b = ScheduleBuilder("ar-pipeline", p2p="eager")
    b.group("g", [0, 1])
    b.rank(0).all_reduce("g", stream="c").send(1, stream="c")
    b.rank(1).recv(0, stream="c").all_reduce("g", stream="c")
    res = explore(b.build())
    assert res.violated == {"matching": False, "deadlock": True, "dataflow": None, "race": None, "phase": None}


def test_weak_collective_input_is_read_until_every_member_ends() -> None:
    def sched(completion: str | None) -> Schedule:
        b = ScheduleBuilder("weak")
        b.group("g", [0, 1])
        b.buffer("x", i=1)
        for r in b.ranks(0, 1):
            r.compute("fill", stream="c", writes={"x": "in"})
            r.all_reduce("g", stream="c", reads={"x": "in"}, writes={"x": "in"}, completion=completion)
            r.compute("reuse", stream="c", writes={"x": "next"})
        return b.build()

    assert verdicts(sched(None)) == HOLDS
    res = explore(sched("weak"))
    assert res.violated == {**HOLDS, "dataflow": True, "race": True}
    assert "may still be read by its peers" in res.witnesses["race"]
    s = sched("weak")  # r0: 0 fill, 1 all_reduce, 2 reuse; r1: 3, 4, 5
    run = Run(start=(1, 3, 6, 2, 4, 10), end=(2, 5, 7, 3, 9, 11))
    assert replay(s, cex("race", Observation("overlap", a=2, b=1, region="x"), run)) == (True, "")
    assert replay(sched(None), cex("race", Observation("overlap", a=2, b=1, region="x"), run))[0] is False


# ----------------------------------------------------- puts and signals
def put_signal(wait: bool, signal: str = "done") -> Schedule:
    b = ScheduleBuilder("put")
    b.buffer("x", i=2)
    b.rank(0).compute("make", stream="s", writes={"x": "v"}).put(1, stream="s", reads={"x": "v"},
                                                                  writes={"x": "v"}, signal="done")
    r1 = b.rank(1)
    if wait:
        r1.wait_signal(0, signal, stream="s")
    r1.compute("use", stream="s", reads={"x": "v"})
    return b.build()


def test_put_lands_in_remote_memory_and_a_signal_orders_its_reader() -> None:
    assert verdicts(put_signal(wait=True)) == HOLDS
    res = explore(put_signal(wait=False))
    assert res.violated == {**HOLDS, "dataflow": True, "race": True}


def test_wait_signal_without_a_put_never_completes() -> None:
    res = explore(put_signal(wait=True, signal="other"))
    assert res.violated == {"matching": True, **UNDECIDED}
    assert res.unmatched == (2,)
    assert "never completes" in res.witnesses["matching"]


def test_replay_wait_signal_needs_the_put_to_end() -> None:
    s = put_signal(wait=True)  # r0: 0 make, 1 put; r1: 2 wait_signal, 3 use
    model = build_model(s, light=True)
    assert realize(model, Run(start=(1, 3, 2, 6), end=(2, 4, 5, 7)))[1] == ""
    _, why = realize(model, Run(start=(1, 3, 2, 6), end=(2, 5, 4, 7)))
    assert why == (f"at time 4, the end of {s.label(2)} is not enabled: {s.label(1)} has not ended"
                   " (the put whose signal it waits for)")


# ------------------------------------------------- values travel with messages
def message(send_reads: str, recv_writes: str) -> Schedule:
    return v2(f'''{{"syncproof": 2, "name": "values",
      "buffers": {{"k": {{"i": 1}}, "v": {{"i": 1}}, "y": {{"i": 1}}}},
      "init": [{{"region": "k", "value": "K(L0)"}}, {{"region": "v", "value": "V(L0)"}}],
      "ranks": {{
        "0": [{{"op": "send", "stream": "s", "to": 1, "reads": {send_reads}}}],
        "1": [{{"op": "recv", "stream": "s", "from": 0, "writes": {recv_writes}}},
              {{"op": "compute", "stream": "s", "name": "use", "reads": {{"y": null}}}}]}}}}''')


def test_recv_value_is_checked_against_what_its_send_carried() -> None:
    assert verdicts(message('{"k": "K(L0)"}', '{"y": "K(L0)"}')) == HOLDS
    s = message('{"v": "V(L0)"}', '{"y": "K(L0)"}')
    res = explore(s)
    assert res.violated == {**HOLDS, "dataflow": True}
    assert res.witnesses["dataflow"] == (f"{s.label(1)} declares K(L0); its matched send {s.label(0)}"
                                         " carried V(L0)")
    # as multisets: the order of the regions does not matter
    assert verdicts(message('{"k": "K(L0)", "v": "V(L0)"}', '{"y[i=0:1]": "V(L0)", "k": "K(L0)"}')) == HOLDS
    # a send that declares no value: the recv's values are taken on trust
    assert verdicts(message('{"k": null}', '{"y": "K(L0)"}')) == HOLDS
    assert verdicts(message("{}", '{"y": "K(L0)"}')) == HOLDS


def test_replay_message_observation() -> None:
    s = message('{"v": "V(L0)"}', '{"y": "K(L0)"}')  # 0 send; 1 recv, 2 use
    good = Observation("message", a=1, b=0, expected="K(L0)", seen=("V(L0)",))
    assert replay(s, cex("dataflow", good, None)) == (True, "")
    assert replay(s, cex("dataflow", good, Run((1, 2, 4), (5, 3, 6))))[0] is True
    assert replay(s, cex("dataflow", Observation("message", a=1, b=0, expected="V(L0)", seen=("V(L0)",)),
                         None))[0] is False
    assert replay(s, cex("dataflow", Observation("message", a=1, b=0, expected="K(L0)", seen=("K(L0)",)),
                         None))[0] is False
    ok, why = replay(message('{"k": "K(L0)"}', '{"y": "K(L0)"}'), cex("dataflow", good, None))
    assert not ok and "declares the values" in why
    # the value that lands is the one the message carried
    read = Observation("read", a=2, region="y", expected="K(L0)")
    s2 = v2('''{"syncproof": 2, "name": "carried", "buffers": {"v": {"i": 1}, "y": {"i": 1}},
      "init": [{"region": "v", "value": "V(L0)"}],
      "ranks": {"0": [{"op": "send", "stream": "s", "to": 1, "reads": {"v": "V(L0)"}}],
                "1": [{"op": "recv", "stream": "s", "from": 0, "writes": {"y": "K(L0)"}},
                      {"op": "compute", "stream": "s", "name": "use", "reads": {"y": "K(L0)"}}]}}''')
    ok, why = replay(s2, cex("dataflow", read, Run((1, 2, 4), (5, 3, 6))))
    assert ok, why


def test_broadcast_member_gets_the_root_value() -> None:
    def sched(root_reads: str, root_writes: str, member_writes: str) -> Schedule:
        return v2(f'''{{"syncproof": 2, "name": "bcast-values", "groups": {{"g": [0, 1]}},
          "buffers": {{"w": {{"i": 1}}}}, "init": [{{"region": "w", "value": "W"}}],
          "ranks": {{
            "0": [{{"op": "broadcast", "stream": "s", "group": "g", "root": 0, "reads": {root_reads},
                    "writes": {root_writes}}}],
            "1": [{{"op": "broadcast", "stream": "s", "group": "g", "root": 0, "writes": {member_writes}}}]}}}}''')

    assert verdicts(sched('{"w": "W"}', "{}", '{"w": "W"}')) == HOLDS
    res = explore(sched('{"w": "W"}', "{}", '{"w": "X"}'))
    assert res.violated == {**HOLDS, "dataflow": True}
    assert "the root" in res.witnesses["dataflow"]
    # a root without read values: its write values are what it sends
    assert verdicts(sched("{}", '{"w": "W2"}', '{"w": "W2"}')) == HOLDS
    assert explore(sched("{}", '{"w": "W2"}', '{"w": "W"}')).violated["dataflow"] is True
    s = sched('{"w": "W"}', "{}", '{"w": "X"}')
    obs = Observation("message", a=1, b=0, expected="X", seen=("W",))
    assert replay(s, cex("dataflow", obs, None)) == (True, "")


# ------------------------------------------------------------------ matching
def test_all_to_all_counts_are_checked_crosswise() -> None:
    def sched(r1_recv: list[int]) -> Schedule:
        b = ScheduleBuilder("a2a")
        b.group("g", [0, 1])
        b.rank(0).all_to_all("g", counts=[1, 2], recv_counts=[1, 3])
        b.rank(1).all_to_all("g", counts=[3, 4], recv_counts=r1_recv)
        return b.build()

    assert verdicts(sched([2, 4])) == HOLDS
    res = explore(sched([5, 4]))
    assert res.violated["matching"] is True
    assert "recv_counts" in res.witnesses["matching"]


def test_all_gather_counts_must_agree() -> None:
    b = ScheduleBuilder("ag-counts")
    b.group("g", [0, 1])
    b.rank(0).all_gather("g", counts=[1, 2])
    b.rank(1).all_gather("g", counts=[2, 1])
    assert explore(b.build()).violated["matching"] is True


def test_p2p_fifo_is_per_communicator() -> None:
    # an explicit communicator on one side only: the FIFOs differ, nothing matches
    b = ScheduleBuilder("comm-fifo")
    b.rank(0).send(1, comm="world")
    b.rank(1).recv(0)
    res = explore(b.build())
    assert res.violated["matching"] is True
    b = ScheduleBuilder("comm-fifo-ok")
    b.rank(0).send(1, comm="world")
    b.rank(1).recv(0, comm="world")
    assert verdicts(b.build()) == HOLDS


def test_replay_matching_hang_at_either_setting() -> None:
    b = ScheduleBuilder("lonely-any")
    b.rank(0).send(1).send(1, channel="x")
    b.rank(1).recv(0)
    s = b.build()  # 0 send (matched), 1 send (unmatched), 2 recv
    # buffered, the first send ends even though nothing more happens
    run = Run(start=(1, 3, 4), end=(2, None, 5))
    assert replay(s, cex("matching", Observation("hang", blocked=(1,)), run)) == (True, "")
    ok, why = replay(s, cex("matching", Observation("hang", blocked=(0, 1)), run))
    assert not ok and "not blocked" in why


# ------------------------------------------------------- the greedy deadlock
def _stuck_states(schedule: Schedule) -> tuple[bool, int]:
    """Enumerate every reachable state at the deadlock setting: is some state
    stuck with an op unfinished, and how many states are there?"""
    model = build_model(schedule)
    starts, ends = _event_deps(model, DEADLOCK)
    n = model.n
    init = (0,) * n
    seen = {init}
    stack = [init]
    stuck = False
    while stack:
        st = stack.pop()
        moved = False
        for o in range(n):
            deps = starts[o] if st[o] == 0 else ends[o] if st[o] == 1 else None
            if deps is None or any(st[p] < need for p, need in deps):
                continue
            moved = True
            nxt = st[:o] + (st[o] + 1,) + st[o + 1:]
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
        if not moved and any(s != 2 for s in st):
            stuck = True
    return stuck, len(seen)


@pytest.mark.parametrize("make", [
    lambda: cross_sends("any"), lambda: cross_sends("eager"), lambda: batched_cross(True),
    lambda: batched_cross(False), lambda: crossed_communicators("any", False),
    lambda: crossed_communicators("concurrent", False), lambda: put_after_message("any"),
    lambda: put_signal(True),
])
def test_greedy_firing_decides_deadlock_like_full_enumeration(make: Callable[[], Schedule]) -> None:
    # every condition is "some event has happened", so no event is ever
    # disabled: a stuck state is reachable iff the greedy maximal run is stuck
    s = make()
    stuck, _ = _stuck_states(s)
    assert stuck == bool(explore(s).blocked)


# =================================================================== v2 part 2
# The host thread, host syncs, re-recorded events, the caching allocator and
# the phase changes of DESIGN.md §2b ("The host", "Events", "Memory
# lifetime", "Phase"), one rule per test, on tiny format-2 schedules.

def one_rank(ops: str, *, buffers: str = '{"x": {"i": 1}}', extra: str = "", name: str = "host") -> Schedule:
    """A one-rank schedule (rank 1 idle) from the JSON text of rank 0's ops."""
    return v2(f'''{{"syncproof": 2, "name": "{name}", "buffers": {buffers}{extra},
      "ranks": {{"0": [{ops}], "1": []}}}}''')


PRODUCE = '{"op": "compute", "stream": "s", "name": "produce", "writes": {"x": "v"}}'
HOST_READ = '{"op": "compute", "stream": "host", "name": "item", "reads": {"x": "v"}}'


@pytest.mark.parametrize(("sync", "ok"), [
    ("", False),
    ('{"op": "sync", "target": "s"},', True),          # stream.synchronize()
    ('{"op": "sync", "target": "other"},', False),     # another stream: nothing issued there
    ('{"op": "sync"},', True),                          # torch.cuda.synchronize()
    ('{"op": "sync", "of": "produce"},', True),        # work.wait() / .item()
    ('{"op": "record", "stream": "s", "event": "e"}, {"op": "sync", "event": "e"},', True),
])
def test_host_sync_orders_a_host_read_after_device_work(sync: str, ok: bool) -> None:
    s = one_rank(f"{PRODUCE}, {sync} {HOST_READ}")
    v = verdicts(s)
    assert v == (HOLDS if ok else {**HOLDS, "dataflow": True, "race": True}), v


def test_event_sync_before_its_record_does_nothing() -> None:
    s = one_rank(f'''{PRODUCE}, {{"op": "sync", "event": "e"}}, {{"op": "record", "stream": "s", "event": "e"}},
                  {HOST_READ}''')
    assert verdicts(s) == {**HOLDS, "dataflow": True, "race": True}


def test_stream_sync_waits_for_the_stream_up_to_the_sync_only() -> None:
    # the sync waits for what was issued on s before it, not for later work there
    s = one_rank(f'''{{"op": "sync", "target": "s"}}, {PRODUCE}, {HOST_READ}''')
    assert verdicts(s)["dataflow"] is True


def test_host_work_runs_at_its_place_in_issue_order() -> None:
    # a host write is done before the device op issued after it starts: no race
    s = one_rank('''{"op": "compute", "stream": "host", "name": "fill", "writes": {"x": "h"}},
                    {"op": "compute", "stream": "s", "name": "copy", "reads": {"x": "h"}}''')
    assert verdicts(s) == HOLDS
    # the same two ops on two device streams are unordered
    s = one_rank('''{"op": "compute", "stream": "a", "name": "fill", "writes": {"x": "h"}},
                    {"op": "compute", "stream": "s", "name": "copy", "reads": {"x": "h"}}''')
    assert verdicts(s) == {**HOLDS, "dataflow": True, "race": True}
    # but device work issued before a host op is not ordered with it
    s = one_rank('''{"op": "compute", "stream": "s", "name": "copy", "reads": {"x": "old"}},
                    {"op": "compute", "stream": "host", "name": "fill", "writes": {"x": "h"}}''',
                 extra=', "init": [{"region": "x", "value": "old"}]')
    assert verdicts(s) == {**HOLDS, "dataflow": True, "race": True}


def host_blocked_exchange(sync: bool, p2p: str = "any") -> Schedule:
    """Each rank posts its recv on stream r, then (optionally) synchronizes
    that stream on the host before it issues its send on stream w (rank 0
    sends on channel 1: another communicator; progress asserted concurrent,
    so that nothing else orders the send after the recv)."""
    mid = '{"op": "sync", "target": "r"},' if sync else ""

    def ops(peer: int) -> str:
        to, frm = ('"channel": "1", ', "") if peer == 1 else ("", '"channel": "1", ')
        return (f'[{{"op": "recv", "stream": "r", {frm}"from": {peer}}}, {mid}'
                f' {{"op": "send", "stream": "w", {to}"to": {peer}}}]')
    return v2(f'''{{"syncproof": 2, "name": "host-blocked", "p2p": "{p2p}", "progress": "concurrent",
      "buffers": {{}}, "ranks": {{"0": {ops(1)}, "1": {ops(0)}}}}}''')


def test_a_blocked_host_issues_nothing_more() -> None:
    # without the syncs the sends are issued at once: nothing hangs
    assert verdicts(host_blocked_exchange(False)) == HOLDS
    # each host waits for its recv before it issues the send that the peer's
    # recv needs: a hang whatever the message sizes
    res = explore(host_blocked_exchange(True))
    assert res.violated == {"matching": False, "deadlock": True, "dataflow": None, "race": None, "phase": None}
    assert len(res.blocked) == 6  # the recvs, the syncs and the sends
    assert explore(host_blocked_exchange(True, "eager")).violated["deadlock"] is True


def test_events_re_recorded_a_wait_binds_to_the_latest_record_before_it() -> None:
    def ops(wait_between: bool) -> str:
        return f'''
        {{"op": "compute", "stream": "a", "name": "w1", "writes": {{"x": "v1"}}}},
        {{"op": "record", "stream": "a", "event": "e"}},
        {'{"op": "wait", "stream": "b", "event": "e"},' if wait_between else ""}
        {{"op": "compute", "stream": "a", "name": "w2", "writes": {{"x": "v2"}}}},
        {{"op": "record", "stream": "a", "event": "e"}},
        {'' if wait_between else '{"op": "wait", "stream": "b", "event": "e"},'}
        {{"op": "compute", "stream": "b", "name": "use", "reads": {{"x": "v2"}}}}'''

    # the wait after the second record waits for w2
    assert verdicts(one_rank(ops(False))) == HOLDS
    # issued between the records, it waits for the first one only (the state
    # at the time of the call): use may run before w2
    res = explore(one_rank(ops(True)))
    assert res.violated == {**HOLDS, "dataflow": True, "race": True}
    m = build_model(one_rank(ops(True)))
    assert m.matching.record_of == {2: 1}


def test_event_sync_binds_to_the_latest_record_before_it() -> None:
    s = one_rank('''{"op": "compute", "stream": "s", "name": "w1", "writes": {"x": "v1"}},
                    {"op": "record", "stream": "s", "event": "e"},
                    {"op": "sync", "event": "e"},
                    {"op": "compute", "stream": "s", "name": "w2", "writes": {"x": "v2"}},
                    {"op": "record", "stream": "s", "event": "e"},
                    {"op": "compute", "stream": "host", "name": "item", "reads": {"x": "v1"}}''')
    # the host read comes after w1 (the sync) but w2, issued after the sync, may overwrite it
    assert verdicts(s) == {**HOLDS, "dataflow": True, "race": True}


def reuse(record_stream: bool, *, reader_expects: str = "v") -> Schedule:
    """x is allocated on stream a and written there; stream b reads it (after
    an event); x is freed and its block handed to y, which a's next kernel
    writes.  Only record_stream(x, b) before the free keeps b's read of x
    before y's writer."""
    mark = '{"op": "record_stream", "buffer": "x", "target": "b"},' if record_stream else ""
    return one_rank(f'''
        {{"op": "alloc", "buffer": "x", "target": "a"}},
        {{"op": "compute", "stream": "a", "name": "fill", "writes": {{"x": "v"}}}},
        {{"op": "record", "stream": "a", "event": "e"}},
        {{"op": "wait", "stream": "b", "event": "e"}},
        {{"op": "compute", "stream": "b", "name": "use", "reads": {{"x": "{reader_expects}"}}}},
        {mark}
        {{"op": "free", "buffer": "x"}},
        {{"op": "alloc", "buffer": "y", "target": "a", "reuses": "x"}},
        {{"op": "compute", "stream": "a", "name": "overwrite", "writes": {{"y": "w"}}}}''',
        buffers='{"x": {"i": 2}, "y": {"i": 2}}', name="reuse")


def test_a_reused_block_races_with_work_on_other_streams() -> None:
    res = explore(reuse(False))
    assert res.violated == {**HOLDS, "dataflow": True, "race": True}
    assert "overwrite" in res.witnesses["race"]


def test_record_stream_orders_the_reuse_after_the_marked_stream() -> None:
    assert verdicts(reuse(True)) == HOLDS


def test_reuse_on_the_allocation_stream_is_ordered_by_the_stream() -> None:
    # a reader of x on x's own allocation stream runs before y's writer there
    s = one_rank('''{"op": "alloc", "buffer": "x", "target": "a"},
                    {"op": "compute", "stream": "a", "name": "fill", "writes": {"x": "v"}},
                    {"op": "compute", "stream": "a", "name": "use", "reads": {"x": "v"}},
                    {"op": "free", "buffer": "x"},
                    {"op": "alloc", "buffer": "y", "target": "a", "reuses": "x"},
                    {"op": "compute", "stream": "a", "name": "overwrite", "writes": {"y": "w"}},
                    {"op": "compute", "stream": "a", "name": "next", "reads": {"y": "w"}}''',
                 buffers='{"x": {"i": 2}, "y": {"i": 2}}')
    assert verdicts(s) == HOLDS


def test_a_reused_buffer_holds_the_blocks_old_contents() -> None:
    # memory is per block: y, reusing x's block, holds what x's last writer left there
    def ops(want: str) -> str:
        return f'''{{"op": "alloc", "buffer": "x", "target": "a"}},
        {{"op": "compute", "stream": "a", "name": "fill", "writes": {{"x": "v"}}}},
        {{"op": "free", "buffer": "x"}},
        {{"op": "alloc", "buffer": "y", "target": "a", "reuses": "x"}},
        {{"op": "compute", "stream": "a", "name": "peek", "reads": {{"y": "{want}"}}}}'''

    buffers = '{"x": {"i": 2}, "y": {"i": 2}}'
    assert verdicts(one_rank(ops("v"), buffers=buffers)) == HOLDS
    s = one_rank(ops("fresh"), buffers=buffers)
    res = explore(s)
    assert res.violated == {**HOLDS, "dataflow": True}
    assert "finds v" in res.witnesses["dataflow"]
    # a read observation names the block (the first buffer that owned it), or a buffer holding it
    for region in ("x", "y"):
        cex = Counterexample(property="dataflow", sentence="", culprits=(4,),
                             observation=Observation("read", a=4, region=region, expected="fresh", seen=("v",)),
                             run=Run((0, 2, 4, 6, 8), (1, 3, 5, 7, 9)))
        assert replay(s, cex) == (True, ""), region


def test_record_stream_waits_for_work_issued_on_the_stream_up_to_the_free() -> None:
    # the marked stream's work issued after record_stream but before the free counts too
    s = one_rank('''{"op": "alloc", "buffer": "x", "target": "a"},
                    {"op": "record_stream", "buffer": "x", "target": "b"},
                    {"op": "compute", "stream": "b", "name": "use", "reads": {"x": null}},
                    {"op": "free", "buffer": "x"},
                    {"op": "alloc", "buffer": "y", "target": "a", "reuses": "x"},
                    {"op": "compute", "stream": "a", "name": "overwrite", "writes": {"y": "w"}}''',
                 buffers='{"x": {"i": 2}, "y": {"i": 2}}')
    assert verdicts(s) == HOLDS


def host_comm_vs_nccl(host: bool) -> Schedule:
    """rank 0: an NCCL send, then a recv (on the host: gloo; or on a device
    stream: NCCL, the same communicator); rank 1: a host send, then its recv."""
    where = '"host"' if host else '"s2"'
    return v2(f'''{{"syncproof": 2, "name": "host-comm", "buffers": {{}},
      "ranks": {{"0": [{{"op": "send", "stream": "s", "to": 1}},
                      {{"op": "recv", "stream": {where}, "from": 1}}],
                "1": [{{"op": "send", "stream": "host", "to": 0}},
                      {{"op": "recv", "stream": "s", "from": 0}}]}}}}''')


def test_host_comm_ops_are_in_no_nccl_queue() -> None:
    # NCCL serializes one communicator's ops on a rank: rank 0's recv waits for
    # its send, which (capacity 0) waits for rank 1's recv, issued only after
    # rank 1's host send ended, which waits for rank 0's recv
    assert explore(host_comm_vs_nccl(False)).violated["deadlock"] is True
    # a host (gloo) recv is in no communicator queue: no cycle
    assert verdicts(host_comm_vs_nccl(True)) == HOLDS


def test_host_comm_ops_are_in_no_progress_queue() -> None:
    # serial progress orders NCCL ops of different communicators in issue
    # order; a host collective between them takes no part
    s = v2('''{"syncproof": 2, "name": "host-progress", "groups": {"g": [0, 1]}, "buffers": {},
      "ranks": {"0": [{"op": "send", "stream": "s", "to": 1},
                      {"op": "all_reduce", "stream": "host", "group": "g"}],
                "1": [{"op": "all_reduce", "stream": "host", "group": "g"},
                      {"op": "recv", "stream": "s", "from": 0}]}}''')
    assert verdicts(s) == HOLDS
    s2 = dataclasses.replace(s, ops=tuple(dataclasses.replace(op, stream="c") if op.kind.is_collective else op
                                          for op in s.ops))
    assert explore(s2).violated["deadlock"] is True


def test_phase_an_op_without_seqs_belongs_to_every_sequence() -> None:
    s = one_rank('''{"op": "compute", "stream": "a", "name": "sampler", "writes": {"tok": "t0"}, "phase": "decode",
                     "step": 0, "seqs": [0], "sample": true},
                    {"op": "compute", "stream": "b", "name": "embed", "phase": "decode", "step": 1}''',
                 buffers='{"tok": []}')
    res = explore(s)
    assert res.violated == {**HOLDS, "phase": True}
    assert "embed" in res.witnesses["phase"]
    # and a batch-wide op of step 0 precedes the step-1 ops of every sequence on its rank
    s = one_rank('''{"op": "compute", "stream": "a", "name": "embed", "phase": "decode", "step": 0},
                    {"op": "compute", "stream": "b", "name": "attn", "phase": "decode", "step": 1, "seqs": [1]}''',
                 buffers='{}')
    assert explore(s).violated["phase"] is True
    # the metadata rule too: a batch-wide decode op shares its step with every sequence
    s = one_rank('''{"op": "compute", "stream": "a", "name": "p", "phase": "decode", "step": 0, "tokens": "0:1"},
                    {"op": "compute", "stream": "a", "name": "q", "phase": "decode", "step": 0, "seqs": [3],
                     "tokens": "1:2"}''', buffers='{}')
    res = explore(s)
    assert res.violated["phase"] is True and "different tokens" in res.witnesses["phase"]


@pytest.mark.parametrize(("op", "early_ok"), [
    ('{"op": "sync", "target": "zz"}', True),
    ('{"op": "alloc", "buffer": "x", "target": "b"}', True),
    ('{"op": "wait_signal", "stream": "b", "from": 1, "signal": "sig"}', True),
    ('{"op": "broadcast", "stream": "b", "group": "g", "root": 1}', True),   # non-root member: only waits
    ('{"op": "broadcast", "stream": "b", "group": "g", "root": 0}', False),  # the root does work
    ('{"op": "compute", "stream": "b"}', False),
])
def test_phase_ops_that_only_wait_may_be_posted_early(op: str, early_ok: bool) -> None:
    one = op.replace('"stream": "b"', '"stream": "b", "phase": "decode", "step": 1').replace(
        '"op": "sync"', '"op": "sync", "phase": "decode", "step": 1').replace(
        '"op": "alloc"', '"op": "alloc", "phase": "decode", "step": 1')
    peer = []
    if "broadcast" in op:
        peer.append(op)  # rank 1's member has no phase
    if "wait_signal" in op:
        peer.append('{"op": "put", "stream": "b", "to": 0, "signal": "sig"}')
    s = v2(f'''{{"syncproof": 2, "name": "early", "groups": {{"g": [0, 1]}}, "buffers": {{"x": []}},
      "ranks": {{"0": [{{"op": "compute", "stream": "a", "name": "sampler", "phase": "decode", "step": 0,
                        "sample": true}}, {one}],
                "1": [{", ".join(peer)}]}}}}''')
    res = explore(s)
    assert res.violated["phase"] is (not early_ok), res.witnesses


def test_host_work_and_syncs_treat_a_group_call_as_one_unit() -> None:
    # the host issues a whole group call after its previous host work
    # returned: every part, not just the first, starts after it
    s = v2('''{"syncproof": 2, "name": "host-then-group-call", "buffers": {"x": []},
      "ranks": {"0": [{"op": "compute", "stream": "host", "name": "fill", "writes": {"x": "h"}},
                      {"op": "recv", "stream": "s", "from": 1, "batch": "b"},
                      {"op": "send", "stream": "s", "to": 1, "batch": "b", "reads": {"x": "h"}}],
                "1": [{"op": "send", "stream": "s", "to": 0}, {"op": "recv", "stream": "s", "from": 0}]}}''')
    assert verdicts(s) == HOLDS
    # stream.synchronize() drains the stream: every part of its last group call
    s = v2('''{"syncproof": 2, "name": "sync-after-group-call", "buffers": {"x": []},
      "ranks": {"0": [{"op": "recv", "stream": "s", "from": 1, "batch": "b", "writes": {"x": "v"}},
                      {"op": "send", "stream": "s", "to": 1, "batch": "b"},
                      {"op": "sync", "target": "s"},
                      {"op": "compute", "stream": "host", "name": "item", "reads": {"x": "v"}}],
                "1": [{"op": "send", "stream": "s", "to": 0}, {"op": "recv", "stream": "s", "from": 0}]}}''')
    assert verdicts(s) == HOLDS
    model = build_model(s)
    ix = model.enabling(DEADLOCK).index()
    n = model.n
    assert {n + 0, n + 1} <= set(ix.preds(n + 2))  # the sync's end waits for both parts' ends


def test_decode_ops_without_a_step_are_in_no_step() -> None:
    # docs/format.md: "decode without step belong to no group": two of them
    # with different tokens do not split a step
    s = one_rank('''{"op": "compute", "stream": "a", "name": "p", "phase": "decode", "tokens": "0:1"},
                    {"op": "compute", "stream": "a", "name": "q", "phase": "decode", "tokens": "1:2"}''', buffers="{}")
    assert verdicts(s) == HOLDS


def test_broadcast_root_without_read_values_carries_its_write_values() -> None:
    # v2 contract: members are compared with the root's write values when the
    # root declares no read values (no reads, or a read with value null)
    s = v2('''{"syncproof": 2, "name": "broadcast-root-none-read", "groups": {"all": [0, 1]}, "buffers": {"x": []},
      "ranks": {"0": [{"op": "broadcast", "stream": "s0", "group": "all", "root": 1, "writes": {"x": "a"}}],
                "1": [{"op": "broadcast", "stream": "s0", "group": "all", "root": 1, "reads": {"x": null},
                       "writes": {"x": "b"}}]}}''')
    res = explore(s)
    assert res.violated == {**HOLDS, "dataflow": True}
    assert "carried b" in res.witnesses["dataflow"]
