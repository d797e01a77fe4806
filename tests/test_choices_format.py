"""Schedules with choices (format version 2, issue 13): the file format and the
builder, the loader's errors, and the plain-data functions on assignments
(``select``, ``all_assignments``, ``space_size``, ``Assignment.text``).

Every malformed choice declaration, guard, expression, scope, ``via``,
``gathers`` or ``x@j`` is a ScheduleError that names the file and the op
(rank and op index) or the choice, never a traceback."""

from __future__ import annotations

import copy
import itertools
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from strategies_choices import choice_schedules

from syncproof.errors import ScheduleError
from syncproof.ir import Kind, Schedule, ScheduleBuilder, dumps, load, loads
from syncproof.ir.choices import Assignment, Choice, all_assignments, default_assignment, free_keys, space_size
from syncproof.ir.select import select


def base_doc() -> dict[str, Any]:
    """A valid schedule using every kind of choice: rank-local symbols, a
    range scoped to two groups (one value each), a job flag, a rank-local
    vector, a derived aggregate, a gathered value and a broadcast one."""
    ranks: dict[str, list[dict[str, Any]]] = {}
    for r in range(4):
        tp = "tp0" if r < 2 else "tp1"
        ops: list[dict[str, Any]] = [
            {"op": "all_reduce", "stream": "s", "group": "all", "name": "flags"},
            {"op": "all_gather", "stream": "s", "group": "all", "name": "sizes"},
        ]
        if r < 2:
            ops.append({"op": "broadcast", "stream": "s", "group": "tp0", "root": 0, "name": "bc"})
        ops += [
            {"op": "compute", "stream": "s", "name": "k", "writes": {"x": "a"}, "when": "state == decode and not flag"},
            {"op": "all_reduce", "stream": "s", "group": tp, "when": "busy", "size": "accept * 4"},
            {"op": "all_gather", "stream": "s", "group": "all", "counts": [f"all_tok@{m}" for m in range(4)]},
            {"op": "compute", "stream": "s", "name": "r", "when": "route[1] == 1 or state in {idle, prefill}"},
        ]
        if r == 0:
            ops += [{"op": "send", "stream": "s", "to": 1, "size": "tok * 2", "when": "tok > 0"},
                    {"op": "all_reduce", "stream": "s", "group": "tp0", "size": "width"}]
        if r == 1:
            ops += [{"op": "recv", "stream": "s", "from": 0, "size": "all_tok@0 * 2", "when": "all_tok@0 > 0"},
                    {"op": "all_reduce", "stream": "s", "group": "tp0", "size": "width"}]
        ranks[str(r)] = ops
    return {
        "syncproof": 2, "name": "every-choice",
        "groups": {"all": [0, 1, 2, 3], "tp0": [0, 1], "tp1": [2, 3]},
        "buffers": {"x": []},
        "choices": {
            "state": {"values": ["idle", "prefill", "decode"], "scope": "rank"},
            "accept": {"range": [1, 3], "scope": ["tp0", "tp1"]},
            "flag": {"values": [False, True], "scope": "job"},
            "route": {"values": [0, 1], "scope": "rank", "length": 2},
            "tok": {"range": [0, 2], "scope": "rank"},
            "busy": {"value": "any(state != idle)", "scope": "all", "via": "flags"},
            "all_tok": {"gathers": "tok", "scope": "all", "via": "sizes"},
            "width": {"range": [1, 2], "scope": "tp0", "via": "bc"},
        },
        "ranks": ranks,
    }


def _op(doc: dict[str, Any], rank: int, i: int) -> dict[str, Any]:
    op: dict[str, Any] = doc["ranks"][str(rank)][i]
    return op


# ---------------------------------------------------------------- round trips
def test_the_base_document_loads_and_round_trips() -> None:
    s = loads(json.dumps(base_doc()), "base.json")
    assert [c.name for c in s.choices] == ["state", "accept", "flag", "route", "tok", "busy", "all_tok", "width"]
    text = dumps(s)
    again = loads(text)
    assert again == s
    assert dumps(again) == text  # the canonical text is a fixed point
    by = {c.name: c for c in s.choices}
    assert by["accept"].groups == ("tp0", "tp1") and tuple(by["accept"].domain) == (1, 2, 3)
    assert by["route"].length == 2 and by["route"].kind == "int"
    assert by["busy"].derived == "value" and not by["busy"].free
    assert by["all_tok"].derived == "gathers" and by["all_tok"].gathers == "tok"
    assert by["flag"].kind == "bool" and by["state"].kind == "symbol"
    op = s.by_rank[0][3]
    assert op.choice is not None and str(op.choice.when) == "state == decode and not flag"


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(s=choice_schedules())
def test_random_choice_schedules_round_trip(s: Schedule) -> None:
    text = dumps(s)
    again = loads(text)
    assert again == s
    assert dumps(again) == text
    for a in itertools.islice(all_assignments(s.choices, s.ranks), 5):
        assert dumps(select(again, a).schedule) == dumps(select(s, a).schedule)


