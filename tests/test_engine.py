"""Engine verdicts on focused schedules, and mutations that must break proofs."""

from __future__ import annotations

import pytest

from syncproof import Report, ScheduleBuilder, Verdict
from syncproof.engine import check_schedule as _check
from syncproof.ir import Schedule

ENGINE = {"name": "hybrid"}


@pytest.fixture(autouse=True, params=["hybrid", "z3", "z3-full"])
def engine(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both engines, and on the z3 engine's whole-formula encoding (kept to compare,
    and still the one the hybrid's leftover reads go to); they must agree."""
    ENGINE["name"] = request.param
    return str(request.param)


def check_schedule(s: Schedule, **kw: object) -> Report:
    if ENGINE["name"] == "z3-full":
        return _check(s, engine="z3", z3_encoding="full", **kw)  # type: ignore[arg-type]
    return _check(s, engine=ENGINE["name"], **kw)  # type: ignore[arg-type]


def verdicts(s: Schedule, **kw: object) -> dict[str, str]:
    rep = check_schedule(s, **kw)  # type: ignore[arg-type]
    for r in rep.results:
        if r.counterexample is not None:
            assert r.counterexample.replayed, r.counterexample.replay_note
    return {r.property: r.verdict.value for r in rep.results}


def tp(wait_before_consumer: bool = True, wait_before_reduce: bool = True) -> Schedule:
    b = ScheduleBuilder("tp")
    b.group("tp", [0, 1]).buffer("part", "layer").buffer("h", "layer")
    for r in b.ranks(0, 1):
        r.compute("rowmm", writes={"part[layer=0]": "partial"}, layer=0)
        if wait_before_reduce:
            r.record("p", stream="compute").wait("p", stream="comm")
        r.all_reduce("tp", stream="comm", reads={"part[layer=0]": "partial"},
                     writes={"h[layer=0]": "sum"}, layer=0)
        if wait_before_consumer:
            r.record("h", stream="comm").wait("h", stream="compute")
        r.compute("next", reads={"h[layer=0]": "sum"}, layer=1)
    return b.build()


def test_tp_with_events_proves_everything() -> None:
    assert set(verdicts(tp()).values()) == {"proved"}


def test_removing_consumer_wait_breaks_dataflow_and_race() -> None:
    v = verdicts(tp(wait_before_consumer=False))
    assert v["dataflow"] == "violated" and v["race"] == "violated"
    assert v["matching"] == v["deadlock"] == v["phase"] == "proved"


def test_removing_producer_wait_breaks_dataflow() -> None:
    rep = check_schedule(tp(wait_before_reduce=False))
    df = rep.result("dataflow")
    assert df.verdict is Verdict.VIOLATED
    cex = df.counterexample
    assert cex is not None and cex.replayed
    assert "all_reduce" in rep_label(rep, cex.observation.a)
    assert cex.observation.expected == "partial"


def rep_label(rep: object, op: int | None) -> str:
    s = tp(wait_before_reduce=False)
    assert op is not None
    return s.label(op)


def cross(first_send: bool, p2p: str = "rendezvous") -> Schedule:
    b = ScheduleBuilder("cross", p2p=p2p)
    b.buffer("a").buffer("b")
    for me, peer in ((0, 1), (1, 0)):
        r = b.rank(me)
        if first_send:
            r.send(peer, reads={"a": "mine"})
            r.recv(peer, writes={"b": "theirs"})
        else:
            r.recv(peer, writes={"b": "theirs"})
            r.send(peer, reads={"a": "mine"})
    b.init("a", "mine")
    return b.build()


def test_recv_before_send_on_both_ranks_deadlocks_with_a_cycle() -> None:
    rep = check_schedule(cross(first_send=False))
    d = rep.result("deadlock")
    assert d.verdict is Verdict.VIOLATED
    assert d.counterexample is not None and len(d.counterexample.cycle) == 4
    # every other property is not claimed proved on a schedule that cannot finish
    assert rep.result("dataflow").verdict is Verdict.UNKNOWN


def test_send_first_with_rendezvous_still_deadlocks_but_eager_does_not() -> None:
    # rendezvous send blocks until the peer's recv starts: both sides block in send
    assert verdicts(cross(first_send=True))["deadlock"] == "violated"
    assert verdicts(cross(first_send=True, p2p="eager"))["deadlock"] == "proved"


def test_collectives_of_one_group_on_two_streams_run_in_issue_order() -> None:
    """NCCL runs one communicator's ops in issue order whatever the stream
    (v2): two collectives of one group on two streams, issued in the same
    order on every rank, cannot hang; issued in opposite orders they can."""
    b = ScheduleBuilder("two-streams")
    b.group("tp", [0, 1]).buffer("x")
    for r in b.ranks(0, 1):
        r.all_reduce("tp", stream="comm")
        r.all_gather("tp", stream="comm2")
    assert verdicts(b.build())["deadlock"] == "proved"
    b2 = ScheduleBuilder("two-groups-crossed")
    b2.group("g1", [0, 1]).group("g2", [0, 1]).buffer("x")
    b2.rank(0).all_reduce("g1", stream="comm").all_reduce("g2", stream="comm2")
    b2.rank(1).all_reduce("g2", stream="comm2").all_reduce("g1", stream="comm")
    assert verdicts(b2.build())["deadlock"] == "violated"
    b3 = ScheduleBuilder("two-groups-crossed-concurrent", progress="concurrent")
    b3.group("g1", [0, 1]).group("g2", [0, 1]).buffer("x")
    b3.rank(0).all_reduce("g1", stream="comm").all_reduce("g2", stream="comm2")
    b3.rank(1).all_reduce("g2", stream="comm2").all_reduce("g1", stream="comm")
    assert verdicts(b3.build())["deadlock"] == "proved"


def test_matching_names_the_rank_that_skipped_not_the_ones_waiting() -> None:
    b = ScheduleBuilder("skip")
    b.group("tp", [0, 1, 2]).buffer("x")
    for r in b.ranks(0, 1, 2):
        r.all_gather("tp")
        if r.rank != 2:
            r.all_reduce("tp")
        r.broadcast("tp", root=0)
    rep = check_schedule(b.build())
    m = rep.result("matching")
    assert m.verdict is Verdict.VIOLATED and m.counterexample is not None
    assert m.counterexample.sentence.startswith("rank 2 skips all_reduce")
    assert "ranks 0, 1 wait for rank 2" in m.counterexample.sentence
    assert m.counterexample.run is not None and not m.counterexample.run.complete


def test_missing_recv_blames_the_receiver() -> None:
    b = ScheduleBuilder("p2p")
    b.buffer("a")
    b.rank(0).send(1).send(1)
    b.rank(1).recv(0)
    rep = check_schedule(b.build())
    cex = rep.result("matching").counterexample
    assert cex is not None and cex.sentence.startswith("rank 1 never posts recv #1 from rank 0")


def test_init_value_satisfies_read_until_overwritten() -> None:
    b = ScheduleBuilder("init")
    b.buffer("w", "layer")
    b.init("w", "weights")
    b.rank(0).compute("use", reads={"w[layer=0:2]": "weights"}, stream="s1")
    b.rank(0).compute("clobber", writes={"w[layer=1]": "junk"}, stream="s2")
    v = verdicts(b.build())
    assert v["dataflow"] == "violated" and v["race"] == "violated"
    b2 = ScheduleBuilder("init-ok")
    b2.buffer("w", "layer")
    b2.init("w", "weights")
    b2.rank(0).compute("use", reads={"w[layer=0:2]": "weights"}).compute("clobber", writes={"w[layer=1]": "junk"})
    assert set(verdicts(b2.build()).values()) == {"proved"}


def test_read_split_across_two_writers_is_checked_per_cell() -> None:
    """SP prefill: rank 1's attention reads tokens 0:8; 4:8 are local, 0:4 arrive by recv."""
    def build(sync: bool) -> Schedule:
        b = ScheduleBuilder("sp")
        b.buffer("kv", token=8)
        r0, r1 = b.ranks(0, 1)
        r0.compute("kv", writes={"kv[token=0:4]": "kv"}, phase="prefill", sp="0/2")
        r0.send(1, reads={"kv[token=0:4]": "kv"}, stream="compute")
        r1.compute("kv", writes={"kv[token=4:8]": "kv"}, phase="prefill", sp="1/2")
        r1.recv(0, writes={"kv[token=0:4]": "kv"}, stream="comm")
        if sync:
            r1.record("got", stream="comm").wait("got", stream="compute")
        r1.compute("attn", reads={"kv[token=0:8]": "kv"}, phase="prefill", sp="1/2")
        return b.build()
    rep = check_schedule(build(False))
    cex = rep.result("dataflow").counterexample
    assert cex is not None and cex.observation.region == "kv[token=0:4]"
    assert verdicts(build(True))["dataflow"] == "proved"


def decode(sync: bool, sp_in_decode: bool = False) -> Schedule:
    b = ScheduleBuilder("decode")
    b.group("tp", [0, 1]).buffer("kv", token=8).buffer("tok", "step")
    b.init("kv[token=0:4]", "kv")
    for r in b.ranks(0, 1):
        for t in (0, 1):
            pos = 4 + t
            extra = {"sp": f"{r.rank}/2"} if sp_in_decode and t == 1 else {}
            r.compute("append", stream="kv" if not sync else "compute",
                      writes={f"kv[token={pos}]": "kv"}, phase="decode", step=t, seqs=[0], **extra)
            r.compute("attn", reads={f"kv[token=0:{pos + 1}]": "kv"}, phase="decode", step=t, seqs=[0])
            r.all_reduce("tp", stream="compute", phase="decode", step=t, seqs=[0])
            r.compute("sample", writes={f"tok[step={t}]": "tok"}, phase="decode", step=t, seqs=[0],
                      sample=True)
    return b.build()


def test_decode_append_on_a_side_stream_breaks_dataflow_and_phase() -> None:
    v = verdicts(decode(sync=False))
    assert v["dataflow"] == "violated" and v["phase"] == "violated"
    assert set(verdicts(decode(sync=True)).values()) == {"proved"}


def test_sp_in_decode_is_a_phase_violation() -> None:
    rep = check_schedule(decode(sync=True, sp_in_decode=True))
    ph = rep.result("phase")
    assert ph.verdict is Verdict.VIOLATED and ph.counterexample is not None
    assert "only legal in prefill" in ph.counterexample.sentence


def test_wait_issued_before_its_record_is_a_noop_and_warned() -> None:
    b = ScheduleBuilder("early-wait")
    b.buffer("x")
    r = b.rank(0)
    r.wait("e", stream="s2").compute("use", reads={"x": "v"}, stream="s2")
    r.compute("make", writes={"x": "v"}, stream="s1").record("e", stream="s1")
    rep = check_schedule(b.build())
    assert rep.warnings and "does nothing" in rep.warnings[0]
    assert rep.result("dataflow").verdict is Verdict.VIOLATED


def test_solver_limit_gives_unknown_never_proved() -> None:
    """What needs the solver is unknown under a limit it hits.  The z3 engine's encoding proves
    deadlock freedom without it (a topological order checked against every edge is an execution)
    and ``phase`` has no obligation in this schedule; the old whole-formula encoding needs the solver
    for the schedule itself, so every property is unknown there."""
    rep = _check(tp(), rlimit=1, engine="z3")
    got = {r.property: r for r in rep.results}
    for p in ("dataflow", "race"):
        assert got[p].verdict is Verdict.UNKNOWN and "gave up" in got[p].reason
    assert got["deadlock"].verdict is Verdict.PROVED and got["phase"].verdict is Verdict.PROVED
    assert got["phase"].obligations == 0
    assert rep.exit_code == 3
    whole = _check(tp(), rlimit=1, engine="z3", z3_encoding="full")
    assert {r.verdict for r in whole.results if r.property != "matching"} == {Verdict.UNKNOWN}
    assert all("gave up" in r.reason for r in whole.results if r.property != "matching")


def two_writers(n_good: int = 2) -> Schedule:
    """A read whose expected value has several writers: a real choice."""
    b = ScheduleBuilder("writers")
    b.buffer("x")
    r = b.rank(0)
    for i in range(n_good):
        r.compute(f"w{i}", writes={"x": "v"}, stream=f"s{i}")
    r.compute("bad", writes={"x": "junk"}, stream="r")  # before the read on its stream: no tearing
    r.record("e", stream="s0").wait("e", stream="r")
    r.compute("read", reads={"x": "v"}, stream="r")
    return b.build()


def test_several_writers_of_the_expected_value_decided_on_the_graph() -> None:
    """The hybrid searches the writers' options on the graph; z3 must agree."""
    for n in (2, 3):
        s = two_writers(n)
        hyb = _check(s, engine="hybrid", properties=["dataflow"]).result("dataflow")
        ref = _check(s, engine="z3", properties=["dataflow"]).result("dataflow")
        assert hyb.verdict is ref.verdict is Verdict.VIOLATED
        assert hyb.counterexample is not None and hyb.counterexample.replayed


def test_too_many_choices_go_to_z3_and_limits_give_unknown() -> None:
    s = two_writers(10)  # 2**10 combinations: more than the graph search takes on
    assert _check(s, engine="hybrid", properties=["dataflow"]).result("dataflow").verdict is Verdict.VIOLATED
    limited = _check(s, engine="hybrid", properties=["dataflow"], rlimit=1).result("dataflow")
    assert limited.verdict is Verdict.UNKNOWN and "gave up" in limited.reason


def test_max_cex_lists_further_violations() -> None:
    rep = check_schedule(tp(wait_before_consumer=False), max_cex=5)
    assert len(rep.result("dataflow").more) >= 1


@pytest.mark.parametrize("label", ["r0#2", "r1/comm: all_reduce#0(tp) L0", "r0/compute: next"])
def test_labels_parse_back(label: str) -> None:
    s = tp()
    op = s.find(label)
    assert s.find(s.label(op)) == op


def test_omitted_axis_with_an_extent_means_the_whole_declared_range() -> None:
    """Regression: reading w[stage=0] when w also has an mb axis of extent 2
    must be covered by writes of mb=0 and mb=1 (no phantom cell outside 0:2)."""
    b = ScheduleBuilder("extent")
    b.buffer("w", stage=2, mb=2)
    r = b.rank(0)
    r.compute("w0", writes={"w[stage=0, mb=0]": "v"}).compute("w1", writes={"w[stage=0, mb=1]": "v"})
    r.compute("read", reads={"w[stage=0]": "v"})
    assert verdicts(b.build())["dataflow"] == "proved"
