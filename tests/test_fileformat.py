"""The schedule file format (version 2; version 1 still loads): examples,
schemas, round trips, regions and the loader's error messages."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
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
SCHEMA_DIR = ROOT / "formal" / "schema"
SCHEMA_PATH = SCHEMA_DIR / "schedule-v2.schema.json"
V1_SCHEMA_PATH = SCHEMA_DIR / "schedule-v1.schema.json"

BROKEN = {
    "tp-allreduce-nowait", "pp-sendrecv-deadlock", "collective-order-mismatch",
    "kv-decode-step-early", "sp-prefill-early-attention",
}
CORRECT = {
    "tp-allreduce-wait", "pp-sendrecv-ordered", "collective-order-match",
    "kv-decode-step-ordered", "sp-prefill-gathered",
}


def _validator_of(path: Path) -> jsonschema.Draft202012Validator:
    schema = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    """The schema of format version 2, what syncproof writes."""
    return _validator_of(SCHEMA_PATH)


@pytest.fixture(scope="module")
def validator_v1() -> jsonschema.Draft202012Validator:
    return _validator_of(V1_SCHEMA_PATH)


@pytest.fixture(scope="module")
def validators(validator: jsonschema.Draft202012Validator,
               validator_v1: jsonschema.Draft202012Validator) -> dict[int, jsonschema.Draft202012Validator]:
    """The schema of each format version."""
    return {1: validator_v1, 2: validator}


def _schema_errors(validator: jsonschema.Draft202012Validator, doc: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_schemas_name_their_versions() -> None:
    for version, path in ((1, V1_SCHEMA_PATH), (2, SCHEMA_PATH)):
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["properties"]["syncproof"] == {"description": schema["properties"]["syncproof"]["description"],
                                                     "const": version}
        assert schema["$id"].endswith(path.name)
    assert fileformat.FORMAT_VERSION == 2 and fileformat.READS_VERSIONS == (1, 2)


# ------------------------------------------------------------------ examples
def test_example_set_is_complete() -> None:
    names = {p.stem for p in EXAMPLES}
    assert names >= BROKEN | CORRECT
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_matches_schema(path: Path, validators: dict[int, jsonschema.Draft202012Validator]) -> None:
    """An example is checked against the schema of the version it is written in."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["syncproof"] in validators
    assert _schema_errors(validators[doc["syncproof"]], doc) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_loads_and_round_trips(path: Path, validator: jsonschema.Draft202012Validator) -> None:
    s = load(path)
    assert s.name == path.stem
    text = dumps(s)
    again = loads(text, "<dump>")
    assert again == s
    assert dumps(again) == text  # the canonical text is a fixed point
    assert json.loads(text)["syncproof"] == 2  # written in the current version, whatever it was read from
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
def _base(version: int = 2) -> dict[str, Any]:
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
        "syncproof": version, "name": "base",
        "groups": {"tp": [0, 1], "solo": [0]},
        "buffers": {"x": [], "h": ["layer"], "kv": {"layer": 2, "token": 8}, "h_next": ["layer"],
                    "h_late": ["layer"]},
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
     'add "syncproof": 2', True),
    ("wrong-version", _top("syncproof", 3), "", "format version 3 is not supported (this syncproof reads"
     " versions 1 and 2)", "", True),
    ("unknown-top-level", _top("bufers", {}), "", "unknown top-level field 'bufers'",
     "did you mean 'buffers'?", True),
    ("missing-ranks", _top("ranks", delete=True), "", 'missing "ranks"', '"ranks": {', True),
    ("p2p-mode", _top("p2p", "eagr"), "", "p2p mode 'eagr' is unknown", "any, rendezvous, eager", True),
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
     "rank 1, op 3 (broadcast on comm)", 'a broadcast needs "root"', "", True),
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

