"""Which memory an access touches: the PyTorch caching allocator's block reuse.

A schedule names tensors by buffer.  ``alloc`` of buffer ``b`` that
``reuses`` the freed buffer ``x`` hands ``b`` the very block ``x`` had, so an
access to ``b`` and one to ``x`` touch the same memory: dataflow and race
compare them as one buffer.  :func:`memory_view` is the schedule with every
region renamed to its block (the first buffer that owned it), per rank; the
engine builds obligations on it and keeps the original names for messages.
The ordering the allocator adds (a reuse after ``record_stream`` waits for the
recorded work) is an edge, in ``precedence``.
"""

from __future__ import annotations

from dataclasses import replace

from ..ir import Access, Kind, Op, Region, Schedule
from .memo import shared


def blocks(s: Schedule) -> dict[int, dict[str, str]]:
    """Per rank: buffer -> the buffer whose block it gets (only reused ones)."""
    out: dict[int, dict[str, str]] = {}
    if "alloc" not in s.features:
        return out
    for r in s.ranks:
        root: dict[str, str] = {}
        for op in s.by_rank[r]:
            if op.kind is Kind.ALLOC and op.reuses is not None and op.buffer is not None:
                root[op.buffer] = root.get(op.reuses, op.reuses)
        if root:
            out[r] = root
    return out


@shared
def memory_view(s: Schedule) -> Schedule:
    """``s`` with every access renamed to the block it touches (``s`` itself
    when no allocation reuses a block)."""
    per = blocks(s)
    if not per:
        return s

    def rename(accs: tuple[Access, ...], rank: int | None) -> tuple[Access, ...]:
        m = per.get(rank if rank is not None else -1)
        if not m or not any(a.region.buffer in m for a in accs):
            return accs
        return tuple(Access(Region(m[a.region.buffer], a.region.box), a.value) if a.region.buffer in m else a
                     for a in accs)

    ops: list[Op] = []
    for op in s.ops:
        target = op.peer if op.kind is Kind.PUT else op.rank  # a put writes its target's memory
        reads, writes = rename(op.reads, op.rank), rename(op.writes, target)
        ops.append(op if (reads is op.reads and writes is op.writes) else replace(op, reads=reads, writes=writes))
    return replace(s, ops=tuple(ops))


def shared_block(s: Schedule, a: Op, b: Op, buffer: str) -> tuple[str, str] | None:
    """When ops ``a`` and ``b`` meet on block ``buffer`` under two tensor
    names (an allocation reused the block): (the name ``a`` uses, the name
    ``b`` uses)."""
    per = blocks(s).get(a.rank, {})
    if not per:
        return None

    def name(op: Op) -> str | None:
        for acc in op.reads + op.writes:
            if per.get(acc.region.buffer, acc.region.buffer) == buffer:
                return acc.region.buffer
        return None

    na, nb = name(a), name(b)
    if na is None or nb is None or na == nb:
        return None
    return na, nb
