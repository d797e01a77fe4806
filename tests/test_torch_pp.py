"""The torch.distributed.pipelining importer (``syncproof import torch-pp``).

The fixtures in ``tests/fixtures/torch_pp`` were generated from torch 2.13's
own schedule classes by ``scripts/gen_torch_pp_fixtures.py``; the tests that
read them run without torch.  Tests that need torch use ``importorskip``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from syncproof import ScheduleError, UsageError, check_schedule
from syncproof.cli import main
from syncproof.importers import torch_pp as tp
from syncproof.importers.torch_pp import Action, Order, parse_action
from syncproof.result import Report, Verdict

FIX = Path(__file__).parent / "fixtures" / "torch_pp"
MANIFEST: dict[str, Any] = json.loads((FIX / "manifest.json").read_text(encoding="utf-8"))
ENTRIES: list[dict[str, Any]] = MANIFEST["files"]
LOWERED = [e for e in ENTRIES if e["kind"] == "lowered"]
CLASSES = ("GPipe", "1F1B", "Interleaved1F1B", "LoopedBFS", "InterleavedZeroBubble", "ZBVZeroBubble",
           "DualPipeV")


def order_of(name: str) -> Order:
    return tp.read_order(FIX / f"{name}.csv").order


def check(imp: tp.Imported, **kw: Any) -> Report:
    return check_schedule(imp.schedule, max_cex=1, **kw)


def bad(rep: Report) -> dict[str, str]:
    """property -> sentence of every violated property."""
    return {r.property: r.counterexample.sentence for r in rep.results
            if r.verdict is Verdict.VIOLATED and r.counterexample is not None}


def all_proved(rep: Report) -> bool:
    return all(r.verdict is Verdict.PROVED for r in rep.results)


def verdicts(rep: Report) -> dict[str, str]:
    return {r.property: r.verdict.value for r in rep.results}


VALUE = re.compile(r"(?:act|grad)\(\d+,\d+\)")


def fifo_mixups(imp: tp.Imported) -> list[tuple[str, str, str]]:
    """A reference pairing, independent of the importer and the core: the
    n-th send from a to b on a communicator meets the n-th recv b posts
    from a on it (NCCL's FIFO).  (recv label, value it declares, value its
    partner sends) for every recv that gets another send's tensor."""
    s = imp.schedule
    sends: dict[tuple[str | None, int, int], list[str | None]] = {}
    recvs: dict[tuple[str | None, int, int], list[tuple[str, str | None]]] = {}
    for op in s.ops:
        if op.kind.is_p2p:
            assert op.peer is not None
            if op.kind.value == "send":
                sends.setdefault((op.communicator, op.rank, op.peer), []).append(op.reads[0].value)
            else:
                recvs.setdefault((op.communicator, op.peer, op.rank), []).append((op.name, op.writes[0].value))
    out = []
    for key, rr in recvs.items():
        for sent, (name, want) in zip(sends.get(key, []), rr, strict=False):
            if sent != want:
                out.append((name, str(want), str(sent)))
    return out


# ------------------------------------------------------------- mutations
def _find(row: list[Action | None], text: str) -> int:
    for i, a in enumerate(row):
        if a is not None and str(a) == text:
            return i
    raise KeyError(text)


def _copy(order: Order) -> Order:
    return {r: list(acts) for r, acts in order.items()}


def swap_recvs(order: Order, rank: int, first: str, second: str) -> Order:
    """Post recv ``second`` just before recv ``first`` (same peer)."""
    o = _copy(order)
    row = o[rank]
    moved = row.pop(_find(row, second))
    row.insert(_find(row, first), moved)
    return o


def drop(order: Order, rank: int, text: str) -> Order:
    o = _copy(order)
    o[rank].pop(_find(o[rank], text))
    return o


def duplicate(order: Order, rank: int, text: str) -> Order:
    o = _copy(order)
    i = _find(o[rank], text)
    o[rank].insert(i + 1, o[rank][i])
    return o


def move_after(order: Order, rank: int, text: str, anchor: str) -> Order:
    o = _copy(order)
    moved = o[rank].pop(_find(o[rank], text))
    o[rank].insert(_find(o[rank], anchor) + 1, moved)
    return o


def exchange_mbs(order: Order, rank: int, stage: int, m1: int, m2: int) -> Order:
    """Rank ``rank`` runs microbatch m2 wherever its list says m1 for
    ``stage`` (and the other way round): every action of that stage."""
    def swap(a: Action | None) -> Action | None:
        if a is None:
            return None
        if a.subs:
            return replace(a, subs=tuple(x for x in (swap(s) for s in a.subs) if x is not None))
        if a.stage == stage and a.mb in (m1, m2):
            return replace(a, mb=m2 if a.mb == m1 else m1)
        return a

    o = _copy(order)
    o[rank] = [swap(a) for a in o[rank]]
    return o


Mutation = Callable[[Order], Order]