# What format version 2 adds, broken one thing at a time (in a version-2 file).
_SEND = {"op": "send", "stream": "comm", "to": 0}
_RECV = {"op": "recv", "stream": "comm", "from": 0}
V2_CASES: list[Case] = [
    ("op-p2p-any", _append(1, {**_SEND, "p2p": "any"}), "rank 1, op 4 (send on comm)",
     'p2p on an op must be "eager" (a message known to fit the transport\'s buffer) or "rendezvous"'
     " (one known to block until its receiver posts), got 'any'", "", True),
    ("op-p2p-on-all-reduce", _set(1, 3, p2p="eager"), "rank 1, op 3 (all_reduce)",
     "field 'p2p' does not belong on an all_reduce op", "", True),
    ("progress-mode", _top("progress", "always"), "", "progress mode 'always' is unknown",
     "use one of any, concurrent", True),
    ("progress-not-a-string", _top("progress", True), "", 'progress must be "any" or "concurrent"', "", True),
    ("completion", _set(1, 3, completion="strong"), "rank 1, op 3 (all_reduce on comm)",
     "completion must be \"weak\" (a custom collective without an end barrier), got 'strong'", "", True),
    ("completion-on-send", _append(1, {**_SEND, "completion": "weak"}), "rank 1, op 4 (send)",
     "field 'completion' does not belong on a send op", "", True),
    ("counts-length", _replace_op(1, 3, {"op": "all_gather", "stream": "comm", "group": "tp", "counts": [1, 2, 3]}),
     "rank 1, op 3 (all_gather on comm)", "counts has 3 entries but group 'tp' has 2 members",
     "one count per member", False),
    ("recv-counts-length",
     _replace_op(1, 3, {"op": "all_to_all", "stream": "comm", "group": "tp", "counts": [1, 2], "recv_counts": [1]}),
     "rank 1, op 3 (all_to_all on comm)", "recv_counts has 1 entries but group 'tp' has 2 members", "", False),
    ("counts-negative",
     _replace_op(1, 3, {"op": "reduce_scatter", "stream": "comm", "group": "tp", "counts": [1, -2]}),
     "rank 1, op 3 (reduce_scatter on comm)", "counts must be a list of non-negative integers", "", True),
    ("counts-on-all-reduce", _set(1, 3, counts=[1, 1]), "rank 1, op 3 (all_reduce)",
     "field 'counts' does not belong on an all_reduce op", "", True),
    ("recv-counts-on-all-gather",
     _replace_op(1, 3, {"op": "all_gather", "stream": "comm", "group": "tp", "recv_counts": [1, 1]}),
     "rank 1, op 3 (all_gather)", "field 'recv_counts' does not belong on an all_gather op", "", True),
    ("batch-not-consecutive",
     _both(_append(1, {**_SEND, "batch": "b0"}), _append(1, {"op": "compute", "stream": "comm"}),
           _append(1, {**_RECV, "batch": "b0"})),
     "rank 1, op 6 (recv on comm)", "group call 'b0' is not one run of consecutive ops on rank 1",
     "give each group call its own batch id", False),
    ("batch-two-streams", _both(_append(1, {**_SEND, "batch": "b0"}), _append(1, {**_RECV, "stream": "p2p",
                                                                                   "batch": "b0"})),
     "rank 1, op 5 (recv on p2p)", "group call 'b0' has parts on streams 'comm' and 'p2p'",
     "launch a group call on one stream", False),
    ("batch-holds-compute", _both(_append(1, {**_SEND, "batch": "b0"}),
                                  _append(1, {"op": "compute", "stream": "comm", "batch": "b0"})),
     "rank 1, op 5 (compute)", "field 'batch' does not belong on a compute op", "", True),
    ("batch-holds-record", _both(_set(1, 2, batch="b0"), _set(1, 3, batch="b0")),
     "rank 1, op 2 (wait)", "field 'batch' does not belong on a wait op", "", True),
    ("batch-not-a-string", _set(1, 3, batch=3), "rank 1, op 3 (all_reduce on comm)",
     "batch must be a non-empty string, got 3", "", True),
    ("comm-empty", _set(1, 3, comm=""), "rank 1, op 3 (all_reduce on comm)",
     "comm must be a non-empty string, got ''", "", True),
    ("reduce-without-root", _replace_op(1, 3, {"op": "reduce", "stream": "comm", "group": "tp"}),
     "rank 1, op 3 (reduce on comm)", 'a reduce needs "root": the rank it is rooted at', "", True),
    ("gather-root-outside-group", _replace_op(1, 3, {"op": "gather", "stream": "comm", "group": "tp", "root": 5}),
     "rank 1, op 3 (gather on comm)", "gather root 5 is not in group 'tp'", "", False),
    ("scatter-without-group", _replace_op(1, 3, {"op": "scatter", "stream": "comm", "root": 0}),
     "rank 1, op 3 (scatter on comm)", "scatter needs \"group\"", "", True),
    ("wait-signal-without-signal", _append(1, {"op": "wait_signal", "stream": "comm", "from": 0}),
     "rank 1, op 4 (wait_signal on comm)", 'a wait_signal needs "signal": the signal it waits for', "", True),
    ("wait-signal-without-from", _append(1, {"op": "wait_signal", "stream": "comm", "signal": "s"}),
     "rank 1, op 4 (wait_signal on comm)", 'a wait_signal needs "from": the source rank', "", True),
    ("wait-signal-with-reads", _append(1, {"op": "wait_signal", "stream": "comm", "from": 0, "signal": "s",
                                           "reads": {"x": None}}),
     "rank 1, op 4 (wait_signal)", "field 'reads' does not belong on a wait_signal op", "", True),
    ("put-without-to", _append(1, {"op": "put", "stream": "comm", "writes": {"x": "v"}}),
     "rank 1, op 4 (put on comm)", 'a put needs "to": the destination rank', "", True),
    ("put-to-unknown-rank", _append(1, {"op": "put", "stream": "comm", "to": 7}), "rank 1, op 4 (put on comm)",
     "peer rank 7 does not exist", "", False),
    ("put-to-itself", _append(1, {"op": "put", "stream": "comm", "to": 1}), "rank 1, op 4 (put on comm)",
     "put to its own rank 1", "", False),
    ("put-in-batch", _append(1, {"op": "put", "stream": "comm", "to": 0, "batch": "b"}), "rank 1, op 4 (put)",
     "field 'batch' does not belong on a put op", "", True),
    ("put-signal-empty", _append(1, {"op": "put", "stream": "comm", "to": 0, "signal": ""}),
     "rank 1, op 4 (put on comm)", "signal must be a non-empty string", "", True),
] + [
    # the host and the caching allocator (issue 12): host syncs and a tensor's lifetime
    ("sync-two-targets", _append(1, {"op": "sync", "event": "part_ready", "target": "comm"}),
     "rank 1, op 4 (sync on host)", "a sync waits for one thing: an \"event\" (event.synchronize()), a"
     " \"target\" stream (stream.synchronize()) or the op named in \"of\"", "", True),
    ("sync-event-and-of", _append(1, {"op": "sync", "event": "part_ready", "of": "mm"}),
     "rank 1, op 4 (sync on host)", "a sync waits for one thing", "", True),
    ("sync-on-device-stream", _append(1, {"op": "sync", "stream": "comm", "target": "comm"}),
     "rank 1, op 4 (sync)", "a sync runs on the host, so its stream is 'host', got 'comm'",
     'name the device stream in "target"', True),
    ("alloc-on-device-stream", _append(1, {"op": "alloc", "stream": "compute", "buffer": "x", "target": "compute"}),
     "rank 1, op 4 (alloc)", "an alloc runs on the host, so its stream is 'host', got 'compute'", "", True),
    ("sync-of-unknown-op", _append(1, {"op": "sync", "of": "ar"}), "rank 1, op 4 (sync on host)",
     "sync waits for op 'ar', but rank 1 issues no op of that name before it", "", False),
    ("sync-with-buffer", _append(1, {"op": "sync", "buffer": "x"}), "rank 1, op 4 (sync)",
     "field 'buffer' does not belong on a sync op", "", True),
    ("alloc-without-target", _append(1, {"op": "alloc", "buffer": "x"}), "rank 1, op 4 (alloc on host)",
     "needs \"target\": the device stream it allocates on", "", True),
    ("alloc-without-buffer", _append(1, {"op": "alloc", "target": "compute"}), "rank 1, op 4 (alloc on host)",
     "needs \"buffer\": the tensor's buffer", "", True),
    ("alloc-undeclared-buffer", _append(1, {"op": "alloc", "buffer": "hh", "target": "compute"}),
     "rank 1, op 4 (alloc on host)", "buffer 'hh' is not declared", "did you mean 'h'?", False),
    ("alloc-twice", _both(_append(1, {"op": "alloc", "buffer": "x", "target": "compute"}),
                          _append(1, {"op": "alloc", "buffer": "x", "target": "compute"})),
     "rank 1, op 5 (alloc on host)", "buffer 'x' is allocated twice on rank 1 (first at op 4)",
     "give each allocation its own buffer name", False),
    ("alloc-reuses-not-freed", _both(_append(1, {"op": "alloc", "buffer": "x", "target": "compute"}),
                                     _append(1, {"op": "alloc", "buffer": "h", "target": "compute",
                                                 "reuses": "x"})),
     "rank 1, op 5 (alloc on host)", "alloc of 'h' reuses the block of 'x', which rank 1 has not freed before it",
     "free 'x' first", False),
    ("alloc-reuses-across-streams", _both(_append(1, {"op": "alloc", "buffer": "x", "target": "compute"}),
                                          _append(1, {"op": "free", "buffer": "x"}),
                                          _append(1, {"op": "alloc", "buffer": "h", "target": "comm",
                                                      "reuses": "x"})),
     "rank 1, op 6 (alloc on host)", "alloc of 'h' on stream 'comm' reuses the block of 'x', allocated on stream"
     " 'compute': the caching allocator hands a freed block only to allocations on the stream it was allocated on",
     "", False),
    ("alloc-reuses-other-axes", _both(_append(1, {"op": "alloc", "buffer": "x", "target": "compute"}),
                                      _append(1, {"op": "free", "buffer": "x"}),
                                      _append(1, {"op": "alloc", "buffer": "h", "target": "compute",
                                                  "reuses": "x"})),
     "rank 1, op 6 (alloc on host)", "alloc of 'h' reuses the block of 'x', but their axes differ",
     "declare both buffers with the same axes", False),
    ("block-handed-out-twice", _both(_append(1, {"op": "alloc", "buffer": "h", "target": "compute"}),
                                     _append(1, {"op": "free", "buffer": "h"}),
                                     _append(1, {"op": "alloc", "buffer": "h_next", "target": "compute",
                                                 "reuses": "h"}),
                                     _append(1, {"op": "alloc", "buffer": "h_late", "target": "compute",
                                                 "reuses": "h"})),
     "rank 1, op 7 (alloc on host)", "the block of 'h' is handed out twice (first to op 6)", "", False),
    ("reuses-undeclared-buffer", _append(1, {"op": "alloc", "buffer": "x", "target": "compute", "reuses": "y"}),
     "rank 1, op 4 (alloc on host)", "buffer 'y' is not declared", "", False),
    ("free-before-alloc", _append(1, {"op": "free", "buffer": "x"}), "rank 1, op 4 (free on host)",
     "free of 'x', which rank 1 has not allocated before it", "add an alloc of 'x' before it", False),
    ("free-twice", _both(_append(1, {"op": "alloc", "buffer": "x", "target": "compute"}),
                         _append(1, {"op": "free", "buffer": "x"}), _append(1, {"op": "free", "buffer": "x"})),
     "rank 1, op 6 (free on host)", "free of 'x' after it was freed (at op 5)", "", False),
    ("record-stream-before-alloc", _append(1, {"op": "record_stream", "buffer": "x", "target": "comm"}),
     "rank 1, op 4 (record_stream on host)", "record_stream of 'x', which rank 1 has not allocated before it", "",
     False),
    ("record-stream-after-free", _both(_append(1, {"op": "alloc", "buffer": "x", "target": "compute"}),
                                       _append(1, {"op": "free", "buffer": "x"}),
                                       _append(1, {"op": "record_stream", "buffer": "x", "target": "comm"})),
     "rank 1, op 6 (record_stream on host)", "record_stream of 'x' after it was freed (at op 5)", "", False),
    ("record-stream-without-target", _append(1, {"op": "record_stream", "buffer": "x"}),
     "rank 1, op 4 (record_stream on host)", "needs \"target\": the device stream that uses the tensor", "", True),
    ("free-with-target", _append(1, {"op": "free", "buffer": "x", "target": "comm"}), "rank 1, op 4 (free)",
     "field 'target' does not belong on a free op", "", True),
    ("alloc-in-batch", _append(1, {"op": "alloc", "buffer": "x", "target": "comm", "batch": "b"}),
     "rank 1, op 4 (alloc)", "field 'batch' does not belong on an alloc op", "", True),
]

