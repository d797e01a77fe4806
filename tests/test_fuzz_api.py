"""Issue 16, the Python API given wrong types: a public function called with
an int for a path, a dict for a schedule, a str for ``max_cex``, None ...
raises :class:`syncproof.UsageError` (a ``UserError``) naming the function
and the argument, never an ``AttributeError`` or ``TypeError`` from deep
inside.  The decision and the guards are in ``syncproof.apiguard``.

The entry points of ``syncproof.ir`` (``load``/``loads``/``save``/``dumps``,
``ScheduleBuilder``) and ``check_schedule`` are checked one by one
(``ENTRY_POINTS``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import FAST, SLOW, Tally, time_limit
from hypothesis import given
from hypothesis import strategies as st

import syncproof
from syncproof import ScheduleBuilder, UsageError, UserError, apiguard
from syncproof.importers import torch_pp
from syncproof.models import registry
from syncproof.proofs import discover, parse
from syncproof.proofs import load as load_proofs

ROOT = Path(__file__).resolve().parent.parent
SCHEDULE = ROOT / "examples" / "pp-sendrecv-deadlock.json"

junk = st.one_of(st.none(), st.integers(), st.integers(min_value=10**50), st.floats(), st.booleans(),
                 st.binary(max_size=4), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                                           st.integers(), max_size=2),
                 st.tuples(st.integers()), st.just(object()), st.just(Ellipsis), st.sets(st.integers(), max_size=2))


def _hashable(v: object) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def _sched() -> syncproof.Schedule:
    return syncproof.load(SCHEDULE)


# The entry points in files this module's author owns, with each argument
# position that takes junk.  (name, call)
OWNED: list[tuple[str, Callable[[Any], object]]] = [
    ("proofs.parse(text=)", lambda v: parse(v, Path("x.toml"))),
    ("proofs.parse(path=)", lambda v: parse('[[proof]]\nname = "a"\nmodel = "tp"\nexpect = "proved"\n', v)),
    ("proofs.load(path=)", lambda v: load_proofs(v)),
    ("proofs.discover(paths=)", lambda v: discover(v)),
    ("proofs.discover([path])", lambda v: discover([v])),
    ("torch_pp.read_order(path=)", lambda v: torch_pp.read_order(v)),
    ("torch_pp.read_order_text(text=)", lambda v: torch_pp.read_order_text(v, "x.csv")),
    ("torch_pp.import_file(path=)", lambda v: torch_pp.import_file(v)),
    ("torch_pp.import_file(placement=)", lambda v: torch_pp.import_file(ROOT / "README.md", placement=v)),
    ("torch_pp.parse_action(text=)", lambda v: torch_pp.parse_action(v)),
    ("torch_pp.parse_rows(rows=)", lambda v: torch_pp.parse_rows(v, "x")),
    ("torch_pp.lower(order=)", lambda v: torch_pp.lower(v)),
    ("torch_pp.lower({rank: v})", lambda v: torch_pp.lower({0: v})),
    ("torch_pp.lower(comm=)", lambda v: torch_pp.lower({0: [torch_pp.Action(0, "F", 0)]}, comm=v)),
    ("registry.build(name=)", lambda v: registry.build(v, {})),
    ("registry.build(params=)", lambda v: registry.build("paged-kv", v)),
    ("registry.build({seqs: v})", lambda v: registry.build("paged-kv", {"seqs": v})),
    ("registry.build({v: 2})", lambda v: registry.build("paged-kv", {v: 2}) if _hashable(v) else None),
    ("registry.build(fault=)", lambda v: registry.build("paged-kv", {}, v)),
]


def call_owned(name: str, call: Callable[[Any], object], value: object) -> int:
    """2 when the call refused the value with a UserError, 0 when it accepted
    it (an int that is a valid parameter, say); any other exception escapes
    and fails the test."""
    with time_limit():
        try:
            call(value)
        except UserError as exc:
            assert str(exc), name
            return 2
    return 0


@pytest.mark.parametrize(("name", "call"), OWNED, ids=[n for n, _ in OWNED])
def test_owned_entry_points_refuse_wrong_types(name: str, call: Callable[[Any], object]) -> None:
    @FAST
    @given(junk)
    def one(value: object) -> None:
        call_owned(name, call, value)

    one()


@pytest.mark.slow
def test_owned_entry_points_refuse_wrong_types_slow(capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally("Python API (proofs, torch_pp, registry entry points)", {0: "accepted", 2: "UserError"})

    @SLOW
    @given(st.sampled_from(OWNED), junk)
    def one(entry: tuple[str, Callable[[Any], object]], value: object) -> None:
        tally.add(call_owned(*entry, value))

    one()
    tally.report(capsys)


@pytest.mark.parametrize(("call", "words"), [
    (lambda: load_proofs(3), "load(): path must be a file path (str or os.PathLike), got int 3"),
    (lambda: parse(None, Path("x.toml")), "parse(): text must be a string, got None"),
    (lambda: discover("proofs"), "discover(): paths must be a list of paths"),
    (lambda: torch_pp.read_order(b"x.csv"), "read_order(): path must be a file path"),
    (lambda: torch_pp.import_file("x.csv", placement="zigzag"), "import_file(): placement must be one of"),
    (lambda: torch_pp.lower([["0F0"]]), "lower(): order must be a mapping of rank"),
    (lambda: registry.build("paged-kv", [("seqs", 2)]), "parameters are a mapping"),
    (lambda: registry.build("paged-kv", {"seqs": 2.0}), "seqs takes an integer in 2..8, got 2.0"),
    (lambda: registry.build(["tp"], {}), "a model name is a string, got ['tp']"),
])
def test_wrong_types_are_named(call: Callable[[], object], words: str) -> None:
    with pytest.raises(UsageError) as info:
        call()
    assert words in str(info.value)


def test_apiguard_messages() -> None:
    with pytest.raises(UsageError, match=r"f\(\): n must be an integer in 1\.\.5, got int 9"):
        apiguard.integer(9, "f", "n", 1, 5)
    with pytest.raises(UsageError, match=r"got bool True"):
        apiguard.integer(True, "f", "n")
    with pytest.raises(UsageError, match=r"an integer of about 101 digits"):
        apiguard.integer(10**100, "f", "n", 1, 5)
    with pytest.raises(UsageError, match=r"a finite number > 0"):
        apiguard.number(float("nan"), "f", "t")
    with pytest.raises(UsageError, match=r"a list drawn from a, b, got int 3"):
        apiguard.strings(["a", 3], "f", "p", ("a", "b"))
    with pytest.raises(UsageError, match=r"a list of strings, got str 'ab'"):
        apiguard.strings("ab", "f", "p")
    assert apiguard.strings(iter(["a"]), "f", "p") == ("a",)
    assert apiguard.path("x", "f") == Path("x")
    assert len(apiguard.short_repr("x" * 10_000)) == apiguard.REPR_LIMIT


# ------------------------------------------------- the public entry points


def _expect_usage_error(call: Callable[[], object], words: str) -> None:
    try:
        call()
    except UsageError as exc:
        assert words in str(exc), str(exc)
        return
    raise AssertionError("no UsageError")


ENTRY_POINTS: list[tuple[str, Callable[[], object], str]] = [
    ("load(3)", lambda: syncproof.load(3), "load(): path must be a file path"),  # type: ignore[arg-type]
    ("load(None)", lambda: syncproof.load(None), "load(): path must be a file path"),  # type: ignore[arg-type]
    ("loads(3)", lambda: syncproof.loads(3), "loads(): text must be"),  # type: ignore[arg-type]
    ("loads({})", lambda: syncproof.loads({}), "loads(): text must be"),  # type: ignore[arg-type]
    ("save({}, path)", lambda: syncproof.save({}, "/nonexistent/x.json"), "save(): s must be a Schedule"),  # type: ignore[arg-type]
    ("save(s, 3)", lambda: syncproof.save(_sched(), 3), "save(): path must be a file path"),  # type: ignore[arg-type]
    ("dumps({})", lambda: syncproof.dumps({}), "dumps(): s must be a Schedule"),  # type: ignore[arg-type]
    ("dumps(None)", lambda: syncproof.dumps(None), "dumps(): s must be a Schedule"),  # type: ignore[arg-type]
    ("check_schedule({})", lambda: syncproof.check_schedule({}), "check_schedule(): s must be a Schedule"),  # type: ignore[arg-type]
    ("check_schedule('f.json')", lambda: syncproof.check_schedule(str(SCHEDULE)),  # type: ignore[arg-type]
     "check_schedule(): s must be a Schedule"),
    ("check_schedule(max_cex='3')", lambda: syncproof.check_schedule(_sched(), max_cex="3"),  # type: ignore[arg-type]
     "check_schedule(): max_cex must be an integer"),
    ("check_schedule(max_cex=0)", lambda: syncproof.check_schedule(_sched(), max_cex=0),
     "check_schedule(): max_cex must be an integer in 1.."),
    ("check_schedule(timeout='1')", lambda: syncproof.check_schedule(_sched(), timeout="1"),  # type: ignore[arg-type]
     "check_schedule(): timeout must be a number"),
    ("check_schedule(timeout=nan)", lambda: syncproof.check_schedule(_sched(), engine="z3", timeout=float("nan")),
     "check_schedule(): timeout must be a finite number"),
    ("check_schedule(rlimit='1')", lambda: syncproof.check_schedule(_sched(), engine="z3", rlimit="1"),  # type: ignore[arg-type]
     "check_schedule(): rlimit must be an integer"),
    ("check_schedule(replay='no')", lambda: syncproof.check_schedule(_sched(), replay="no"),  # type: ignore[arg-type]
     "check_schedule(): replay must be True or False"),
    ("check_schedule(choices=3)", lambda: syncproof.check_schedule(_sched(), choices=3),  # type: ignore[arg-type]
     "check_schedule(): choices must be one of"),
    ("ScheduleBuilder.group(name, None)", lambda: ScheduleBuilder("x").group("g", None),  # type: ignore[arg-type]
     "group(): members must be"),
    ("ScheduleBuilder.buffer(3)", lambda: ScheduleBuilder("x").buffer(3),  # type: ignore[arg-type]
     "buffer(): name must be a non-empty string"),
    ("ScheduleBuilder.build(source=3)", lambda: ScheduleBuilder("x").build(source=3),  # type: ignore[arg-type]
     "build(): source must be a string"),
    ("ScheduleBuilder.rank('a')", lambda: ScheduleBuilder("x").rank("a"),  # type: ignore[arg-type]
     "rank(): rank must be an integer"),
]


@pytest.mark.parametrize(("call", "words"), [(c, w) for _, c, w in ENTRY_POINTS], ids=[n for n, _, _ in ENTRY_POINTS])
def test_entry_points_refuse_wrong_types(call: Callable[[], object], words: str) -> None:
    with time_limit():
        _expect_usage_error(call, words)