# (fixture, mutation kind, mutation, expected property, words the counterexample must contain)
MUTATIONS: list[tuple[str, str, Mutation, str, tuple[str, ...]]] = [
    ("gpipe-p2-m4", "swap-recv-order", lambda o: swap_recvs(o, 1, "1RECV_F0", "1RECV_F1"), "dataflow",
     ("1RECV_F", "act(0,0)", "act(0,1)")),
    ("interleaved1f1b-p4-m8", "swap-recv-order", lambda o: swap_recvs(o, 1, "1RECV_F0", "1RECV_F1"), "dataflow",
     ("1RECV_F", "act(0,0)", "act(0,1)")),
    ("zbvzerobubble-p2-m4", "swap-recv-order", lambda o: swap_recvs(o, 1, "1RECV_F0", "1RECV_F1"), "dataflow",
     ("1RECV_F", "act(0,0)", "act(0,1)")),
    ("dualpipev-p2-m4", "swap-recv-order", lambda o: swap_recvs(o, 1, "1RECV_F0", "1RECV_F1"), "dataflow",
     ("1RECV_F", "act(0,0)", "act(0,1)")),
    ("gpipe-p2-m4", "missing-send", lambda o: drop(o, 0, "0SEND_F2"), "matching",
     ("rank 0 never posts send #3 to rank 1", "r1/comm0: recv(<-0)#3 1RECV_F3 step 7")),
    ("interleaved1f1b-p4-m8", "missing-send", lambda o: drop(o, 2, "2SEND_F3"), "matching",
     ("rank 2 never posts send", "to rank 3")),
    ("zbvzerobubble-p2-m4", "missing-send", lambda o: drop(o, 1, "2SEND_F1"), "matching",
     ("rank 1 never posts send", "0RECV_B3")),
    ("dualpipev-p2-m4", "missing-send", lambda o: drop(o, 0, "3SEND_B1"), "matching",
     ("rank 0 never posts send", "2RECV_B3")),
    ("gpipe-p2-m4", "duplicated-recv", lambda o: duplicate(o, 1, "1RECV_F2"), "matching",
     ("rank 0 never posts send #4 to rank 1", "has no partner")),
    ("interleaved1f1b-p4-m8", "duplicated-recv", lambda o: duplicate(o, 3, "3RECV_F3"), "matching",
     ("rank 2 never posts send",)),
    ("zbvzerobubble-p2-m4", "duplicated-recv", lambda o: duplicate(o, 0, "0RECV_B1"), "matching",
     ("rank 1 never posts send",)),
    ("dualpipev-p2-m4", "duplicated-recv", lambda o: duplicate(o, 1, "2RECV_B1"), "matching",
     ("rank 0 never posts send",)),
    ("gpipe-p2-m4", "recv-after-consumer", lambda o: move_after(o, 1, "1RECV_F2", "1F2"), "dataflow",
     ("r1/compute: 1F2 step 5 read act[stage=0, mb=2] before r1/comm0: recv(<-0)#2 1RECV_F2 step 6",)),
    ("interleaved1f1b-p4-m8", "recv-after-consumer", lambda o: move_after(o, 1, "1RECV_F2", "1F2"), "dataflow",
     ("1F2", "before r1/comm0: recv(<-0)#2 1RECV_F2")),
    ("zbvzerobubble-p2-m4", "recv-after-consumer", lambda o: move_after(o, 0, "3RECV_F2", "3F2"), "dataflow",
     ("3F2", "before r0/comm1: recv(<-1)#3 3RECV_F2")),
    ("dualpipev-p2-m4", "recv-after-consumer",
     lambda o: move_after(o, 1, "2RECV_B1", "(1F3;2B1)OVERLAP_F_B"), "dataflow",
     ("2B1 step 18 in (1F3;2B1)OVERLAP_F_B read grad[stage=3, mb=1] before", "2RECV_B1")),
    ("gpipe-p2-m4", "exchanged-microbatches", lambda o: exchange_mbs(o, 0, 0, 1, 2), "dataflow",
     ("RECV_",)),
    ("1f1b-p4-m8", "exchanged-microbatches", lambda o: exchange_mbs(o, 1, 1, 3, 4), "dataflow",
     ("RECV_",)),
    ("interleaved1f1b-p4-m8", "exchanged-microbatches", lambda o: exchange_mbs(o, 0, 4, 5, 6), "dataflow",
     ("RECV_",)),
    ("zbvzerobubble-p2-m4", "exchanged-microbatches", lambda o: exchange_mbs(o, 1, 2, 0, 1), "dataflow",
     ("RECV_",)),
    ("dualpipev-p2-m4", "exchanged-microbatches", lambda o: exchange_mbs(o, 1, 1, 2, 3), "dataflow",
     ("RECV_",)),
]

