"""Run the examples eagerly on CPU, as one observed run would, and compare the
output of the buggy version with the fixed one.

    python examples/pytorch/run_cpu.py [--runs 100] [--world 2] [SCRIPT.py ...]

Each rank is a process with a gloo process group. torch.cuda's streams and
events are stand-ins that do nothing (on CPU every op runs at once, in the
order the host issues it), `device="cuda"` becomes the CPU, and every
collective and p2p op completes before it returns. This is the run a
sanitizer-style tool watches when nothing happens to be late: none of the
four bugs changes a single output value in it, which is why they need a proof
over every interleaving rather than a test run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.overrides import TorchFunctionMode

HERE = Path(__file__).resolve().parent
EXAMPLES = ("tp_decode.py", "pp_stages.py", "async_inputs.py", "moe_a2a.py")


class _Stream:
    """A CUDA stream on a machine that runs every op at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def wait_stream(self, other: Any) -> None:
        pass

    def wait_event(self, event: Any) -> None:
        pass

    def record_event(self, event: Any = None) -> Any:
        return event if event is not None else _Event()

    def synchronize(self) -> None:
        pass

    def query(self) -> bool:
        return True


class _Event:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def record(self, stream: Any = None) -> None:
        pass

    def wait(self, stream: Any = None) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def query(self) -> bool:
        return True


_DEFAULT_STREAM = _Stream()


def _is_cuda(device: Any) -> bool:
    try:
        return device is not None and torch.device(device).type == "cuda"
    except (RuntimeError, TypeError):
        return False


class _CudaOnCpu(TorchFunctionMode):
    """device="cuda" is the CPU; pinned memory is ordinary memory; .cuda() and
    .to("cuda") are copies (as they are on a GPU)."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        if func in (torch.Tensor.cuda,):
            return args[0].clone()
        if func is torch.Tensor.pin_memory:
            return args[0].clone()
        if func is torch.Tensor.to and (any(_is_cuda(a) for a in args[1:2]) or _is_cuda(kwargs.get("device"))):
            kwargs.pop("device", None)
            kwargs.pop("non_blocking", None)
            rest = [a for a in args[1:] if not _is_cuda(a)]
            return args[0].to(*rest, copy=True, **kwargs)
        if _is_cuda(kwargs.get("device")):
            kwargs["device"] = "cpu"
        if kwargs.get("pin_memory"):
            kwargs["pin_memory"] = False
        return func(*args, **kwargs)


class _Done:
    """The work handle of an op that has completed (waiting a gloo p2p work twice would wait for another message)."""

    def wait(self, timeout: Any = None) -> bool:
        return True

    def is_completed(self) -> bool:
        return True


def _completes_at_once(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        work = fn(*args, **kwargs)
        if work is None:
            return None
        work.wait()
        return _Done()

    return wrapper


@contextlib.contextmanager
def cpu_standins() -> Iterator[None]:
    saved: list[tuple[Any, str, Any]] = []

    def patch(obj: Any, name: str, value: Any) -> None:
        saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    patch(torch.cuda, "Stream", _Stream)
    patch(torch.cuda, "Event", _Event)
    patch(torch.cuda, "stream", lambda stream=None: contextlib.nullcontext())
    patch(torch.cuda, "current_stream", lambda device=None: _DEFAULT_STREAM)
    patch(torch.cuda, "synchronize", lambda device=None: None)
    patch(torch.cuda, "set_device", lambda device: None)
    patch(torch.Tensor, "record_stream", lambda self, stream: None)
    for name in ("all_reduce", "all_to_all_single", "isend", "irecv", "broadcast", "all_gather_into_tensor",
                 "reduce_scatter_tensor"):
        patch(dist, name, _completes_at_once(getattr(dist, name)))
    try:
        with _CudaOnCpu():
            yield
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)


def _load(script: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"_example_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(mod: Any, script: Path, rank: int, world: int, argv: list[str]) -> Any:
    saved = sys.argv
    sys.argv = [str(script), *argv]
    try:
        return mod.main(rank, world)
    finally:
        sys.argv = saved


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.equal(a, b))
    return bool(a == b)


def _worker(rank: int, world: int, store: str, scripts: list[str], runs: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    results = {}
    try:
        with cpu_standins():
            for name in scripts:
                script = Path(name)
                mod = _load(script)
                fixed = _run(mod, script, rank, world, [])
                same = sum(_same(_run(mod, script, rank, world, ["--bug"]), fixed) for _ in range(runs))
                results[script.name] = same
    finally:
        dist.destroy_process_group()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))


def compare(scripts: list[str | Path] | None = None, world: int = 2, runs: int = 100) -> dict[str, list[int]]:
    """For each script, per rank: in how many of ``runs`` eager CPU runs of
    ``--bug`` the output equals the fixed version's, value for value."""
    paths = [str(Path(s).resolve()) for s in (scripts or [HERE / e for e in EXAMPLES])]
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        mp.spawn(_worker, args=(world, store, paths, runs, tmp), nprocs=world, join=True)
        per_rank = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(world)]
    return {Path(p).name: [per_rank[r][Path(p).name] for r in range(world)] for p in paths}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("scripts", nargs="*", help="example scripts (default: the four examples)")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--world", type=int, default=2)
    args = p.parse_args()
    for name, same in compare(args.scripts or None, args.world, args.runs).items():
        print(f"{name}: --bug gave the fixed output in {min(same)}/{args.runs} runs on every rank")


if __name__ == "__main__":
    main()