def test_builder_choice_gives_what_the_file_gives() -> None:
    b = ScheduleBuilder("built")
    b.group("all", [0, 1]).group("tp", [0, 1])
    b.buffer("x")
    b.choice("state", scope="rank", values=["idle", "decode"])
    b.choice("n", scope="tp", range=(1, 3), via="bc")
    b.choice("flag", scope="job", values=[False, True])
    b.choice("mask", scope="job", values=[0, 1], length=2)
    b.choice("busy", scope="all", value="any(state != idle)", via="flags")
    b.choice("all_state", scope="all", gathers="state", via="g")
    for r in (0, 1):
        rb = b.rank(r)
        rb.all_reduce("all", stream="s", name="flags")
        rb.all_gather("all", stream="s", name="g")
        rb.broadcast("tp", 0, stream="s", name="bc")
        rb.compute("k", stream="s", when="state == decode")
        rb.all_reduce("tp", stream="s", when="busy and flag", size="n * 2")  # type: ignore[arg-type]
        rb.all_gather("all", stream="s", counts=["n", 2], when="mask[0] == 1")  # type: ignore[list-item]
    b.rank(0).send(1, stream="s", when="all_state@0 == decode")
    b.rank(1).recv(0, stream="s", when="all_state@0 == decode")
    s = b.build()
    doc = b.to_dict()
    assert doc["choices"]["n"] == {"scope": "tp", "range": [1, 3], "via": "bc"}
    assert doc["choices"]["mask"] == {"scope": "job", "values": [0, 1], "length": 2}
    assert loads(json.dumps(doc)) == s
    assert loads(dumps(s)) == s
    ar = s.by_rank[0][4]
    assert ar.choice is not None and str(ar.choice.size) == "(n * 2)" and ar.size is None
    ag = s.by_rank[0][5]
    assert ag.choice is not None and ag.choice.counts is not None and [str(e) for e in ag.choice.counts] == ["n", "2"]
    assert space_size(s.choices, s.ranks) == 2 * 2 * 3 * 2 * 4


def test_builder_errors_name_the_op() -> None:
    b = ScheduleBuilder("bad")
    b.group("all", [0, 1])
    b.choice("state", scope="rank", values=["idle", "decode"])
    b.rank(0).compute("k", stream="s")
    b.rank(1).compute("k", stream="s", when="state == decod")
    with pytest.raises(ScheduleError) as info:
        b.build()
    assert "<builder bad>" in str(info.value) and "rank 1, op 0" in str(info.value)
    assert "'decod' is not a value of state" in str(info.value)


# ---------------------------------------------------------------- bad input
Mut = Callable[[dict[str, Any]], None]


def _set(path: tuple[Any, ...], value: Any) -> Mut:
    def f(doc: dict[str, Any]) -> None:
        d: Any = doc
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return f


def _choice(name: str, decl: Any) -> Mut:
    return _set(("choices", name), decl)


def _when(rank: int, i: int, text: Any) -> Mut:
    def f(doc: dict[str, Any]) -> None:
        _op(doc, rank, i)["when"] = text
    return f


def _field(rank: int, i: int, key: str, value: Any) -> Mut:
    def f(doc: dict[str, Any]) -> None:
        _op(doc, rank, i)[key] = value
    return f


def _drop_choices(doc: dict[str, Any]) -> None:
    del doc["choices"]
    for ops in doc["ranks"].values():
        for op in ops:
            for k in ("size", "counts"):
                if isinstance(op.get(k), str) or (isinstance(op.get(k), list)
                                                    and any(isinstance(x, str) for x in op[k])):
                    del op[k]
            op.pop("when", None)
    _op(doc, 2, 2)["when"] = "true"


def _all(*ms: Mut) -> Mut:
    def f(doc: dict[str, Any]) -> None:
        for m in ms:
            m(doc)
    return f


def _rename_op(rank: int, i: int, name: str) -> Mut:
    return _field(rank, i, "name", name)


def _insert(rank: int, i: int, op: dict[str, Any]) -> Mut:
    def f(doc: dict[str, Any]) -> None:
        doc["ranks"][str(rank)].insert(i, op)
    return f


def _swap(rank: int, i: int, j: int) -> Mut:
    def f(doc: dict[str, Any]) -> None:
        ops = doc["ranks"][str(rank)]
        ops[i], ops[j] = ops[j], ops[i]
    return f


CHOICE = "choice {!r}"
OP = "rank {}, op {}"