# torch 2.13's verdicts on the same mutations: (validate, simulate); None accepts.
# _validate_schedule looks at compute actions only, so it accepts every one of
# them; _simulate_comms_compute matches a recv to the send *of the same name*,
# not in posting order, so it misses FIFO mix-ups and duplicated recvs.
STALL = "Schedule is not progressing"
TORCH_VERDICTS: dict[tuple[str, str], tuple[str | None, str | None]] = {
    ("gpipe-p2-m4", "swap-recv-order"): (None, None),
    # torch finds a stall here, then crashes while printing it (_format_pipeline_order)
    ("interleaved1f1b-p4-m8", "swap-recv-order"): (None, "its report crashed: IndexError"),
    ("zbvzerobubble-p2-m4", "swap-recv-order"): (None, None),
    ("dualpipev-p2-m4", "swap-recv-order"): (None, None),
    ("gpipe-p2-m4", "missing-send"): (None, STALL),
    ("interleaved1f1b-p4-m8", "missing-send"): (None, STALL),
    ("zbvzerobubble-p2-m4", "missing-send"): (None, STALL),
    ("dualpipev-p2-m4", "missing-send"): (None, STALL),
    ("gpipe-p2-m4", "duplicated-recv"): (None, None),
    ("interleaved1f1b-p4-m8", "duplicated-recv"): (None, None),
    ("zbvzerobubble-p2-m4", "duplicated-recv"): (None, None),
    ("dualpipev-p2-m4", "duplicated-recv"): (None, None),
    ("gpipe-p2-m4", "recv-after-consumer"): (None, STALL),
    ("interleaved1f1b-p4-m8", "recv-after-consumer"): (None, STALL),
    ("zbvzerobubble-p2-m4", "recv-after-consumer"): (None, STALL),
    ("dualpipev-p2-m4", "recv-after-consumer"): (None, STALL),
    ("gpipe-p2-m4", "exchanged-microbatches"): (None, None),
    ("1f1b-p4-m8", "exchanged-microbatches"): (None, STALL),
    ("interleaved1f1b-p4-m8", "exchanged-microbatches"): (None, STALL),
    ("zbvzerobubble-p2-m4", "exchanged-microbatches"): (None, STALL),
    ("dualpipev-p2-m4", "exchanged-microbatches"): (None, STALL),
}


# ------------------------------------------------------- torch-free tests
def test_importer_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from syncproof.importers import torch_pp\n"
        "import syncproof.commands.import_torch_pp\n"
        f"imp = torch_pp.import_file({str(FIX / 'gpipe-p2-m4.csv')!r}, lower_with_torch=False)\n"
        "assert len(imp.schedule.ops) > 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("text", ["2F0", "0B3", "1I12", "0W1", "3SEND_F1", "2RECV_B0", "1SEND_B7", "4RECV_F2",
                                  "1UNSHARD", "3RESHARD", "0REDUCE_GRAD", "(0F3;3B1)OVERLAP_F_B"])
def test_action_round_trip(text: str) -> None:
    a = parse_action(text)
    assert a is not None and str(a) == text


def test_action_fields() -> None:
    assert parse_action("3SEND_B1") == Action(3, "SEND_B", 1)
    assert parse_action(" 1UNSHARD ") == Action(1, "UNSHARD", None)
    ov = parse_action("(0F7;7B3)OVERLAP_F_B")
    assert ov is not None and ov.kind == "OVERLAP_F_B"
    assert ov.leaves == (Action(0, "F", 7), Action(7, "B", 3))
    assert parse_action("") is None and parse_action("  ") is None


@pytest.mark.parametrize("text, words", [
    ("2F", "needs a microbatch"),
    ("1UNSHARD3", "takes no microbatch"),
    ("2F0x", "cannot read action"),  # torch's own parser would read this as 2F0
    ("2X0", "cannot read action"),
    ("F0", "cannot read action"),
    ("(0F1;1SEND_F0)OVERLAP_F_B", "cannot be part of OVERLAP_F_B"),
    ("(0F1;1B0)", "cannot read action"),
])
def test_action_errors(text: str, words: str) -> None:
    with pytest.raises(ScheduleError, match=words.replace("(", r"\(")):
        parse_action(text, "f.csv: rank 0, step 3")


def test_read_csv_json_forms(tmp_path: Path) -> None:
    rows = [["0F0", "0SEND_F0", "", "0RECV_B0", "0B0"], ["1RECV_F0", "1F0", "1B0", "1SEND_B0"]]
    csv_path = tmp_path / "a.csv"
    csv_path.write_text("0F0,0SEND_F0,,0RECV_B0,0B0\n1RECV_F0,1F0,1B0,1SEND_B0\n\n", encoding="utf-8")
    forms = {
        "list.json": json.dumps([[c or None for c in r] for r in rows]),
        "dict.json": json.dumps({"1": rows[1], "0": rows[0]}),
        "full.json": json.dumps({"actions": rows, "placement": "loop", "name": "tiny"}),
    }
    ref = tp.read_order(csv_path).order
    assert ref[0][2] is None and str(ref[1][3]) == "1SEND_B0" and len(ref[0]) == 5
    for fname, text in forms.items():
        p = tmp_path / fname
        p.write_text(text, encoding="utf-8")
        assert tp.read_order(p).order == ref, fname
    full = tp.read_order(tmp_path / "full.json")
    assert full.name == "tiny" and full.placement == "loop"
    imp = tp.import_file(tmp_path / "full.json")
    assert imp.schedule.name == "tiny" and all_proved(check(imp))


@pytest.mark.parametrize("text, words", [
    ("[]", "no ranks"),
    ('{"0": ["0F0"], "2": ["1F0"]}', "missing rank 1"),
    ('[["0F0", 3]]', "must be a string or null"),
    ('{"actions": [["0F0"]], "placement": "zigzag"}', "placement must be"),
    ("[[\"0F0\",", "not valid JSON"),
])
def test_read_errors(tmp_path: Path, text: str, words: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ScheduleError, match=words):
        tp.read_order(p)


