"""A paged KV cache whose blocks are reused by the next sequence (``paged-kv``).

Sequences are served one after another on one rank.  Each needs
``ceil((prompt + steps) / block)`` blocks of ``block`` token slots, and the
pool holds exactly that many, so every sequence reuses the blocks of the one
before it.  A sequence's prompt K/V is swapped in by a copy stream (from host
memory, or from a prefill instance) into its blocks; then it decodes
``steps`` tokens on the compute stream, appending one slot per step and
attending over its blocks through the page table.

Two syncs make the reuse safe: the copy stream waits for the event recorded
after the previous sequence's last attention (no write into a block before its
old owner's last read), and the compute stream waits for the swap-in before
the new sequence's first attention.  A prefill computed on the compute stream
itself would be ordered by the stream; the copy stream is where reuse needs
an explicit sync, so that is what this model exercises.
"""

from __future__ import annotations

from .common import Dev, Fault, ModelSpec, Param, Schedule, ScheduleBuilder, Value, meta, span


def pieces(lo: int, hi: int, block: int) -> list[tuple[int, int, int]]:
    """Positions ``[lo, hi)`` as (block, first slot, end slot) pieces, with the
    page table mapping position ``p`` to block ``p // block``, slot ``p % block``."""
    out = []
    p = lo
    while p < hi:
        blk, s = divmod(p, block)
        e = min(block, s + (hi - p))
        out.append((blk, s, e))
        p += e - s
    return out


def build_paged(name: str, p: dict[str, Value], fault: str | None) -> Schedule:
    seqs, block, prompt, steps = int(p["seqs"]), int(p["block"]), int(p["prompt"]), int(p["steps"])
    nb = -(-(prompt + steps) // block)
    b = ScheduleBuilder(name, description=f"{name}: {seqs} sequences in turn reuse a pool of {nb} KV blocks"
                        f" of {block} slots" + (f", fault {fault}" if fault else ""))
    b.buffer("pool", blk=nb, slot=block).buffer("host", "seq").buffer("tok", "seq", "pos")
    b.buffer("q", "seq").buffer("o", "seq")
    for q in range(seqs):
        b.init(f"host[seq={q}]", f"kvhost(s{q})")
        b.init(f"tok[seq={q}, pos={prompt}]", f"tok(s{q},{prompt})")
    dev = Dev(b.rank(0))

    def region(blk: int, s: int, e: int) -> str:
        return f"pool[blk={blk}, slot={span(s, e)}]"

    freed: str | None = None
    for q in range(seqs):
        Mq = meta(seqs=[q])
        if freed is not None and not (fault == "early-reuse" and q == 1):
            dev.wait(freed, "copy", Mq)
        dev.compute("swap_in", Mq, stream="copy", reads={f"host[seq={q}]": f"kvhost(s{q})"},
                    writes={region(*pc): f"kv(s{q},pre)" for pc in pieces(0, prompt, block)})
        loaded = dev.record("copy", "loaded", Mq)
        if not (fault == "no-load-wait" and q == 1):
            dev.wait(loaded, "compute", Mq)
        for t in range(prompt, prompt + steps):
            M = meta("decode", step=t, seqs=[q], tokens=(t, t + 1))
            blk, s = divmod(t, block)
            dev.compute("qkv", M, reads={f"tok[seq={q}, pos={t}]": f"tok(s{q},{t})"},
                        writes={f"q[seq={q}]": f"q(s{q},t{t})", region(blk, s, s + 1): f"kv(s{q},t{t})"})
            reads = {f"q[seq={q}]": f"q(s{q},t{t})"}
            reads.update({region(*pc): f"kv(s{q},pre)" for pc in pieces(0, prompt, block)})
            for u in range(prompt, t + 1):
                bu, su = divmod(u, block)
                reads[region(bu, su, su + 1)] = f"kv(s{q},t{u})"
            dev.compute("attn", M, reads=reads, writes={f"o[seq={q}]": f"o(s{q},t{t})"})
            dev.compute("sampler", M, reads={f"o[seq={q}]": f"o(s{q},t{t})"},
                        writes={f"tok[seq={q}, pos={t + 1}]": f"tok(s{q},{t + 1})"}, sample=True)
        freed = dev.record("compute", "freed", Mq)
    return b.build()


MODELS = (
    ModelSpec("paged-kv", "paged KV cache: sequences in turn reuse the same blocks; the swap-in of the next"
              " sequence waits for the last read of the previous one",
              (Param("seqs", 3, "sequences served one after another", 2, 8),
               Param("block", 4, "token slots per block", 1, 16),
               Param("prompt", 6, "prompt tokens per sequence (K/V swapped in)", 1, 32),
               Param("steps", 2, "decode steps per sequence", 1, 8)),
              (Fault("early-reuse", "sequence 1's swap-in overwrites the blocks before sequence 0's last attention"
                     " has read them", "dataflow"),
               Fault("no-load-wait", "sequence 1 attends before its swap-in has finished", "dataflow")),
              build_paged, family="kv", phases=("decode",)),
)