# Version-2 fields in a version-1 file: the error names the field and the fix.
_NEEDS_V2 = 'write "syncproof": 2 at the top'
V1_CASES: list[Case] = [
    ("v1-comm", _set(1, 3, comm="c"), "rank 1, op 3 (all_reduce)", "field 'comm' needs format version 2",
     _NEEDS_V2, True),
    ("v1-batch", _append(1, {**_SEND, "batch": "b0"}), "rank 1, op 4 (send)",
     "field 'batch' needs format version 2", _NEEDS_V2, True),
    ("v1-op-p2p", _append(1, {**_RECV, "p2p": "eager"}), "rank 1, op 4 (recv)",
     "field 'p2p' needs format version 2", _NEEDS_V2, True),
    ("v1-completion", _set(1, 3, completion="weak"), "rank 1, op 3 (all_reduce)",
     "field 'completion' needs format version 2", _NEEDS_V2, True),
    ("v1-counts", _replace_op(1, 3, {"op": "all_gather", "stream": "comm", "group": "tp", "counts": [1, 1]}),
     "rank 1, op 3 (all_gather)", "field 'counts' needs format version 2", _NEEDS_V2, True),
    ("v1-reduce", _replace_op(1, 3, {"op": "reduce", "stream": "comm", "group": "tp", "root": 0}),
     "rank 1, op 3 (reduce)", "a reduce op needs format version 2", _NEEDS_V2, True),
    ("v1-put", _append(1, {"op": "put", "stream": "comm", "to": 0}), "rank 1, op 4 (put)",
     "a put op needs format version 2", _NEEDS_V2, True),
    ("v1-bare-put", _append(1, {"op": "put", "stream": "comm"}), "rank 1, op 4 (put)",
     "a put op needs format version 2", _NEEDS_V2, True),
    ("v1-wait-signal", _append(1, {"op": "wait_signal", "stream": "comm", "from": 0, "signal": "s"}),
     "rank 1, op 4 (wait_signal)", "a wait_signal op needs format version 2", _NEEDS_V2, True),
    ("v1-progress", _top("progress", "concurrent"), "", "field 'progress' needs format version 2", _NEEDS_V2,
     True),
    ("v1-sync", _append(1, {"op": "sync", "stream": "host"}), "rank 1, op 4 (sync)",
     "a sync op needs format version 2", _NEEDS_V2, True),
    ("v1-alloc", _append(1, {"op": "alloc", "stream": "host", "buffer": "x", "target": "compute"}),
     "rank 1, op 4 (alloc)", "an alloc op needs format version 2", _NEEDS_V2, True),
    ("v1-free", _append(1, {"op": "free", "stream": "host", "buffer": "x"}), "rank 1, op 4 (free)",
     "a free op needs format version 2", _NEEDS_V2, True),
    ("v1-record-stream", _append(1, {"op": "record_stream", "stream": "host", "buffer": "x", "target": "comm"}),
     "rank 1, op 4 (record_stream)", "a record_stream op needs format version 2", _NEEDS_V2, True),
]

# (format version of the base, case): every v1 case in both versions
VERSIONED: list[tuple[int, Case]] = ([(v, c) for c in CASES for v in (1, 2)] + [(2, c) for c in V2_CASES]
                                     + [(1, c) for c in V1_CASES])
_VERSIONED_IDS = [f"v{v}-{c[0]}" for v, c in VERSIONED]


def _load_error(tmp_path: Path, text: str, name: str = "bad.json") -> ScheduleError:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScheduleError) as e:
        load(path)
    return e.value


@pytest.mark.parametrize("version", [1, 2])
def test_base_of_malformed_cases_is_valid(version: int,
                                          validators: dict[int, jsonschema.Draft202012Validator]) -> None:
    doc = _base(version)
    assert _schema_errors(validators[version], doc) == []
    s = loads(json.dumps(doc))
    assert loads(dumps(s)) == s


@pytest.mark.parametrize("version, case", VERSIONED, ids=_VERSIONED_IDS)
def test_malformed_file_is_rejected_with_a_precise_message(tmp_path: Path, version: int, case: Case) -> None:
    _id, mutate, where, problem, hint, _schema = case
    doc = _base(version)
    mutate(doc)
    err = _load_error(tmp_path, json.dumps(doc, indent=1), f"{_id}.json")
    text = str(err)
    assert text.startswith(str(tmp_path / f"{_id}.json") + ":"), text
    assert where in err.where or where in text, text
    assert problem in text, text
    if hint:
        assert hint in err.hint, text
        assert f"(hint: {err.hint})" in text