def test_placements() -> None:
    assert tp.v_placement(4, 8) == {0: 0, 1: 1, 2: 2, 3: 3, 4: 3, 5: 2, 6: 1, 7: 0}
    for r in range(4):  # rank r holds stages r and 2P-1-r
        assert {s for s, rk in tp.v_placement(4, 8).items() if rk == r} == {r, 7 - r}
    assert tp.loop_placement(2, 4) == {0: 0, 1: 1, 2: 0, 3: 1}
    assert tp.infer_placement(order_of("zbvzerobubble-p4-m8")).style == "v"
    assert tp.infer_placement(order_of("interleaved1f1b-p4-m8")).style == "loop"
    assert tp.infer_placement(order_of("gpipe-p4-m4")).style == "loop"
    with pytest.raises(ScheduleError, match="placement 'loop' puts on rank"):
        tp.infer_placement(order_of("zbvzerobubble-p2-m4"), "loop", "zbv.csv")
    mixed = _copy(order_of("gpipe-p2-m2"))
    mixed[1] = [Action(0, "F", 0)] + mixed[1]
    with pytest.raises(ScheduleError, match="stage 0 appears on rank 0"):
        tp.infer_placement(mixed)


@pytest.mark.parametrize("entry", LOWERED, ids=[e["file"] for e in LOWERED])
def test_torch_schedules_prove_clean(entry: dict[str, Any]) -> None:
    """Every schedule class of torch 2.13, lowered, at 2 and 4 ranks and
    several microbatch counts: every property proved in the default p2p mode
    ("any"), no importer notes."""
    imp = tp.import_file(FIX / entry["file"], lower_with_torch=False)
    assert imp.placement.style == entry["placement"]
    assert imp.notes == ()
    rep = check(imp)
    assert all_proved(rep), bad(rep)


EVAL_DEFAULT = [e for e in LOWERED if e["ranks"] == 2]


@pytest.mark.parametrize("entry", EVAL_DEFAULT, ids=[e["file"] for e in EVAL_DEFAULT])
def test_eval_prove_clean(entry: dict[str, Any]) -> None:
    """What eval() runs (forward only: the main, inference, case)."""
    imp = tp.import_file(FIX / entry["file"], lower_with_torch=False, eval_mode=True)
    assert not any(leaf.kind in tp.BACKWARD_KINDS for acts in tp.forward_only(imp.order).values()
                   for a in acts if a is not None for leaf in a.leaves)
    rep = check(imp)
    assert all_proved(rep), bad(rep)


@pytest.mark.slow
@pytest.mark.parametrize("entry", LOWERED, ids=[e["file"] for e in LOWERED])
def test_every_mode_proves_clean(entry: dict[str, Any]) -> None:
    """Both stream encodings, every p2p mode, both progress modes, training and eval."""
    for comm in tp.COMM_MODES:
        for p2p in tp.P2P_MODES:
            for ev in (False, True):
                for progress in tp.PROGRESS_MODES:
                    imp = tp.import_file(FIX / entry["file"], lower_with_torch=False, comm=comm, p2p=p2p,
                                         eval_mode=ev, progress=progress)
                    rep = check(imp)
                    assert all_proved(rep), (comm, p2p, ev, progress, bad(rep))


def test_every_class_and_size_is_covered() -> None:
    seen = {(e["class"], e["ranks"]) for e in LOWERED}
    for cls in CLASSES:
        for p in (2, 4):
            assert (cls, p) in seen, (cls, p)
            mbs = {e["microbatches"] for e in LOWERED if (e["class"], e["ranks"]) == (cls, p)}
            assert len(mbs) >= 2, (cls, p, mbs)


def test_labels_read_in_torch_terms() -> None:
    imp = tp.import_file(FIX / "gpipe-p2-m4.csv", lower_with_torch=False)
    labels = set(imp.schedule.labels)
    assert "r1/comm0: recv(<-0)#3 1RECV_F3 step 7" in labels
    assert "r0/comm1: send(->1)#0 0SEND_F0 step 2" in labels
    assert "r1/compute: wait(1RECV_F3@7) 1F3 step 8" in labels
    single = tp.import_file(FIX / "gpipe-p2-m4.csv", lower_with_torch=False, comm="single")
    assert "r1/comm: recv(<-0,pp)#3 1RECV_F3 step 7" in set(single.schedule.labels)


@pytest.mark.parametrize("name", ["interleaved1f1b-p4-m8", "dualpipev-p4-m8", "zbvzerobubble-p4-m8"])
def test_v2_encoding(name: str) -> None:
    """Runtime model v2: the p2p default is "any"; every send/recv is a
    single op (torch 2.13's _batch_p2p does not coalesce an action's sends
    or recvs) on the two-rank communicator of its pair and that
    communicator's stream; no channels (tags); the recv declares what its
    action expects, whatever it will be matched with."""
    imp = tp.import_file(FIX / f"{name}.csv", lower_with_torch=False)
    s = imp.schedule
    assert s.p2p == "any" and s.progress == "any"
    p2p = [op for op in s.ops if op.kind.is_p2p]
    assert p2p
    for op in p2p:
        assert op.peer is not None
        lo, hi = sorted((op.rank, op.peer))
        assert op.comm is None and op.communicator == f"p2p:{lo}-{hi}"
        assert op.stream == f"comm{op.peer}" and op.channel == "0" and op.batch is None and op.p2p is None
    assert all(op.batch is None for op in s.ops)
    single = tp.import_file(FIX / f"{name}.csv", lower_with_torch=False, comm="single").schedule
    assert {(op.communicator, op.stream) for op in single.ops if op.kind.is_p2p} == {(tp.SINGLE_COMM, "comm")}
    for p2p_mode in tp.P2P_MODES:
        assert tp.import_file(FIX / f"{name}.csv", lower_with_torch=False, p2p=p2p_mode).schedule.p2p == p2p_mode
    with pytest.raises(UsageError, match="unknown p2p mode"):
        tp.lower(order_of(name), p2p="fast")
    with pytest.raises(UsageError, match="unknown progress mode"):
        tp.lower(order_of(name), progress="serial")


