"""Issue 16, proofs TOML: every malformed ``proofs/*.toml`` gives exit 2 from
``syncproof prove FILE`` naming the file, the obligation and the key, and a
clean collection error (no traceback of syncproof internals) from the pytest
plugin; never a traceback, exit 4 or a hang.

The fuzz runs ``prove --list FILE`` (loading checks every key, model,
parameter, fault and property, and builds nothing) and, when that refuses the
file, ``prove FILE`` too; a file that loads is never run, so a generated
obligation cannot start a long check."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import FAST, SLOW, Tally, assert_clean, assert_names, run_cli
from hypothesis import given
from hypothesis import strategies as st

from syncproof.models.registry import list_models
from syncproof.proofs import PARAMETRIC, PARAMETRIC_FAULTS, PARAMETRIC_PARAMS, PROOF_KEYS
from syncproof.result import PROPERTIES

MODELS = [m.name for m in list_models()]
PARAM_NAMES = sorted({p.name for m in list_models() for p in m.params} | {k for d in PARAMETRIC_PARAMS.values()
                                                                            for k in d})
FAULTS = sorted({f.name for m in list_models() for f in m.faults} | {f for fs in PARAMETRIC_FAULTS.values()
                                                                        for f in fs})
ODD_TEXT = ["²", "٣", "1_000", " 4 ", "-1", "0", "99999999999", "9" * 50, "", " ", "\u00a0", "nan", "inf", "1e3",
            "proved", "violated", "violated: dataflw", "violated: race", "hybrid", "z3", "true", "\x00", "\ufeff",
            "a\nb", '"', "'", "[[proof]]"]


# ------------------------------------------------------------- TOML text
def toml_value(v: Any) -> str:
    """TOML text of a value (inline arrays and tables only)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    assert isinstance(v, dict)
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_doc(proofs: list[dict[str, Any]], defaults: dict[str, Any] | None) -> str:
    lines: list[str] = []
    if defaults is not None:
        lines.append("[defaults]")
        lines += [f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in defaults.items()]
    for p in proofs:
        lines.append("[[proof]]")
        lines += [f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in p.items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------- strategies
ints = st.one_of(st.integers(-10, 10), st.integers(), st.sampled_from([10**30, -(10**30), 2**63, 2**63 - 1, 2**64,
                                                                       2**32, 2**32 - 1, 4097, 513, 65]))
atoms = st.one_of(ints, st.floats(), st.booleans(), st.text(max_size=12), st.sampled_from(ODD_TEXT),
                  st.sampled_from(MODELS + list(PARAMETRIC) + FAULTS + list(PROPERTIES) + PARAM_NAMES))
values = st.recursive(atoms, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                      max_leaves=10)
param_tables = st.dictionaries(st.sampled_from(PARAM_NAMES) | st.text(max_size=6),
                               st.one_of(ints, st.sampled_from(ODD_TEXT), st.sampled_from(["ring", "allgather",
                                                                                           "decode", "both"]), values),
                               max_size=4)


@st.composite
def proof_tables(draw: st.DrawFn) -> dict[str, Any]:
    """A mostly valid [[proof]] table with a few keys replaced, removed or added."""
    p: dict[str, Any] = {"name": draw(st.sampled_from(["a", "b", "tp8"]) | st.text(max_size=8))}
    if draw(st.booleans()):
        p["model"] = draw(st.sampled_from(MODELS))
        spec = next(m for m in list_models() if m.name == p["model"])
        if spec.faults and draw(st.booleans()):
            p["fault"] = draw(st.sampled_from([f.name for f in spec.faults]))
    else:
        p["parametric"] = draw(st.sampled_from(PARAMETRIC))
    p["params"] = draw(param_tables)
    p["expect"] = draw(st.sampled_from(["proved", "violated: dataflow", "violated: race", "violated: deadlock"]))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(PROOF_KEYS) | st.text(max_size=8))
        if draw(st.integers(0, 3)) == 0:
            p.pop(key, None)
        else:
            p[key] = draw(values)
    return p


@st.composite
def proof_files(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:  # junk bytes
        return draw(st.binary(max_size=200))
    if kind == 1:  # deep nesting
        n = draw(st.sampled_from([50, 300, 1000, 5000, 20000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a=", "}")]))
        return ('[[proof]]\nname = "a"\nmodel = "tp"\nexpect = "proved"\nparams = { tp = ' + opener * n + "1"
                + closer * n + " }\n").encode()
    defaults = draw(st.none() | st.dictionaries(st.sampled_from(["engine", "timeout", "rlimit"]) | st.text(max_size=5),
                                                values, max_size=3))
    text = toml_doc(draw(st.lists(proof_tables(), min_size=0, max_size=3)), defaults)
    data = text.encode("utf-8", "surrogatepass")
    if kind == 2 and data:  # a cut or a stray byte
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"", b"\x00", b"\xff", b"[", b'"', b"\n[[proof]]\n", b"="])) \
            + data[at + draw(st.integers(0, 3)):]
    return data


def check_file(data: bytes, tmp: Path, capsys: pytest.CaptureFixture[str]) -> int:
    f = tmp / "proofs" / "fuzz.toml"
    f.parent.mkdir(exist_ok=True)
    f.write_bytes(data)
    listed = run_cli(["prove", "--list", str(f)], capsys)
    assert_clean(listed, (0, 2))
    if listed.code == 2:
        assert_names(run_cli(["prove", str(f)], capsys), str(f))
    return listed.code


def test_fuzz_proofs_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    @FAST
    @given(proof_files())
    def one(data: bytes) -> None:
        check_file(data, tmp_path, capsys)

    one()