@pytest.mark.parametrize("version, case", VERSIONED, ids=_VERSIONED_IDS)
def test_schema_rejects_exactly_the_structural_cases(version: int, case: Case,
                                                     validators: dict[int, jsonschema.Draft202012Validator]) -> None:
    """The schema of the file's version catches shape errors; cross-references,
    intervals, overlaps, group sizes and group-call runs are left to the loader."""
    doc = _base(version)
    case[1](doc)
    assert bool(_schema_errors(validators[version], doc)) is case[5]


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


def test_version_must_be_an_integer(tmp_path: Path) -> None:
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



# ------------------------------------------------------------------ format version 2
def _every_v2() -> dict[str, Any]:
    """Every kind and every field of format version 2, at least once, written
    as dumps writes them (canonical regions, no default values)."""
    return {
        "syncproof": 2, "name": "every-v2-field", "description": "each kind and v2 field at least once",
        "p2p": "rendezvous", "progress": "concurrent",
        "groups": {"g": [0, 1], "ep": [0, 1, 2]},
        "buffers": {"a": ["i"], "b": ["i"], "sym": {"slot": 4}, "t0": ["i"], "t1": ["i"]},
        "init": {"a": "a0"},
        "ranks": {
            "0": [
                {"op": "compute", "stream": "compute", "name": "mm", "reads": {"a[i=9]": "a0"},
                 "writes": {"a[i=8]": "h"}},
                {"op": "record", "stream": "compute", "event": "h_ready"},
                {"op": "wait", "stream": "comm", "event": "h_ready"},
                {"op": "send", "stream": "comm", "to": 1, "size": 8, "reads": {"a[i=0]": "a0"}, "comm": "pp",
                 "p2p": "eager", "batch": "b0"},
                {"op": "recv", "stream": "comm", "from": 1, "channel": "tok", "writes": {"b[i=0]": "a0"},
                 "p2p": "rendezvous", "batch": "b0"},
                {"op": "all_reduce", "stream": "comm", "group": "g", "reads": {"a[i=1]": "a0"},
                 "writes": {"b[i=1]": "sum"}, "comm": "tp-fast", "completion": "weak"},
                {"op": "all_gather", "stream": "comm", "group": "g", "batch": "b1", "counts": [2, 3]},
                {"op": "reduce_scatter", "stream": "comm", "group": "g", "batch": "b1", "counts": [1, 1]},
                {"op": "all_to_all", "stream": "comm", "group": "ep", "counts": [1, 4, 2], "recv_counts": [1, 3, 5]},
                {"op": "broadcast", "stream": "comm", "group": "g", "root": 0, "p2p": "rendezvous"},
                {"op": "reduce", "stream": "comm", "group": "g", "root": 1, "size": 4, "dtype": "bf16",
                 "reads": {"a[i=2]": "a0"}, "p2p": "eager"},
                {"op": "gather", "stream": "comm", "group": "g", "root": 0, "writes": {"b[i=3]": "gathered"},
                 "comm": "gcomm", "completion": "weak"},
                {"op": "scatter", "stream": "comm", "group": "g", "root": 0, "reads": {"a[i=4]": "a0"}},
                {"op": "put", "stream": "copy", "name": "dispatch", "to": 1, "size": 16, "dtype": "fp8",
                 "reads": {"a[i=5]": "a0"}, "writes": {"sym[slot=0]": "tok"}, "signal": "s0", "layer": 0},
                {"op": "put", "stream": "copy", "to": 2, "writes": {"sym[slot=1]": "tok2"}},
                {"op": "wait_signal", "stream": "compute", "name": "combine_wait", "from": 1, "signal": "back",
                 "phase": "decode", "step": 0},
                {"op": "barrier", "stream": "comm", "group": "ep", "batch": "b2"},
                # the host (issue 12): host work, the allocator, host syncs, an event recorded again
                {"op": "compute", "stream": "host", "name": "fill_pinned", "writes": {"a[i=6]": "pinned"}},
                {"op": "alloc", "stream": "host", "buffer": "t0", "target": "compute"},
                {"op": "compute", "stream": "compute", "name": "use", "writes": {"t0[i=0]": "t"}},
                {"op": "record_stream", "stream": "host", "buffer": "t0", "target": "comm"},
                {"op": "free", "stream": "host", "buffer": "t0"},
                {"op": "alloc", "stream": "host", "name": "next", "buffer": "t1", "target": "compute",
                 "reuses": "t0"},
                {"op": "record", "stream": "compute", "event": "h_ready"},
                {"op": "sync", "stream": "host", "event": "h_ready"},
                {"op": "sync", "stream": "host", "target": "comm", "layer": 1},
                {"op": "sync", "stream": "host", "of": "mm"},
                {"op": "sync", "stream": "host"},
            ],
            "1": [
                {"op": "recv", "stream": "comm", "from": 0, "writes": {"b[i=0]": "a0"}, "comm": "pp", "batch": "x"},
                {"op": "send", "stream": "comm", "to": 0, "channel": "tok", "reads": {"a[i=0]": "a0"}, "batch": "x"},
                {"op": "all_reduce", "stream": "comm", "group": "g", "comm": "tp-fast", "completion": "weak"},
                {"op": "all_gather", "stream": "comm", "group": "g", "counts": [2, 3]},
                {"op": "reduce_scatter", "stream": "comm", "group": "g", "counts": [1, 1]},
                {"op": "all_to_all", "stream": "comm", "group": "ep", "counts": [3, 0, 1], "recv_counts": [4, 0, 6]},
                {"op": "broadcast", "stream": "comm", "group": "g", "root": 0},
                {"op": "reduce", "stream": "comm", "group": "g", "root": 1, "size": 4, "dtype": "bf16"},
                {"op": "gather", "stream": "comm", "group": "g", "root": 0, "comm": "gcomm"},
                {"op": "scatter", "stream": "comm", "group": "g", "root": 0},
                {"op": "wait_signal", "stream": "compute", "from": 0, "signal": "s0"},
                {"op": "put", "stream": "copy", "to": 0, "signal": "back"},
                {"op": "barrier", "stream": "comm", "group": "ep"},
            ],
            "2": [
                {"op": "all_to_all", "stream": "comm", "group": "ep", "counts": [5, 6, 0], "recv_counts": [2, 1, 0]},
                {"op": "barrier", "stream": "comm", "group": "ep"},
            ],
        },
    }


_V2_FIELDS = ("comm", "p2p", "batch", "signal", "counts", "recv_counts", "completion", "target", "of", "buffer",
              "reuses")


def test_v2_round_trip_keeps_every_new_field_and_kind(validator: jsonschema.Draft202012Validator) -> None:
    doc = _every_v2()
    assert _schema_errors(validator, doc) == []
    s = schedule_from_dict(copy.deepcopy(doc), "v2.json")
    assert {op.kind for op in s.ops} == set(Kind)
    assert {k for op in s.ops for k in _V2_FIELDS if getattr(op, k) is not None} == set(_V2_FIELDS)
    text = dumps(s)
    again = loads(text, "<dump>")
    assert again == s
    assert dumps(again) == text
    assert _schema_errors(validator, json.loads(text)) == []
    assert _schema_errors(validator, schedule_to_dict(s)) == []
    assert again.p2p == "rendezvous" and again.progress == "concurrent"
    written = json.loads(text)
    assert {k: v for k, v in written.items() if k != "ranks"} == {k: v for k, v in doc.items() if k != "ranks"}
    for rk, ops in doc["ranks"].items():
        assert written["ranks"][rk] == ops  # every op comes back field for field
        for d, op in zip(ops, again.by_rank[int(rk)], strict=True):
            for key in ("comm", "p2p", "batch", "signal", "completion", "target", "of", "buffer", "reuses"):
                assert getattr(op, key) == d.get(key)
            for key in ("counts", "recv_counts"):
                assert getattr(op, key) == (tuple(d[key]) if key in d else None)
            assert op.root == d.get("root")