def test_recv_declares_what_it_expects() -> None:
    """The importer does not pair sends and recvs itself: a recv posted out of
    order still declares its own microbatch's activation (the core finds
    that its FIFO partner carried another one)."""
    order = swap_recvs(order_of("gpipe-p2-m4"), 1, "1RECV_F0", "1RECV_F1")
    imp = tp.lower(order)
    recvs = [op for op in imp.schedule.ops if op.kind.is_p2p and op.rank == 1 and op.peer == 0]
    assert [op.writes[0].value for op in recvs[:2]] == ["act(0,1)", "act(0,0)"]
    assert not any("matched" in n for n in imp.notes)
    assert sorted(fifo_mixups(imp)) == sorted([(recvs[0].name, "act(0,1)", "act(0,0)"),
                                               (recvs[1].name, "act(0,0)", "act(0,1)")])


@pytest.mark.parametrize("fixture, kind, mutate, prop, words", MUTATIONS,
                         ids=[f"{m[0]}-{m[1]}" for m in MUTATIONS])
def test_mutation_gives_counterexample(fixture: str, kind: str, mutate: Mutation, prop: str,
                                       words: tuple[str, ...]) -> None:
    order = mutate(order_of(fixture))
    modes = tp.P2P_MODES if "-p2-" in fixture else ("any",)  # the default; p2 lists in every mode
    for p2p in modes:
        imp = tp.lower(order, p2p=p2p, source=f"{fixture}+{kind}")
        rep = check(imp)
        found = bad(rep)
        assert prop in found, (p2p, found)
        for w in words:
            assert w in found[prop], (w, found[prop])
        res = rep.result(prop)
        assert res.counterexample is not None and res.counterexample.replayed
        if kind in ("swap-recv-order", "exchanged-microbatches"):
            # the core's value rule, at a recv the reference FIFO pairing names
            mixed = fifo_mixups(imp)
            assert mixed, "the mutation should mix up a FIFO"
            assert any(f"{name} declares '{want}'" in found[prop] and f"carried '{got}'" in found[prop]
                       for name, want, got in mixed), (found[prop], mixed)
    assert not any("matched" in n for n in imp.notes)  # the core, not the importer, pairs messages
    if kind == "duplicated-recv":
        assert any("Recv twice" in n for n in imp.notes)
    if kind == "recv-after-consumer":
        assert any("before receiving input" in n for n in imp.notes)


def test_every_mutation_kind_on_several_classes() -> None:
    assert set(TORCH_VERDICTS) == {(m[0], m[1]) for m in MUTATIONS}
    kinds: dict[str, set[str]] = {}
    for fixture, kind, *_ in MUTATIONS:
        kinds.setdefault(kind, set()).add(fixture.split("-p")[0])
    assert set(kinds) == {"swap-recv-order", "missing-send", "duplicated-recv", "recv-after-consumer",
                          "exchanged-microbatches"}
    assert all(len(v) >= 4 for v in kinds.values()), kinds


# torch's defer_pp_recv=True lowering (fixtures *-defer.csv), as syncproof sees it in the default
# modes (p2p "any", progress "any"): file -> (violated in training, violated in eval(), and the same
# two with progress "concurrent").  A FIFO mix-up (a recv that gets another send's tensor) is
# `dataflow`, found by the core's value rule; a send/send crossing that hangs once the messages no
# longer fit NCCL's buffer is `deadlock`.  Some hangs need, besides, kernels of two per-pair
# communicators of one rank that do not run side by side (NCCL does not promise they do): those
# are gone when the user asserts "concurrent" progress.
D, DF = {"deadlock"}, {"deadlock", "dataflow"}
DEFER_EXPECT: dict[str, tuple[set[str], set[str], set[str], set[str]]] = {
    "interleaved1f1b-p2-m4-defer": (D, D, D, D),
    "interleaved1f1b-p4-m8-defer": (D, D, D, set()),
    "loopedbfs-p4-m8-defer": (D, D, set(), set()),
    "interleavedzerobubble-p2-m4-defer": (DF, set(), DF, set()),
    "interleavedzerobubble-p4-m8-defer": (D, D, D, set()),
    "zbvzerobubble-p2-m4-defer": (DF, D, DF, D),
    "zbvzerobubble-p4-m8-defer": (DF, D, DF, D),
    "dualpipev-p2-m4-defer": (D, D, D, D),
    "dualpipev-p4-m8-defer": (DF, D, DF, D),
}
DEFER_PARAMS = [pytest.param(n, marks=[pytest.mark.slow] if "-p4-" in n else []) for n in sorted(DEFER_EXPECT)]
# The lowerings that computed wrong gradients on a real gloo run (issue 11, "Real-runtime confirmation").
WRONG_GRADIENTS = ("zbvzerobubble-p2-m4-defer", "interleavedzerobubble-p2-m4-defer", "dualpipev-p4-m8-defer")


