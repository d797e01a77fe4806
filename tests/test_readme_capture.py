"""The README's Python capture example runs as printed: proved with
``work.wait()``, dataflow and race violated without it."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippet() -> str:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (code,) = [b for b in blocks if "syncproof.capture" in b]
    return code


def _run(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102 - the project's own README
    return out.getvalue().strip()


def test_the_readme_capture_example_is_proved() -> None:
    assert _run(_snippet()) == "0"


def test_without_the_wait_it_is_a_counterexample() -> None:
    code = _snippet()
    assert "    work.wait()" in code
    assert _run(code.replace("    work.wait()", "    pass")) == "1"
