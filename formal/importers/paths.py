"""Input files for the importers: files given, and the files in directories given."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from ..errors import ScheduleError, UsageError


def files_under(paths: Sequence[str | Path], empty_dir: str) -> list[Path]:
    """Every file named, and every entry inside every directory named that is
    not hidden (a name starting with ``.``) and not a directory, in order.
    Entries that are not regular files (a FIFO, a device, a socket) are kept,
    so that reading them reports them (:func:`syncproof.inputs.read_bytes`
    refuses them, naming the file) instead of their being dropped silently.
    A missing path is a ScheduleError naming it; an empty directory a
    UsageError ending in ``empty_dir`` (what was expected)."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise ScheduleError("no such file or directory", str(p)) from None
        except OSError as exc:
            raise ScheduleError(f"cannot read: {exc.strerror or exc}", str(p)) from None
        if not stat.S_ISDIR(st.st_mode):
            files.append(p)
            continue
        try:
            with os.scandir(p) as it:
                entries = sorted((e.name, e.is_dir()) for e in it if not e.name.startswith("."))
        except OSError as exc:
            raise ScheduleError(f"cannot list the directory: {exc.strerror or exc}", str(p)) from None
        inside = [p / n for n, is_dir in entries if not is_dir]
        if not inside:
            raise UsageError(f"{p}: {empty_dir}")
        files.extend(inside)
    return files


def read_input(path: Path, expected: str) -> bytes:
    """The bytes of an input file; a missing, unreadable, special or empty
    file is a ScheduleError naming it (``expected`` says what it should
    have held).  See :mod:`syncproof.inputs`."""
    from ..inputs import read_bytes

    return read_bytes(path, expected)