# (id, mutation, where the message must point: CHOICE.format(name), OP.format(r, i) or "", fragments of the message)
BAD: list[tuple[str, Mut, str, tuple[str, ...]]] = [
    # ---- the "choices" object and declarations
    ("choices-not-an-object", _set(("choices",), [1]), "", ('"choices" must map choice names',)),
    ("choices-in-version-1", _all(_set(("syncproof",), 1)), "", ("version",)),
    ("name-a-keyword", _choice("and", {"values": [1, 2], "scope": "job"}), CHOICE.format("and"), ("identifier",)),
    ("name-an-aggregate", _choice("any", {"values": [1, 2], "scope": "job"}), CHOICE.format("any"),
     ("identifier",)),
    ("name-not-identifier", _choice("1x", {"values": [1, 2], "scope": "job"}), CHOICE.format("1x"),
     ("identifier",)),
    ("decl-not-an-object", _choice("c", ["a", "b"]), CHOICE.format("c"), ("a choice is an object",)),
    ("unknown-field", _choice("c", {"values": [1, 2], "scope": "job", "scop": "rank"}), CHOICE.format("c"),
     ("unknown field 'scop'",)),
    ("no-scope", _choice("c", {"values": [1, 2]}), CHOICE.format("c"), ("needs \"scope\"",)),
    ("scope-undeclared-group", _choice("c", {"values": [1, 2], "scope": "tpx"}), CHOICE.format("c"),
     ("'tpx', which is not declared",)),
    ("scope-an-int", _choice("c", {"values": [1, 2], "scope": 5}), CHOICE.format("c"), ("scope must be",)),
    ("scope-empty-list", _choice("c", {"values": [1, 2], "scope": []}), CHOICE.format("c"), ("scope must be",)),
    ("scope-list-of-ints", _choice("c", {"values": [1, 2], "scope": [0, 1]}), CHOICE.format("c"),
     ("scope must be",)),
    ("scope-overlapping-groups", _choice("c", {"values": [1, 2], "scope": ["all", "tp0"]}), CHOICE.format("c"),
     ("share rank",)),
    ("via-not-a-string", _choice("c", {"values": [1, 2], "scope": "tp0", "via": 3}), CHOICE.format("c"),
     ("via names the op",)),
    ("length-zero", _choice("c", {"values": [1, 2], "scope": "job", "length": 0}), CHOICE.format("c"),
     ("length must be",)),
    ("length-a-string", _choice("c", {"values": [1, 2], "scope": "job", "length": "2"}), CHOICE.format("c"),
     ("length must be",)),
    ("length-a-bool", _choice("c", {"values": [1, 2], "scope": "job", "length": True}), CHOICE.format("c"),
     ("length must be",)),
    ("length-huge", _choice("c", {"values": [1, 2], "scope": "job", "length": 5000}), CHOICE.format("c"),
     ("length must be",)),
    ("values-and-range", _choice("c", {"values": [1, 2], "range": [1, 2], "scope": "job"}), CHOICE.format("c"),
     ("not both",)),
    ("range-reversed", _choice("c", {"range": [3, 1], "scope": "job"}), CHOICE.format("c"), ("lo <= hi",)),
    ("range-one-number", _choice("c", {"range": [1], "scope": "job"}), CHOICE.format("c"), ("range is [lo, hi]",)),
    ("range-floats", _choice("c", {"range": [1.5, 2], "scope": "job"}), CHOICE.format("c"), ("range is [lo, hi]",)),
    ("range-bools", _choice("c", {"range": [True, 2], "scope": "job"}), CHOICE.format("c"), ("range is [lo, hi]",)),
    ("range-a-string", _choice("c", {"range": "1..3", "scope": "job"}), CHOICE.format("c"), ("range is [lo, hi]",)),
    ("range-huge", _choice("c", {"range": [0, 2**41], "scope": "job"}), CHOICE.format("c"), ("range is [lo, hi]",)),
    ("no-values", _choice("c", {"scope": "job"}), CHOICE.format("c"), ("needs \"values\"",)),
    ("values-empty", _choice("c", {"values": [], "scope": "job"}), CHOICE.format("c"), ("needs \"values\"",)),
    ("values-mixed", _choice("c", {"values": [1, "a"], "scope": "job"}), CHOICE.format("c"),
     ("all symbols, all integers or all booleans",)),
    ("values-floats", _choice("c", {"values": [1.5], "scope": "job"}), CHOICE.format("c"),
     ("all symbols, all integers or all booleans",)),
    ("values-null", _choice("c", {"values": [None], "scope": "job"}), CHOICE.format("c"),
     ("all symbols, all integers or all booleans",)),
    ("values-bool-and-int", _choice("c", {"values": [True, 2], "scope": "job"}), CHOICE.format("c"),
     ("all symbols, all integers or all booleans",)),
    ("values-repeat", _choice("c", {"values": ["a", "a"], "scope": "job"}), CHOICE.format("c"), ("repeat",)),
    ("values-too-many", _choice("c", {"values": list(range(5000)), "scope": "job"}), CHOICE.format("c"),
     ("more than 4096",)),
    ("symbol-not-a-word", _choice("c", {"values": ["a b"], "scope": "job"}), CHOICE.format("c"),
     ("a symbol is an identifier",)),
    # ---- derived choices
    ("derived-rank-scope", _choice("busy", {"value": "any(state != idle)", "scope": "rank", "via": "flags"}),
     CHOICE.format("busy"), ("uniform on one group",)),
    ("derived-job-scope", _choice("busy", {"value": "any(state != idle)", "scope": "job", "via": "flags"}),
     CHOICE.format("busy"), ("uniform on one group",)),
    ("derived-two-groups", _choice("busy", {"value": "any(state != idle)", "scope": ["tp0", "tp1"],
                                            "via": "flags"}), CHOICE.format("busy"), ("uniform on one group",)),
    ("derived-no-via", _choice("busy", {"value": "any(state != idle)", "scope": "all"}), CHOICE.format("busy"),
     ("needs \"via\"",)),
    ("derived-with-values", _choice("busy", {"value": "any(state != idle)", "values": [1], "scope": "all",
                                             "via": "flags"}), CHOICE.format("busy"), ("no domain of its own",)),
    ("value-and-gathers", _choice("busy", {"value": "any(state != idle)", "gathers": "tok", "scope": "all",
                                           "via": "flags"}), CHOICE.format("busy"), ("no domain of its own",)),
    ("gathers-not-a-string", _choice("all_tok", {"gathers": 3, "scope": "all", "via": "sizes"}),
     CHOICE.format("all_tok"), ("gathers names a rank-local choice",)),
    ("gathers-undeclared", _choice("all_tok", {"gathers": "toks", "scope": "all", "via": "sizes"}),
     CHOICE.format("all_tok"), ("'toks', which is not a declared rank-local choice",)),
    ("gathers-a-job-choice", _choice("all_tok", {"gathers": "flag", "scope": "all", "via": "sizes"}),
     CHOICE.format("all_tok"), ("'flag', which is not a declared rank-local choice",)),
    ("gathers-a-derived", _choice("all_tok", {"gathers": "busy", "scope": "all", "via": "sizes"}),
     CHOICE.format("all_tok"), ("'busy', which is not a declared rank-local choice",)),
    ("value-not-an-aggregate", _choice("busy", {"value": "state != idle", "scope": "all", "via": "flags"}),
     CHOICE.format("busy"), ("must be one aggregate",)),
    ("value-two-aggregates", _choice("busy", {"value": "any(state != idle) and all(flag)", "scope": "all",
                                              "via": "flags"}), CHOICE.format("busy"), ("must be one aggregate",)),
    ("value-of-a-group-choice", _choice("busy", {"value": "max(accept)", "scope": "all", "via": "flags"}),
     CHOICE.format("busy"), ("aggregates 'accept', which is not a free rank-local choice",)),
    ("value-of-a-job-choice", _choice("busy", {"value": "any(flag)", "scope": "all", "via": "flags"}),
     CHOICE.format("busy"), ("aggregates 'flag', which is not a free rank-local choice",)),
    ("value-any-of-an-int", _choice("busy", {"value": "any(tok)", "scope": "all", "via": "flags"}),
     CHOICE.format("busy"), ("any takes a condition",)),
    ("value-sum-of-a-symbol", _choice("busy", {"value": "sum(state)", "scope": "all", "via": "flags"}),
     CHOICE.format("busy"), ("sum takes an integer",)),
    ("value-syntax", _choice("busy", {"value": "any(state !=", "scope": "all", "via": "flags"}),
     CHOICE.format("busy"), ("expression 'any(state !='",)),
    ("value-not-a-string", _choice("busy", {"value": 3, "scope": "all", "via": "flags"}),
     CHOICE.format("busy"), ("an expression is a string",)),
    ("value-bad-symbol", _choice("busy", {"value": "any(state != idel)", "scope": "all", "via": "flags"}),
     CHOICE.format("busy"), ("'idel' is not a value of state",)),
    # ---- via
    ("via-names-no-op", _choice("busy", {"value": "any(state != idle)", "scope": "all", "via": "flagz"}),
     CHOICE.format("busy"), ("via names op 'flagz'", "rank 0 issues no op of that name")),
    ("via-missing-on-one-rank", _rename_op(3, 0, "other"), CHOICE.format("busy"),
     ("rank 3 issues no op of that name",)),
    ("via-a-compute", _all(_rename_op(0, 3, "flags"), _swap(0, 0, 3)), CHOICE.format("busy"),
     ("not a collective on 'all'",)),
    ("via-another-group", _choice("width", {"range": [1, 2], "scope": "tp0", "via": "flags"}),
     CHOICE.format("width"), ("not a collective on 'tp0'",)),
    ("via-guarded", _when(1, 0, "flag"), CHOICE.format("busy"), ("has a guard",)),
    ("used-before-via", _swap(2, 0, 3), OP.format(2, 0), ("uses busy before rank 2 has issued 'flags'",)),
    ("used-before-broadcast", _insert(0, 0, {"op": "compute", "stream": "s", "when": "width == 1"}),
     OP.format(0, 0), ("uses width before rank 0 has issued 'bc'",)),
    ("via-op-uses-its-own-value", _field(0, 2, "when", "width == 1"), CHOICE.format("width"),
     ("via op 'bc' on rank 0 has a guard",)),
    # ---- guards and expressions on ops
    ("when-without-choices", _drop_choices, OP.format(2, 2), ("declares no \"choices\"",)),
    ("when-syntax", _when(0, 3, "state == (decode"), OP.format(0, 3), ("expression 'state == (decode'", "when")),
    ("when-bad-token", _when(0, 3, "state == decode && flag"), OP.format(0, 3), ("cannot read",)),
    ("when-an-int", _when(0, 3, "tok + 1"), OP.format(0, 3), ("a condition is needed",)),
    ("when-a-number", _when(0, 3, 5), OP.format(0, 3), ("an expression is a string",)),
    ("when-a-bool", _when(0, 3, True), OP.format(0, 3), ("an expression is a string",)),
    ("when-empty", _when(0, 3, ""), OP.format(0, 3), ("it is empty",)),
    ("when-huge-int", _when(0, 3, "tok == " + "9" * 25), OP.format(0, 3), ("too large",)),
    ("when-symbol-not-in-domain", _when(0, 3, "state == decod"), OP.format(0, 3),
     ("'decod' is not a value of state",)),
    ("when-in-symbol-not-in-domain", _when(0, 3, "state in {idle, decod}"), OP.format(0, 3),
     ("'decod' is not a value of state",)),
    ("when-symbol-vs-int", _when(0, 3, "state == 1"), OP.format(0, 3), ("is a symbol and 1 is an integer",)),
    ("when-in-wrong-type", _when(0, 3, "tok in {a}"), OP.format(0, 3), ("is an integer; a is not",)),
    ("when-order-on-symbols", _when(0, 3, "state < decode"), OP.format(0, 3), ("< compares integers",)),
    ("when-two-symbols", _when(0, 3, "foo == bar"), OP.format(0, 3), ("neither 'foo' nor 'bar' is a declared",)),
    ("when-not-of-int", _when(0, 3, "not tok"), OP.format(0, 3), ("not takes a condition",)),
    ("when-and-of-int", _when(0, 3, "flag and tok"), OP.format(0, 3), ("and takes conditions",)),
    ("when-aggregate", _when(0, 3, "any(state != idle)"), OP.format(0, 3), ("only a derived choice's value",)),
    ("when-unknown-function", _when(0, 3, "foo(tok) > 1"), OP.format(0, 3), ("unknown function 'foo'",)),
    ("when-min-of-bools", _when(0, 3, "min(flag, flag) == 1"), OP.format(0, 3), ("min takes integers",)),
    ("when-local-at-other-rank", _when(0, 3, "state@1 == idle"), OP.format(0, 3),
     ("state@1: only a gathered choice names another member's value",)),
    ("when-undeclared-at", _when(0, 3, "foo@1 == idle"), OP.format(0, 3), ("'foo' is not a declared choice",)),
    ("when-gathered-without-at", _when(0, 3, "all_tok > 1"), OP.format(0, 3), ("name the member",)),
    ("when-gathered-non-member", _when(0, 3, "all_tok@7 > 1"), OP.format(0, 3),
     ("rank 7 is not a member of 'all'",)),
    ("when-gathered-index-non-vector", _when(0, 3, "all_tok@1[0] > 1"), OP.format(0, 3),
     ("tok is not a vector",)),
    ("when-vector-without-index", _when(0, 3, "route == 1"), OP.format(0, 3), ("route is a vector of 2",)),
    ("when-index-non-vector", _when(0, 3, "tok[0] == 1"), OP.format(0, 3), ("tok is not a vector",)),
    ("when-symbol-index", _when(0, 3, "route[state] == 1"), OP.format(0, 3), ("an index is an integer",)),
    ("when-group-choice-outside-group", _when(2, 2, "width == 1"), OP.format(2, 2),
     ("uses width, which is uniform on tp0; rank 2 is in none of them",)),
    ("size-a-condition", _field(0, 4, "size", "flag"), OP.format(0, 4), ("an integer is needed",)),
    ("size-a-symbol", _field(0, 4, "size", "state"), OP.format(0, 4), ("an integer is needed",)),
    ("size-syntax", _field(0, 4, "size", "accept *"), OP.format(0, 4), ("expression 'accept *'", "size")),
    ("size-empty", _field(0, 4, "size", ""), OP.format(0, 4), ("it is empty",)),
    ("when-dashed-symbol-unquoted", _all(_choice("state", {"values": ["idle", "prefill", "decode", "pre-fill"],
                                                          "scope": "rank"}), _when(0, 3, "state == pre-fill")),
     OP.format(0, 3),
     ("state == (pre - fill)", "takes integers")),
    ("counts-wrong-length", _field(0, 5, "counts", ["tok", "tok"]), OP.format(0, 5),
     ("counts has 2 entries for the 4 members",)),
    ("counts-a-float", _field(0, 5, "counts", ["tok", 1.5, 1, 1]), OP.format(0, 5),
     ("counts[1] must be a non-negative integer or an expression",)),
    ("counts-negative", _field(0, 5, "counts", ["tok", -1, 1, 1]), OP.format(0, 5),
     ("counts[1] must be a non-negative integer or an expression",)),
    ("counts-a-condition", _field(0, 5, "counts", ["flag", 1, 1, 1]), OP.format(0, 5),
     ("an integer is needed",)),
    ("counts-syntax", _field(0, 5, "counts", ["tok +", 1, 1, 1]), OP.format(0, 5), ("expression 'tok +'",)),
    ("recv-counts-wrong-length", _all(_field(0, 5, "op", "all_to_all"), _field(0, 5, "recv_counts", ["tok"])),
     OP.format(0, 5), ("recv_counts has 1 entries",)),
    ("when-in-v1-file", _all(_drop_choices, _set(("syncproof",), 1)), OP.format(2, 2), ("when",)),
]


