"""Shared pieces of the bad-input fuzz tests (tests/test_fuzz_*.py).

Each fuzz test runs the CLI in-process (``syncproof.cli.main``) on a
generated malformed input under a time limit, and checks the three things
issue 16 asks of every input surface: no traceback, never exit 4 (an
internal error), never a hang; bad input exits 2 with a message naming the
file and the place.  The slow variants count the inputs they tried and
print one line per surface for the release note.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from syncproof.cli import main

#: Seconds one generated input may take (the machine is shared and loaded).
EXAMPLE_SECONDS = 20.0
#: Exit codes a run may end with; 4 (internal error) never.
ALLOWED = (0, 1, 2, 3)

_QUIET = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
          HealthCheck.function_scoped_fixture, HealthCheck.large_base_example]
FAST = settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=_QUIET)
SLOW = settings(max_examples=3000, deadline=None, database=None, suppress_health_check=_QUIET)


class Hang(BaseException):
    """Raised by the alarm: not an Exception, so no ``except Exception`` in
    syncproof can swallow it (and turn a hang into an exit code)."""


@contextmanager
def time_limit(seconds: float = EXAMPLE_SECONDS) -> Iterator[None]:
    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"over {seconds:.0f} s: a hang")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    code: int
    out: str
    err: str


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str], seconds: float = EXAMPLE_SECONDS) -> Run:
    """``syncproof ARGV`` in-process, under a time limit; argparse's own
    usage errors (``SystemExit(2)``) count as exit 2."""
    capsys.readouterr()
    try:
        with time_limit(seconds):
            try:
                code = main(list(argv))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
    except Hang as exc:
        pytest.fail(f"syncproof {' '.join(argv)[:300]}: {exc}")
    cap = capsys.readouterr()
    return Run(tuple(argv), code, cap.out, cap.err)


def assert_clean(run: Run, allowed: Sequence[int] = ALLOWED) -> None:
    """No traceback, no internal error, an allowed exit code; exit 2 comes with a message."""
    shown = f"syncproof {' '.join(run.argv)[:300]} -> exit {run.code}\n{run.err[-2000:]}"
    assert "Traceback" not in run.err, shown
    assert run.code != 4 and "internal error" not in run.err, shown
    assert run.code in allowed, shown
    if run.code == 2:
        assert run.err.strip(), shown


def assert_names(run: Run, *words: str) -> None:
    """A bad-input run: exit 2 and a message containing each of ``words`` (file, place)."""
    assert_clean(run, (2,))
    for w in words:
        assert w in run.err, f"{w!r} not named in: {run.err[-2000:]}"


def outcome(codes: dict[int, int]) -> str:
    """What a summary line may claim: "none gave ..." only when no input was tallied with exit 4."""
    bad = codes.get(4, 0)
    return "none gave a traceback, exit 4 or a hang" if not bad else \
        f"{bad} gave exit 4 (an internal error: see the failure above)"


class Tally:
    """Counts the inputs a slow variant tried, for its summary line."""

    def __init__(self, surface: str, names: dict[int, str] | None = None) -> None:
        self.surface, self.n = surface, 0
        self.codes: dict[int, int] = {}
        self.names = names or {}

    def add(self, code: int) -> None:
        self.n += 1
        self.codes[code] = self.codes.get(code, 0) + 1

    def outcome(self) -> str:
        return outcome(self.codes)

    def report(self, capsys: pytest.CaptureFixture[str]) -> None:
        codes = ", ".join(f"{self.names.get(c, f'exit {c}')}: {n}" for c, n in sorted(self.codes.items()))
        with capsys.disabled():
            print(f"\n{self.surface}: {self.n} inputs tried, {self.outcome()} ({codes})")
        assert 4 not in self.codes, f"{self.surface}: {self.codes[4]} inputs gave exit 4"


def repeat(test: Callable[[], None]) -> None:
    """Run a hypothesis-decorated inner test (a closure over fixtures)."""
    test()