def test_v2_fields_keep_their_types_through_the_builder_document(validator: jsonschema.Draft202012Validator) -> None:
    s = schedule_from_dict(_every_v2())
    again = schedule_from_dict(schedule_to_dict(s))
    assert again == s
    put = s.by_rank[0][13]
    assert put.kind is Kind.PUT and put.peer == 1 and put.signal == "s0" and put.size == 16
    assert str(put.writes[0].region) == "sym[slot=0]" and put.meta.layer == 0
    wsig = s.by_rank[1][10]
    assert wsig.kind is Kind.WAIT_SIGNAL and wsig.peer == 0 and wsig.signal == "s0" and not wsig.reads
    assert s.by_rank[1][5].counts == (3, 0, 1) and s.by_rank[1][5].recv_counts == (4, 0, 6)


def test_communicator_defaults() -> None:
    """comm, when given; else a collective's group; a send/recv: one per rank
    pair, and one per pair and channel other than "0"; nothing for the rest."""
    s = schedule_from_dict(_every_v2())
    comms = {s.label(op): op.communicator for op in s.ops}
    assert comms["r0/comm: send(->1,pp)#0"] == "pp"
    assert comms["r0/comm: recv(<-1,tok)#0"] == "p2p:0-1:tok"
    assert comms["r1/comm: send(->0,tok)#0"] == "p2p:0-1:tok"
    assert comms["r1/comm: recv(<-0,pp)#0"] == "pp"
    assert comms["r0/comm: all_reduce#0(g)"] == "tp-fast"
    assert comms["r0/comm: all_gather#1(g)"] == "g"
    assert comms["r0/comm: barrier#1(ep)"] == "ep"
    assert comms["r0/comm: gather#5(g)"] == "gcomm"
    for label in ("r0/compute: mm", "r0/compute: record(h_ready)", "r0/copy: put(->1,s0)#0 dispatch L0",
                  "r1/compute: wait_signal(<-0,s0)#0"):
        assert comms[label] is None
    plain = loads(json.dumps({"syncproof": 2, "ranks": {"0": [_SEND | {"to": 3}], "3": [_RECV]}}))
    assert [op.communicator for op in plain.ops] == ["p2p:0-3", "p2p:0-3"]


def test_v2_labels_name_puts_and_signals() -> None:
    s = schedule_from_dict(_every_v2())
    assert s.label(s.by_rank[0][14]) == "r0/copy: put(->2)#0"
    assert s.label(s.by_rank[0][15]) == "r0/compute: wait_signal(<-1,back)#0 combine_wait decode t0"
    assert s.find("r0/comm: reduce#4(g)") is s.by_rank[0][10]