def _write(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(doc, indent=1))
    return p


@pytest.mark.parametrize("name,mutate,where,fragments", [pytest.param(*b, id=b[0]) for b in BAD])
def test_bad_input_names_the_file_and_the_place(tmp_path: Path, name: str, mutate: Mut, where: str,
                                                fragments: tuple[str, ...]) -> None:
    doc = copy.deepcopy(base_doc())
    mutate(doc)
    path = _write(tmp_path, name, doc)
    with pytest.raises(ScheduleError) as info:
        load(path)
    text = str(info.value)
    assert str(path) in text, text
    assert where in text, f"the message does not name {where!r}: {text}"
    for f in fragments:
        assert f in text, f"{f!r} not in: {text}"


def test_the_base_document_is_fine(tmp_path: Path) -> None:
    load(_write(tmp_path, "base", base_doc()))


def test_minus_before_a_symbol_in_a_set(tmp_path: Path) -> None:
    doc = base_doc()
    _op(doc, 0, 3)["when"] = "state in {-idle}"
    with pytest.raises(ScheduleError) as info:
        load(_write(tmp_path, "minus", doc))
    assert "rank 0, op 3" in str(info.value)


def test_a_comparison_of_conditions_survives_dump_and_load() -> None:
    """(Before 26a2991 it was written 'flag and tok > 0 == state == idle', which did not load back.)"""
    doc = base_doc()
    _op(doc, 0, 3)["when"] = "(flag and tok > 0) == (state == idle)"
    s = loads(json.dumps(doc))
    assert loads(dumps(s)) == s