def _mixup_sentence_ok(sentence: str) -> bool:
    """Two values: the one the recv declares and the other one its send carried
    (an activation where a gradient belongs, or another microbatch's)."""
    return len(set(VALUE.findall(sentence))) >= 2


@pytest.mark.parametrize("name", DEFER_PARAMS)
def test_torch_defer_pp_recv(name: str) -> None:
    """With defer_pp_recv=True, torch 2.13 moves recvs late.  In some lists
    both ranks of a pair then post a send before the recv the other one
    waits for (a hang once NCCL cannot buffer the message; in some, even in
    eval()), and in the zero-bubble and DualPipeV ones the recvs of a pair
    are no longer in the order of the sends, so a gradient recv receives an
    activation (or the other way round): `dataflow`, in the default mode,
    from the core's own rule that a message carries its send's value.
    torch's own checks accept all of these lists (see manifest.json)."""
    training, in_eval, training_c, in_eval_c = DEFER_EXPECT[name]
    imp = tp.import_file(FIX / f"{name}.csv", lower_with_torch=False)
    assert imp.schedule.p2p == "any" and imp.notes == ()
    got = bad(check(imp))
    assert set(got) == training, verdicts(check(imp))
    assert ("dataflow" in got) == bool(fifo_mixups(imp))
    if "dataflow" in got:
        assert _mixup_sentence_ok(got["dataflow"]), got["dataflow"]
    # eager: the crossing is gone (every send completes), the mix-up stays
    got_e = bad(check(tp.import_file(FIX / f"{name}.csv", lower_with_torch=False, p2p="eager")))
    assert set(got_e) == training - {"deadlock"}, got_e
    # rendezvous: message edges become data edges; where the cycle needs no progress edge it is made of
    # data edges only, so dataflow/race/phase cannot be decided
    rv = check(tp.import_file(FIX / f"{name}.csv", lower_with_torch=False, p2p="rendezvous"))
    assert ("deadlock" in bad(rv)) == ("deadlock" in training)
    if "deadlock" in training_c:
        assert rv.result("dataflow").verdict is Verdict.UNKNOWN
    ev = tp.import_file(FIX / f"{name}.csv", lower_with_torch=False, eval_mode=True)
    assert set(bad(check(ev))) == in_eval
    for ev_mode, want in ((False, training_c), (True, in_eval_c)):
        conc = tp.import_file(FIX / f"{name}.csv", lower_with_torch=False, eval_mode=ev_mode, progress="concurrent")
        assert conc.schedule.progress == "concurrent"
        assert set(bad(check(conc))) == want, (ev_mode, verdicts(check(conc)))
    if training - training_c:  # a hang that needs the progress rule says so
        cex = check(imp).result("deadlock").counterexample
        assert cex is not None and any(step.blocking == "progress" for step in cex.cycle)
        assert "host-side launch order must match" in cex.sentence
    entry = next(e for e in ENTRIES if e["file"] == f"{name}.csv")
    assert entry["torch"] == {"validate": None, "simulate": None}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if "-p4-" in n else [])
                                  for n in WRONG_GRADIENTS])
def test_defer_pp_recv_wrong_gradients_are_dataflow(name: str) -> None:
    """The recvs the core names are exactly the ones a reference FIFO pairing
    says get another send's tensor, and the core names them all."""
    imp = tp.import_file(FIX / f"{name}.csv", lower_with_torch=False)
    mixed = fifo_mixups(imp)
    assert mixed
    rep = check_schedule(imp.schedule, max_cex=len(mixed) + 4)
    res = rep.result("dataflow")
    assert res.verdict is Verdict.VIOLATED and res.counterexample is not None
    assert res.counterexample.replayed
    sentences = [res.counterexample.sentence, *res.more]
    assert len(sentences) == len(mixed), sentences
    for name_, want, got in mixed:  # each named once, with both values
        hits = [t for t in sentences if f"{name_} declares '{want}'" in t]
        assert len(hits) == 1 and f"carried '{got}'" in hits[0], (name_, sentences)


RUNTIME: dict[str, Any] = json.loads((FIX / "runtime.json").read_text(encoding="utf-8"))
_NAMED = re.compile(r"r(\d+)/\S+: recv\(<-\d+\)#\d+ (\S+ step \d+) declares '[^']*' in \S+(?: \S+)*?, but its"
                    r" matched r\d+/\S+: send\(->\d+\)#\d+ (\S+) step")