def test_v1_file_without_p2p_reads_as_any() -> None:
    """v1's implied "rendezvous" claimed a blocking send that NCCL does not
    have: a v1 file without "p2p" is read with the v2 default."""
    doc = _base(1)
    assert "p2p" not in doc
    s = loads(json.dumps(doc))
    assert s.p2p == "any" and s.progress == "any"
    assert "p2p" not in json.loads(dumps(s))
    for mode in ("rendezvous", "eager"):  # written out, a mode keeps its meaning
        doc["p2p"] = mode
        s = loads(json.dumps(doc))
        assert s.p2p == mode
        written = json.loads(dumps(s))
        assert written["syncproof"] == 2 and written["p2p"] == mode


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_without_p2p_reads_as_any(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert load(path).p2p == doc.get("p2p", "any")


def test_v1_and_v2_of_one_document_are_the_same_schedule() -> None:
    v1, v2 = _base(1), _base(2)
    assert loads(json.dumps(v1)) == loads(json.dumps(v2))


def test_v2_default_modes_are_left_out_and_accepted_written_out(validator: jsonschema.Draft202012Validator) -> None:
    doc = _base(2)
    doc.update(p2p="any", progress="any")
    assert _schema_errors(validator, doc) == []
    s = loads(json.dumps(doc))
    assert s == loads(json.dumps(_base(2)))
    assert "p2p" not in schedule_to_dict(s) and "progress" not in schedule_to_dict(s)


def test_v2_error_in_a_later_rank_names_that_rank(tmp_path: Path) -> None:
    doc = _every_v2()
    doc["ranks"]["2"][0]["counts"] = [1, 2]
    err = _load_error(tmp_path, json.dumps(doc), "ep.json")
    assert str(err).startswith(f"{tmp_path / 'ep.json'}: rank 2, op 0 (all_to_all on comm): counts has 2 entries"
                               " but group 'ep' has 3 members"), str(err)


def test_batch_checks_on_a_schedule_made_without_the_loader() -> None:
    """validate, as importers call it, checks group calls too."""
    s = loads(json.dumps(_base(2)))
    ops = list(s.ops)
    ops[0] = dataclasses.replace(ops[0], batch="b")  # a compute op
    with pytest.raises(ScheduleError) as e:
        validate_module.validate(dataclasses.replace(s, ops=tuple(ops), source="imp"))
    assert str(e.value).startswith("imp: rank 0, op 0 (compute on compute): a compute cannot be part of group"
                                   " call 'b'")
    ops = list(s.ops)
    ops[3] = dataclasses.replace(ops[3], counts=(1,))
    with pytest.raises(ScheduleError) as e:
        validate_module.validate(dataclasses.replace(s, ops=tuple(ops), source="imp"))
    assert "imp: rank 0, op 3 (all_reduce on comm): counts has 1 entries but group 'tp' has 2 members" in str(e.value)


# ------------------------------------------------------------------ the loader's fast path
# schedule_from_dict decides most ops on a fast path (exact types, caches of
# checked raw values, validate's per-op checks done on the way) and leaves
# anything unusual to the reference, fileformat._op and validate's own pass.
# The reference alone must give the very same schedule, or the same error.
def _reference_ops(ranked: list[tuple[int, Any]], buffers: dict[str, Buffer], src: str,
                   groups: Any, ranks: Any, version: int = 2) -> tuple[list[Op], None]:
    ops: list[Op] = []
    for rank, lst in ranked:
        for i, d in enumerate(lst):
            ops.append(fileformat._op(d, rank, i, len(ops), buffers, src, version))
    return ops, None


def _nothing_is_fine(*args: Any) -> Callable[[int, Op], bool]:
    """validate's fast check, turned off: every op goes through _check_op."""
    return lambda pos, op: False


def _shape(x: Any) -> Any:
    """``x`` down to its leaves, with exact types (fields read as attributes: the
    loaders leave None fields of format v2 to the class's defaults)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (type(x), [(k, _shape(getattr(x, k))) for k in _FIELDS[type(x)]])
    if isinstance(x, tuple):
        return (tuple, [_shape(v) for v in x])
    return (type(x), x)


_FIELDS = {c: [f.name for f in dataclasses.fields(c)] for c in (Op, Access, Meta, Region, Interval, Buffer,
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
    docs = [_base(1), _base(2)]
    for version, case in VERSIONED:
        doc = _base(version)
        case[1](doc)
        docs.append(doc)
        if "ranks" in doc:  # the same problem after the good ops of the base (with their own events)
            warm = copy.deepcopy(doc)
            for rk, ops in _base(version)["ranks"].items():
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
    docs.append(_every_v2())
    mixed = _every_v2()  # v2 ops among v1 ones
    for rk, ops in _base(2)["ranks"].items():
        mixed["ranks"].setdefault(rk, [])
        for i, op in enumerate(ops):
            mixed["ranks"][rk].insert(2 * i, op)
    mixed["buffers"].update(_base()["buffers"])
    mixed["groups"]["tp"] = [0, 1]
    mixed["init"].update(_base()["init"])
    docs.append(mixed)
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
        {"batch": "b"}, {"comm": "c"}, {"counts": (1,)}, {"recv_counts": (1, 2)}, {"p2p": "eager"},
        {"kind": Kind.REDUCE}, {"kind": Kind.GATHER, "group": "tp", "root": 5}, {"kind": Kind.PUT, "peer": 1},
        {"kind": Kind.WAIT_SIGNAL, "peer": 1}, {"kind": Kind.WAIT_SIGNAL, "peer": 1, "signal": "s"},
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


def _doc_json_blocks() -> list[Any]:
    """Every ```json block of docs/format.md, parsed: a whole document, or
    (for a block of op lines that is not one) each line."""
    text = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")
    out: list[Any] = []
    for block in text.split("```json\n")[1:]:
        body = block.split("```", 1)[0]
        try:
            out.append(json.loads(body))
        except json.JSONDecodeError:
            out.extend(json.loads(line.rstrip(",")) for line in body.splitlines() if line.strip())
    return out


def _record_for(op: dict[str, Any]) -> list[dict[str, Any]]:
    """A record of the event an op shown alone waits or syncs on: an event the
    rank never records is a load error."""
    if op.get("op") in ("sync", "wait") and "event" in op:
        return [{"op": "record", "stream": "compute", "event": op["event"]}]
    return []


def test_format_doc_json_blocks_are_valid(validator: jsonschema.Draft202012Validator) -> None:
    """Every schedule in docs/format.md loads and matches the schema of its
    version; every op shown there is a valid version 2 op."""
    blocks = _doc_json_blocks()
    schedules = [b for b in blocks if isinstance(b, dict) and "syncproof" in b]
    ops = [o for b in blocks if b not in schedules for o in (b if isinstance(b, list) else [b])]
    assert len(schedules) >= 4 and len(ops) >= 8
    kinds = set()
    for doc in schedules:
        assert _schema_errors(validator, doc) == [], doc.get("name")
        s = schedule_from_dict(doc, "format.md")
        assert loads(dumps(s)) == s
    for op in ops:
        kinds.add(op["op"])
        wrapped = {"syncproof": 2, "groups": {g: [0, 1, 2] for g in ("tp", "sp", "ep")},
                   "buffers": {n: [] for n in ("act", "tok", "kv", "part", "h")},
                   "ranks": {"0": [op] + _record_for(op), "1": [], "2": []}}
        assert _schema_errors(validator, wrapped) == [], op
        schedule_from_dict(wrapped, "format.md")
    assert {"send", "all_gather", "all_to_all", "all_reduce"} <= kinds


def test_format_doc_version_1_errors_are_the_loaders() -> None:
    text = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")
    doc = _base(1)
    _set(1, 3, comm="c")(doc)
    with pytest.raises(ScheduleError) as e:
        schedule_from_dict(doc, "old.json")
    assert str(e.value) in text
    doc = _base(1)
    doc["ranks"]["0"] += [{"op": "put", "stream": "comm", "to": 1}]
    with pytest.raises(ScheduleError) as e:
        schedule_from_dict(doc, "old.json")
    assert str(e.value) in text


# ------------------------------------------------------------------ the host and the allocator (issue 12)
def _host_doc() -> dict[str, Any]:
    """A tensor's lifetime, host work and each kind of host sync, with the
    stream of the host-only kinds left out (it is always the host)."""
    return {
        "syncproof": 2, "name": "host",
        "groups": {"tp": [0, 1]},
        "buffers": {"pin": [], "a": ["i"], "b": ["i"], "out": []},
        "ranks": {
            "0": [
                {"op": "compute", "stream": "host", "name": "fill", "writes": {"pin": "in"}},
                {"op": "alloc", "buffer": "a", "target": "side"},
                {"op": "compute", "stream": "side", "name": "h2d", "reads": {"pin": "in"}, "writes": {"a": "in"}},
                {"op": "record", "stream": "side", "event": "e"},
                {"op": "wait", "stream": "main", "event": "e"},
                {"op": "compute", "stream": "main", "name": "use", "reads": {"a": "in"}, "writes": {"out": "y"}},
                {"op": "record_stream", "buffer": "a", "target": "main"},
                {"op": "free", "buffer": "a"},
                {"op": "alloc", "buffer": "b", "target": "side", "reuses": "a"},
                {"op": "record", "stream": "main", "event": "e"},
                {"op": "sync", "event": "e"},
                {"op": "sync", "target": "side"},
                {"op": "all_reduce", "stream": "comm", "group": "tp", "name": "ar"},
                {"op": "sync", "of": "ar"},
                {"op": "sync"},
            ],
            "1": [{"op": "all_reduce", "stream": "comm", "group": "tp"}],
        },
    }


def test_host_kinds_load_on_the_host_stream(validator: jsonschema.Draft202012Validator) -> None:
    doc = _host_doc()
    assert _schema_errors(validator, doc) == []
    s = schedule_from_dict(copy.deepcopy(doc), "host.json")
    host = [op for op in s.by_rank[0] if op.kind in (Kind.SYNC, Kind.ALLOC, Kind.FREE, Kind.RECORD_STREAM)]
    assert len(host) == 8 and all(op.stream == "host" and op.on_host for op in host)
    assert s.by_rank[0][0].on_host and not s.by_rank[0][2].on_host  # host work: any kind on the "host" stream
    alloc = s.by_rank[0][8]
    assert (alloc.buffer, alloc.target, alloc.reuses) == ("b", "side", "a")
    assert [s.label(op).split(": ", 1)[1] for op in s.by_rank[0][10:15] if op.kind is Kind.SYNC] == [
        "sync(event e)", "sync(stream side)", "sync(op ar)", "sync(device)"]
    assert s.label(alloc) == "r0/host: alloc(b on side, reuses a)"
    assert s.label(s.by_rank[0][6]) == "r0/host: record_stream(a, main)"
    assert s.label(s.by_rank[0][7]) == "r0/host: free(a)"
    assert {"host", "alloc"} <= s.features
    # written back with the stream spelled out, and equal after a round trip
    written = json.loads(dumps(s))
    assert all(op["stream"] == "host" for op in written["ranks"]["0"] if op["op"] in ("sync", "alloc", "free"))
    assert _schema_errors(validator, written) == []
    assert loads(dumps(s)) == s
    assert schedule_from_dict(schedule_to_dict(s)) == s


def test_a_schedule_without_host_ops_has_no_host_feature() -> None:
    s = schedule_from_dict(_base())
    assert not {"host", "alloc"} & s.features


def test_an_event_may_be_recorded_again(validator: jsonschema.Draft202012Validator) -> None:
    """Issue 12: the v1 error 'recorded twice' is gone; a wait binds to the
    latest record of its event issued before it (CUDA: the event's state at
    the time of the call)."""
    from syncproof.semantics.matching import match

    for version in (1, 2):
        doc = _base(version)
        for r in ("0", "1"):
            doc["ranks"][r] += [{"op": "record", "stream": "compute", "event": "part_ready"},
                                {"op": "wait", "stream": "comm", "event": "part_ready"}]
        if version == 2:
            assert _schema_errors(validator, doc) == []
        s = schedule_from_dict(doc, f"v{version}.json")
        ops = s.by_rank[0]
        bound = {w: r for r, w in match(s).events}
        assert bound[ops[2].id] == ops[1].id  # the first wait: the first record
        assert bound[ops[5].id] == ops[4].id  # the second wait: the latest record before it


def test_host_only_kind_in_a_v1_file_names_the_fix() -> None:
    doc = _base(1)
    doc["ranks"]["0"].append({"op": "sync", "stream": "host"})
    with pytest.raises(ScheduleError) as e:
        schedule_from_dict(doc, "old.json")
    assert str(e.value) == ('old.json: rank 0, op 4 (sync): a sync op needs format version 2'
                            ' (hint: write "syncproof": 2 at the top)')


def test_format_doc_describes_the_host_kinds() -> None:
    text = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")
    for word in ("## The host", "`sync`", "`alloc`", "`free`", "`record_stream`", "`reuses`", "`of`",
                 "recorded again"):
        assert word in text, word


# ------------------------------------------------------------------ issue 16: the canonical layout, bounds, digits
def _two_rank_doc(op1: dict[str, Any], groups: dict[str, list[int]] | None = None) -> dict[str, Any]:
    return {"syncproof": 2, "groups": groups or {"g": [0, 1]}, "buffers": {"x": {"t": 8}},
            "ranks": {"0": [op1], "1": [op1]}}


def _canonical(doc: dict[str, Any]) -> str:
    """dumps' layout for any document (dumps itself needs a Schedule)."""
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in doc.items() if k != "ranks"]
    lines.append('  "ranks": {')
    items = list(doc["ranks"].items())
    for ri, (rk, ops) in enumerate(items):
        lines.append(f"    {json.dumps(rk)}: [")
        lines += ["      " + json.dumps(op) + ("," if oi < len(ops) - 1 else "") for oi, op in enumerate(ops)]
        lines.append("    ]" + ("," if ri < len(items) - 1 else ""))
    return "\n".join(lines + ["  }", "}"]) + "\n"


