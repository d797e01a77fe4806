"""The model registry and the models' schedules: names, parameters, faults,
errors, structure; a few verdicts (the full set lives in proofs/)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from syncproof.cli import main
from syncproof.engine import check_schedule
from syncproof.errors import UsageError
from syncproof.ir import Kind, Schedule, dumps, loads
from syncproof.models.registry import build, get, list_models, resolve
from syncproof.proofs import discover, load
from syncproof.result import PROPERTIES

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {"tp", "sp", "pp", "ep", "dp", "kv", "chunked-prefill", "paged-kv", "overlap", "tp-pp", "tp-sp",
            "dpattn-ep", "tp-pp-dp"}


def all_faults() -> list[tuple[str, str]]:
    return [(m.name, f.name) for m in list_models() for f in m.faults]


# ------------------------------------------------------------------ registry
def test_every_required_model_is_listed_with_faults() -> None:
    names = [m.name for m in list_models()]
    assert set(names) >= REQUIRED
    assert len(names) == len(set(names))
    for m in list_models():
        assert m.summary and m.params and m.faults, m.name
        assert m.name == m.name.lower() and " " not in m.name
        for f in m.faults:
            assert f.breaks in PROPERTIES, (m.name, f.name)
        for p in m.params:
            assert p.choices or (p.lo is not None and p.hi is not None and p.lo <= int(p.default) <= p.hi)


def test_fault_kinds_cover_the_issue() -> None:
    """Removed syncs, swapped orders, early reuse, skipped collectives, SP in decode, early steps."""
    names = {f for _, f in all_faults()}
    for want in ("no-wait-allreduce", "swapped-collectives", "single-stream-p2p", "shared-recv-buffer",
                 "reuse-early", "skip-allreduce", "skip-a2a", "idle-skips-a2a", "sp-in-decode", "step-early",
                 "early-reuse", "chunk-reorder",
                 # runtime model v2: launch order across communicators, one communicator's serialization,
                 # sends that complete before their recv, values carried by messages, group calls
                 "crossed-comm-order", "one-comm-two-streams", "relies-on-rendezvous", "recv-order-swapped",
                 "no-batch"):
        assert want in names
    assert {f.breaks for m in list_models() for f in m.faults} == set(PROPERTIES)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: build("tpp", {}), "did you mean 'tp'"),
    (lambda: build("tp", {"tpp": "2"}), "did you mean 'tp'"),
    (lambda: build("tp", {"tp": "9"}), "out of range 1..8"),
    (lambda: build("tp", {"tp": "two"}), "takes an integer"),
    (lambda: build("tp", {"phase": "decod"}), "did you mean 'decode'"),
    (lambda: build("tp", {}, "skip-allreduc"), "did you mean 'skip-allreduce'"),
    (lambda: build("tp", {"tp": "1"}, "skip-allreduce"), "needs tp>=2"),
    (lambda: build("pp", {"pp": "4", "layers": "2"}), "layers=2 must be at least pp=4"),
    (lambda: build("sp", {"phase": "decode"}), "SP is illegal in decode"),
    (lambda: build("dpattn-ep", {"ep": "2", "reqs": "3"}), "cannot exceed ep=2"),
    (lambda: build("ep", {"ep": "1", "a2a": "p2p"}), "a2a=p2p needs ep>=2"),
    (lambda: build("pp", {"pp": "4", "mb": "2"}, "crossed-comm-order"), "needs mb>=pp"),
])
def test_bad_requests_are_usage_errors(call: object, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("?", r"\?")):
        call()  # type: ignore[operator]


def test_parameters_parse_from_strings_and_ints() -> None:
    _, a = resolve("tp", {"tp": "4", "phase": "decode"})
    _, b = resolve("tp", {"tp": 4, "phase": "decode"})
    assert a == b and a["tp"] == 4 and a["steps"] == 2


# ------------------------------------------------------------------ schedules
@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_default_schedule_is_deterministic_and_round_trips(name: str) -> None:
    s1, s2 = build(name, {}), build(name, {})
    assert dumps(s1) == dumps(s2)
    assert loads(dumps(s1)) == s1


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_small_defaults_prove_everything(name: str) -> None:
    """Every default under the runtime model v2 as it is: p2p "any" (a small send may complete
    before its recv is posted), progress "any" (kernels of different communicators may not co-run)."""
    s = build(name, {})
    assert (s.p2p, s.progress) == ("any", "any")
    assert not any(op.p2p for op in s.ops), "a model must not rely on a per-message rendezvous"
    rep = check_schedule(s)
    assert {r.property: r.verdict.value for r in rep.results} == dict.fromkeys(PROPERTIES, "proved")
    assert not rep.warnings


def _verdicts(s: Schedule) -> dict[str, str]:
    return {r.property: r.verdict.value for r in check_schedule(s).results}


@pytest.mark.parametrize("name", ["pp", "tp-pp", "tp-pp-dp"])
def test_pipelines_prove_for_every_message_size(name: str) -> None:
    """The token goes back at one launch position on both ends, so the proof needs neither
    rendezvous nor eager messages, nor kernels of different communicators running side by side."""
    s = build(name, {})
    for settings in ({"p2p": "rendezvous"}, {"p2p": "eager"}, {"progress": "concurrent"}):
        assert _verdicts(replace(s, **settings)) == dict.fromkeys(PROPERTIES, "proved"), settings


def test_dp_gather_waits_for_the_in_place_token_broadcast() -> None:
    """Without a pipeline, rank 0's in-place token broadcast rewrites the buffer the DP token gather
    reads; the gather is ordered after the broadcast."""
    s = build("tp-pp-dp", {"tp": 2, "pp": 1, "dp": 2, "mb": 1, "layers": 1, "steps": 2, "phase": "decode"})
    assert _verdicts(s) == dict.fromkeys(PROPERTIES, "proved")


def test_crossed_launch_order_needs_the_progress_rule() -> None:
    """crossed-comm-order hangs because NCCL does not promise that two communicators' kernels progress side
    by side; single-stream-p2p hangs even when they do (one stream orders them); one-comm-two-streams hangs
    at any message size (NCCL runs one communicator's kernels in issue order)."""
    crossed = build("pp", {}, "crossed-comm-order")
    res = check_schedule(crossed, ["deadlock"]).result("deadlock")
    assert res.verdict.value == "violated" and res.counterexample is not None
    assert "progress side by side" in res.counterexample.sentence
    assert _verdicts(replace(crossed, progress="concurrent"))["deadlock"] == "proved"
    assert _verdicts(replace(crossed, p2p="eager"))["deadlock"] == "proved"
    single = build("pp", {}, "single-stream-p2p")
    assert _verdicts(replace(single, progress="concurrent"))["deadlock"] == "violated"
    one = build("pp", {}, "one-comm-two-streams")
    res = check_schedule(replace(one, p2p="eager", progress="concurrent"), ["deadlock"]).result("deadlock")
    assert res.verdict.value == "violated" and res.counterexample is not None
    assert "whatever the message sizes" in res.counterexample.sentence


def test_rendezvous_reliance_is_a_dataflow_bug_only_under_any() -> None:
    """relies-on-rendezvous: right values if every send waited for its recv, wrong ones when a small
    send completes at once (NCCL, and the p2p "any" default); the early-posted recv overlaps the read
    either way (a race)."""
    s = build("pp", {}, "relies-on-rendezvous")
    assert _verdicts(s)["dataflow"] == "violated"
    assert _verdicts(replace(s, p2p="eager"))["dataflow"] == "violated"
    rv = _verdicts(replace(s, p2p="rendezvous"))
    assert rv["dataflow"] == "proved" and rv["race"] == "violated"


def test_swapped_recvs_of_one_shape_are_caught_by_the_values() -> None:
    s = build("pp", {"phase": "decode"}, "recv-order-swapped")
    res = check_schedule(s, ["matching", "dataflow"])
    assert res.result("matching").verdict.value == "proved"
    cex = res.result("dataflow").counterexample
    assert cex is not None and "h2(s1,t5)" in cex.sentence and "h2(s0,t4)" in cex.sentence


def test_ep_all_to_all_as_group_calls() -> None:
    """a2a=p2p: every all-to-all is one group call of a send to and a recv from every peer, as
    ProcessGroupNCCL issues it; without the group call (no-batch) every rank sends first and the run
    hangs once the messages exceed the transport's buffer."""
    s = build("ep", {"a2a": "p2p"})
    p2p = [op for op in s.ops if op.kind in (Kind.SEND, Kind.RECV)]
    assert p2p and all(op.batch for op in p2p) and not any(op.kind is Kind.ALL_TO_ALL for op in s.ops)
    assert _verdicts(s) == dict.fromkeys(PROPERTIES, "proved")
    bad = build("ep", {"a2a": "p2p"}, "no-batch")
    assert sum(1 for op in bad.ops if op.kind in (Kind.SEND, Kind.RECV) and not op.batch) == 4 * 3 * 2
    res = check_schedule(bad, ["deadlock"]).result("deadlock")
    assert res.counterexample is not None and "larger than the transport's buffer" in res.counterexample.sentence
    assert _verdicts(replace(bad, p2p="eager"))["deadlock"] == "proved"


def test_layout_of_compositions() -> None:
    s = build("tp-pp-dp", {"tp": "2", "pp": "2", "dp": "2", "steps": "1"})
    assert len(s.ranks) == 8
    groups = dict(s.groups)
    assert groups["dp"] == (2, 6)  # TP rank 0 of the last stage of each replica
    assert groups["tp.d1.s0"] == (4, 5)
    s = build("tp-pp", {"tp": "4", "pp": "2"})
    assert len(s.ranks) == 8 and set(dict(s.groups)) == {"tp.s0", "tp.s1"}


def test_phases_and_meta() -> None:
    s = build("tp", {"phase": "both", "steps": "3", "prompt": "4"})
    steps = {op.meta.step for op in s.ops if op.meta.phase == "decode"}
    assert steps == {4, 5, 6}
    assert any(op.meta.sample for op in s.ops if op.meta.phase == "prefill")
    sp = build("sp", {"sp": "4", "steps": "2"})
    assert all(op.meta.sp is None for op in sp.ops if op.meta.phase == "decode")
    assert {op.meta.sp for op in sp.ops if op.kind is Kind.COMPUTE and op.meta.phase == "prefill"} == \
        {(i, 4) for i in range(4)}
    bad = build("sp", {"sp": "4", "steps": "2"}, "sp-in-decode")
    assert any(op.meta.sp is not None for op in bad.ops if op.meta.phase == "decode")


def test_kv_cache_stays_ordered_by_token_index() -> None:
    """The SP prefill leaves partition j's K/V at positions [j*chunk, (j+1)*chunk) on the last rank."""
    s = build("sp", {"sp": "4", "chunk": "2", "layers": "1", "steps": "1"})
    attn = next(op for op in s.ops if op.rank == 3 and op.meta.phase == "decode" and op.name == "attn")
    cells = {str(a.region): a.value for a in attn.reads if a.region.buffer == "kv"}
    assert cells["kv[layer=0, pos=0:2]"] == "kv0(p0)" and cells["kv[layer=0, pos=6:8]"] == "kv0(p3)"


def test_an_idle_rank_that_skips_its_all_to_alls_is_named() -> None:
    s = build("dpattn-ep", {"ep": "4", "reqs": "2"}, "idle-skips-a2a")
    res = check_schedule(s, ["matching"]).result("matching")
    assert res.verdict.value == "violated" and res.counterexample is not None
    assert res.counterexample.sentence.startswith("rank 2 ")
    assert s.source == "model dpattn-ep"


def test_idle_ranks_join_every_all_to_all() -> None:
    s = build("dpattn-ep", {"ep": "4", "reqs": "1"})
    per_rank = {r: sum(1 for op in s.by_rank[r] if op.kind is Kind.ALL_TO_ALL) for r in s.ranks}
    assert len(set(per_rank.values())) == 1
    assert not any(op.meta.sample for r in (1, 2, 3) for op in s.by_rank[r])


# ------------------------------------------------------------------ coverage by proofs/
def test_every_model_and_fault_has_an_obligation() -> None:
    obs = [o for f in discover([ROOT / "proofs"]) for o in load(f)]
    clean = {o.model for o in obs if o.model and not o.fault and o.expect_text == "proved"}
    assert clean >= REQUIRED
    broken = {(o.model, o.fault): o.expect_property for o in obs if o.model and o.fault}
    for model, fault in all_faults():
        assert (model, fault) in broken, f"no obligation for {model} --fault {fault}"
        assert broken[(model, fault)] == get(model).fault(fault).breaks


def test_obligations_cover_the_sizes_asked_for() -> None:
    obs = [o for f in discover([ROOT / "proofs"]) for o in load(f) if o.model and not o.fault]
    top: dict[str, int] = {}
    for o in obs:
        for k, v in o.params:
            if isinstance(v, int):
                top[k] = max(top.get(k, 0), v)
    assert top["tp"] >= 8 and top["pp"] >= 4 and top["ep"] >= 8 and top["sp"] >= 8
    assert top["mb"] >= 4 and top["steps"] >= 8
    phases = {(o.model, dict(o.params).get("phase", "both")) for o in obs}
    for m in ("tp", "pp", "dp", "kv", "tp-sp", "ep", "dpattn-ep", "tp-pp"):
        assert any(mm == m and ph in ("both", "decode") for mm, ph in phases), m


# ------------------------------------------------------------------ CLI
def test_models_command_lists_everything(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for m in list_models():
        assert f"{m.name}: " in out
        for f in m.faults:
            assert f"--fault {f.name}" in out
    assert main(["models", "tpx"]) == 2
    assert "did you mean 'tp'" in capsys.readouterr().err


def test_check_model_and_fault(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--model", "paged-kv", "--no-grid"]) == 0
    assert main(["check", "--model", "paged-kv", "--fault", "early-reuse", "--no-grid"]) == 1
    capsys.readouterr()
    assert main(["check", "--model", "paged-kv", "--set", "blok=2"]) == 2
    assert "did you mean 'block'" in capsys.readouterr().err


def test_sweep_grid_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--model", "sp", "--set", "sp=1..3", "--set", "variant=allgather,ring",
                 "--set", "layers=1", "--set", "steps=0"]) == 0
    out = capsys.readouterr().out
    assert "6 configurations: 6 proved" in out
    assert main(["sweep", "--model", "sp", "--set", "sp=1,2", "--set", "layers=1", "--fault", "no-wait-kv"]) == 1
    out = capsys.readouterr().out
    assert "1 with a counterexample" in out and "1 skipped" in out
    assert main(["sweep", "--model", "sp", "--set", "sp=4..2"]) == 2
    assert "did you mean 2..4" in capsys.readouterr().err


def test_models_package_does_not_import_the_solver() -> None:
    code = ("import sys; import syncproof.models.registry as r; r.build('tp', {}); "
            "assert 'z3' not in sys.modules and 'syncproof.engine' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
