"""The console command ends at once after a big check (formal/quickexit.py):
its output is complete, its exit code is check's, and nothing is held when
``main`` is called in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from syncproof import quickexit
from syncproof.cli import main

ROOT = Path(__file__).resolve().parent.parent

# the console entry point with the threshold at 0, so that a small example is held;
# an atexit handler tells whether the process ended through os._exit (it is skipped then)
SCRIPT = """
import atexit, sys
from syncproof import cli, quickexit
atexit.register(lambda: print("atexit ran"))
quickexit.HOLD_MIN_OPS = {threshold}
sys.argv = ["syncproof", "check", {path!r}, "--no-grid"]
cli.entry()
"""


def _entry(path: Path, threshold: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(path=str(path), threshold=threshold)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_held_schedule_ends_the_process_at_once_with_all_output() -> None:
    ex = ROOT / "examples" / "pp-sendrecv-deadlock.json"
    quick, usual = _entry(ex, 0), _entry(ex, 10**9)
    assert quick.returncode == usual.returncode == 1  # a counterexample either way
    assert "atexit ran" not in quick.stdout  # os._exit: the schedule was held
    assert usual.stdout.rstrip().endswith("atexit ran")  # not held: the usual exit
    # the report is complete: the same text, whichever way the process ended
    assert quick.stdout == usual.stdout.replace("atexit ran\n", "")
    assert "deadlock" in quick.stdout


def test_a_proved_schedule_exits_0_through_the_quick_exit() -> None:
    proc = _entry(ROOT / "examples" / "pp-sendrecv-ordered.json", 0)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "atexit ran" not in proc.stdout and "proved" in proc.stdout


def test_main_in_process_holds_nothing(capsys: object) -> None:
    before = len(quickexit._held)
    old = quickexit.HOLD_MIN_OPS
    quickexit.HOLD_MIN_OPS = 0
    try:
        assert main(["check", str(ROOT / "examples" / "pp-sendrecv-ordered.json"), "--no-grid"]) == 0
    finally:
        quickexit.HOLD_MIN_OPS = old
    assert len(quickexit._held) == before  # only the console entry point enables holding


def test_python_m_syncproof_uses_the_entry_point() -> None:
    ex = ROOT / "examples" / "pp-sendrecv-deadlock.json"
    proc = subprocess.run([sys.executable, "-m", "syncproof", "check", str(ex), "--no-grid"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1 and "deadlock" in proc.stdout
