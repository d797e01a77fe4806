"""A deterministic model of the CUDA caching allocator's stream-ordered pools.

PyTorch's ``CUDACachingAllocator`` (``c10/cuda/CUDACachingAllocator.cpp``)
rounds every request up to a multiple of 512 bytes (``kMinBlockSize``), keeps
the blocks freed on a stream in that stream's pool and hands one of them to
the next allocation of a fitting size on the same stream, never on another
stream.  Among equal blocks it takes the lowest address (its pools are sets
ordered by stream, size, then pointer).  The model keeps exactly that, with
exact size classes (no block splitting) and block ids in creation order for
addresses.

A block freed after ``record_stream(t)`` is held back, as the allocator
holds it until the events it recorded on ``t`` at the free have completed
(``insert_events``/``process_events``): the model hands it out again only
once the host has observed that work finished (a sync of ``t``, of an event
recorded on ``t`` after the free, or of the device).  Handing it out earlier
would assume a host wait that a GPU run does not do; until then an
allocation of that size gets fresh memory.  When it is handed out, the
schedule's ``alloc ... reuses`` carries rule H4 of docs/semantics.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MIN_BLOCK = 512


def size_class(nbytes: int) -> int:
    """The block size the allocator hands out for ``nbytes`` (at least 512)."""
    if nbytes < MIN_BLOCK:
        return MIN_BLOCK
    return (nbytes + MIN_BLOCK - 1) // MIN_BLOCK * MIN_BLOCK


@dataclass
class Block:
    id: int
    stream: str
    size: int
    owner: str  # the buffer that holds it now (or held it last)


@dataclass
class AllocatorModel:
    """One rank's allocator: ``alloc`` returns the block and the buffer whose
    block it reuses (or None for fresh memory); ``free`` returns a block to
    the pool of the stream it was allocated on, at once or, with marks
    (stream -> the position of its last op at the free), once :meth:`observe`
    has covered them."""

    blocks: int = 0
    pools: dict[tuple[str, int], list[Block]] = field(default_factory=dict)
    held: list[tuple[Block, dict[str, int]]] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)  # stream -> position the host saw finish

    def alloc(self, buffer: str, stream: str, nbytes: int) -> tuple[Block, str | None]:
        size = size_class(nbytes)
        pool = self.pools.get((stream, size))
        if pool:
            block = min(pool, key=lambda b: b.id)
            pool.remove(block)
            previous = block.owner
            block.owner = buffer
            return block, previous
        self.blocks += 1
        return Block(self.blocks, stream, size, buffer), None

    def free(self, block: Block, marks: dict[str, int] | None = None) -> None:
        if marks and not self._covered(marks):
            self.held.append((block, dict(marks)))
        else:
            self.pools.setdefault((block.stream, block.size), []).append(block)

    def _covered(self, marks: dict[str, int]) -> bool:
        return all(self.seen.get(t, -1) >= pos for t, pos in marks.items())

    def observe(self, stream: str | None, pos: int) -> None:
        """The host saw the work of ``stream`` up to ``pos`` finish (None:
        every stream, everything)."""
        if stream is not None:
            self.seen[stream] = max(self.seen.get(stream, -1), pos)
        keep: list[tuple[Block, dict[str, int]]] = []
        for block, marks in self.held:
            if stream is None or self._covered(marks):
                self.pools.setdefault((block.stream, block.size), []).append(block)
            else:
                keep.append((block, marks))
        self.held = keep