@pytest.mark.slow
def test_fuzz_proofs_toml_slow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally("proofs TOML (syncproof prove)")

    @SLOW
    @given(proof_files())
    def one(data: bytes) -> None:
        tally.add(check_file(data, tmp_path, capsys))

    one()
    tally.report(capsys)


# ------------------------------------------------------------- named places
HEAD = '[[proof]]\nname = "p1"\n'


@pytest.mark.parametrize(("body", "words"), [
    ('model = "tp"\nparams = { tp = 1000000000000000000000000000000 }\nexpect = "proved"\n', ["p1", "tp=", "1..8"]),
    ('model = "tp"\nparams = { tp = -1 }\nexpect = "proved"\n', ["p1", "tp=-1", "out of range"]),
    ('model = "tp"\nparams = { tp = "²" }\nexpect = "proved"\n', ["p1", "tp takes an integer", "'²'"]),
    ('model = "tp"\nparams = { tp = "٣" }\nexpect = "proved"\n', ["p1", "tp takes an integer", "ASCII"]),
    ('model = "tp"\nparams = { tp = 2.5 }\nexpect = "proved"\n', ["p1", "params must be"]),
    ('model = "tp"\nparams = { tp = [[[[[[[[[[1]]]]]]]]]] }\nexpect = "proved"\n', ["p1", "params must be"]),
    ('model = "tp"\nparams = { tp = ' + "[" * 5000 + "]" * 5000 + ' }\nexpect = "proved"\n', ["nested too deeply"]),
    ('model = "tp"\nparams = ' + "{a=" * 3000 + "1" + "}" * 3000 + '\nexpect = "proved"\n', ["nested too deeply"]),
    ('model = "tpx"\nexpect = "proved"\n', ["p1", "unknown model 'tpx'"]),
    ('model = "tp"\nfault = "nope"\nexpect = "proved"\n', ["p1", "no fault 'nope'"]),
    ('model = "tp"\nproperties = ["racy"]\nexpect = "proved"\n', ["p1", "properties must be"]),
    ('model = "tp"\nexpct = "proved"\n', ["p1", "unknown key 'expct'"]),
    ('model = "tp"\nexpect = "proved"\ntimeout = nan\n', ["p1", "timeout must be", "nan"]),
    ('model = "tp"\nexpect = "proved"\ntimeout = 1e300\n', ["p1", "timeout must be"]),
    ('model = "tp"\nexpect = "proved"\ntimeout = 1' + "0" * 400 + '\n', ["p1", "timeout must be"]),
    ('model = "tp"\nexpect = "proved"\nrlimit = 9223372036854775807\n', ["p1", "rlimit must be"]),
    ('model = "tp"\nexpect = "proved"\nrlimit = true\n', ["p1", "rlimit must be"]),
    ('model = "tp"\nexpect = "proved"\nslow = "yes"\n', ["p1", "slow must be"]),
    ('parametric = "ep-routing"\nparams = { ep = 100000000000000000000 }\nexpect = "proved"\n',
     ["p1", "params.ep", "out of range 1..8"]),
    ('parametric = "ep-routing"\nparams = { tokens = "²" }\nexpect = "proved"\n', ["p1", "params.tokens"]),
    ('parametric = "sp-causal"\nparams = { variant = "star" }\nexpect = "proved"\n', ["p1", "params.variant"]),
    ('parametric = "kv-steps"\nparams = { steps = 4 }\nexpect = "proved"\n', ["p1", "no parameter 'steps'"]),
    ('parametric = "kv-steps"\nfault = "nope"\nexpect = "proved"\n', ["p1", "no fault 'nope'"]),
    ('parametric = 3\nexpect = "proved"\n', ["p1", "unknown parametric proof 3"]),
])
def test_bad_obligation_names_file_proof_and_key(body: str, words: list[str], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(HEAD + body, encoding="utf-8")
    assert_names(run_cli(["prove", str(f)], capsys), str(f), *words)


def test_bad_files_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe[[proof]]\x00")
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    for path, words in [(binary, "not UTF-8"), (fifo, "not a regular file"), (Path("/dev/zero"), "not a regular file"),
                        (tmp_path / "missing.toml", "no such file")]:
        assert_names(run_cli(["prove", str(path)], capsys), str(path), words)


def test_pytest_plugin_reports_a_clean_collection_error(tmp_path: Path) -> None:
    """The plugin turns a malformed file into a collection error: one line
    naming file, proof and key; no traceback of syncproof's internals."""
    d = tmp_path / "proofs"
    d.mkdir()
    (d / "big.toml").write_text(HEAD + 'model = "tp"\nparams = { tp = 10000000000 }\nexpect = "proved"\n')
    (d / "deep.toml").write_text(HEAD + 'model = "tp"\nparams = { tp = ' + "[" * 3000 + "]" * 3000 + " }\n")
    (d / "bin.toml").write_bytes(b"[[proof]]\nname = \"\xff\"\n")
    (d / "key.toml").write_text(HEAD + 'model = "tp"\nexpect = "proved"\nrlimt = 5\n')
    (d / "huge.toml").write_bytes(b"[[proof]]\n" + b"#" * 4 * 1024**2)
    (d / "other.toml").write_text("[tool.other]\nx = 1\n")  # not a proof file: left alone
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "proofs"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out  # collection errors
    assert "5 errors" in out, out
    for words in ("big.toml: proof 'p1': model tp: tp=10000000000 is out of range 1..8",
                  "deep.toml: not valid TOML: arrays or inline tables nested too deeply",
                  "bin.toml: not UTF-8 text", "key.toml: proof 'p1': unknown key 'rlimt'",
                  "huge.toml: the file is 4194314 bytes, over the limit of 4194304"):
        assert words in out, out
    assert "Traceback" not in out and "syncproof/proofs.py" not in out and "formal/proofs.py" not in out, out
