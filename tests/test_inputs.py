"""The one reader of untrusted input files (syncproof.inputs): special files, sizes, nesting, digits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncproof.errors import ScheduleError
from syncproof.inputs import MAX_JSON_DEPTH, ascii_int, parse_json, read_bytes, read_text


def test_regular_file_is_read(tmp_path: Path) -> None:
    f = tmp_path / "a.json"
    f.write_bytes(b'{"a": 1}')
    assert read_bytes(f, "a schedule") == b'{"a": 1}'
    assert parse_json(read_text(f, "a schedule"), str(f)) == {"a": 1}


@pytest.mark.parametrize("case", ["missing", "dir", "empty", "fifo", "device", "big", "utf8"])
def test_bad_files_are_errors_naming_the_file(tmp_path: Path, case: str) -> None:
    f = tmp_path / "x.json"
    limit = 1 << 30
    if case == "dir":
        f.mkdir()
    elif case == "empty":
        f.write_bytes(b"  \n")
    elif case == "fifo":
        os.mkfifo(f)  # no writer: reading it would block forever
    elif case == "device":
        f = Path("/dev/zero")  # never ends
    elif case == "big":
        f.write_bytes(b"[" + b"1," * 100 + b"1]")
        limit = 50
    elif case == "utf8":
        f.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(ScheduleError) as exc:
        read_text(f, "a schedule", max_bytes=limit)
    assert str(f) in str(exc.value)


@pytest.mark.parametrize("text, why", [
    ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "nested"),
    ("[" * 100000, "nested"),
    ("1" * 5000, "JSON"),
    ('{"a": NaN}', "NaN"),
    ('{"a": Infinity}', "Infinity"),
    ('{"a": 1,}', "line 1"),
])
def test_bad_json_is_an_error(text: str, why: str) -> None:
    with pytest.raises(ScheduleError) as exc:
        parse_json(text, "f.json")
    assert why in str(exc.value) and "f.json" in str(exc.value)


def test_deep_brackets_inside_strings_are_not_nesting() -> None:
    text = '{"a": "' + "[" * 1000 + '"}'
    assert parse_json(text, "f.json") == {"a": "[" * 1000}


@pytest.mark.parametrize("text", ["²", "٣", "", "-", "1e3", " 1", "1" * 41])
def test_ascii_int_refuses(text: str) -> None:
    with pytest.raises(ScheduleError):
        ascii_int(text, "f.json: rank key")


def test_ascii_int_reads() -> None:
    assert ascii_int("12", "w") == 12 and ascii_int("-3", "w") == -3


def test_big_inputs_are_guarded_by_the_parser_not_the_scan() -> None:
    """Above SCAN_DEPTH_BELOW the nesting is bounded by the parser's own
    guard: still an error, never a RecursionError."""
    from syncproof.inputs import SCAN_DEPTH_BELOW

    pad = " " * SCAN_DEPTH_BELOW
    with pytest.raises(ScheduleError) as exc:
        parse_json(pad + "[" * 10_000 + "]" * 10_000, "big.json")
    assert "nested too deeply" in str(exc.value)
    assert parse_json(pad + '{"a": [[1]]}', "big.json") == {"a": [[1]]}