def test_a_guard_keeps_its_meaning_through_dump_and_load() -> None:
    """(Before 26a2991 '(flag or tok > 0) != flag' was written 'flag or tok > 0 != flag', which loaded as
    flag or (tok > 0 != flag): another guard, silently.)"""
    doc = base_doc()
    _op(doc, 0, 3)["when"] = "(flag or tok > 0) != flag"
    s = loads(json.dumps(doc))
    again = loads(dumps(s))
    for a in _random_assignments(s, 200):
        assert [o.id for o in select(again, a).schedule.ops] == [o.id for o in select(s, a).schedule.ops]


def _random_assignments(s: Schedule, n: int) -> list[Assignment]:
    """``n`` assignments drawn at random (seeded) from a space too large to enumerate."""
    rng = random.Random(13)
    out = []
    for _ in range(n):
        vals: list[tuple[Any, Any]] = []
        for c, key in free_keys(s.choices, s.ranks):
            dom = list(c.domain)
            vals.append((key, tuple(rng.choice(dom) for _ in range(c.length)) if c.length else rng.choice(dom)))
        out.append(Assignment(tuple(vals)))
    return out


def test_a_deep_guard_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    """60 nested parentheses are fine (150 are the known RecursionError of test_expr.py)."""
    doc = base_doc()
    _op(doc, 0, 3)["when"] = "(" * 60 + "flag" + ")" * 60
    load(_write(tmp_path, "deep", doc))


