"""Every branch of the read sentence names who wrote what, whichever run the
solver returns (``engine/explain.py``, :func:`read_observation`).

The engines pick a witness run; z3 may return any model, so each shape of run
the sentence distinguishes is built here by hand: the expected value is the
buffer's initial one or an op's, and the wrong value lands before the read
starts or while it reads."""

from __future__ import annotations

from syncproof import ScheduleBuilder
from syncproof.engine.explain import read_observation
from syncproof.ir import Schedule
from syncproof.result import Run
from syncproof.semantics.obligations import read_obligations


def _schedule(init_good: bool) -> Schedule:
    """One rank: a reader of ``x`` expecting 'v0'; on another stream, a
    writer of 'v1'; with ``init_good`` x holds 'v0' at the start, else an op
    on a third stream writes it."""
    b = ScheduleBuilder("reads")
    b.buffer("x")
    if init_good:
        b.init("x", "v0")
    r = b.rank(0)
    if not init_good:
        r.compute("produce", stream="p", writes={"x": "v0"})
    r.compute("consume", stream="c", reads={"x": "v0"})
    r.compute("clobber", stream="w", writes={"x": "v1"})
    return b.build()


def _op(s: Schedule, name: str) -> int:
    return next(op.id for op in s.ops if op.name == name)


def _sentence(s: Schedule, times: dict[str, tuple[int, int]]) -> tuple[str, tuple[int, ...], tuple[int, int] | None]:
    (ob,) = [o for o in read_obligations(s) if o.read == _op(s, "consume")]
    start = [times[op.name][0] for op in s.ops]
    end = [times[op.name][1] for op in s.ops]
    _, sentence, culprits, missing = read_observation(s, ob, Run(tuple(start), tuple(end)))
    return sentence, culprits, missing


def test_initial_value_overwritten_before_the_read_names_the_writer() -> None:
    s = _schedule(init_good=True)
    sentence, culprits, missing = _sentence(s, {"clobber": (0, 1), "consume": (2, 3)})
    assert sentence == ("r0/w: clobber overwrote x with 'v1' before r0/c: consume read it (it expects 'v0', the value"
                        " x held at the start)")
    assert culprits == missing == (_op(s, "consume"), _op(s, "clobber"))


def test_initial_value_overwritten_during_the_read_names_the_writer() -> None:
    s = _schedule(init_good=True)
    sentence, culprits, _ = _sentence(s, {"consume": (0, 3), "clobber": (1, 2)})
    assert sentence == "r0/w: clobber overwrote x with 'v1' while r0/c: consume was still reading it (it expects 'v0')"
    assert culprits == (_op(s, "consume"), _op(s, "clobber"))


def test_overwritten_after_the_good_write_names_both() -> None:
    s = _schedule(init_good=False)
    sentence, culprits, _ = _sentence(s, {"produce": (0, 1), "clobber": (2, 3), "consume": (4, 5)})
    assert sentence == ("r0/w: clobber overwrote x with 'v1' after r0/p: produce wrote 'v0' and before r0/c: consume"
                        " read it")
    assert culprits == (_op(s, "consume"), _op(s, "clobber"))


def test_read_before_the_good_write_names_the_writer_it_missed() -> None:
    s = _schedule(init_good=False)
    sentence, culprits, missing = _sentence(s, {"clobber": (0, 1), "consume": (2, 3), "produce": (4, 5)})
    assert sentence == "r0/c: consume read x before r0/p: produce wrote 'v0' there (it saw 'v1')"
    assert missing == (_op(s, "produce"), _op(s, "consume"))
