"""Input files for the importers: files given, and the files in directories given."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import ScheduleError, UsageError


def files_under(paths: Sequence[str | Path], empty_dir: str) -> list[Path]:
    """Every file named, and every visible file inside every directory named,
    in order.  A missing path is a ScheduleError naming it; an empty
    directory a UsageError ending in ``empty_dir`` (what was expected)."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            inside = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            if not inside:
                raise UsageError(f"{p}: {empty_dir}")
            files.extend(inside)
        elif p.is_file():
            files.append(p)
        else:
            raise ScheduleError("no such file or directory", str(p))
    return files


def read_input(path: Path, expected: str) -> bytes:
    """The bytes of an input file; a missing, unreadable, special or empty
    file is a ScheduleError naming it (``expected`` says what it should
    have held).  See :mod:`syncproof.inputs`."""
    from ..inputs import read_bytes

    return read_bytes(path, expected)
