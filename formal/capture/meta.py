"""Metadata for captured ops, without torch: ``meta(...)``, the labels of
``torch.profiler.record_function``, and the recorder the capture installs.

``meta`` and ``opaque`` are harmless outside a capture (they do nothing), so
a program can keep them in its code and run on a GPU unchanged."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from .errors import CaptureError

META_KEYS = ("phase", "step", "layer", "mb", "seqs", "sample")


class _Recorder(Protocol):
    def push_meta(self, fields: dict[str, Any], scope: str | None) -> None: ...
    def pop_meta(self) -> None: ...
    def opaque(self, name: str, reads: Sequence[Any], writes: Sequence[Any]) -> None: ...


_active: list[_Recorder] = []


def active() -> _Recorder | None:
    """The recorder of the capture in progress, if any."""
    return _active[-1] if _active else None


def set_active(rec: _Recorder | None) -> None:
    if rec is None:
        _active.clear()
    else:
        _active.append(rec)


def check_fields(fields: dict[str, Any], where: str) -> dict[str, Any]:
    """The meta fields set (not None), checked for their form."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if v is None:
            continue
        if k not in META_KEYS:
            raise CaptureError(f"{where}: unknown meta field {k!r} (choose from {', '.join(META_KEYS)})")
        if k == "phase" and v not in ("prefill", "decode"):
            raise CaptureError(f"{where}: phase must be 'prefill' or 'decode', got {v!r}")
        if k in ("step", "layer", "mb") and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise CaptureError(f"{where}: {k} must be an integer >= 0, got {v!r}")
        if k == "seqs":
            if isinstance(v, int) and not isinstance(v, bool):
                v = [v]
            if not isinstance(v, (list, tuple)) or not all(isinstance(x, int) and x >= 0 for x in v):
                raise CaptureError(f"{where}: seqs must be an integer or a list of integers, got {v!r}")
            v = list(v)
        if k == "sample":
            v = bool(v)
            if not v:
                continue
        out[k] = v
    return out


@contextmanager
def meta(phase: str | None = None, step: int | None = None, layer: int | None = None, mb: int | None = None,
         seqs: int | Sequence[int] | None = None, sample: bool | None = None) -> Iterator[None]:
    """Stamp the ops recorded inside with this metadata (docs/format.md,
    *Meta*); nested calls add to or override the outer ones.  Outside a
    capture it does nothing."""
    rec = active()
    if rec is None:
        yield
        return
    fields = check_fields({"phase": phase, "step": step, "layer": layer, "mb": mb, "seqs": seqs,
                           "sample": sample}, "syncproof.capture.meta")
    rec.push_meta(fields, None)
    try:
        yield
    finally:
        rec.pop_meta()


def parse_label(label: str) -> tuple[dict[str, Any], str | None]:
    """A ``record_function`` label: ``key=value`` words are meta
    (``"phase=decode step=3 seqs=0,1 sample"``), the other words a name
    scope (``"attn"``).  Returns the fields and the scope (or None)."""
    fields: dict[str, Any] = {}
    words: list[str] = []
    for word in label.split():
        if "=" in word:
            k, _, v = word.partition("=")
            if k not in META_KEYS:
                words.append(word)
                continue
            if k == "phase":
                fields[k] = v
            elif k == "seqs":
                try:
                    fields[k] = [int(x) for x in v.split(",") if x]
                except ValueError:
                    words.append(word)
            elif k == "sample":
                fields[k] = v.lower() in ("1", "true", "yes")
            else:
                try:
                    fields[k] = int(v)
                except ValueError:
                    words.append(word)
        elif word == "sample":
            fields["sample"] = True
        else:
            words.append(word)
    try:
        fields = check_fields(fields, f"record_function({label!r})")
    except CaptureError:
        return {}, label.strip() or None
    return fields, (" ".join(words) or None)


def opaque(name: str, reads: Sequence[Any] = (), writes: Sequence[Any] = ()) -> None:
    """Register a custom kernel (CUDA, Triton) that the CPU run cannot
    execute as one op on the current stream: it reads ``reads`` and writes
    ``writes`` (tensors).  Call it where the kernel is launched.  Outside a
    capture it does nothing."""
    rec = active()
    if rec is not None:
        rec.opaque(name, list(reads), list(writes))
