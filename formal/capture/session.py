"""Running a user's per-rank function under the capture (imports torch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import UsageError
from ..ir.schedule import Schedule
from .cuda import CudaStandIns, Patches
from .dist import Dist, restore_env, set_rank_env
from .meta import set_active
from .modes import DeviceMode, ModuleNames, RecordMode, install_record_function, install_tensor_methods
from .recorder import Recorder


def run_capture(fn: Callable[..., Any], world: int, args: Sequence[Any], kwargs: dict[str, Any],
                name: str | None) -> Schedule:
    if not isinstance(world, int) or isinstance(world, bool) or world < 1:
        raise UsageError(f"world must be a positive integer, got {world!r}")
    if not callable(fn):
        raise UsageError(f"capture needs a function fn(rank, world, ...), got {fn!r}")
    rec = Recorder(world, name or getattr(fn, "__name__", None) or "capture")
    cuda = CudaStandIns(rec)
    dist = Dist(rec, cuda)
    patches = Patches()
    names = ModuleNames(rec)
    set_active(rec)
    try:
        cuda.install(patches)
        dist.install(patches)
        install_tensor_methods(rec, patches)
        install_record_function(rec, patches)
        names.install()
        for rank in range(world):
            rec.start_rank(rank, lambda n: cuda.Stream(name=n))
            dist.start_rank()
            names.stack.clear()
            env = set_rank_env(rank, world)
            try:
                with DeviceMode(rec), RecordMode(rec):
                    fn(rank, world, *args, **kwargs)
                rec.end_rank()
            finally:
                restore_env(env)
    finally:
        names.remove()
        patches.restore()
        set_active(None)
    return rec.build()