# ---------------------------------------------------------------- select
def small() -> Schedule:
    b = ScheduleBuilder("small")
    b.group("all", [0, 1])
    b.buffer("x")
    b.choice("state", scope="rank", values=["idle", "decode"])
    b.choice("n", scope="job", range=(0, 2))
    for r in (0, 1):
        rb = b.rank(r)
        rb.compute("first", stream="s", when="state == decode")
        rb.all_reduce("all", stream="s", size="n * 4", name="ar")
        rb.compute("mid", stream="s", when="n > 0")
        rb.record("e", stream="s")
        rb.wait("e", stream="t", when="state == idle")
        rb.compute("last", stream="t")
    return b.build()


def test_select_drops_ops_and_renumbers() -> None:
    s = small()
    a = Assignment(((("state", 0), "idle"), (("state", 1), "decode"), (("n", None), 0)))
    sel = select(s, a)
    ops = sel.schedule.ops
    assert [o.id for o in ops] == list(range(len(ops)))
    for r in (0, 1):
        assert [o.index for o in sel.schedule.by_rank[r]] == list(range(len(sel.schedule.by_rank[r])))
    assert [(o.rank, o.name or o.kind.value) for o in ops] == [
        (0, "ar"), (0, "record"), (0, "wait"), (0, "last"), (1, "first"), (1, "ar"), (1, "record"), (1, "last")]
    assert sel.assignment == a
    assert len(sel.origin) == len(ops)
    for o, i in zip(ops, sel.origin, strict=True):
        orig = s.ops[i]
        assert (orig.rank, orig.kind, orig.name) == (o.rank, o.kind, o.name)
    assert all(o.choice is None for o in ops) and not sel.schedule.choices
    assert sel.schedule.by_rank[0][0].size == 0 and sel.schedule.by_rank[1][1].size == 0


