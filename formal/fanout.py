"""Run one function over many items, here, in local worker processes or on a
Ray cluster, and get the results back in item order (``syncproof sweep`` and
``syncproof prove``: docs/fanout.md).

    with open_fanout(jobs=4, ray=None) as fan:
        for item, result in zip(items, fan.imap(check_one, items), strict=True):
            ...

* :class:`Serial` (``--jobs 1``, the default): one item after the other in
  this process;
* :class:`Processes` (``--jobs N``; ``--jobs 0``: one per CPU core): a
  ``concurrent.futures.ProcessPoolExecutor`` of N workers, items sent in
  chunks (``Executor.map`` with ``chunksize``), results yielded in order;
* :class:`RayCluster` (``--ray ADDRESS``): ``ray.init(address=ADDRESS)``, one
  remote task per chunk of items, gathered in order with ``ray.get``; ray is
  imported only then, and a ``HOST:PORT`` where nothing accepts a connection
  is refused before ``ray.init`` (which would retry for minutes).

The function must be a module-level function (it is pickled) whose items
and results are plain data.  Whatever one item raises becomes that item's
:class:`Failed` result (a ``UserError`` as ``kind="user"``, anything else as
``kind="internal"``, a worker lost as ``kind="lost"``): one bad configuration
never stops the others.  The results are the same, in the same order,
whichever way they ran.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from .errors import UsageError, UserError

T = TypeVar("T")
R = TypeVar("R")

# What a Ray address may look like: auto, local, HOST:PORT or ray://HOST:PORT (HOST a name, IPv4 or [IPv6]).
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])"
_RAY_ADDRESS = re.compile(rf"(?:ray://)?(?P<host>{_HOST}):(?P<port>[0-9]{{1,5}})")
MAX_JOBS = 1024
# How long to wait for the head node's port to accept a connection before ray.init (which, for a GCS
# address where nothing listens, retries for minutes).
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Failed:
    """One item's failure, as plain data: ``kind`` is ``"user"`` (the item is
    bad input: exit 2), ``"internal"`` (a bug: exit 4) or ``"lost"`` (the
    worker running it died or the cluster dropped it: exit 4)."""

    kind: str
    message: str


def guarded(fn: Callable[[T], R], item: T) -> R | Failed:
    """``fn(item)``, or what it raised as a :class:`Failed`."""
    try:
        return fn(item)
    except UserError as exc:
        return Failed("user", str(exc))
    except Exception as exc:  # noqa: BLE001  one item's bug is that item's row, not the end of the run
        return Failed("internal", f"{type(exc).__name__}: {exc}")


def _run_chunk(fn: Callable[[T], R], chunk: Sequence[T]) -> list[R | Failed]:
    return [guarded(fn, item) for item in chunk]


class Fanout:
    """The common interface: :meth:`imap` and closing (a context manager)."""

    name = "serial"

    def imap(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R | Failed]:
        raise NotImplementedError

    def close(self) -> None:
        return None

    def __enter__(self) -> Fanout:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Serial(Fanout):
    """Every item in this process, one after the other."""

    def imap(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R | Failed]:
        for item in items:
            yield guarded(fn, item)


def chunk_size(n: int, workers: int) -> int:
    """Items per task: about four tasks per worker (so that a slow chunk does
    not hold the rest up), at most 32 items a task."""
    return max(1, min(32, n // max(1, 4 * workers)))


class Processes(Fanout):
    """A pool of ``jobs`` local worker processes."""

    name = "processes"

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self._pool: ProcessPoolExecutor | None = None

    def imap(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R | Failed]:
        if len(items) <= 1:  # not worth starting a pool
            yield from Serial().imap(fn, items)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=min(self.jobs, len(items)))
        chunks = _chunks(items, self.jobs)
        done = 0
        try:
            for chunk in self._pool.map(_run_chunk, [fn] * len(chunks), chunks):
                for res in chunk:
                    done += 1
                    yield res
        except BrokenProcessPool as exc:
            for _ in items[done:]:
                yield Failed("lost", f"a worker process died before finishing this item ({exc})")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _chunks(items: Sequence[T], workers: int) -> list[Sequence[T]]:
    k = chunk_size(len(items), workers)
    return [items[i:i + k] for i in range(0, len(items), k)]


class RayCluster(Fanout):
    """One Ray task per chunk of items on the cluster at ``address``
    (``ray.init(address=...)``); the results are gathered in item order."""

    name = "ray"

    def __init__(self, address: str) -> None:
        self.address = address
        try:
            self.ray: Any = importlib.import_module("ray")
        except ImportError:
            raise UsageError(f"--ray {address}: the ray package is not installed (pip install ray);"
                             " without --ray, --jobs N runs local processes") from None
        _probe(address)
        try:
            self.ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001  whatever ray raises for an unreachable or refused cluster
            raise UsageError(f"--ray {address}: cannot connect to the Ray cluster: {type(exc).__name__}: {exc}"
                             ) from None
        self._remote = self.ray.remote(_run_chunk)
        self.workers = self._cpus()

    def _cpus(self) -> int:
        try:
            return max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        except Exception:  # noqa: BLE001  an old or minimal ray: chunk as for one worker
            return 1

    def imap(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R | Failed]:
        chunks = _chunks(items, self.workers)
        refs = [self._remote.remote(fn, c) for c in chunks]
        for ref, chunk in zip(refs, chunks, strict=True):
            try:
                got = self.ray.get(ref)
            except Exception as exc:  # noqa: BLE001  a task lost (worker died, node gone): its items' rows
                for _ in chunk:
                    yield Failed("lost", f"the Ray task running this item failed: {type(exc).__name__}: {exc}")
                continue
            yield from got

    def close(self) -> None:
        shutdown = getattr(self.ray, "shutdown", None)
        if shutdown is not None:
            shutdown()


def _probe(address: str) -> None:
    """For HOST:PORT and ray://HOST:PORT: a UsageError unless something
    accepts a TCP connection there within :data:`CONNECT_TIMEOUT_S`."""
    m = _RAY_ADDRESS.fullmatch(address)
    if m is None:  # auto, local: ray finds (or starts) the cluster itself, and says so quickly when it cannot
        return
    host, port = m["host"].strip("[]"), int(m["port"])
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise UsageError(f"--ray {address}: cannot reach the Ray cluster: nothing answers at {host}:{port} ({why});"
                         " is its head node up (ray start --head)?") from None


def check_ray_address(address: str) -> str:
    """``address`` if it looks like a Ray address, else a UsageError."""
    text = address.strip()
    if text in ("auto", "local"):
        return text
    m = _RAY_ADDRESS.fullmatch(text)
    if m is None or not 1 <= int(m["port"]) <= 65535:
        raise UsageError(f"--ray {address!r} is not a Ray cluster address: give auto, local, HOST:PORT or"
                         " ray://HOST:PORT (e.g. ray://head:10001)")
    return text


def check_fanout_options(jobs: int = 1, ray: str | None = None) -> None:
    """A UsageError unless ``jobs`` and ``ray`` make sense (nothing is
    started or imported)."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 0 <= jobs <= MAX_JOBS:
        raise UsageError(f"--jobs must be 0 (one per CPU core) or a number of processes from 1 to {MAX_JOBS},"
                         f" got {jobs}")
    if ray is not None:
        check_ray_address(ray)
        if jobs != 1:
            raise UsageError("--jobs and --ray do not go together: the Ray cluster decides how many workers run")


def open_fanout(jobs: int = 1, ray: str | None = None) -> Fanout:
    """The executor the options ask for (UsageError for bad ones): Ray when
    ``ray`` is given, else ``jobs`` local processes (0: one per core), else
    (``jobs`` 1) this process."""
    check_fanout_options(jobs, ray)
    if ray is not None:
        return RayCluster(check_ray_address(ray))
    n = jobs or os.cpu_count() or 1
    return Processes(n) if n > 1 else Serial()


def add_fanout_options(p: argparse.ArgumentParser) -> None:
    """``-j/--jobs N`` and ``--ray ADDRESS``."""
    p.add_argument("-j", "--jobs", type=_int_arg, default=1, metavar="N",
                   help="run N checks at a time in local worker processes (0: one per CPU core; default 1:"
                   " in this process)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="fan the checks out over the Ray cluster at ADDRESS (auto, local, HOST:PORT,"
                   " ray://HOST:PORT); needs the ray package")


def _int_arg(text: str) -> int:
    t = text.strip()
    body = t[1:] if t.startswith("-") else t
    if not body.isascii() or not body.isdigit() or len(body) > 6:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes")
    return int(t)
