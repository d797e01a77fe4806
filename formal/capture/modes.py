"""The two torch modes of a capture, and the Tensor and nn.Module hooks.

* :class:`DeviceMode` (a ``TorchFunctionMode``) rewrites ``device="cuda"``
  (``"cuda:N"``, ``torch.device("cuda")``, an integer device) to the CPU, and
  says where the tensors a call makes live: on the device, in pinned host
  memory (``pin_memory=True``, ``.pin_memory()``, the output of a
  ``non_blocking`` device-to-host copy) or in pageable host memory.  It
  answers ``.device`` and ``.is_cuda`` as a CUDA run would.
* :class:`RecordMode` (a ``TorchDispatchMode``) records every aten op: its
  stream, the byte ranges of the storages it reads and writes (from the
  schema's alias information), allocations, copies between host and device,
  and the host syncs a CUDA run performs (``.item()``, data-dependent sizes).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from ..ir.builder import HOST
from .cuda import Patches
from .errors import CaptureError
from .meta import parse_label
from .recorder import (
    COPY_OPS,
    DEVICE,
    EMPTY_OPS,
    HOST_SIDE,
    METADATA_OPS,
    NO_READ_OPS,
    OVERWRITE_OPS,
    PAGEABLE,
    PINNED,
    SYNCING_OPS,
    Recorder,
    Storage,
    tensors_in,
)

_TB: Any = torch._C.TensorBase
_DEVICE_GETTER = _TB.__dict__["device"]
_IS_CUDA_GETTER = _TB.__dict__["is_cuda"]
_PARSE_TO: Any = torch._C._nn._parse_to
_ORIG: dict[str, Any] = {n: getattr(torch.Tensor, n) for n in ("tolist", "numpy", "to")}
_HERE = os.path.dirname(os.path.abspath(__file__))
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


def is_cuda_device(d: Any) -> bool:
    if isinstance(d, torch.device):
        return d.type == "cuda"
    if isinstance(d, str):
        return d == "cuda" or d.startswith("cuda:")
    return False


def is_device_like(d: Any) -> bool:
    return isinstance(d, torch.device) or (isinstance(d, str) and (d in ("cpu", "cuda") or d.startswith("cuda:")
                                                                   or d.startswith("cpu:")))


@contextlib.contextmanager
def target(rec: Recorder, loc: str | None) -> Iterator[None]:
    """Tensors made inside live at ``loc`` (None: decided by the op's inputs)."""
    if loc is None:
        yield
        return
    rec.targets.append(loc)
    try:
        yield
    finally:
        rec.targets.pop()


class DeviceMode(TorchFunctionMode):
    def __init__(self, rec: Recorder) -> None:
        super().__init__()
        self.rec = rec

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = dict(kwargs or {})
        rec = self.rec
        if rec.suspended:
            return func(*args, **kwargs)
        owner = getattr(func, "__self__", None)
        if owner is _DEVICE_GETTER:
            real = func(*args, **kwargs)
            return torch.device("cuda", 0) if rec.loc(args[0]) == DEVICE else real
        if owner is _IS_CUDA_GETTER:
            return rec.loc(args[0]) == DEVICE
        if func is _TB.to:
            return self.to(func, list(args), kwargs)
        if func is _TB.get_device:
            return 0 if rec.loc(args[0]) == DEVICE else -1
        if func is torch.device or func is _PARSE_TO:
            return func(*args, **kwargs)  # they only parse a device (nn.Module.to): keep it
        loc: str | None = None
        new_args = list(args)
        for i, a in enumerate(new_args):
            if is_device_like(a):
                loc = DEVICE if is_cuda_device(a) else PAGEABLE
                new_args[i] = "cpu" if isinstance(a, str) else torch.device("cpu")
        d = kwargs.get("device")
        if d is not None and (is_device_like(d) or isinstance(d, int)):
            loc = DEVICE if is_cuda_device(d) or isinstance(d, int) else PAGEABLE
            kwargs["device"] = torch.device("cpu")
        if kwargs.get("pin_memory"):
            kwargs["pin_memory"] = False
            loc = PINNED
        with target(rec, loc):
            return func(*new_args, **kwargs)

    def to(self, func: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """``Tensor.to``: a copy when the tensor changes side (host/device)."""
        rec = self.rec
        t = args[0]
        device = kwargs.pop("device", None)
        dtype = kwargs.pop("dtype", None)
        nb = kwargs.pop("non_blocking", False)
        copy = kwargs.pop("copy", False)
        bools: list[bool] = []
        other = None
        for a in args[1:]:
            if isinstance(a, torch.Tensor):
                other = a
            elif isinstance(a, torch.dtype):
                dtype = a
            elif isinstance(a, bool):
                bools.append(a)
            elif is_device_like(a) or isinstance(a, int):
                device = a
        if bools:
            nb = bools[0]
        if len(bools) > 1:
            copy = bools[1]
        want: str | None = None
        if other is not None:
            want = DEVICE if rec.loc(other) == DEVICE else PAGEABLE
            dtype = other.dtype if dtype is None else dtype
        elif device is not None:
            want = DEVICE if is_cuda_device(device) or isinstance(device, int) else PAGEABLE
        src = rec.loc(t)
        crosses = want is not None and (want == DEVICE) != (src == DEVICE)
        loc: str | None = None
        if crosses:
            copy = True
            # torch pins the output of a non_blocking device-to-host copy (_to_copy's pin_out)
            loc = DEVICE if want == DEVICE else (PINNED if nb else PAGEABLE)
        with target(rec, loc):
            return func(t, device=torch.device("cpu") if device is not None or other is not None else None,
                        dtype=dtype, non_blocking=nb, copy=copy, **kwargs)


class RecordMode(TorchDispatchMode):  # type: ignore[no-untyped-call]
    def __init__(self, rec: Recorder) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.rec = rec

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        rec = self.rec
        ns = func.namespace
        if rec.suspended or ns == "profiler":
            return func(*args, **kwargs)
        if ns in ("_c10d_functional", "c10d", "_dtensor", "c10d_functional"):
            raise CaptureError(f"{func}: call the torch.distributed API (or its functional collectives) instead"
                               " of the c10d op; the capture stands in for those")
        return record_op(rec, func, args, kwargs)


def record_op(rec: Recorder, func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    schema = func._schema
    base = schema.name.split("::")[-1]
    opname = f"{func.namespace}.{base}"
    where = str(func)
    rec.flush()
    inputs = tensors_in((args, kwargs))
    if base in METADATA_OPS:
        return func(*args, **kwargs)
    ctx = rec.targets[-1] if rec.targets else None
    reads: list[Any] = []
    muts: list[Any] = []
    for i, a in enumerate(schema.arguments):
        v = args[i] if i < len(args) and not a.kwarg_only else kwargs.get(a.name)
        ts = tensors_in(v)
        if not ts:
            continue
        if a.alias_info is not None and a.alias_info.is_write:
            muts += ts
            if base not in OVERWRITE_OPS and a.name != "out" and not a.name.startswith("out"):
                reads += ts
        elif base not in NO_READ_OPS and not base.endswith("_like"):
            reads += ts
    known: dict[int, Storage] = {}
    unknown: list[Any] = []
    for t in inputs:
        s = rec.lookup(t, where)
        if s is not None:
            known[s.key] = s
        elif ctx is not None and base in ("lift_fresh", "lift_fresh_copy"):
            unknown.append(t)  # made by this call below the modes (torch.tensor(..., device="cuda"))
        else:
            s = rec.storage(t, where)
            known[s.key] = s
    out = func(*args, **kwargs)
    outs = tensors_in(out)
    in_locs = {s.loc for s in known.values()}
    if ctx is not None:
        loc = ctx
    elif DEVICE in in_locs:
        loc = DEVICE
    else:
        loc = PAGEABLE
    fresh: list[Storage] = []
    fresh_keys: set[int] = set()
    for t in [*unknown, *outs]:
        if t.numel() == 0 and t.untyped_storage().nbytes() == 0:
            continue
        _, key = rec.storage_key(t, where)
        if key in known or key in fresh_keys:
            continue
        s = rec.lookup(t, where)
        if s is not None:
            continue
        fresh_keys.add(key)
        fresh.append(rec.register(t, loc, where))
    unknown_ids = {id(t) for t in unknown}
    reads = [t for t in reads if id(t) not in unknown_ids]
    if not muts and not fresh and not reads:
        return out  # a factory of nothing, or metadata
    if not muts and not fresh and all(rec.lookup(t, where) is not None for t in outs) and outs:
        return out  # a view: no kernel
    if base in EMPTY_OPS:
        return out  # allocated (above), nothing launched
    locs = {s.loc for s in fresh} | {rec.loc(t) for t in muts}
    read_locs = {rec.loc(t) for t in reads}
    device_op = DEVICE in locs or DEVICE in read_locs
    if device_op:
        # a 0-dim CPU tensor is passed to a CUDA kernel by value at launch
        reads = [t for t in reads if rec.loc(t) == DEVICE or t.dim() != 0]
        read_locs = {rec.loc(t) for t in reads}
    host_side = any(x in HOST_SIDE for x in locs | read_locs)
    name = rec.op_name(opname)
    cur = rec.rs.current.name
    if not device_op:
        rec.kernel(name, HOST, reads, muts, fresh, where)
        return out
    if not host_side:
        rec.kernel(name, cur, reads, muts, fresh, where)
        if host_syncs(base, args, kwargs, out, outs):
            rec.sync(target=cur)
        elif base in ("lift_fresh", "lift_fresh_copy") and unknown:
            rec.sync(target=cur)  # torch.tensor(data, device="cuda") copies from pageable memory
        return out
    if base not in COPY_OPS:
        raise CaptureError(f"{where}: mixes CUDA and CPU tensors (CUDA would raise 'Expected all tensors to be on"
                           " the same device'); copy them to one device first")
    nb = bool(kwargs.get("non_blocking", args[2] if base == "copy_" and len(args) > 2 else False))
    if base == "_to_copy":
        src_loc, dst_loc = rec.loc(args[0]), loc
    else:
        src_loc, dst_loc = rec.loc(args[1]), rec.loc(args[0])
    if src_loc == DEVICE and dst_loc in HOST_SIDE:
        asynchronous = nb and dst_loc == PINNED
        direction = "d2h"
    elif src_loc in HOST_SIDE and dst_loc == DEVICE:
        asynchronous = nb and src_loc == PINNED
        direction = "h2d"
    else:
        raise CaptureError(f"{where}: a copy the capture cannot place (from {src_loc} to {dst_loc} memory)")
    rec.kernel(f"{name}({direction})", cur, reads, muts, fresh, where)
    if not asynchronous:
        rec.sync(target=cur)  # a blocking copy (or one from pageable memory) synchronizes the stream
    return out


def host_syncs(base: str, args: Sequence[Any], kwargs: dict[str, Any], out: Any, outs: list[Any]) -> bool:
    """Whether a device op makes the host wait for its stream: it returns a
    Python value, or its output size depends on the data."""
    if base in SYNCING_OPS:
        return True
    if base in ("index", "index_put", "index_put_", "_index_put_impl_") and len(args) > 1:
        # boolean indexing runs nonzero on the mask
        return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1] or ())
    if base == "repeat_interleave":
        # with a tensor of repeats and no output_size, the output size is read back from the device
        return kwargs.get("output_size") is None and (len(args) == 1 or isinstance(args[1], torch.Tensor))
    return not outs and out is not None


# ------------------------------------------------------ Tensor methods
def install_tensor_methods(rec: Recorder, patches: Patches) -> None:
    T = torch.Tensor

    def cuda(self: Any, device: Any = None, non_blocking: bool = False,
             memory_format: Any = torch.preserve_format) -> Any:
        return self.to("cuda", non_blocking=non_blocking, memory_format=memory_format)

    def cpu(self: Any, memory_format: Any = torch.preserve_format) -> Any:
        return self.to("cpu", memory_format=memory_format)

    def pin_memory(self: Any, device: Any = None) -> Any:
        if rec.loc(self) == PINNED:
            return self
        if rec.loc(self) == DEVICE:
            raise CaptureError("pin_memory() of a CUDA tensor (torch raises: only dense CPU tensors can be pinned)")
        with target(rec, PINNED):
            return self.clone()

    def is_pinned(self: Any, device: Any = None) -> bool:
        return rec.loc(self) == PINNED

    def record_stream(self: Any, stream: Any) -> None:
        rec.record_stream(self, rec_stream_name(stream))

    def rec_stream_name(stream: Any) -> str:
        name = getattr(stream, "name", None)
        if not isinstance(name, str) or getattr(stream, "rank", None) != rec.rs.rank:
            raise CaptureError(f"Tensor.record_stream({stream!r}): pass a torch.cuda.Stream of this rank")
        return name

    def tolist(self: Any) -> Any:
        host_read(rec, self, "tolist")
        rec.suspended += 1
        try:
            with torch._C.DisableTorchFunction():
                return _ORIG["tolist"](self)
        finally:
            rec.suspended -= 1

    def numpy(self: Any, *, force: bool = False) -> Any:
        if rec.loc(self) == DEVICE:
            raise CaptureError("Tensor.numpy() of a CUDA tensor (torch raises: call .cpu() first)")
        rec.flush()
        # numpy writes are invisible to the capture: the host is taken to read and write the array now
        rec.kernel(rec.op_name("numpy"), HOST, [self], [self], where="Tensor.numpy")
        rec.suspended += 1
        try:
            with torch._C.DisableTorchFunction():
                return _ORIG["numpy"](self, force=force)
        finally:
            rec.suspended -= 1

    for name, f in (("cuda", cuda), ("cpu", cpu), ("pin_memory", pin_memory), ("is_pinned", is_pinned),
                    ("record_stream", record_stream), ("tolist", tolist), ("numpy", numpy)):
        patches.set(T, name, f)


def host_read(rec: Recorder, t: Any, what: str) -> None:
    """The host reads ``t``: a device tensor is copied back on the current
    stream and the host waits for the stream (a blocking D2H copy)."""
    rec.flush()
    name = rec.op_name(what)
    if rec.loc(t) == DEVICE:
        cur = rec.rs.current.name
        rec.kernel(f"{name}(d2h)", cur, [t], [], where=f"Tensor.{what}")
        rec.sync(target=cur)
    else:
        rec.kernel(name, HOST, [t], [], where=f"Tensor.{what}")


# ------------------------------------------------- modules and labels
class ModuleNames:
    """Module paths from forward hooks: ``model.layers.0.attn``."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.stack: list[tuple[int, str, dict[int, str], str]] = []  # (id, path, root names, root path)
        self.handles: list[Any] = []

    def install(self) -> None:
        hooks = torch.nn.modules.module
        self.handles.append(hooks.register_module_forward_pre_hook(self.pre))
        self.handles.append(hooks.register_module_forward_hook(self.post, always_call=True))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def pre(self, module: Any, args: Any) -> None:
        if not self.stack:
            root = variable_name(module) or type(module).__name__.lower()
            names = {id(m): n for n, m in module.named_modules()}
            self.stack.append((id(module), root, names, root))
        else:
            _, parent, names, root = self.stack[-1]
            rel = names.get(id(module))
            path = f"{root}.{rel}" if rel else f"{parent}.{type(module).__name__.lower()}"
            self.stack.append((id(module), path, names, root))
        self.rec.module_stack.append(self.stack[-1][1])

    def post(self, module: Any, args: Any, output: Any) -> None:
        while self.stack:
            mid, _, _, _ = self.stack.pop()
            if self.rec.module_stack:
                self.rec.module_stack.pop()
            if mid == id(module):
                break


def variable_name(module: Any) -> str | None:
    """The name the user's code calls ``module`` by, from the calling frame."""
    f = sys._getframe(1)
    while f is not None and (f.f_code.co_filename.startswith(_TORCH_DIR)
                             or f.f_code.co_filename.startswith(_HERE)):
        f = f.f_back  # type: ignore[assignment]
    if f is None:
        return None
    for k, v in f.f_locals.items():
        if v is module and not k.startswith("_"):
            return str(k)
    owner = f.f_locals.get("self")
    if owner is not None:
        for k, v in vars(owner).items() if hasattr(owner, "__dict__") else ():
            if v is module:
                return str(k)
        for k, v in getattr(owner, "_modules", {}).items():
            if v is module:
                return str(k)
    return None


def install_record_function(rec: Recorder, patches: Patches) -> None:
    cls: Any = torch.autograd.profiler.record_function
    enter, exit_ = cls.__enter__, cls.__exit__

    def __enter__(self: Any) -> Any:
        fields, scope = parse_label(str(self.name))
        rec.push_meta(fields, scope)
        self._syncproof_pushed = True
        return enter(self)

    def __exit__(self: Any, *exc: Any) -> Any:
        try:
            return exit_(self, *exc)
        finally:
            if getattr(self, "_syncproof_pushed", False):
                self._syncproof_pushed = False
                rec.pop_meta()

    patches.set(cls, "__enter__", __enter__)
    patches.set(cls, "__exit__", __exit__)