def test_select_evaluates_sizes() -> None:
    s = small()
    for n in (0, 1, 2):
        a = Assignment(((("state", 0), "idle"), (("state", 1), "idle"), (("n", None), n)))
        ars = [o for o in select(s, a).schedule.ops if o.kind is Kind.ALL_REDUCE]
        assert [o.size for o in ars] == [4 * n, 4 * n]


def test_select_of_every_assignment_is_plain_and_loads_back() -> None:
    s = small()
    seen = set()
    for a in all_assignments(s.choices, s.ranks):
        sel = select(s, a).schedule
        text = dumps(sel)
        assert "when" not in text and "choices" not in text
        assert loads(text) == sel
        seen.add(text)
    assert len(seen) == space_size(s.choices, s.ranks)  # every assignment selects another schedule here


def _doc_with(ops: dict[int, list[dict[str, Any]]], choices: dict[str, Any]) -> str:
    return json.dumps({"syncproof": 2, "name": "t", "groups": {"all": [0, 1]}, "buffers": {"x": []},
                       "choices": choices, "ranks": {str(r): v for r, v in ops.items()}})


@pytest.mark.parametrize("size,what", [
    ("n - 3", "a negative number"),
    ("8 // (n - 1)", "(n - 1)"),
    ("8 % (n - 1)", "(n - 1)"),
    ("v[n]", "outside 0..1"),
])
def test_select_errors_name_the_assignment_and_the_op(size: str, what: str) -> None:
    text = _doc_with({0: [{"op": "all_reduce", "stream": "s", "group": "all", "size": size}],
                      1: [{"op": "all_reduce", "stream": "s", "group": "all", "size": 4}]},
                     {"n": {"range": [1, 2], "scope": "job"}, "v": {"values": [1, 2], "scope": "job", "length": 2}})
    s = loads(text, "sizes.json")
    a = Assignment(((("n", None), 1), (("v", None), (1, 2))))
    if size == "v[n]":
        a = Assignment(((("n", None), 2), (("v", None), (1, 2))))
    with pytest.raises(ScheduleError) as info:
        select(s, a)
    msg = str(info.value)
    assert "sizes.json" in msg and "rank 0, op 0" in msg, msg
    assert a.text() in msg, msg
    assert what in msg, msg


def _wait_without_record() -> Schedule:
    text = _doc_with({0: [{"op": "record", "stream": "s", "event": "e", "when": "flag"},
                          {"op": "wait", "stream": "t", "event": "e"}], 1: []},
                     {"flag": {"values": [False, True], "scope": "job"}})
    return loads(text, "events.json")


def test_a_guard_that_leaves_a_wait_without_its_record() -> None:
    """A guard that drops every record of an event leaves the wait a no-op
    (CUDA: waiting on an event never recorded returns at once): select
    accepts it (validate(selected=True))."""
    s = _wait_without_record()
    assert len(select(s, Assignment(((("flag", None), True),))).schedule.ops) == 2
    sel = select(s, Assignment(((("flag", None), False),)))
    assert [o.kind for o in sel.schedule.ops] == [Kind.WAIT]


