"""The schedule file format v1: examples, schema, round trips, regions and
the loader's error messages."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from syncproof.bench.generators import schedule_of_size
from syncproof.errors import ScheduleError
from syncproof.ir import (
    FULL,
    Access,
    Interval,
    Kind,
    Meta,
    Op,
    Region,
    ScheduleBuilder,
    dumps,
    fileformat,
    load,
    loads,
    schedule_from_dict,
    schedule_to_dict,
)
from syncproof.ir import validate as validate_module
from syncproof.ir.fileformat import resolve_region
from syncproof.ir.region import RegionSyntaxError, parse_region_parts
from syncproof.ir.schedule import Buffer, InitValue, Schedule

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
SCHEMA_PATH = ROOT / "formal" / "schema" / "schedule-v1.schema.json"

BROKEN = {
    "tp-allreduce-nowait", "pp-sendrecv-deadlock", "collective-order-mismatch",
    "kv-decode-step-early", "sp-prefill-early-attention",
}
CORRECT = {
    "tp-allreduce-wait", "pp-sendrecv-ordered", "collective-order-match",
    "kv-decode-step-ordered", "sp-prefill-gathered",
}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _schema_errors(validator: jsonschema.Draft202012Validator, doc: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


# ------------------------------------------------------------------ examples
def test_example_set_is_complete() -> None:
    names = {p.stem for p in EXAMPLES}
    assert names >= BROKEN | CORRECT
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_matches_schema(path: Path, validator: jsonschema.Draft202012Validator) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert _schema_errors(validator, doc) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_loads_and_round_trips(path: Path, validator: jsonschema.Draft202012Validator) -> None:
    s = load(path)
    assert s.name == path.stem
    text = dumps(s)
    again = loads(text, "<dump>")
    assert again == s
    assert dumps(again) == text  # the canonical text is a fixed point
    assert _schema_errors(validator, schedule_to_dict(s)) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_is_small_and_described(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 40
    s = load(path)
    assert s.description
    if path.stem in BROKEN:
        assert s.description.startswith("Broken:")
    if path.stem in CORRECT:
        assert s.description.startswith("Correct:")


def _tp_allreduce_wait_built() -> ScheduleBuilder:
    b = ScheduleBuilder(
        "tp-allreduce-wait",
        description=load(ROOT / "examples" / "tp-allreduce-wait.json").description,
    )
    b.group("tp", [0, 1])
    b.buffer("x").buffer("w", "layer").buffer("part", "layer").buffer("h", "layer")
    b.init("x", "x(in)").init("w", "w(shard)")
    for r in b.ranks(0, 1):
        r.compute("row_matmul", stream="compute", reads={"x": "x(in)", "w[layer=0]": "w(shard)"},
                  writes={"part[layer=0]": "partial(L0)"}, layer=0)
        r.record("part_ready", stream="compute", layer=0)
        r.wait("part_ready", stream="comm", layer=0)
        r.all_reduce("tp", stream="comm", reads={"part[layer=0]": "partial(L0)"},
                     writes={"h[layer=0]": "allreduce(L0)"}, layer=0)
        r.record("h_ready", stream="comm", layer=0)
        r.wait("h_ready", stream="compute", layer=0)
        r.compute("next_matmul", stream="compute",
                  reads={"h[layer=0]": "allreduce(L0)", "w[layer=1]": "w(shard)"},
                  writes={"part[layer=1]": "partial(L1)"}, layer=1)
    return b


def test_builder_schedule_equals_its_loaded_dump() -> None:
    built = _tp_allreduce_wait_built().build()
    text = dumps(built)
    assert loads(text) == built
    assert dumps(loads(text)) == text


def test_builder_schedule_equals_hand_written_file() -> None:
    built = _tp_allreduce_wait_built().build()
    assert built == load(ROOT / "examples" / "tp-allreduce-wait.json")


def test_round_trip_keeps_every_field(validator: jsonschema.Draft202012Validator) -> None:
    b = ScheduleBuilder("all-fields", p2p="eager", description="every optional field once")
    b.group("g", [0, 1]).buffer("kv", layer=2, token=None).buffer("t", "pos")
    b.init("kv[layer=0, token=0:4]", "pre").init("t", "tok", ranks=[1])
    r0, r1 = b.ranks(0, 1)
    r0.send(1, channel="act", reads={"kv[layer=0, token=0:4]": "pre"}, size=16, name="s",
            phase="prefill", layer=0, mb=1, seqs=[0, 2], tokens="0:4", sp="0/2")
    r1.recv(0, channel="act", writes={"kv[layer=1]": "pre"}, size=16, mb=1)
    r0.broadcast("g", root=1, stream="c", dtype="bf16", size=4, reads={"t": None}, phase="decode",
                 step=3, tokens=7)
    r1.broadcast("g", root=1, stream="c", dtype="bf16", size=4, writes={"t[pos=0:1]": "x"},
                 sample=True)
    s = b.build()
    again = loads(dumps(s))
    assert again == s
    assert again.p2p == "eager"
    op = again.by_rank[0][1]
    assert op.meta.tokens == Interval(7, 8) and op.meta.step == 3 and op.dtype == "bf16"
    assert op.reads[0].value is None
    assert again.by_rank[0][0].meta.seqs == (0, 2)
    assert again.init[1].ranks == (1,)
    assert _schema_errors(validator, schedule_to_dict(s)) == []
    assert _schema_errors(validator, json.loads(dumps(s))) == []


# ------------------------------------------------------------------ regions
BUFS = {"kv": Buffer("kv", (("layer", None), ("seq", None), ("token", 512)))}


def test_region_single_index_is_one_element_interval() -> None:
    name, parts = parse_region_parts("kv[layer=3]")
    assert name == "kv" and parts == [("layer", Interval(3, 4))]


def test_region_ranges_are_half_open() -> None:
    _, parts = parse_region_parts("kv[layer=3, token=0:512]")
    assert parts == [("layer", Interval(3, 4)), ("token", Interval(0, 512))]
    iv = parts[1][1]
    assert iv.overlaps(Interval(511, 600)) and not iv.overlaps(Interval(512, 600))


def test_region_omitted_axes_cover_the_whole_axis() -> None:
    r = resolve_region("kv[token=0:8]", BUFS, "here")
    assert r.box == (("layer", FULL), ("seq", FULL), ("token", Interval(0, 8)))
    whole = resolve_region("kv", BUFS, "here")
    # unbounded axes are the whole line; an axis with an extent is 0:extent
    assert whole.box == (("layer", FULL), ("seq", FULL), ("token", Interval(0, 512)))
    assert whole.contains(r) and not r.contains(whole)


def test_region_axes_are_normalised_to_declared_order() -> None:
    a = resolve_region("kv[token=0:8, layer=1]", BUFS, "here")
    b = resolve_region("kv[layer=1,token=0:8]", BUFS, "here")
    assert a == b
    assert str(a) == "kv[layer=1, token=0:8]"


@pytest.mark.parametrize("text", [
    "kv[layer=3,token=0:8]", "  kv [ layer = 3 , token = 0 : 8 ]  ", "kv[\tlayer=3,\ttoken=0:8\t]",
    "kv[ layer=3:4 , token=0:8 ]",
])
def test_region_whitespace_is_ignored(text: str) -> None:
    r = resolve_region(text, BUFS, "here")
    assert r == Region("kv", (("layer", Interval(3, 4)), ("seq", FULL), ("token", Interval(0, 8))))
    assert str(r) == "kv[layer=3, token=0:8]"


def test_region_negative_bounds_and_empty_brackets() -> None:
    _, parts = parse_region_parts("buf[i=-4:-1]")
    assert parts == [("i", Interval(-4, -1))]
    assert parse_region_parts("kv[]") == ("kv", [])
    assert parse_region_parts("kv") == ("kv", [])


@pytest.mark.parametrize("text, problem", [
    ("kv[token=0:8,]", "is not 'axis=lo:hi' or 'axis=i'"),
    ("kv[token=a:8]", "expected 'lo:hi' with integers"),
    ("kv[token=x]", "expected an integer or 'lo:hi'"),
    ("kv[token=0:8, token=1]", "axis 'token' is given twice"),
    ("kv[token=4:4]", "is empty"),
    ("kv[token=8:0]", "interval 8:0 is reversed"),
    ("kv[token=0:8", "is not a region"),
    ("3kv", "is not a region"),
])
def test_region_syntax_errors(text: str, problem: str) -> None:
    with pytest.raises(RegionSyntaxError) as e:
        parse_region_parts(text)
    assert problem in str(e.value)


# ------------------------------------------------------------------ malformed files
def _base() -> dict[str, Any]:
    """A small valid schedule: the malformed cases each break one thing in it."""
    def rank() -> list[dict[str, Any]]:
        return [
            {"op": "compute", "stream": "compute", "name": "mm", "reads": {"x": "x(in)"},
             "writes": {"h[layer=0]": "partial(L0)"}},
            {"op": "record", "stream": "compute", "event": "part_ready"},
            {"op": "wait", "stream": "comm", "event": "part_ready"},
            {"op": "all_reduce", "stream": "comm", "group": "tp", "reads": {"h[layer=0]": "partial(L0)"},
             "writes": {"h[layer=1]": "allreduce(L0)"}},
        ]
    return {
        "syncproof": 1, "name": "base",
        "groups": {"tp": [0, 1], "solo": [0]},
        "buffers": {"x": [], "h": ["layer"], "kv": {"layer": 2, "token": 8}},
        "init": {"x": "x(in)"},
        "ranks": {"0": rank(), "1": rank()},
    }


def _op(doc: dict[str, Any], rank: int, index: int) -> dict[str, Any]:
    op: dict[str, Any] = doc["ranks"][str(rank)][index]
    return op


def _set(rank: int, index: int, **fields: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        _op(doc, rank, index).update(fields)
    return mutate


def _drop(rank: int, index: int, key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        del _op(doc, rank, index)[key]
    return mutate


def _top(key: str, value: Any = None, delete: bool = False) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        if delete:
            del doc[key]
        else:
            doc[key] = value
    return mutate


def _replace_op(rank: int, index: int, new: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        doc["ranks"][str(rank)][index] = new
    return mutate


def _append(rank: int, new: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        doc["ranks"][str(rank)].append(new)
    return mutate


def _both(*fs: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        for f in fs:
            f(doc)
    return mutate


# (id, mutation, where the message must point, the problem, the hint or "",
#  whether the JSON Schema alone rejects it too)
Case = tuple[str, Callable[[dict[str, Any]], None], str, str, str, bool]
CASES: list[Case] = [
    ("missing-version", _top("syncproof", delete=True), "", 'missing "syncproof"',
     'add "syncproof": 1', True),
    ("wrong-version", _top("syncproof", 2), "", "format version 2 is not supported",
     "", True),
    ("unknown-top-level", _top("bufers", {}), "", "unknown top-level field 'bufers'",
     "did you mean 'buffers'?", True),
    ("missing-ranks", _top("ranks", delete=True), "", 'missing "ranks"', '"ranks": {', True),
    ("p2p-mode", _top("p2p", "eagr"), "", "p2p mode 'eagr' is unknown", "rendezvous, eager", True),
    ("unknown-kind", _set(1, 2, op="allreduce"), "rank 1, op 2", "unknown op kind 'allreduce'",
     "did you mean 'all_reduce'?", True),
    ("unknown-op-field", _both(_drop(1, 2, "event"), _set(1, 2, evnt="part_ready")),
     "rank 1, op 2 (wait)", "field 'evnt' does not belong on a wait op", "did you mean 'event'?", True),
    ("field-of-other-kind", _set(1, 0, group="tp"), "rank 1, op 0 (compute)",
     "field 'group' does not belong on a compute op", "", True),
    ("missing-stream", _drop(1, 2, "stream"), "rank 1, op 2 (wait)", 'op has no "stream"',
     '"stream": "compute"', True),
    ("unknown-group", _set(1, 3, group="tpp"), "rank 1, op 3 (all_reduce on comm)",
     "group 'tpp' is not declared", "did you mean 'tp'?", False),
    ("rank-not-in-group", _set(1, 3, group="solo"), "rank 1, op 3 (all_reduce on comm)",
     "rank 1 is not a member of group 'solo' [0]", "", False),
    ("unknown-peer", _append(1, {"op": "send", "stream": "comm", "to": 7}), "rank 1, op 4 (send on comm)",
     "peer rank 7 does not exist", "known: '0', '1'", False),
    ("send-to-self", _append(1, {"op": "send", "stream": "comm", "to": 1}), "rank 1, op 4 (send on comm)",
     "send to its own rank 1", "a copy on one rank is a compute op", False),
    ("send-without-to", _append(1, {"op": "send", "stream": "comm"}), "rank 1, op 4 (send on comm)",
     'a send needs "to"', "", True),
    ("unknown-event", _set(1, 2, event="part_redy"), "rank 1, op 2 (wait on comm)",
     "wait on event 'part_redy', which rank 1 never records", "did you mean 'part_ready'?", False),
    ("event-on-other-rank",
     _both(_set(0, 1, event="only_on_0"), _set(0, 2, event="only_on_0"), _set(1, 2, event="only_on_0")),
     "rank 1, op 2 (wait on comm)", "wait on event 'only_on_0', which rank 1 never records",
     "recorded on rank 0; events are per rank", False),
    ("duplicate-record", _append(1, {"op": "record", "stream": "comm", "event": "part_ready"}),
     "rank 1, op 4 (record on comm)", "event 'part_ready' is recorded twice on rank 1 (first at op 1)",
     "'part_ready_4'", False),
    ("buffer-not-declared", _set(1, 0, reads={"hh[layer=0]": "x(in)"}),
     "rank 1, op 0 (compute on compute), reads 'hh[layer=0]'", "buffer 'hh' is not declared",
     "did you mean 'h'?", False),
    ("axis-not-declared", _set(1, 0, reads={"h[layr=0]": "x(in)"}),
     "rank 1, op 0 (compute on compute), reads 'h[layr=0]'",
     "axis 'layr' is not declared for buffer 'h' (its axes: layer)", "did you mean 'layer'?", False),
    ("interval-reversed", _set(1, 0, reads={"kv[token=8:0]": "kv"}),
     "rank 1, op 0 (compute on compute), reads 'kv[token=8:0]'", "interval 8:0 is reversed",
     "did you mean 0:8?", False),
    ("interval-outside-extent", _set(1, 0, writes={"kv[layer=1, token=0:16]": "kv"}),
     "rank 1, op 0 (compute on compute), writes", "axis 'token' interval 0:16 is outside 0:8", "", False),
    ("region-syntax", _set(1, 0, reads={"kv[token=0:4,]": "kv"}),
     "rank 1, op 0 (compute on compute), reads 'kv[token=0:4,]'", "is not 'axis=lo:hi' or 'axis=i'",
     "", True),
    ("broadcast-without-root", _replace_op(1, 3, {"op": "broadcast", "stream": "comm", "group": "tp"}),
     "rank 1, op 3 (broadcast on comm)", "broadcast needs a root", "", True),
    ("broadcast-root-outside-group",
     _replace_op(1, 3, {"op": "broadcast", "stream": "comm", "group": "tp", "root": 5}),
     "rank 1, op 3 (broadcast on comm)", "broadcast root 5 is not in group 'tp'", "", False),
    ("overlapping-writes", _set(1, 0, writes={"kv[token=0:4]": "a", "kv[layer=1, token=2:6]": "b"}),
     "rank 1, op 0 (compute on compute), writes",
     "writes kv[layer=0:2, token=0:4] and kv[layer=1, token=2:6] overlap", "one value per op", False),
    ("write-without-value", _set(1, 0, writes={"h[layer=0]": None}),
     "rank 1, op 0 (compute on compute), writes 'h[layer=0]'", "a write must name the value it writes",
     "", True),
    ("unknown-phase", _set(1, 0, phase="decoding"), "rank 1, op 0 (compute on compute)",
     "phase 'decoding' is unknown", "use prefill or decode", True),
    ("tokens-reversed", _set(1, 0, tokens="4:0"), "rank 1, op 0 (compute on compute)",
     "tokens interval '4:0' is empty or reversed", "did you mean '0:4'?", False),
    ("sp-out-of-range", _set(1, 0, sp="2/2"), "rank 1, op 0 (compute on compute)",
     "sp partition 2/2 is out of range", "", False),
    ("init-buffer-not-declared", _top("init", {"y": "v"}), "init 'y'", "buffer 'y' is not declared",
     'add it to "buffers"', False),
]


def _load_error(tmp_path: Path, text: str, name: str = "bad.json") -> ScheduleError:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScheduleError) as e:
        load(path)
    return e.value


def test_base_of_malformed_cases_is_valid(validator: jsonschema.Draft202012Validator) -> None:
    doc = _base()
    assert _schema_errors(validator, doc) == []
    s = loads(json.dumps(doc))
    assert loads(dumps(s)) == s


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_file_is_rejected_with_a_precise_message(tmp_path: Path, case: Case) -> None:
    _id, mutate, where, problem, hint, _schema = case
    doc = _base()
    mutate(doc)
    err = _load_error(tmp_path, json.dumps(doc, indent=1), f"{_id}.json")
    text = str(err)
    assert text.startswith(str(tmp_path / f"{_id}.json") + ":"), text
    assert where in err.where or where in text, text
    assert problem in text, text
    if hint:
        assert hint in err.hint, text
        assert f"(hint: {err.hint})" in text


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_schema_rejects_exactly_the_structural_cases(case: Case,
                                                     validator: jsonschema.Draft202012Validator) -> None:
    """The schema catches shape errors; cross-references, intervals and
    overlaps are left to the loader."""
    doc = _base()
    case[1](doc)
    assert bool(_schema_errors(validator, doc)) is case[5]


def test_interval_reversed_suggests_the_swap(tmp_path: Path) -> None:
    doc = _base()
    _set(1, 0, reads={"kv[token=8:0]": "kv"})(doc)
    err = _load_error(tmp_path, json.dumps(doc))
    assert "rank 1, op 0" in str(err)
    assert "did you mean 0:8?" in str(err)


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    text = '{\n  "syncproof": 1\n  "ranks": {}\n}\n'
    err = _load_error(tmp_path, text)
    assert str(err).startswith(str(tmp_path / "bad.json") + ":")
    assert "not valid JSON" in str(err)
    assert "line 3, column 3" in str(err)


def test_duplicate_key_is_rejected(tmp_path: Path) -> None:
    doc = _base()
    text = json.dumps(doc).replace('"stream": "comm", "event"', '"stream": "comm", "stream": "x", "event"', 1)
    err = _load_error(tmp_path, text)
    assert str(err).startswith(str(tmp_path / "bad.json") + ":")
    assert "key 'stream' appears twice in one object" in str(err)


def test_duplicate_key_names_where(tmp_path: Path) -> None:
    text = (
        '{"syncproof": 1, "buffers": {}, "ranks": {"0": [\n'
        '  {"op": "record", "stream": "a", "event": "e"},\n'
        '  {"op": "wait", "stream": "b", "stream": "c", "event": "e"}\n'
        ']}}\n'
    )
    err = _load_error(tmp_path, text)
    assert "key 'stream' appears twice" in str(err)
    assert "rank 0, op 1" in str(err) or "line 3" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError) as e:
        load(tmp_path / "nope.json")
    assert str(e.value) == f"{tmp_path / 'nope.json'}: no such file"


# --- loader gaps: each is listed in the report that came with this file.
def test_init_entry_ranks_must_be_a_list(tmp_path: Path) -> None:
    doc = _base()
    doc["init"] = [{"region": "x", "value": "x(in)", "ranks": 1}]
    err = _load_error(tmp_path, json.dumps(doc))
    assert "init entry 0" in str(err)


def test_version_must_be_the_integer_1(tmp_path: Path) -> None:
    doc = _base()
    doc["syncproof"] = True
    err = _load_error(tmp_path, json.dumps(doc))
    assert "format version" in str(err)


def test_same_region_twice_in_one_op_is_rejected(tmp_path: Path) -> None:
    doc = _base()
    _set(1, 0, reads={"x": "x(in)", " x ": "x(in)"})(doc)
    err = _load_error(tmp_path, json.dumps(doc))
    assert "rank 1, op 0" in str(err)


def test_contradictory_read_expectations_are_rejected(tmp_path: Path) -> None:
    doc = _base()
    _set(1, 0, reads={"kv[token=0:4]": "a", "kv[token=2:6]": "b"})(doc)
    err = _load_error(tmp_path, json.dumps(doc))
    assert "rank 1, op 0" in str(err) and "overlap" in str(err)



# ------------------------------------------------------------------ the loader's fast path
# schedule_from_dict decides most ops on a fast path (exact types, caches of
# checked raw values, validate's per-op checks done on the way) and leaves
# anything unusual to the reference, fileformat._op and validate's own pass.
# The reference alone must give the very same schedule, or the same error.
def _reference_ops(ranked: list[tuple[int, Any]], buffers: dict[str, Buffer], src: str,
                   groups: Any, ranks: Any) -> tuple[list[Op], None]:
    ops: list[Op] = []
    for rank, lst in ranked:
        for i, d in enumerate(lst):
            ops.append(fileformat._op(d, rank, i, len(ops), buffers, src))
    return ops, None


def _nothing_is_fine(*args: Any) -> Callable[[int, Op], bool]:
    """validate's fast check, turned off: every op goes through _check_op."""
    return lambda pos, op: False