def test_identical_lines_are_checked_for_each_rank() -> None:
    """Rank 1 shares rank 0's line, but is not in the group: the error names rank 1, in both layouts."""
    doc = _two_rank_doc({"op": "all_reduce", "stream": "s", "group": "g"}, {"g": [0]})
    doc["ranks"]["1"] = [{"op": "all_reduce", "stream": "s", "group": "g"}]
    for text in (_canonical(doc), json.dumps(doc)):
        with pytest.raises(ScheduleError, match=r"rank 1, op 0 \(all_reduce on s\): rank 1 is not a member"):
            loads(text, "f.json")
    doc = _two_rank_doc({"op": "send", "stream": "s", "to": 1})
    with pytest.raises(ScheduleError, match=r"rank 1, op 0 \(send on s\): send to its own rank 1"):
        loads(_canonical(doc), "f.json")
    s = loads(_canonical(_two_rank_doc({"op": "compute", "stream": "s", "writes": {"x[t=1]": "v"}})), "f.json")
    assert [(op.id, op.rank, op.index) for op in s.ops] == [(0, 0, 0), (1, 1, 0)]
    assert s.ops[0].writes is s.ops[1].writes  # one document, one set of objects


REC = {"op": "record", "stream": "s", "event": "e"}
WAIT = {"op": "wait", "stream": "t", "event": "e"}
WAIT_F = {"op": "wait", "stream": "t", "event": "f"}
REC_F = {"op": "record", "stream": "s", "event": "f"}
RED = {"op": "all_reduce", "stream": "s", "group": "g"}


def _outcome_of(text: str) -> object:
    try:
        s = loads(text, "f.json")
    except ScheduleError as exc:
        return str(exc)
    return s, s.features, [(op.id, op.rank, op.index) for op in s.ops]


# Ranks after the first made only of lines seen before are copied in bulk (see rankcopy): the
# events, the rank-dependent checks and the features must come out as op by op (the general layout)
@pytest.mark.parametrize(("ranks", "expect"), [
    # a later rank waits on an event it never records: the first such wait is named, with the hint
    ([[REC, WAIT], [WAIT]], "rank 1, op 0 (wait on t): wait on event 'e', which rank 1 never records"),
    ([[REC, WAIT], [REC, WAIT], [WAIT, REC]], "fine"),  # a wait before the record: a no-op, not an error
    ([[REC, WAIT, REC_F], [REC, WAIT], [REC_F, WAIT]], "rank 2, op 1"),
    ([[REC, WAIT_F, REC_F], [REC, WAIT_F], [REC_F, WAIT]], "rank 1, op 1 (wait on t): wait on event 'f'"),
    # re-recorded on a copied rank only, or on the first rank only
    ([[REC, WAIT], [REC, REC, WAIT]], "re-recorded"),
    ([[REC, REC, WAIT], [REC, WAIT]], "re-recorded"),
    ([[REC, WAIT], [REC, WAIT]], "fine"),
    # a copied rank outside the group of its collective
    ([[RED, REC], [REC, RED]], "rank 1, op 1 (all_reduce on s): rank 1 is not a member"),
])
def test_ranks_copied_in_bulk_load_as_op_by_op(ranks: list[list[dict[str, Any]]], expect: str) -> None:
    doc = {"syncproof": 2, "groups": {"g": [0]}, "buffers": {"x": {"t": 8}},
           "ranks": {str(r): ops for r, ops in enumerate(ranks)}}
    got = _outcome_of(_canonical(doc))
    assert got == _outcome_of(json.dumps(doc, indent=1))  # the general layout: op by op
    assert isinstance(got, str) == (expect not in ("fine", "re-recorded")), got
    if isinstance(got, str):
        assert expect in got, got
        if "never records" in expect and "'e'" in expect:
            assert "is recorded on rank 0" in got
    else:
        assert ("re-recorded" in got[1]) == (expect == "re-recorded")  # type: ignore[index]