def test_a_selection_dumps_to_a_file_that_loads() -> None:
    sel = select(_wait_without_record(), Assignment(((("flag", None), False),))).schedule
    assert loads(dumps(sel)) == sel


def test_select_of_a_group_call_split_by_a_guard() -> None:
    """A guard may drop one part of a group call; the selection is still valid."""
    text = _doc_with({0: [{"op": "send", "stream": "s", "to": 1, "batch": "g"},
                          {"op": "recv", "stream": "s", "from": 1, "batch": "g", "when": "flag"}],
                      1: [{"op": "recv", "stream": "s", "from": 0},
                          {"op": "send", "stream": "s", "to": 0, "when": "flag"}]},
                     {"flag": {"values": [False, True], "scope": "job"}})
    s = loads(text)
    for a in all_assignments(s.choices, s.ranks):
        assert len(select(s, a).schedule.ops) == (4 if a.map[("flag", None)] else 2)


def test_select_with_derived_and_gathered_values() -> None:
    s = loads(json.dumps(base_doc()))
    a = default_assignment(s.choices, s.ranks)
    m = dict(a.values)
    m[("state", 2)] = "decode"
    m[("tok", 0)] = 2
    a2 = Assignment(tuple(m.items()))
    sel = select(s, a2).schedule
    r0 = sel.by_rank[0]
    tp_ar = [o for o in r0 if o.kind is Kind.ALL_REDUCE and o.group == "tp0" and o.size == 4]
    assert tp_ar, "busy = any(state != idle) holds when rank 2 decodes: rank 0's guarded all_reduce is issued"
    ag = [o for o in r0 if o.kind is Kind.ALL_GATHER and o.counts is not None]
    assert ag[0].counts == (2, 0, 0, 0)
    send = [o for o in r0 if o.kind is Kind.SEND]
    recv = [o for o in sel.by_rank[1] if o.kind is Kind.RECV]
    assert send[0].size == 4 and recv[0].size == 4
    sel0 = select(s, a).schedule
    assert not [o for o in sel0.ops if o.kind in (Kind.SEND, Kind.RECV)]  # tok = 0 everywhere


# ---------------------------------------------------------------- assignments
def test_all_assignments_and_space_size() -> None:
    s = small()
    got = list(all_assignments(s.choices, s.ranks))
    assert len(got) == space_size(s.choices, s.ranks) == 2 * 2 * 3
    assert len(set(got)) == len(got)
    keys = [k for _, k in free_keys(s.choices, s.ranks)]
    for a in got:
        assert [k for k, _ in a.values] == keys
    assert got == list(all_assignments(s.choices, s.ranks))  # a fixed order
    assert got[0] == default_assignment(s.choices, s.ranks)


def test_space_size_of_every_scope() -> None:
    s = loads(json.dumps(base_doc()))
    # state 3^4, accept 3 per group (2 groups), flag 2, route (2^2)^4, tok 3^4, width 2; derived ones are free of it
    assert space_size(s.choices, s.ranks) == 3**4 * 3**2 * 2 * 4**4 * 3**4 * 2
    big = (Choice("state", "rank", values=("idle", "prefill", "decode")),)
    assert space_size(big, tuple(range(128))) == 3**128  # not enumerated


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(s=choice_schedules())
def test_all_assignments_matches_space_size_on_random_schedules(s: Schedule) -> None:
    got = list(all_assignments(s.choices, s.ranks))
    assert len(got) == space_size(s.choices, s.ranks) <= 200
    assert len(set(got)) == len(got)


def test_vector_assignments_are_tuples() -> None:
    cs = (Choice("v", "job", values=(0, 1), length=2),)
    got = [a.map[("v", None)] for a in all_assignments(cs, (0,))]
    assert got == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_assignment_text() -> None:
    a = Assignment(((("state", 0), "idle"), (("state", 1), "decode"), (("state", 2), "decode"),
                    (("state", 3), "decode"), (("accept", "tp0"), 2), (("flag", None), True),
                    (("v", None), (0, 1))))
    text = a.text()
    assert text == "job: flag=true, v=[0, 1]; rank 0: state=idle; ranks 1-3: state=decode; tp0: accept=2", text
    assert Assignment(()).text() == "(no choices)"
    two = Assignment(((("state", 0), "idle"), (("n", 0), 1), (("state", 1), "idle"), (("n", 1), 1)))
    assert two.text() == "ranks 0, 1: state=idle, n=1"
    assert a.to_json()[0] == {"choice": "state", "rank": 0, "value": "idle"}
    assert {"choice": "accept", "group": "tp0", "value": 2} in a.to_json()
    assert {"choice": "v", "value": [0, 1]} in a.to_json()
