"""The syncproof pytest plugin (entry point ``pytest11``: ``syncproof``).

It collects proof obligation files as test items, so ``pytest proofs/`` runs
them with pytest's usual reporting (``-k``, ``-x``, ``--junitxml`` ...): one
item per ``[[proof]]`` table, named after it.

Which files: ``*.toml`` files in a directory named ``proofs`` (or matching one
of the globs of the ``syncproof_proofs`` ini option, relative to the rootdir)
that contain a ``[[proof]]`` table; any other TOML file is left alone, so the
plugin never gets in the way of a project's own tests.  Items carry the
marker ``syncproof``, and ``slow`` when the obligation says ``slow = true``.

A malformed proof file (bad TOML, a wrong type, an unknown key, model,
parameter or fault, a value out of range) is a collection error whose
message names the file, the proof and the key, without a traceback of
syncproof's internals.

Importing this module imports nothing but pytest; the obligation loader is
imported at collection, the solver only when an item runs.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("syncproof_proofs", type="linelist", default=[],
                  help="globs (relative to the rootdir) of syncproof proof files to collect, in addition to"
                  " *.toml files in directories named 'proofs'")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "syncproof: a syncproof proof obligation (from a proofs/*.toml file)")
    if not any(str(m).startswith("slow") for m in config.getini("markers")):
        config.addinivalue_line("markers", "slow: a long-running syncproof obligation (slow = true)")


def _wanted(path: Path, config: pytest.Config) -> bool:
    if path.parent.name == "proofs":
        return True
    try:
        rel = path.relative_to(config.rootpath).as_posix()
    except ValueError:
        return False
    return any(fnmatch.fnmatch(rel, pat) for pat in config.getini("syncproof_proofs"))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".toml" or not _wanted(file_path, parent.config):
        return None
    from .errors import UserError
    from .inputs import read_bytes
    from .proofs import MAX_PROOF_BYTES

    try:  # a regular file only (never blocks on a pipe); an unreadable one is not ours to judge
        data = read_bytes(file_path, "a syncproof proof file (TOML)", MAX_PROOF_BYTES)
    except UserError:
        if file_path.is_file() and file_path.stat().st_size > MAX_PROOF_BYTES:
            return ProofFile.from_parent(parent, path=file_path)  # collect() reports the size
        return None
    if b"[[proof]]" not in data:
        return None
    return ProofFile.from_parent(parent, path=file_path)


class ProofFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from .errors import UserError
        from .proofs import load

        try:
            obligations = load(self.path)
        except UserError as exc:  # a malformed file: one line naming file, proof and key, no traceback
            raise self.CollectError(str(exc)) from None
        for ob in obligations:
            item = ProofItem.from_parent(self, name=ob.name, obligation=ob)
            item.add_marker(pytest.mark.syncproof)
            if ob.slow:
                item.add_marker(pytest.mark.slow)
            yield item


class ProofFailed(Exception):
    """The obligation's verdict is not the expected one (or unknown)."""


class ProofItem(pytest.Item):
    def __init__(self, *, obligation: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.obligation = obligation

    def runtest(self) -> None:
        from .proofs import OK, XFAIL, run

        out = run(self.obligation)
        self.user_properties.append(("expected", self.obligation.expect_text))
        self.user_properties.append(("got", out.got))
        self.user_properties.append(("seconds", f"{out.seconds:.3f}"))
        if out.status == XFAIL:
            pytest.xfail(self.obligation.xfail)
        if out.status != OK:
            ob = self.obligation
            lines = [f"{ob.id}: {ob.target}", f"  expected: {ob.expect_text}", f"  got:      {out.got}"
                     f" ({out.status})"]
            if out.status == "xpass":
                lines.append(f"  it is marked xfail ({ob.xfail!r}) but gives its expected verdict: drop the xfail")
            if out.detail:
                lines.append(f"  {out.detail}")
            raise ProofFailed("\n".join(lines))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ProofFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        ob = self.obligation
        return self.path, None, f"{ob.kind} proof {ob.id} ({ob.target}, expect {ob.expect_text})"