def test_a_duplicate_key_in_a_canonical_line_is_found() -> None:
    text = _canonical(_two_rank_doc({"op": "compute", "stream": "s"})).replace(
        '"stream": "s"}', '"stream": "s", "stream": "t"}', 1)
    with pytest.raises(ScheduleError, match=r"key 'stream' appears twice in one object .*rank 0, op 0"):
        loads(text, "f.json")
    text = _canonical(_two_rank_doc({"op": "compute", "stream": "s"})).replace(
        '  "groups"', '  "name": "a",\n  "name"', 1)
    with pytest.raises(ScheduleError, match="key 'name' appears twice"):
        loads(text, "f.json")


@pytest.mark.parametrize(("op", "message"), [
    ({"op": "compute", "stream": "s", "writes": {"x[t=0:4611686018427387904]": "v"}}, "out of range"),
    ({"op": "compute", "stream": "s", "writes": {"x[t=²]": "v"}}, "expected an integer"),
    ({"op": "compute", "stream": "s", "writes": {"x[t=٣:5]": "v"}}, "expected 'lo:hi' with integers"),
    ({"op": "compute", "stream": "s", "writes": {"x[t=" + "9" * 5000 + "]": "v"}}, "out of range"),
    ({"op": "send", "stream": "s", "to": 1, "size": 2**63}, "size 9223372036854775808 is out of range"),
    ({"op": "compute", "stream": "s", "layer": 2**62}, "layer 4611686018427387904 is out of range"),
    ({"op": "compute", "stream": "s", "tokens": "0:٣"}, "tokens must be 'lo:hi' with integers"),
    ({"op": "compute", "stream": "s", "tokens": 2**62}, "tokens 4611686018427387904 is out of range"),
    ({"op": "compute", "stream": "s", "sp": "²/4"}, "sp must be 'index/count'"),
    ({"op": "all_gather", "stream": "s", "group": "g", "counts": [2**62, 1]}, "counts must be a list"),
])
def test_numbers_are_ascii_and_bounded(op: dict[str, Any], message: str) -> None:
    doc = _two_rank_doc(op)
    for text in (_canonical(doc), json.dumps(doc)):
        with pytest.raises(ScheduleError, match=re.escape(message)):
            loads(text, "f.json")


def test_rank_keys_and_extents_are_bounded() -> None:
    for key in ("²", "٣", "1" * 10):
        with pytest.raises(ScheduleError, match="must be a non-negative integer"):
            loads(json.dumps({"syncproof": 2, "ranks": {key: []}}), "f.json")
    with pytest.raises(ScheduleError, match="extent of axis 't' 9223372036854775808 is out of range"):
        loads(json.dumps({"syncproof": 2, "buffers": {"x": {"t": 2**63}}, "ranks": {"0": []}}), "f.json")
    with pytest.raises(ScheduleError, match=r"rank 3 is listed twice in \"ranks\" \(as '3' and '03'\)"):
        loads('{"syncproof": 2, "ranks": {"3": [], "03": []}}', "f.json")


def test_many_ranks_and_syncs_are_linear() -> None:
    """A sync on an event looks the rank's events up in a set, not in a scan of its ops per sync."""
    n = 3000
    ops = [{"op": "record", "stream": "s", "event": f"e{i}"} for i in range(n)]
    ops += [{"op": "sync", "event": f"e{i}"} for i in range(n)]
    s = loads(json.dumps({"syncproof": 2, "ranks": {"0": ops}}), "f.json")
    assert s.size == 2 * n
    with pytest.raises(ScheduleError, match="sync on event 'nope', which rank 0 never records"):
        loads(json.dumps({"syncproof": 2, "ranks": {"0": ops + [{"op": "sync", "event": "nope"}]}}), "f.json")


def test_features_tracked_by_the_loader_are_the_schedules() -> None:
    """The canonical layout's loader sets Schedule.features on the way; it
    must be what the property computes from the ops."""
    from syncproof.ir.schedule import Schedule as S

    for path in EXAMPLES + sorted((ROOT / "examples" / "choices").glob("*.json")):
        s = load(path)
        assert s.features == S.features.func(s), path  # type: ignore[attr-defined]
    text = dumps(schedule_of_size(300, host_sync=True))
    s = loads(text, "g.json")
    assert "features" in s.__dict__ and s.features == S.features.func(s)  # type: ignore[attr-defined]
    rr = {"syncproof": 2, "ranks": {"0": [{"op": "record", "stream": "s", "event": "e"},
                                          {"op": "record", "stream": "s", "event": "e"}],
                                    "1": [{"op": "record", "stream": "s", "event": "e"},
                                          {"op": "sync", "target": "s", "p2p": "eager"}]}}
    for text in (_canonical(rr), json.dumps(rr)):
        try:
            s = loads(text, "r.json")
        except ScheduleError:
            continue
        assert s.features == S.features.func(s)  # type: ignore[attr-defined]
    s = loads(_canonical({"syncproof": 2, "ranks": {"0": [{"op": "record", "stream": "s", "event": "e"}] * 2,
                                                    "1": [{"op": "record", "stream": "s", "event": "e"}]}}), "r.json")
    assert "re-recorded" in s.features and s.features == S.features.func(s)  # type: ignore[attr-defined]


def test_files_dumps_writes_take_the_canonical_path() -> None:
    """The line-at-a-time reader (jsonread.parse_canonical) reads what dumps writes, shares identical
    lines as one document (a rank's last op, without its comma, too) and finds every rank; anything
    else falls back to the strict parse (tested alike above), so a broken reader would only be slow."""
    from syncproof.ir.fileformat import SharedOps
    from syncproof.ir.jsonread import _rank_lines, parse_canonical

    s = schedule_of_size(600)
    data = dumps(s).encode()
    doc = parse_canonical(data, "f.json")
    assert doc is not None and sorted(map(int, doc["ranks"])) == list(s.ranks)
    lists = list(doc["ranks"].values())
    assert all(type(lst) is SharedOps and len(lst.numbers) == len(lst) for lst in lists)
    assert [len(lst) for lst in lists] == [len(s.by_rank[r]) for r in s.ranks]
    # TP ranks run one program: alike lines are one document, the last lines among them
    assert lists[0].n_docs < len(s.ops) * 0.6  # (TP2 here: about half the lines are new)
    # a rank's last line, without the comma, is the same document as its twin with one
    a, b = {"op": "compute", "stream": "s"}, {"op": "compute", "stream": "t"}
    twin = parse_canonical(_canonical({"syncproof": 2, "ranks": {"0": [a, b], "1": [b, a]}}).encode(), "f.json")
    assert twin is not None
    assert twin["ranks"]["0"].numbers == [0, 1] and twin["ranks"]["1"].numbers == [1, 0]
    assert twin["ranks"]["0"].n_docs == 2
    assert loads(data, "f.json") == s
    # the rank lines, found in the bytes: as a scan of the lines finds them
    lines = data.split(b"\n")
    k = lines.index(b'  "ranks": {')
    body = lines[k + 1:-3]
    at = sum(map(len, lines[:k + 1])) + k + 1
    assert _rank_lines(data, at, len(body)) == [i for i, line in enumerate(body) if line.startswith(b'    "')]
    assert _rank_lines(data, at, 0) == []
