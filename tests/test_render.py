"""Pictures, traces and the text grid of counterexamples.

* the DOT text of every broken example's counterexamples is golden
  (``tests/golden/dot``; regenerate with ``UPDATE_GOLDEN=1``);
* every one of them draws as SVG and PNG, culprit in red, rank 0 on top;
* a 10,000-op schedule gives a small picture quickly;
* the Perfetto/Chrome trace is valid at the schema level (fields per phase,
  flows paired and anchored in slices);
* ``check --out`` and ``syncproof render`` write all of it, and no module
  here loads the solver.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from example_cases import BROKEN, checked

from syncproof import Counterexample, Report, Schedule, check_schedule, load
from syncproof.cli import main
from syncproof.ir import ScheduleBuilder
from syncproof.render import picture
from syncproof.render.dot import BUDGET, RED, counterexample_dot, select_ops
from syncproof.render.jsonout import counterexample_from_json, report_json
from syncproof.render.perfetto import counterexample_trace
from syncproof.render.text import grid, report_text

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden" / "dot"


LITMUS = ROOT / "tests" / "litmus"
# runtime model v2: blocking links, a progress cycle, one communicator's
# serialization, a wrong value carried by a message, a group call, a put
V2_CASES = [("exchange-no-batch", "deadlock"), ("crossed-communicators", "deadlock"),
            ("one-comm-two-streams-recv-send", "deadlock"), ("kv-swapped-one-fifo", "dataflow"),
            ("batch-relay", "dataflow"), ("put-no-wait", "race"), ("weak-allreduce-input-reuse", "dataflow")]


@cache
def checked_any(name: str) -> tuple[Schedule, Report]:
    if name in BROKEN:
        return checked(name)
    s = load(LITMUS / f"{name}.json")
    return s, check_schedule(s)


def cases() -> list[tuple[str, str]]:
    out = []
    for name in BROKEN:
        _, rep = checked(name)
        out += [(name, r.property) for r in rep.results if r.counterexample is not None]
    return out


CASES = cases()
IDS = [f"{n}.{p}" for n, p in CASES]
ALL_CASES = CASES + V2_CASES
ALL_IDS = IDS + [f"{n}.{p}" for n, p in V2_CASES]


def cex_of(name: str, prop: str) -> tuple[Schedule, Counterexample]:
    s, rep = checked_any(name)
    cex = rep.result(prop).counterexample
    assert cex is not None
    return s, cex


def needs_picture() -> None:
    if picture.backend() is None:
        pytest.skip(picture.unavailable_reason())


# ------------------------------------------------------------------ DOT
def test_every_broken_example_has_a_counterexample_to_draw() -> None:
    assert {n for n, _ in CASES} == set(BROKEN)


@pytest.mark.parametrize(("name", "prop"), ALL_CASES, ids=ALL_IDS)
def test_dot_golden(name: str, prop: str) -> None:
    s, cex = cex_of(name, prop)
    got = counterexample_dot(s, cex)
    assert got == counterexample_dot(s, cex), "the DOT text must be deterministic"
    golden = GOLDEN / f"{name}.{prop}.dot"
    if os.environ.get("UPDATE_GOLDEN") or not golden.exists():
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got, encoding="utf-8")
    assert got == golden.read_text(encoding="utf-8"), f"regenerate with UPDATE_GOLDEN=1 if intended ({golden})"


@pytest.mark.parametrize(("name", "prop"), ALL_CASES, ids=ALL_IDS)
def test_dot_structure(name: str, prop: str) -> None:
    s, cex = cex_of(name, prop)
    dot = counterexample_dot(s, cex)
    shown = select_ops(s, cex)
    ranks = {s.ops[o].rank for o in shown}
    for r in ranks:  # one cluster per rank, one lane per stream
        assert f"subgraph cluster_r{r} {{" in dot
        for i, _ in enumerate({s.ops[o].stream for o in shown if s.ops[o].rank == r}):
            assert f"subgraph cluster_r{r}_{i} {{" in dot
    for o in cex.culprits:  # culprits in red
        node = re.search(rf"^\s*o{o} \[(.*)\];$", dot, re.M)
        assert node is not None and f'color="{RED}"' in node.group(1)
    if cex.missing_edge is not None:
        a, b = cex.missing_edge
        edge = re.search(rf"^\s*o{a} -> o{b} \[(.*)\];$", dot, re.M)
        assert edge is not None and "MISSING ORDER" in edge.group(1) and RED in edge.group(1)
    for step in cex.cycle:
        edge = re.search(rf"^\s*o{step.op} -> o{step.next_op} \[(.*)\];$", dot, re.M)
        assert edge is not None and "waits for" in edge.group(1) and RED in edge.group(1)
    # a collective instance is one hexagon joined to its members, never pairwise edges
    hubs = re.findall(r"^\s*(I_\w+) \[shape=hexagon", dot, re.M)
    for hub in hubs:
        assert len(re.findall(rf"-> {hub} \[dir=none", dot)) >= 1
    # ops sit in columns of the run: an op that ended before another started
    # is further left, and ops in one column overlap in time
    run = cex.run
    assert run is not None
    col = {}
    for c, rest in re.findall(r"\{rank=same; T(\d+);(.*?)\}", dot):
        for o in re.findall(r"\bo(\d+)\b", rest):
            col[int(o)] = int(c)
    assert set(col) == set(shown)
    for a in shown:
        for b in shown:
            ea, sb = run.end[a], run.start[b]
            if ea is not None and sb is not None and ea < sb:
                assert col[a] < col[b], (s.label(a), s.label(b))


def test_matching_picture_groups_a_mismatched_instance() -> None:
    s, cex = cex_of("collective-order-mismatch", "matching")
    dot = counterexample_dot(s, cex)
    assert "instance #0 of tp: kinds differ" in dot
    assert "r1: all_reduce" in dot


def test_deadlock_picture_numbers_the_cycle() -> None:
    s, cex = cex_of("pp-sendrecv-deadlock", "deadlock")
    dot = counterexample_dot(s, cex)
    for i in range(1, len(cex.cycle) + 1):
        assert f"{i}. waits for" in dot
    assert "never starts" in dot and "never ends" in dot


def edge_attrs(dot: str, a: int, b: int) -> list[str]:
    return re.findall(rf"^\s*o{a} -> o{b} \[(.*)\];$", dot, re.M)


def test_blocking_links_of_a_cycle_are_dashed_and_say_when_they_hold() -> None:
    s, cex = cex_of("exchange-no-batch", "deadlock")
    dot = counterexample_dot(s, cex)
    kinds = {st.blocking for st in cex.cycle}
    assert kinds == {"message", ""}
    for st in cex.cycle:
        (attrs,) = [x for x in edge_attrs(dot, st.op, st.next_op) if "waits for" in x]
        if st.blocking == "message":
            assert 'style="dashed"' in attrs and "only if > buffer" in attrs
        else:
            assert "dashed" not in attrs and "only if" not in attrs
    assert "red dashed: a wait that holds only when the runtime blocks" in dot
    # a cycle that hangs at every size: every link solid
    s, cex = cex_of("pp-sendrecv-deadlock", "deadlock")
    dot = counterexample_dot(s, cex)
    assert not any(st.blocking for st in cex.cycle) and 'style="dashed", label="1.' not in dot
    assert "red dashed" not in dot


def test_progress_and_communicator_links_are_named() -> None:
    s, cex = cex_of("crossed-communicators", "deadlock")
    dot = counterexample_dot(s, cex)
    progress = [st for st in cex.cycle if st.blocking == "progress"]
    assert progress
    for st in progress:
        (attrs,) = [x for x in edge_attrs(dot, st.op, st.next_op) if "waits for" in x]
        assert "progress: g" in attrs and "only if kernels don" in attrs and 'style="dashed"' in attrs
    s, cex = cex_of("one-comm-two-streams-recv-send", "deadlock")
    dot = counterexample_dot(s, cex)
    assert "NCCL serializes communicator p2p:0-1 in issue order" in dot.replace("\\n", " ")


def test_group_call_parts_are_one_box_without_an_order_between_them() -> None:
    s, cex = cex_of("batch-relay", "dataflow")
    dot = counterexample_dot(s, cex)
    box = re.search(r"subgraph cluster_r1_0_gc\d+ \{(.*?)\n      \}", dot, re.S)
    assert box is not None and 'label="group call relay"' in box.group(1)
    parts = [op.id for op in s.ops if op.batch == "relay"]
    for o in parts:
        assert f"o{o} [" in box.group(1)
    a, b = sorted(parts, key=lambda o: s.ops[o].index)
    assert not [x for x in edge_attrs(dot, a, b) if "MISSING" not in x]  # no stream-order edge inside
    assert "dashed box: one group call" in dot


def test_a_put_is_drawn_into_its_target_rank() -> None:
    b = ScheduleBuilder("put-race")
    b.buffer("src")
    b.buffer("dst")
    b.init("src", "d", ranks=[0])
    b.rank(0).put(1, stream="nic", reads={"src": "d"}, writes={"dst": "d"}, signal="ready")
    r1 = b.rank(1)
    r1.wait_signal(0, "ready", stream="c").compute("read_dst", stream="c", reads={"dst": "d"})
    r1.compute("scribble", stream="x", writes={"dst": "junk"})
    s = b.build()
    rep = check_schedule(s, ("race",))
    cex = rep.result("race").counterexample
    assert cex is not None
    dot = counterexample_dot(s, cex)
    put, wsig, read = (next(op.id for op in s.ops if n in s.label(op)) for n in ("put(", "wait_signal(", "read_dst"))
    (sig_edge,) = edge_attrs(dot, put, wsig)
    assert "put, signal ready" in sig_edge and "#d9730d" in sig_edge
    (into,) = edge_attrs(dot, put, read)
    assert "dotted" in into and "put writes dst on rank 1" in into
    trace = counterexample_trace(s, cex)
    assert any(e.get("cat") == "put" for e in trace["traceEvents"])


def test_a_wrong_value_shows_both_values() -> None:
    s, cex = cex_of("kv-swapped-one-fifo", "dataflow")
    obs = cex.observation
    assert obs.kind == "message" and obs.a is not None and obs.b is not None
    dot = counterexample_dot(s, cex)
    (edge,) = edge_attrs(dot, obs.b, obs.a)
    assert "WRONG VALUE: carries 'K(L0)'" in edge and RED in edge
    node = re.search(rf"^\s*o{obs.a} \[(.*)\];$", dot, re.M)
    assert node is not None and "declares 'V(L0)', gets 'K(L0)'" in node.group(1)
    text = report_text(s, checked_any("kv-swapped-one-fifo")[1])
    assert "wrong value: r1/comm: recv(<-0)#0 declares 'V(L0)'; its matched r0/comm: send(->1)#0 carries 'K(L0)'" \
        in text
    assert "◀ receives 'K(L0)', declares 'V(L0)'" in text


def test_text_and_json_give_each_cycle_link_its_blocking_kind() -> None:
    s, rep = checked_any("exchange-no-batch")
    text = report_text(s, rep)
    assert "cycle (each op waits for the next):" in text
    assert "[message-blocking: only once the message is larger than the transport's buffer]" in text
    s2, rep2 = checked_any("crossed-communicators")
    assert "[progress-blocking: only when the two communicators' kernels do not run side by side]" in \
        report_text(s2, rep2)
    doc = report_json(s, rep)
    (item,) = [i for i in doc["results"] if i["property"] == "deadlock"]
    links = item["counterexample"]["cycle"]
    assert {c["blocking"] for c in links} == {"message", ""}
    back = counterexample_from_json(json.loads(json.dumps(item["counterexample"])), len(s.ops))
    cex = rep.result("deadlock").counterexample
    assert cex is not None and back.cycle == cex.cycle


def test_hint_goes_under_the_title() -> None:
    s, cex = cex_of("tp-allreduce-nowait", "dataflow")
    dot = counterexample_dot(s, cex, hint="repair (proved by re-check): add x & <y>")
    assert "add x &amp; &lt;y&gt;" in dot


# --------------------------------------------------------------- pictures
def _lane_order(svg: str) -> list[str]:
    """Cluster titles (``cluster_r0``, ``cluster_r0_1``...) from top to bottom."""
    found = []
    for m in re.finditer(r"<title>(cluster_r\d+(?:_\d+)?)</title>\s*<path[^>]*/>\s*<text[^>]*y=\"([-\d.]+)\"",
                         svg):
        found.append((float(m.group(2)), m.group(1)))
    return [name for _, name in sorted(found)]


@pytest.mark.parametrize(("name", "prop"), CASES, ids=IDS)
def test_renders_svg_and_png_culprit_in_red_rank0_on_top(name: str, prop: str) -> None:
    needs_picture()
    s, cex = cex_of(name, prop)
    dot = counterexample_dot(s, cex)
    png = picture.render(dot, "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    svg = picture.render(dot, "svg").decode("utf-8")
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    for o in cex.culprits:  # the culprit's box is drawn with the red pen
        block = re.search(rf"<title>o{o}</title>(.*?)</g>", svg, re.S)
        assert block is not None and f'stroke="{RED}"' in block.group(1)
    order = _lane_order(svg)
    ranks = [n for n in order if n.count("_") == 1]
    assert ranks == sorted(ranks, key=lambda n: int(n[len("cluster_r"):])), order
    for r in ranks:  # each rank's streams in order of first use
        lanes = [n for n in order if n.startswith(r + "_")]
        assert lanes == sorted(lanes, key=lambda n: int(n.rsplit("_", 1)[1])), order


def test_picture_formats_are_checked() -> None:
    with pytest.raises(ValueError):
        picture.render("digraph { a }", "gif")


# ---------------------------------------------------------- big schedules
def tp_chain(layers: int, fault_at: int) -> Schedule:
    """Two TP ranks, ``layers`` x (matmul, event, all-reduce, event): 12 ops a
    layer.  Rank 0 forgets the event after the all-reduce of ``fault_at``."""
    b = ScheduleBuilder(f"tp2-chain-{layers}")
    b.group("tp", [0, 1]).buffer("part", "layer").buffer("h", "layer")
    b.init("h[layer=0]", "h0")
    for r in b.ranks(0, 1):
        for k in range(layers):
            r.compute("mm", stream="compute", reads={f"h[layer={k}]": f"h{k}"},
                      writes={f"part[layer={k}]": f"p{k}"}, layer=k)
            r.record(f"p{k}", stream="compute", layer=k).wait(f"p{k}", stream="comm", layer=k)
            r.all_reduce("tp", stream="comm", reads={f"part[layer={k}]": f"p{k}"},
                         writes={f"h[layer={k + 1}]": f"h{k + 1}"}, layer=k)
            if not (r.rank == 0 and k == fault_at):
                r.record(f"h{k}", stream="comm", layer=k).wait(f"h{k}", stream="compute", layer=k)
    return b.build()


@pytest.fixture(scope="module")
def big() -> tuple[Schedule, Counterexample]:
    s = tp_chain(834, 400)
    assert len(s.ops) >= 10_000
    rep = check_schedule(s, ("dataflow",), replay=False, max_cex=1)
    cex = rep.result("dataflow").counterexample
    assert cex is not None
    return s, cex


def test_big_schedule_gives_a_small_readable_picture(big: tuple[Schedule, Counterexample]) -> None:
    s, cex = big
    t0 = time.perf_counter()
    dot = counterexample_dot(s, cex)
    shown = select_ops(s, cex)
    assert set(cex.culprits) <= set(shown)
    assert len(shown) <= BUDGET + len(cex.culprits)
    assert f"{len(shown)} of {len(s.ops)} ops" in dot
    assert dot.count("\n") < 200
    assert "ops" in dot  # hidden stream neighbours are counted on dashed edges
    if picture.backend() is not None:
        svg = picture.render(dot, "svg")
        assert b"MISSING ORDER" in svg
    assert time.perf_counter() - t0 < 20


def test_full_draws_every_op(big: tuple[Schedule, Counterexample]) -> None:
    s, cex = big
    dot = counterexample_dot(s, cex, full=True)
    assert len(re.findall(r"^\s*o\d+ \[label=", dot, re.M)) == len(s.ops)
    assert f"all {len(s.ops)} ops" in dot


def test_big_trace_is_valid(big: tuple[Schedule, Counterexample]) -> None:
    s, cex = big
    doc = counterexample_trace(s, cex)
    assert validate_trace(doc) == []
    assert sum(1 for e in doc["traceEvents"] if e["ph"] == "X") == len(s.ops)


# ------------------------------------------------------------- perfetto
SLICE_FIELDS = {"X": {"name", "ph", "ts", "dur", "pid", "tid"},
                "i": {"name", "ph", "ts", "pid", "tid", "s"},
                "M": {"name", "ph", "pid", "args"},
                "s": {"name", "ph", "ts", "pid", "tid", "id", "cat"},
                "f": {"name", "ph", "ts", "pid", "tid", "id", "cat", "bp"}}


def validate_trace(doc: Any) -> list[str]:
    """Problems with a Chrome trace (JSON Object Format) document, as the
    trace viewer and Perfetto read it: [] when it is valid."""
    errs: list[str] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        return ["the document must be an object with a traceEvents list"]
    json.loads(json.dumps(doc))  # plain JSON all the way down
    slices: dict[tuple[int, int], list[tuple[int, int]]] = {}
    named_threads: set[tuple[int, int]] = set()
    named_procs: set[int] = set()
    flows: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for i, ev in enumerate(doc["traceEvents"]):
        ph = ev.get("ph")
        if ph not in SLICE_FIELDS:
            errs.append(f"event {i}: unknown phase {ph!r}")
            continue
        missing = SLICE_FIELDS[ph] - set(ev)
        if missing:
            errs.append(f"event {i} ({ph}): missing {sorted(missing)}")
            continue
        if ph != "M" and not (isinstance(ev["ts"], int | float) and ev["ts"] >= 0):
            errs.append(f"event {i}: bad ts {ev['ts']!r}")
        if ph == "X":
            if not (isinstance(ev["dur"], int | float) and ev["dur"] > 0):
                errs.append(f"event {i}: bad dur {ev['dur']!r}")
            slices.setdefault((ev["pid"], ev["tid"]), []).append((ev["ts"], ev["ts"] + ev["dur"]))
        elif ph == "M":
            if ev["name"] == "thread_name":
                named_threads.add((ev["pid"], ev["tid"]))
            elif ev["name"] == "process_name":
                named_procs.add(ev["pid"])
            elif ev["name"] not in ("process_sort_index", "thread_sort_index"):
                errs.append(f"event {i}: unknown metadata {ev['name']!r}")
        elif ph == "i" and ev["s"] not in ("g", "p", "t"):
            errs.append(f"event {i}: bad instant scope {ev['s']!r}")
        elif ph in ("s", "f"):
            flows.setdefault((ev["cat"], ev["id"]), []).append(ev)
    for (pid, tid), spans in slices.items():
        if (pid, tid) not in named_threads or pid not in named_procs:
            errs.append(f"slices on pid {pid} tid {tid} have no process/thread name")
        spans.sort()
        for (a0, a1), (b0, _) in zip(spans, spans[1:], strict=False):
            if b0 < a1:  # one stream runs one op at a time
                errs.append(f"overlapping slices on pid {pid} tid {tid}: {a0}-{a1} and {b0}")
    for key, evs in flows.items():
        phases = Counter(e["ph"] for e in evs)
        if phases != Counter({"s": 1, "f": 1}):
            errs.append(f"flow {key}: needs one 's' and one 'f', has {dict(phases)}")
            continue
        for e in evs:
            spans = slices.get((e["pid"], e["tid"]), [])
            k = bisect.bisect_right(spans, (e["ts"], float("inf"))) - 1  # the last slice starting by ts
            if k < 0 or not spans[k][0] <= e["ts"] <= spans[k][1]:
                errs.append(f"flow {key}: its {e['ph']} at {e['ts']} is in no slice of pid {e['pid']} tid {e['tid']}")
        f = next(e for e in evs if e["ph"] == "f")
        if f["bp"] != "e":
            errs.append(f"flow {key}: 'f' must bind to its enclosing slice (bp 'e')")
    return errs


@pytest.mark.parametrize(("name", "prop"), CASES, ids=IDS)
def test_perfetto_trace_is_valid(name: str, prop: str) -> None:
    s, cex = cex_of(name, prop)
    doc = counterexample_trace(s, cex, hint="a hint")
    assert validate_trace(doc) == []
    events = doc["traceEvents"]
    procs = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert procs == {r: f"rank {r}" for r in s.ranks}
    threads = {(e["pid"], e["args"]["name"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert threads == set(s.streams)
    culprit = [e for e in events if e["ph"] in ("X", "i") and e["args"].get("culprit")]
    assert {e["args"]["id"] for e in culprit} >= set(cex.culprits)
    assert all(e.get("cname") == "terrible" for e in culprit if e["ph"] == "X")
    assert doc["otherData"]["property"] == prop and doc["otherData"]["repair"] == "a hint"


def test_perfetto_flows_cover_every_sync() -> None:
    s, cex = cex_of("tp-allreduce-nowait", "dataflow")
    doc = counterexample_trace(s, cex)
    cats = Counter(e["cat"] for e in doc["traceEvents"] if e["ph"] == "s")
    # 2 events (part_ready on each rank), 1 all-reduce instance of 2 members, the missing order
    assert cats == Counter({"event": 2, "collective": 1, "missing_order": 1})
    s2, cex2 = cex_of("pp-sendrecv-deadlock", "deadlock")
    doc2 = counterexample_trace(s2, cex2)
    assert validate_trace(doc2) == []
    never = [e for e in doc2["traceEvents"] if e["ph"] == "i"]
    assert {e["args"]["id"] for e in never} == {o for o in range(len(s2.ops)) if cex2.run and cex2.run.start[o] is None}


# ------------------------------------------------------------- text grid
def test_grid_marks_the_failing_row() -> None:
    s, cex = cex_of("tp-allreduce-nowait", "dataflow")
    lines = grid(s, cex)
    marked = [ln for ln in lines if "◀" in ln]
    assert len(marked) == 1 and "next_matmul" in marked[0] and "wrong value" in marked[0]
    s2, cex2 = cex_of("pp-sendrecv-deadlock", "deadlock")
    assert any("◀ stuck" in ln for ln in grid(s2, cex2))


def test_grid_stays_short_for_big_runs(big: tuple[Schedule, Counterexample]) -> None:
    s, cex = big
    lines = grid(s, cex)
    assert len(lines) < 25
    assert any("◀" in ln for ln in lines)
    assert "earlier events" in lines[2]


# ------------------------------------------------------------ the CLI
def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_check_out_writes_pictures_and_traces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = ("tp-allreduce-nowait", "pp-sendrecv-deadlock", "tp-allreduce-wait")
    code, _, err = run_cli(["check", *(str(ROOT / "examples" / f"{n}.json") for n in names), "--out",
                            str(tmp_path)], capsys)
    assert code == 1
    assert not list(tmp_path.glob("tp-allreduce-wait.*.dot"))  # proved: nothing to draw
    for name, prop in [c for c in CASES if c[0] in names]:
        base = tmp_path / f"{name}.{prop}"
        assert (tmp_path / f"{base.name}.dot").read_text().startswith("digraph")
        assert validate_trace(json.loads((tmp_path / f"{base.name}.trace.json").read_text())) == []
        if picture.backend() is not None:
            assert (tmp_path / f"{base.name}.png").read_bytes().startswith(b"\x89PNG")
            assert "</svg>" in (tmp_path / f"{base.name}.svg").read_text()
    assert "Fontconfig" not in err
    doc = json.loads((tmp_path / "tp-allreduce-nowait.json").read_text())
    assert doc["schedule_doc"]["name"] == "tp-allreduce-nowait"
    df = next(r for r in doc["results"] if r["property"] == "dataflow")
    assert df["repair"]["proved"] is True


def test_render_command_redraws_without_solving(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = ROOT / "examples" / "tp-allreduce-nowait.json"
    code, out, _ = run_cli(["check", str(src), "--format", "json"], capsys)
    report = tmp_path / "r.json"
    report.write_text(out)
    s, cex = cex_of("tp-allreduce-nowait", "race")
    for suffix in (".dot", ".json", ".svg", ".png"):
        if suffix in (".svg", ".png") and picture.backend() is None:
            continue
        target = tmp_path / f"pic{suffix}"
        code, _, err = run_cli(["render", str(report), "-o", str(target), "--property", "race"], capsys)
        assert code == 0, err
        assert target.stat().st_size > 0
    dot = (tmp_path / "pic.dot").read_text()
    # the same picture as from the live counterexample, plus the saved repair hint
    hint_rows = re.findall(r"<TR><TD ALIGN=\"LEFT\"><FONT COLOR=\"#1a7f37\">.*?</TD></TR>", dot)
    assert hint_rows and "repair (proved by re-check)" in hint_rows[0]
    for row in hint_rows:
        dot = dot.replace(row, "")
    assert dot == counterexample_dot(s, cex)
    assert validate_trace(json.loads((tmp_path / "pic.json").read_text())) == []
    code, _, _ = run_cli(["render", str(report), "-o", str(tmp_path / "all.dot"), "--full"], capsys)
    assert code == 0 and "all 10 ops" in (tmp_path / "all.dot").read_text()


def test_counterexample_json_round_trip() -> None:
    for name, prop in CASES:
        s, rep = checked(name)
        doc = report_json(s, rep)
        item = next(r for r in doc["results"] if r["property"] == prop)
        back = counterexample_from_json(item["counterexample"], len(s.ops))
        cex = rep.result(prop).counterexample
        assert cex is not None
        assert (back.run, back.culprits, back.missing_edge, back.cycle) == (
            cex.run, cex.culprits, cex.missing_edge, cex.cycle)


def test_render_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = ROOT / "examples" / "tp-allreduce-wait.json"
    code, out, _ = run_cli(["check", str(good), "--format", "json"], capsys)
    report = tmp_path / "ok.json"
    report.write_text(out)
    code, _, err = run_cli(["render", str(report), "-o", str(tmp_path / "x.svg")], capsys)
    assert code == 2 and "no counterexample" in err
    code, _, err = run_cli(["render", str(report), "-o", str(tmp_path / "x.gif")], capsys)
    assert code == 2 and "unknown output type" in err
    old = json.loads(out)
    del old["schedule_doc"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    code, _, err = run_cli(["render", str(tmp_path / "old.json"), "-o", str(tmp_path / "x.dot")], capsys)
    assert code == 2 and "schedule_doc" in err
    code, _, err = run_cli(["render", str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.dot")], capsys)
    assert code == 2 and "no such file" in err


def test_renderers_and_render_command_do_not_import_z3() -> None:
    code = ("import sys, syncproof.render.dot, syncproof.render.perfetto, syncproof.render.picture, "
            "syncproof.render.outputs, syncproof.commands.render; "
            "assert 'z3' not in sys.modules, 'z3 imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_make_pictures_script(tmp_path: Path) -> None:
    needs_picture()
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_pictures.py"), "--out", str(tmp_path),
                           "--only", "tp-allreduce-nowait"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == ["tp-allreduce-nowait.dataflow.png", "tp-allreduce-nowait.dataflow.svg",
                    "tp-allreduce-nowait.race.svg"]
    assert (ROOT / "docs" / "img" / "tp-allreduce-nowait.dataflow.svg").exists()
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_pictures.py"), "--out", str(tmp_path),
                           "--only", "crossed-communicators"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "crossed-communicators.deadlock.png").exists()
    assert (ROOT / "docs" / "img" / "crossed-communicators.deadlock.png").exists()


def test_allocator_reuse_is_drawn_as_the_block_changing_owner() -> None:
    from syncproof.engine.check import check_schedule
    from syncproof.ir import load
    from syncproof.render.dot import counterexample_dot, find_syncs

    s = load(Path(__file__).parent / "regressions" / "alloc-bug.json")
    syncs = find_syncs(s)
    free = next(op.id for op in s.ops if op.kind.value == "free")
    alloc = next(op.id for op in s.ops if op.kind.value == "alloc" and op.reuses)
    assert syncs.reuses == ((free, alloc),)
    cex = check_schedule(s).result("race").counterexample
    assert cex is not None
    assert f"o{free} -> o{alloc}" in counterexample_dot(s, cex) and "block of t -> u" in counterexample_dot(s, cex)


def test_a_wait_binds_to_the_latest_record_before_it_in_pictures() -> None:
    from syncproof.ir import loads
    from syncproof.render.dot import find_syncs

    s = loads(json.dumps({"syncproof": 2, "buffers": {"x": []}, "ranks": {"0": [
        {"op": "record", "stream": "a", "event": "e"},
        {"op": "wait", "stream": "b", "event": "e"},
        {"op": "record", "stream": "a", "event": "e"},
        {"op": "wait", "stream": "b", "event": "e"}]}}))
    assert find_syncs(s).events == ((0, 1), (2, 3))
    assert not find_syncs(s).noop_waits
