"""Recording stand-ins for ``torch.cuda`` streams and events.

Installed only while a capture runs (:class:`Patches` restores everything).
Each stand-in call appends what the CUDA call enqueues to the current rank:
``Event.record`` a record, ``Stream.wait_event``/``wait_stream`` a wait,
``synchronize``/``query`` a host sync (docs/semantics.md, rules 3, H2, H3).
``Event.query()`` and ``Stream.query()`` return True: the capture follows the
path on which the work had finished, so they are host syncs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from ..ir.builder import HOST
from .errors import CaptureError
from .recorder import Recorder

_MISSING = object()


class Patches:
    """Attribute replacements, undone in reverse order by :meth:`restore`."""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []

    def set(self, obj: Any, name: str, value: Any) -> None:
        self._saved.append((obj, name, obj.__dict__.get(name, _MISSING) if isinstance(obj, type)
                            else getattr(obj, name, _MISSING)))
        setattr(obj, name, value)

    def restore(self) -> None:
        while self._saved:
            obj, name, old = self._saved.pop()
            if old is _MISSING:
                with contextlib.suppress(AttributeError):
                    delattr(obj, name)
            else:
                setattr(obj, name, old)


class CudaStandIns:
    """The stand-in classes and functions bound to one recorder."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        stand = self

        class Stream:
            """A recording stand-in for ``torch.cuda.Stream`` (``name=`` is
            the capture's own keyword: the stream's name in the schedule;
            by default ``stream1``, ``stream2``, ... in creation order)."""

            def __init__(self, device: Any = None, priority: int = 0, name: str | None = None,
                         **_: Any) -> None:
                rs = stand.rec.rs
                if name is None:
                    rs.streams += 1
                    name = f"stream{rs.streams}"
                if not isinstance(name, str) or not name or name == HOST:
                    raise CaptureError(f"torch.cuda.Stream(name={name!r}): a stream needs a non-empty name other"
                                       f" than {HOST!r}")
                self.name = name
                self.priority = priority
                self.rank = rs.rank
                self.device = torch.device("cuda", 0)
                self.device_index = 0
                self.device_type = 1
                self._prev: list[Any] = []

            def _on(self) -> str:
                if self.rank != stand.rec.rs.rank:
                    raise CaptureError(f"stream {self.name!r} was created on rank {self.rank} and used on rank"
                                       f" {stand.rec.rs.rank}: each rank's function must create its own streams")
                return self.name

            @property
            def cuda_stream(self) -> int:
                return id(self)

            @property
            def stream_id(self) -> int:
                return id(self)

            def wait_event(self, event: Any) -> None:
                event.wait(self)

            def wait_stream(self, stream: Any) -> None:
                other = stand.stream_name(stream)
                if other == self._on():
                    return
                ev = stand.rec.new_event("ws")
                stand.rec.record(ev, other)
                stand.rec.wait(ev, self.name)

            def record_event(self, event: Any = None) -> Any:
                event = Event() if event is None else event
                event.record(self)
                return event

            def synchronize(self) -> None:
                stand.rec.sync(target=self._on())

            def query(self) -> bool:
                self.synchronize()
                return True

            def __enter__(self) -> Any:
                rs = stand.rec.rs
                self._on()
                self._prev.append(rs.current)
                rs.current = self
                return self

            def __exit__(self, *exc: Any) -> None:
                stand.rec.rs.current = self._prev.pop()

            def __repr__(self) -> str:
                return f"<syncproof capture stream {self.name!r} of rank {self.rank}>"

        class Event:
            """A recording stand-in for ``torch.cuda.Event`` (``name=``: the
            event's name in the schedule; by default ``ev1``, ``ev2``, ...)."""

            def __init__(self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False,
                         name: str | None = None, **_: Any) -> None:
                rs = stand.rec.rs
                self.rank = rs.rank
                self.name = name or stand.rec.new_event("ev")
                self.recorded = False

            def _check(self) -> None:
                if self.rank != stand.rec.rs.rank:
                    raise CaptureError(f"event {self.name!r} was created on rank {self.rank} and used on rank"
                                       f" {stand.rec.rs.rank}: each rank's function must create its own events")

            def record(self, stream: Any = None) -> None:
                self._check()
                stand.rec.record(self.name, stand.stream_name(stream))
                self.recorded = True

            def wait(self, stream: Any = None) -> None:
                self._check()
                stand.rec.wait(self.name, stand.stream_name(stream))

            def synchronize(self) -> None:
                self._check()
                stand.rec.sync(event=self.name)

            def query(self) -> bool:
                self._check()
                if self.recorded:
                    stand.rec.sync(event=self.name)
                return True

            def elapsed_time(self, end_event: Any) -> float:
                stand.rec.warnings.append("Event.elapsed_time returns 0.0 under capture")
                return 0.0

            def ipc_handle(self) -> Any:
                raise CaptureError("Event.ipc_handle: interprocess events cannot be captured")

            def __repr__(self) -> str:
                return f"<syncproof capture event {self.name!r} of rank {self.rank}>"

        self.Stream = Stream
        self.Event = Event

    # --------------------------------------------------------- functions
    def stream_name(self, stream: Any) -> str:
        rs = self.rec.rs
        if stream is None:
            return str(rs.current.name)
        if not isinstance(stream, self.Stream):
            raise CaptureError(f"expected a torch.cuda.Stream made under the capture, got {stream!r}")
        return str(stream._on())

    def current_stream(self, device: Any = None) -> Any:
        return self.rec.rs.current

    def default_stream(self, device: Any = None) -> Any:
        return self.rec.rs.default

    def set_stream(self, stream: Any) -> None:
        if stream is not None:
            self.stream_name(stream)
            self.rec.rs.current = stream

    @contextlib.contextmanager
    def stream(self, stream: Any) -> Iterator[Any]:
        if stream is None:
            yield None
            return
        rs = self.rec.rs
        self.stream_name(stream)
        prev = rs.current
        rs.current = stream
        try:
            yield stream
        finally:
            rs.current = prev

    def synchronize(self, device: Any = None) -> None:
        self.rec.sync()

    def install(self, patches: Patches) -> None:
        cuda = torch.cuda
        world = self.rec.world

        def unsupported(what: str) -> Any:
            def f(*_: Any, **__: Any) -> Any:
                raise CaptureError(f"{what} cannot be captured (CUDA graphs are not modelled); capture the"
                                   " eager program")
            return f

        def rank_device(*_: Any, **__: Any) -> int:
            return 0

        table: dict[str, Any] = {
            "Stream": self.Stream, "Event": self.Event, "current_stream": self.current_stream,
            "default_stream": self.default_stream, "set_stream": self.set_stream, "stream": self.stream,
            "StreamContext": self.stream, "synchronize": self.synchronize,
            "is_available": lambda: True, "device_count": lambda: world, "current_device": rank_device,
            "set_device": lambda *_a, **_k: None, "device": lambda *_a, **_k: contextlib.nullcontext(),
            "get_device_name": lambda *_a, **_k: "syncproof capture (CPU)",
            "get_device_capability": lambda *_a, **_k: (9, 0), "is_initialized": lambda: True,
            "empty_cache": lambda: None, "memory_allocated": lambda *_a, **_k: 0,
            "max_memory_allocated": lambda *_a, **_k: 0, "manual_seed": lambda *_a, **_k: None,
            "manual_seed_all": lambda *_a, **_k: None, "graph": unsupported("torch.cuda.graph"),
            "CUDAGraph": unsupported("torch.cuda.CUDAGraph"), "ExternalStream": unsupported(
                "torch.cuda.ExternalStream"),
        }
        for name, value in table.items():
            patches.set(cuda, name, value)
        streams = getattr(cuda, "streams", None)
        if streams is not None:
            patches.set(streams, "Stream", self.Stream)
            patches.set(streams, "Event", self.Event)