@pytest.mark.parametrize("name", sorted(RUNTIME["scenarios"]))
def test_real_runtime_confirms_the_core(name: str) -> None:
    """torch 2.13 run for real (gloo, CPU; scripts/gen_torch_pp_runtime_fixtures.py):
    the recvs that got another send's tensor, found by checksum, are exactly
    the ones the core names (rank, action, step and the send it got), and
    those runs computed wrong gradients; a lowering the core proves
    dataflow-clean computed the reference gradients."""
    sc = RUNTIME["scenarios"][name]
    order = tp.read_order(FIX / f"{name}.csv").order
    assert {str(r): [str(a) for a in acts if a is not None] for r, acts in order.items()} == sc["order"]
    imp = tp.import_file(FIX / f"{name}.csv", lower_with_torch=False)
    res = check_schedule(imp.schedule, max_cex=64).result("dataflow")
    sentences = [res.counterexample.sentence, *res.more] if res.counterexample is not None else []
    named = set()
    for t in sentences:
        m = _NAMED.search(t)
        assert m is not None, t
        named.add((int(m.group(1)), m.group(2), m.group(3)))
    measured = {(w["rank"], w["recv"], w["got"]) for w in sc["wrong_recvs"]}
    assert named == measured
    assert (res.verdict is Verdict.VIOLATED) == bool(measured)
    assert (sc["max_grad_diff"] > 1e-3) == bool(measured), sc["max_grad_diff"]


def test_interleaved_defer_deadlock_cycle() -> None:
    imp = tp.import_file(FIX / "interleaved1f1b-p2-m4-defer.csv", lower_with_torch=False, eval_mode=True)
    rep = check(imp)
    cex = rep.result("deadlock").counterexample
    assert cex is not None and cex.replayed
    assert "0SEND_F3 step 19" in cex.sentence and "1SEND_F2 step 18" in cex.sentence
    assert "waits for its recv" in cex.sentence and "buffer" in cex.sentence
    assert any(step.blocking == "message" for step in cex.cycle)


def test_compute_only_without_torch_lowering() -> None:
    with pytest.raises(ScheduleError, match="compute-only order"):
        tp.import_file(FIX / "interleaved1f1b-p2-m4.compute.csv", lower_with_torch=False)


def test_bad_comm_actions() -> None:
    zbv = order_of("zbvzerobubble-p2-m2")
    bad_local = _copy(zbv)
    bad_local[1] = [Action(1, "SEND_F", 0)] + bad_local[1]  # stages 1 and 2 share rank 1
    with pytest.raises(ScheduleError, match="both on rank 1; torch passes data between them locally"):
        tp.lower(bad_local)
    edge = _copy(order_of("gpipe-p2-m2"))
    edge[0] = [Action(0, "RECV_F", 0)] + edge[0]
    with pytest.raises(ScheduleError, match="no previous stage"):
        tp.lower(edge)
    with pytest.raises(UsageError, match="comm stream mode"):
        tp.lower(order_of("gpipe-p2-m2"), comm="two")


def test_bridge_needs_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    from syncproof.importers import torch_bridge

    real = torch_bridge.importlib.import_module

    def fake(name: str, *a: Any) -> Any:
        if name.startswith("torch"):
            raise ImportError("No module named 'torch'", name="torch")
        return real(name, *a)

    monkeypatch.setattr(torch_bridge.importlib, "import_module", fake)
    with pytest.raises(UsageError, match=r"pip install 'syncproof\[torch\]'"):
        torch_bridge.build_schedule("GPipe", 2, 2)
    assert not torch_bridge.torch_available()


