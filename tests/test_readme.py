"""The README's walk-through runs as written, and CI runs the README's test command."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_walkthrough_runs_and_prints_what_the_readme_says() -> None:
    block = re.search(r"```python\n(.*?)```", README, re.S)
    assert block is not None
    code = block.group(1)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, "README.md", "exec"), {})
    printed = buf.getvalue().strip()
    promised = re.search(r"^# (r0/compute: .*?) \.\.\.$", code, re.M)
    assert promised is not None
    assert printed.startswith(promised.group(1))


def test_walkthrough_is_proved_once_the_events_are_added() -> None:
    block = re.search(r"```python\n(.*?)```", README, re.S)
    assert block is not None
    code = block.group(1).replace("    # forgot: r.record", "    r.record")
    code = code.replace("print(report.result(\"dataflow\").counterexample.sentence)",
                        "assert report.exit_code == 0, report")
    exec(compile(code, "README.md", "exec"), {})


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"^(python3 -m venv .*)$", README, re.M)
    assert len(commands) == 2
    ci = (ROOT / ".ci/run").read_text(encoding="utf-8")
    assert commands[1] in ci