def _shape(x: Any) -> Any:
    """``x`` down to its leaves, with exact types and field order."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (type(x), [(k, _shape(v)) for k, v in vars(x).items() if k in _FIELDS[type(x)]])
    if isinstance(x, tuple):
        return (tuple, [_shape(v) for v in x])
    return (type(x), x)


_FIELDS = {c: {f.name for f in dataclasses.fields(c)} for c in (Op, Access, Meta, Region, Interval, Buffer,
                                                                   InitValue, Schedule)}


def _outcome(doc: Any) -> Any:
    try:
        s = schedule_from_dict(copy.deepcopy(doc), "d.json")
    except ScheduleError as e:
        return ("error", str(e), e.where, e.hint, repr(e.__context__), e.__suppress_context__)
    return ("ok", _shape(s), s.source)


def _same_as_reference(docs: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    fast = [_outcome(d) for d in docs]
    with monkeypatch.context() as m:
        m.setattr(fileformat, "_load_ops", _reference_ops)
        m.setattr(validate_module, "_fine_ops", _nothing_is_fine)
        slow = [_outcome(d) for d in docs]
    for i, (a, b) in enumerate(zip(fast, slow, strict=True)):
        assert a == b, (i, docs[i])


def test_fast_path_loads_the_malformed_cases_as_the_reference_does(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = [_base()]
    for case in CASES:
        doc = _base()
        case[1](doc)
        docs.append(doc)
        if "ranks" in doc:  # the same problem after the good ops of the base (with their own events)
            warm = copy.deepcopy(doc)
            for rk, ops in _base()["ranks"].items():
                for op in ops:
                    if "event" in op:
                        op["event"] = "warm_" + op["event"]
                warm["ranks"][rk] = ops + warm["ranks"][rk]
            docs.append(warm)
    _same_as_reference(docs, monkeypatch)


def test_fast_path_builds_what_the_reference_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in EXAMPLES]
    for mix in ("decode", "prefill"):
        docs.append(schedule_to_dict(schedule_of_size(1000, mix)))
    docs.append(schedule_to_dict(schedule_of_size(1000, fault=True)))
    _same_as_reference(docs, monkeypatch)


def test_validate_fast_check_agrees_with_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """validate on schedules made without the loader (as importers do): its
    fast check of each op, and its reference _check_op alone, agree."""
    scheds = [loads(json.dumps(_base())), schedule_of_size(200)]
    changes: list[dict[str, Any]] = [
        {"peer": 0}, {"peer": 1}, {"peer": 9}, {"peer": None}, {"group": None}, {"group": "solo"}, {"group": "no"},
        {"root": None}, {"root": 7}, {"event": ""}, {"event": None}, {"size": -1}, {"stream": ""}, {"id": -1},
        {"kind": Kind.SEND}, {"kind": Kind.RECORD}, {"kind": Kind.BROADCAST}, {"kind": "send"}, {"rank": 0},
        {"kind": Kind.BROADCAST, "group": "tp", "root": 7}, {"kind": Kind.BROADCAST, "group": "tp", "root": 1},
        {"meta": Meta(phase="decoding")}, {"meta": Meta(sp=(2, 2))}, {"meta": Meta(step=-1)},
        {"writes": (Access(Region("kv", (("layer", Interval(0, 2)), ("token", Interval(0, 9)))), "v"),)},
        {"reads": (Access(Region("nope"), "v"),)},
    ]
    cases = []
    for s in scheds:
        for op in s.ops[:40]:
            for change in changes:
                ops = list(s.ops)
                ops[op.id] = changed = dataclasses.replace(op, **change)
                cases.append(dataclasses.replace(s, ops=tuple(ops)))
                # and once more at the end, sharing its metadata and accesses
                again = dataclasses.replace(changed, id=len(ops), event=changed.event and "again")
                cases.append(dataclasses.replace(s, ops=(*ops, again)))

    def outcomes() -> list[Any]:
        out: list[Any] = []
        for s in cases:
            try:
                validate_module.validate(s)
                out.append("ok")
            except Exception as e:  # some of these break validate itself: it must break the same way
                out.append((type(e), str(e)))
        return out

    fast = outcomes()
    monkeypatch.setattr(validate_module, "_fine_ops", _nothing_is_fine)
    assert fast == outcomes()
    assert "ok" in fast and len(set(map(str, fast))) > 20


class _Str(str):
    def __str__(self) -> str:  # what the loader makes of names and labels (not of values)
        return f"_Str({super().__str__()})"


def _variants(v: Any) -> list[Any]:
    """Values equal to ``v`` (they hit the fast path's caches) of other types,
    then values that are wrong for most fields."""
    out: list[Any] = []
    if type(v) is int:
        out += [float(v), _Str(v)] + ([bool(v)] if v in (0, 1) else [])
    elif type(v) is bool:
        out += [int(v), float(v)]
    elif type(v) is str:
        out += [_Str(v)]
    elif type(v) is list:
        out += [tuple(v), [float(x) for x in v], [bool(x) for x in v if x in (0, 1)], v[:1]]
    elif type(v) is dict:
        k, x = next(iter(v.items()))
        out += [{_Str(k): x}, {k: None}, {k: ""}, {**v, k + " ": x}, {k: _Str(x) if x is not None else None},
                {"x": None}]
    return out + [None, -1, 0, "", "x", "decoding", "9/4", "4:0", [], {}]


# a field added to an op that lacks it
_EXTRA = {"reads": {"x": None}, "writes": {"h[layer=1]": "w"}, "size": 1, "root": 0, "group": "tp", "event": "e",
          "name": "n", "channel": "c", "dtype": "f", "to": 1, "from": 0, "phase": "prefill", "step": 0, "layer": 1,
          "mb": 0, "seqs": [0], "tokens": "1:2", "sp": "1/2", "sample": True}


def test_fast_path_tells_equal_values_of_other_types_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """1 == 1.0 == True and "x" == _Str("x"): a cache of checked raw values
    must not take one for the other (some are errors, some keep their type);
    nor must validate's checks made on the way miss one."""
    base = _base()
    base["ranks"]["0"][0].update(phase="decode", step=1, layer=0, mb=2, seqs=[0, 1], tokens="0:4", sp="0/2",
                                 sample=False)
    base["ranks"]["0"].insert(0, {"op": "compute", "stream": "s", "reads": {"x": None}, "seqs": [1], "tokens": 3})
    base["ranks"]["1"].append({"op": "send", "stream": "p2p", "to": 0, "channel": 1, "size": 4, "dtype": "bf16",
                               "reads": {"x": None}})
    base["ranks"]["0"].append({"op": "recv", "stream": "p2p", "from": 1, "channel": "1",
                               "writes": {"kv[layer=0]": "v"}})
    base["ranks"]["0"].append({"op": "broadcast", "stream": "comm", "group": "tp", "root": 1,
                               "reads": {"kv[layer=0]": "v", "x": None}})
    base["ranks"]["1"].append({"op": "broadcast", "stream": "comm", "group": "tp", "root": 1,
                               "writes": {"kv[layer=1]": "b"}})
    for rk in ("0", "1"):
        base["ranks"][rk].append({"op": "barrier", "stream": "comm", "group": "tp"})
    docs = [base]
    for rk, ops in base["ranks"].items():
        for i, op in enumerate(ops):
            twins = [{**op, key: v} for key in op for v in _variants(op[key])]
            twins += [{**op, key: v} for key, v in _EXTRA.items() if key not in op]
            for twin in twins:
                if "event" in twin and twin["event"] == op.get("event"):
                    twin["event"] = "twin"  # not a second record of the original's event
                doc = copy.deepcopy(base)
                doc["ranks"][rk].insert(i + 1, twin)
                docs.append(doc)
    assert len(docs) > 500
    _same_as_reference(docs, monkeypatch)
    kept = schedule_from_dict({"syncproof": 1, "buffers": {"h": []}, "ranks": {"0": [
        {"op": "compute", "stream": "s", "writes": {"h": "v"}},
        {"op": "compute", "stream": "s", "writes": {"h": _Str("v")}}]}})
    assert [type(op.writes[0].value) for op in kept.ops] == [str, _Str]


# ------------------------------------------------------------------ docs
def test_format_doc_example_is_the_example_file() -> None:
    doc = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")
    section = doc.split("## A complete example", 1)[1]
    block = section.split("```json\n", 1)[1].split("```", 1)[0]
    assert loads(block, "format.md") == load(ROOT / "examples" / "tp-allreduce-wait.json")
    after = section.split("```json\n", 1)[1].split("```\n", 1)[1]
    labels = after.split("```\n", 1)[1].split("```", 1)[0].split("\n")
    s = loads(block)
    assert [x for x in labels if x] == list(s.labels[: len(s.by_rank[0])])
