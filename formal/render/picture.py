"""Draw DOT text as SVG or PNG.

Two ways, tried in this order:

1. ``pygraphviz`` (a dependency on Linux x86_64/aarch64, macOS arm64 and
   Windows x64, where its wheels bundle Graphviz and its cairo/pango
   plugins): layout and drawing run in-process, no program needs to be
   installed.
2. a ``dot`` program on the PATH (Graphviz installed by the system's package
   manager), for platforms without a pygraphviz wheel.

When neither exists, :func:`render` raises :class:`PictureUnavailable` with
the reason, and when Graphviz fails, :class:`PictureError`; callers still
have the DOT text.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

FORMATS = ("svg", "png")


class PictureError(RuntimeError):
    """Graphviz could not draw the picture."""


class PictureUnavailable(PictureError):
    """Neither pygraphviz nor a ``dot`` program can draw here."""


def _pygraphviz() -> Any | None:
    try:
        return importlib.import_module("pygraphviz")
    except ImportError:
        return None


def backend() -> str | None:
    """``"pygraphviz"``, ``"dot"`` (the program) or ``None``."""
    if _pygraphviz() is not None:
        return "pygraphviz"
    if shutil.which("dot") is not None:
        return "dot"
    return None


def unavailable_reason() -> str:
    return ("cannot draw SVG/PNG: pygraphviz is not installed (no wheel for this platform?) and no `dot`"
            " program is on the PATH; install Graphviz (e.g. `apt-get install graphviz`, `brew install"
            " graphviz`) or pygraphviz, or open the .dot file with any Graphviz viewer")


@contextlib.contextmanager
def _graphviz_messages() -> Iterator[list[str]]:
    """Collect what Graphviz's C libraries print on file descriptor 2 (they
    do not raise): errors are returned in the list, to be raised by the
    caller; a bundled fontconfig's warnings about newer system config files
    are dropped; anything else is passed on to stderr."""
    errors: list[str] = []
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield errors
        return
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(fd)
        try:
            sys.stderr.flush()
            os.dup2(tmp.fileno(), fd)
            yield errors
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines():
                if not line.strip() or line.startswith("Fontconfig"):
                    continue
                if line.startswith(("Error", "Warning: syntax")):
                    errors.append(line.strip())
                else:
                    print(line, file=sys.stderr)


def render(dot_text: str, fmt: str) -> bytes:
    """The picture of ``dot_text`` as ``fmt`` (``svg`` or ``png``) bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown picture format {fmt!r}; choose from {', '.join(FORMATS)}")
    pgv = _pygraphviz()
    if pgv is not None:
        try:
            with _graphviz_messages() as errors:
                graph = pgv.AGraph(string=dot_text)
                graph.layout(prog="dot")
                data = graph.draw(format=fmt if fmt == "svg" else "png:cairo")
        except (ValueError, OSError, RuntimeError) as exc:  # pygraphviz's own errors
            raise PictureError(f"Graphviz failed: {exc}") from None
        if errors:
            raise PictureError("Graphviz failed: " + "; ".join(errors[:3]))
        if not data:
            raise PictureError(f"pygraphviz produced no {fmt} output")
        return bytes(data)
    exe = shutil.which("dot")
    if exe is None:
        raise PictureUnavailable(unavailable_reason())
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True,
                          timeout=600, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise PictureError(f"`dot -T{fmt}` failed: {proc.stderr.decode('utf-8', 'replace').strip()}")
    return proc.stdout
