"""Capture the schedule of a real PyTorch program, on a machine without GPUs.

    import syncproof.capture as cap
    from syncproof.engine import check_schedule

    def main(rank, world):
        dist.init_process_group("nccl")
        side = torch.cuda.Stream()
        x = torch.randn(64, 64, device="cuda")
        with torch.cuda.stream(side):
            y = x @ x              # no side.wait_stream(current): a race
        ...

    schedule = cap.capture(main, world=2)
    print(check_schedule(schedule))

:func:`capture` runs ``fn(rank, world, *args, **kwargs)`` once per rank, in
this process, on CPU tensors, and records what each rank would enqueue on
each CUDA stream (docs/semantics.md is the model it emits for): every aten
op with the bytes of the storages it reads and writes, streams and events,
host work and host syncs, the collectives and point-to-point ops of
``torch.distributed`` with ProcessGroupNCCL's stream rules, and the caching
allocator's frees and reuses.  The stand-ins are installed only while it
runs.

Limits: the program is captured along the path the CPU run takes
(data-dependent control flow follows the CPU's values; received data and
collective results are not exchanged between ranks); custom CUDA or Triton
kernels must be declared with :func:`opaque`; CUDA graphs and multi-threaded
hosts are refused; a strided view is recorded as its bounding byte range;
backward ops run on the stream current at ``backward()``.  Anything the
capture cannot classify raises :class:`CaptureError` naming it.

torch is imported only when a capture runs (``pip install 'syncproof[torch]'``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import UsageError
from ..ir.schedule import Schedule
from .errors import CaptureError
from .meta import meta, opaque

__all__ = ["CaptureError", "capture", "capture_script", "meta", "opaque", "torch_available"]


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _require_torch() -> None:
    if not torch_available():
        raise UsageError("syncproof capture needs torch (pip install 'syncproof[torch]')")


def capture(fn: Callable[..., Any], world: int = 1, *args: Any, name: str | None = None,
            **kwargs: Any) -> Schedule:
    """Run ``fn(rank, world, *args, **kwargs)`` for every rank and return
    the schedule it enqueues (format version 2)."""
    _require_torch()
    from .session import run_capture

    return run_capture(fn, world, args, kwargs, name)


def capture_script(path: str | os.PathLike[str], world: int = 1, rank_fn: str = "main",
                   argv: Sequence[str] = ()) -> Schedule:
    """Import the script at ``path`` as a module (``sys.argv`` is
    ``[path, *argv]`` while it is imported and captured) and capture its
    function ``rank_fn(rank, world)``.  Module-level code runs once, before
    the capture, so it should only define things."""
    _require_torch()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such script")
    stem = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(f"syncproof_capture_{stem}", path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path}: not a Python script")
    module = importlib.util.module_from_spec(spec)
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [path, *argv]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        spec.loader.exec_module(module)
        fn = getattr(module, rank_fn, None)
        if not callable(fn):
            found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise UsageError(f"{path}: no function {rank_fn!r} (found: {', '.join(found) or 'none'}); pass"
                             " --rank-fn NAME")
        return capture(fn, world, name=stem)
    finally:
        sys.argv = old_argv
        sys.path[:] = old_path