# ---------------------------------------------------------------- CLI
def test_cli_check_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["import", "torch-pp", str(FIX / "interleaved1f1b-p2-m4.csv"), "--check", "--no-grid"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 ranks, 4 stages (loop placement), 4 microbatches" in out
    assert "dataflow  proved" in out


def test_cli_check_violation_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    order = swap_recvs(order_of("gpipe-p2-m4"), 1, "1RECV_F0", "1RECV_F1")
    path = tmp_path / "swapped.csv"
    path.write_text(tp.format_order(order), encoding="utf-8")
    code = main(["import", "torch-pp", str(path), "--check", "--format", "json", "--placement", "loop"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["exit_code"] == 1
    res = {r["property"]: r for r in doc["results"]}
    assert res["dataflow"]["verdict"] == "violated"
    assert "1RECV_F" in res["dataflow"]["counterexample"]["sentence"]
    assert doc["importer"]["placement"] == "loop"
    assert doc["importer"]["notes"] == []
    assert res["dataflow"].get("repair"), res["dataflow"].keys()  # the hint, computed once by the command


def test_cli_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from syncproof import load

    out = tmp_path / "s.json"
    assert main(["import", "torch-pp", str(FIX / "zbvzerobubble-p2-m2.csv"), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    s = load(out)
    assert all_proved(check_schedule(s))
    assert main(["import", "torch-pp", str(FIX / "zbvzerobubble-p2-m2.csv"), "--placement", "v"]) == 0
    assert '"syncproof": 2' in capsys.readouterr().out


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("0F0,0SEND_F0\n1RECV_F0,1F0,1XYZ0\n", encoding="utf-8")
    assert main(["import", "torch-pp", str(p), "--check"]) == 2
    err = capsys.readouterr().err
    assert "rank 1, step 2" in err and "'1XYZ0'" in err
    assert main(["import", "torch-pp", str(tmp_path / "missing.csv")]) == 2
    assert main(["import", "torch-pp", str(FIX / "zbvzerobubble-p2-m2.csv"), "--placement", "loop"]) == 2
    assert "placement 'loop' puts on rank" in capsys.readouterr().err


def test_cli_help_p2p(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["import", "torch-pp", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "safe verdict" not in out and "{any,rendezvous,eager}" in out
    assert "any (default)" in out and "every message size" in out


def test_cli_deadlock_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    f = str(FIX / "dualpipev-p2-m4-defer.csv")
    assert main(["import", "torch-pp", f, "--check", "--no-grid"]) == 1
    assert "deadlock  VIOLATED" in capsys.readouterr().out
    assert main(["import", "torch-pp", f, "--check", "--p2p", "eager", "--no-grid"]) == 0


# ----------------------------------------------------------- with torch
@pytest.fixture(scope="module")
def torch_bridge() -> Any:
    pytest.importorskip("torch")
    from syncproof.importers import torch_bridge as tb

    return tb


@pytest.mark.slow
def test_fixtures_match_torch(torch_bridge: Any) -> None:
    """The committed fixtures are what torch (this version) produces."""
    tb = torch_bridge
    for e in ENTRIES:
        if e["kind"] == "compute":
            continue
        sch = tb.build_schedule(e["class"], e["ranks"], e["microbatches"], defer_pp_recv=e["kind"] == "defer") \
            if e["class"] not in tb.SINGLE_STAGE else tb.build_schedule(e["class"], e["ranks"], e["microbatches"])
        order, pl, _, _ = tb.schedule_actions(sch)
        assert order == tp.read_order(FIX / e["file"]).order, e["file"]
        assert pl.style == e["placement"]


def test_fixtures_match_torch_sample(torch_bridge: Any) -> None:
    tb = torch_bridge
    for cls, p, m in (("Interleaved1F1B", 2, 4), ("DualPipeV", 2, 4), ("1F1B", 2, 4)):
        order, _, _, _ = tb.schedule_actions(tb.build_schedule(cls, p, m))
        assert order == order_of(f"{cls.lower()}-p{p}-m{m}"), cls


def test_import_schedule_object(torch_bridge: Any) -> None:
    tb = torch_bridge
    for cls in CLASSES:
        p, m = (2, 4)
        imp = tb.import_schedule(tb.build_schedule(cls, p, m))
        rep = check(imp)
        assert all_proved(rep), (cls, bad(rep))


def test_torch_1f1b_pipeline_order_is_malformed(torch_bridge: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """torch 2.13's Schedule1F1B.pipeline_order starts the last rank at F1 and
    ends it with F<M>; torch's own validator rejects it, so torch's lowering
    cannot lower it.  Its runtime (_step_microbatches) runs F0 first; that is
    the order syncproof checks for a Schedule1F1B object (with a note)."""
    tb = torch_bridge
    sch = tb.build_schedule("1F1B", 2, 4)
    assert [str(a) for a in sch.pipeline_order[1] if a is not None][:2] == ["1F1", "1B0"]
    with pytest.raises(ScheduleError, match="without first running Forward"):
        tb.lower_compute_only(tb.order_from_torch(sch.pipeline_order))
    imp = tb.import_schedule(sch)
    assert imp.notes and "Schedule1F1B.pipeline_order is malformed" in imp.notes[0]
    assert main(["import", "torch-pp", str(FIX / "1f1b-p2-m4.compute.csv"), "--check"]) == 2
    assert "without first running Forward" in capsys.readouterr().err


def test_compute_only_lowered_by_torch(torch_bridge: Any, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("interleaved1f1b-p2-m4", "zbvzerobubble-p2-m4", "gpipe-p2-m4"):
        imp = tp.import_file(FIX / f"{name}.compute.csv")
        assert imp.order == order_of(name), name
        assert "lowered with torch's own passes" in imp.notes[0]
    assert main(["import", "torch-pp", str(FIX / "zbvzerobubble-p2-m4.compute.csv"), "--check"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("fixture, kind", list(TORCH_VERDICTS), ids=[f"{f}-{k}" for f, k in TORCH_VERDICTS])
def test_torch_validators_on_mutations(torch_bridge: Any, fixture: str, kind: str) -> None:
    """Where torch's own checks accept a mutation that syncproof rejects
    (a None below), the reason is that _validate_schedule only counts
    compute actions and _simulate_comms_compute pairs a recv with the send
    of the same name instead of the send at the same place in posting order."""
    mutate = next(m[2] for m in MUTATIONS if (m[0], m[1]) == (fixture, kind))
    got = torch_bridge.torch_checks(mutate(order_of(fixture)))
    want_validate, want_simulate = TORCH_VERDICTS[(fixture, kind)]
    assert got["validate"] == want_validate
    if want_simulate is None:
        assert got["simulate"] is None
    else:
        assert got["simulate"] is not None and want_simulate in got["simulate"]


def test_torch_checks_reject_what_syncproof_proves(torch_bridge: Any) -> None:
    """The other direction: torch's simulator cannot read the lists torch's
    own lowering emits (UNSHARD/RESHARD/REDUCE_GRAD/OVERLAP_F_B), and its
    validator rejects forward-only lists; syncproof proves all of them."""
    mod = torch_bridge._schedules_module()
    order = order_of("dualpipev-p2-m4")
    pl = tp.infer_placement(order)
    with pytest.raises(ValueError, match="Unsupported action type"):
        mod._simulate_comms_compute(torch_bridge.order_to_torch(order), lambda s: pl.stage_to_rank[s], 4)
    fwd = tp.forward_only(order)
    assert torch_bridge.torch_checks(fwd)["validate"] is not None
    assert all_proved(check(tp.lower(order))) and all_proved(check(tp.lower(fwd)))
