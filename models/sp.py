"""Sequence parallelism (SP) in prefill, alone (``sp``) and inside tensor
parallelism (``tp-sp``).

``sp``: the prompt of one sequence is split into ``sp`` contiguous partitions
of ``chunk`` tokens; rank ``i`` owns tokens ``[i*chunk, (i+1)*chunk)``.  In
every layer each rank computes the K/V of its own tokens, and the K/V of
every earlier partition must reach it before its attention (causal order:
token ``i`` sees every ``j <= i``).  Two exchanges:

* ``variant=allgather``: one all-gather per layer writes every partition's
  K/V into every rank's cache, at the partition's token positions;
* ``variant=ring``: partitions travel forward rank to rank (``n-1`` passes);
  rank ``i`` attends block by block as the earlier partitions arrive.

Either way the cache stays ordered by token index and the last rank ends up
with all of it; it samples the first token and, with ``steps > 0``, decodes
alone without SP (SP in decode is illegal: ``phase=decode`` is refused).

``tp-sp``: Megatron-style SP within a TP group: the residual stream is split
by token across the TP ranks; an all-gather rebuilds the full sequence before
each column-parallel linear and a reduce-scatter after each row-parallel one
both sums the partial results and splits them by token again.  Decode runs
plain TP (all-reduce), with SP switched off.
"""

from __future__ import annotations

from .common import (
    Dev,
    Fault,
    Meta,
    ModelSpec,
    Param,
    Requirement,
    Schedule,
    ScheduleBuilder,
    Value,
    at_least,
    meta,
    span,
)

SP2 = at_least("sp", 2)
DECODES: Requirement = ("steps>=1", lambda p: int(p.get("steps", 0)) >= 1)
HAS_DECODE: Requirement = ("phase=decode or both", lambda p: p.get("phase", "both") != "prefill")


# ------------------------------------------------------------------ sp
def build_sp(name: str, p: dict[str, Value], fault: str | None) -> Schedule:
    n, k, layers = int(p["sp"]), int(p["chunk"]), int(p["layers"])
    variant, steps = str(p["variant"]), int(p["steps"])
    L = n * k
    part = [(j * k, (j + 1) * k) for j in range(n)]
    b = ScheduleBuilder(name, description=f"{name}: sequence-parallel prefill ({variant}) of {L} tokens on {n}"
                        " ranks" + (f", fault {fault}" if fault else ""))
    b.buffer("tok", "pos").buffer("x", "pos", "layer").buffer("q", "pos").buffer("kv", "layer", "pos")
    b.buffer("o", "pos").buffer("acc", "pos").buffer("logits")
    if n > 1:
        b.group("sp", list(range(n)))
    b.init(f"tok[pos=0:{L}]", "prompt(s0)")
    last = n - 1

    def slot(i: int, j: int, wrong: int) -> tuple[int, int]:
        """Where rank i stores partition j's K/V; with the kv-misordered fault the
        last rank uses slot ``wrong`` (arrival order) instead."""
        if fault == "kv-misordered" and i == last and j < last:
            return part[wrong]
        return part[j]

    for i in range(n):
        dev = Dev(b.rank(i))
        lo, hi = part[i]
        P = f"pos={span(lo, hi)}"
        M0 = meta("prefill", seqs=[0], tokens=(lo, hi), sp=(i, n))
        dev.compute("embed", M0, reads={f"tok[{P}]": "prompt(s0)"}, writes={f"x[{P}, layer=0]": "h0(pre)"})
        for layer in range(layers):
            M = dict(M0, layer=layer)
            at0 = layer == 0
            kvs = {j: f"kv[layer={layer}, pos={span(*part[j])}]" for j in range(n)}
            val = {j: f"kv{layer}(p{j})" for j in range(n)}
            dev.compute("qkv", M, reads={f"x[{P}, layer={layer}]": f"h{layer}(pre)"},
                        writes={f"q[{P}]": f"q{layer}(p{i})", kvs[i]: val[i]})
            if variant == "allgather":
                if n > 1:
                    dev.sync("compute", "comm", "kv_local", M, skip_wait=fault == "no-wait-local" and at0 and i == 0)
                    others = [j for j in range(n) if j != i]
                    # (misordered: the gathered partitions land in reverse order)
                    writes = {f"kv[layer={layer}, pos={span(*slot(i, j, n - 2 - j))}]": val[j] for j in others}
                    if not (fault == "skip-exchange" and at0 and i == last):
                        dev.coll("all_gather", "sp", M, reads={kvs[i]: val[i]}, writes=writes)
                    dev.sync("comm", "compute", "kv_all", M, skip_wait=fault == "no-wait-kv" and at0 and i == last)
                reads = {f"q[{P}]": f"q{layer}(p{i})"}
                reads.update({kvs[j]: val[j] for j in range(i + 1)})
                dev.compute("attn", M, reads=reads, writes={f"o[{P}]": f"o{layer}(p{i})"})
            else:
                arrived: list[str] = []
                if i + 1 < n:  # the last rank only receives
                    dev.sync("compute", "comm", "kv_local", M, skip_wait=fault == "no-wait-local" and at0 and i == 0)
                for ps in range(n - 1):
                    j_out, j_in = i - ps, i - 1 - ps
                    if i + 1 < n and j_out >= 0 and not (fault == "skip-exchange" and at0 and i == 0 and ps == 0):
                        dev.send(i + 1, M, stream="comm", channel="kv", reads={kvs[j_out]: val[j_out]})
                    if j_in >= 0:
                        where = slot(i, j_in, ps)
                        dev.recv(i - 1, M, stream="comm", channel="kv",
                                 writes={f"kv[layer={layer}, pos={span(*where)}]": val[j_in]})
                        arrived.append(dev.record("comm", "kv_in", M))
                acc = f"acc[{P}]"
                dev.compute("attn_diag", M, reads={f"q[{P}]": f"q{layer}(p{i})", kvs[i]: val[i]},
                            writes={acc: f"acc{layer}(p{i},{i})"})
                prev = f"acc{layer}(p{i},{i})"
                for ps, ev in enumerate(arrived):
                    j = i - 1 - ps
                    if not (fault == "no-wait-kv" and at0 and i == last and ps == 0):
                        dev.wait(ev, "compute", M)
                    dev.compute("attn_block", M, reads={f"q[{P}]": f"q{layer}(p{i})", kvs[j]: val[j], acc: prev},
                                writes={acc: f"acc{layer}(p{i},{j})"})
                    prev = f"acc{layer}(p{i},{j})"
                dev.compute("attn_out", M, reads={acc: prev}, writes={f"o[{P}]": f"o{layer}(p{i})"})
            dev.compute("mlp", M, reads={f"o[{P}]": f"o{layer}(p{i})"},
                        writes={f"x[{P}, layer={layer + 1}]": f"h{layer + 1}(pre)"})
        if i != last:
            continue
        # The last partition holds the last prompt token: it samples, then decodes alone.
        dev.compute("lm_head", M0, reads={f"x[pos={L - 1}, layer={layers}]": f"h{layers}(pre)"},
                    writes={"logits": "logits(pre)"})
        dev.compute("sampler", M0, reads={"logits": "logits(pre)"}, writes={f"tok[pos={L}]": f"tok({L})"},
                    sample=True)
        for t in range(L, L + steps):
            Md = meta("decode", step=t, seqs=[0], tokens=(t, t + 1),
                      sp=(i, n) if fault == "sp-in-decode" else None)
            dev.compute("embed", Md, reads={f"tok[pos={t}]": f"tok({t})"}, writes={f"x[pos={t}, layer=0]": f"h0(t{t})"})
            for layer in range(layers):
                M = dict(Md, layer=layer)
                kvt = f"kv[layer={layer}, pos={t}]"
                dev.compute("qkv", M, reads={f"x[pos={t}, layer={layer}]": f"h{layer}(t{t})"},
                            writes={f"q[pos={t}]": f"q{layer}(t{t})", kvt: f"kv{layer}(t{t})"})
                reads = {f"q[pos={t}]": f"q{layer}(t{t})"}
                reads.update({f"kv[layer={layer}, pos={span(*part[j])}]": f"kv{layer}(p{j})" for j in range(n)})
                reads.update({f"kv[layer={layer}, pos={u}]": f"kv{layer}(t{u})" for u in range(L, t + 1)})
                dev.compute("attn", M, reads=reads, writes={f"o[pos={t}]": f"o{layer}(t{t})"})
                dev.compute("mlp", M, reads={f"o[pos={t}]": f"o{layer}(t{t})"},
                            writes={f"x[pos={t}, layer={layer + 1}]": f"h{layer + 1}(t{t})"})
            dev.compute("lm_head", Md, reads={f"x[pos={t}, layer={layers}]": f"h{layers}(t{t})"},
                        writes={"logits": f"logits(t{t})"})
            dev.compute("sampler", Md, reads={"logits": f"logits(t{t})"},
                        writes={f"tok[pos={t + 1}]": f"tok({t + 1})"}, sample=True)
    return b.build()


def _sp_valid(p: dict[str, Value]) -> str | None:
    if p["phase"] == "decode":
        return ("SP is illegal in decode: a decode step has one new token per sequence, so there is no"
                " sequence axis to split (use steps=N to decode after the SP prefill without SP; the fault"
                " sp-in-decode builds the illegal schedule on purpose)")
    return None


F_SP = (
    Fault("no-wait-kv", "the last rank attends before the earlier partitions' K/V has arrived", "dataflow", (SP2,)),
    Fault("no-wait-local", "rank 0 starts the K/V exchange before its own K/V is written", "dataflow", (SP2,)),
    Fault("skip-exchange", "one rank skips its part of the K/V exchange (the all-gather, or the first ring send)",
          "matching", (SP2,)),
    Fault("kv-misordered", "the last rank stores received K/V in arrival order, not token order", "dataflow",
          (at_least("sp", 3),)),
    Fault("sp-in-decode", "SP is left on in decode: decode ops are tagged as SP partitions", "phase", (DECODES,)),
)


# ------------------------------------------------------------------ tp-sp
def build_tp_sp(name: str, p: dict[str, Value], fault: str | None) -> Schedule:
    n, k, layers = int(p["tp"]), int(p["chunk"]), int(p["layers"])
    phase, steps = str(p["phase"]), int(p["steps"])
    L = n * k
    part = [(j * k, (j + 1) * k) for j in range(n)]
    b = ScheduleBuilder(name, description=f"{name}: TP with Megatron sequence parallelism in prefill ({L} tokens),"
                        " plain TP in decode" + (f", fault {fault}" if fault else ""))
    for buf in ("xs", "x"):
        b.buffer(buf, "pos", "layer")
    for buf in ("tok", "ln", "q", "o", "part", "ys", "y", "u", "lp", "logits"):
        b.buffer(buf, "pos")
    b.buffer("kv", "layer", "pos")
    if n > 1:
        b.group("tp", list(range(n)))
    prefill, decode = phase in ("prefill", "both"), phase in ("decode", "both")
    if prefill:
        b.init(f"tok[pos=0:{L}]", "prompt(s0)")
    else:
        b.init(f"tok[pos={L}]", f"tok({L})")
        for layer in range(layers):
            b.init(f"kv[layer={layer}, pos=0:{L}]", f"kv{layer}(pre)")
    full = f"0:{L}"
    for i in range(n):
        dev = Dev(b.rank(i))
        lo, hi = part[i]
        P = f"pos={span(lo, hi)}"

        if prefill:
            Ms0 = meta("prefill", seqs=[0], tokens=(lo, hi), sp=(i, n))
            Mf0 = meta("prefill", seqs=[0], tokens=(0, L))
            dev.compute("embed", Ms0, reads={f"tok[{P}]": "prompt(s0)"}, writes={f"xs[{P}, layer=0]": "h0(pre)"})
            for layer in range(layers):
                Ms, Mf = dict(Ms0, layer=layer), dict(Mf0, layer=layer)
                at0 = layer == 0
                dev.compute("ln1", Ms, reads={f"xs[{P}, layer={layer}]": f"h{layer}(pre)"},
                            writes={f"ln[{P}]": f"n1_{layer}"})
                _gather(dev, part, Ms, f"n1_{layer}", skip_wait=fault == "no-wait-gather" and at0 and i == 0)
                kv_all = f"kv[layer={layer}, pos={full}]"
                dev.compute("qkv", Mf, reads={f"ln[pos={full}]": f"n1_{layer}"},
                            writes={f"q[pos={full}]": f"q{layer}(pre)", kv_all: f"kv{layer}(pre)"})
                dev.compute("attn", Mf, reads={f"q[pos={full}]": f"q{layer}(pre)",
                                               f"kv[layer={layer}, pos={full}]": f"kv{layer}(pre)"},
                            writes={f"o[pos={full}]": f"o{layer}(pre)"})
                if n > 1:
                    dev.compute("out_proj", Mf, reads={f"o[pos={full}]": f"o{layer}(pre)"},
                                writes={f"part[pos={full}]": f"pa{layer}(r{i})"})
                    dev.sync("compute", "comm", "attn_part", Ms)
                    if not (fault == "skip-reduce-scatter" and at0 and i == n - 1):
                        dev.coll("reduce_scatter", "tp", Ms, reads={f"part[pos={full}]": f"pa{layer}(r{i})"},
                                 writes={f"ys[{P}]": f"y{layer}(pre)"})
                    dev.sync("comm", "compute", "attn_sum", Ms, skip_wait=fault == "no-wait-scatter" and at0 and i == 0)
                else:
                    dev.compute("out_proj", Mf, reads={f"o[pos={full}]": f"o{layer}(pre)"},
                                writes={f"ys[{P}]": f"y{layer}(pre)"})
                dev.compute("ln2", Ms, reads={f"ys[{P}]": f"y{layer}(pre)"}, writes={f"ln[{P}]": f"n2_{layer}"})
                _gather(dev, part, Ms, f"n2_{layer}")
                dev.compute("mlp_up", Mf, reads={f"ln[pos={full}]": f"n2_{layer}"},
                            writes={f"u[pos={full}]": f"u{layer}(pre)"})
                out = {f"xs[{P}, layer={layer + 1}]": f"h{layer + 1}(pre)"}
                if n > 1:
                    dev.compute("mlp_down", Mf, reads={f"u[pos={full}]": f"u{layer}(pre)"},
                                writes={f"part[pos={full}]": f"pm{layer}(r{i})"})
                    dev.sync("compute", "comm", "mlp_part", Ms)
                    dev.coll("reduce_scatter", "tp", Ms, reads={f"part[pos={full}]": f"pm{layer}(r{i})"}, writes=out)
                    dev.sync("comm", "compute", "mlp_sum", Ms)
                else:
                    dev.compute("mlp_down", Mf, reads={f"u[pos={full}]": f"u{layer}(pre)"}, writes=out)
            dev.compute("ln_f", Ms0, reads={f"xs[{P}, layer={layers}]": f"h{layers}(pre)"}, writes={f"ln[{P}]": "nf"})
            _gather(dev, part, Ms0, "nf")
            _sample(dev, i, n, Mf0, f"ln[pos={L - 1}]", "nf", L, "pre", decode)
            if decode:
                dev.close("seq", Mf0)
        if decode:
            for t in range(L, L + steps):
                Md = meta("decode", step=t, seqs=[0], tokens=(t, t + 1),
                          sp=(i, n) if fault == "sp-in-decode" else None)
                dev.open("seq", Md)
                dev.compute("embed", Md, reads={f"tok[pos={t}]": f"tok({t})"},
                            writes={f"x[pos={t}, layer=0]": f"h0(t{t})"})
                for layer in range(layers):
                    M = dict(Md, layer=layer)
                    sq = f"t{t}"
                    kvt = f"kv[layer={layer}, pos={t}]"
                    dev.compute("qkv", M, reads={f"x[pos={t}, layer={layer}]": f"h{layer}({sq})"},
                                writes={f"q[pos={t}]": f"q{layer}({sq})", kvt: f"kv{layer}({sq})"})
                    reads = {f"q[pos={t}]": f"q{layer}({sq})", f"kv[layer={layer}, pos=0:{L}]": f"kv{layer}(pre)"}
                    reads.update({f"kv[layer={layer}, pos={u}]": f"kv{layer}(t{u})" for u in range(L, t + 1)})
                    dev.compute("attn", M, reads=reads, writes={f"o[pos={t}]": f"o{layer}({sq})"})
                    _row_parallel(dev, n, M, "out_proj", (f"o[pos={t}]", f"o{layer}({sq})"),
                                  (f"y[pos={t}]", f"y{layer}({sq})"), f"pa{layer}({sq},r{i})", t)
                    dev.compute("mlp_up", M, reads={f"y[pos={t}]": f"y{layer}({sq})"},
                                writes={f"u[pos={t}]": f"u{layer}({sq})"})
                    _row_parallel(dev, n, M, "mlp_down", (f"u[pos={t}]", f"u{layer}({sq})"),
                                  (f"x[pos={t}, layer={layer + 1}]", f"h{layer + 1}({sq})"), f"pm{layer}({sq},r{i})", t)
                _sample(dev, i, n, Md, f"x[pos={t}, layer={layers}]", f"h{layers}(t{t})", t + 1, f"t{t}",
                        t + 1 < L + steps)
                if t + 1 < L + steps:
                    dev.close("seq", Md)
    return b.build()


def _row_parallel(dev: Dev, n: int, M: Meta, name: str, src: tuple[str, str], dst: tuple[str, str],
                  partial: str, t: int) -> None:
    """A row-parallel linear in TP decode: a partial sum, then an all-reduce into ``dst``."""
    if n == 1:
        dev.compute(name, M, reads={src[0]: src[1]}, writes={dst[0]: dst[1]})
        return
    dev.compute(name, M, reads={src[0]: src[1]}, writes={f"part[pos={t}]": partial})
    dev.sync("compute", "comm", "part", M)
    dev.coll("all_reduce", "tp", M, reads={f"part[pos={t}]": partial}, writes={dst[0]: dst[1]}, size=1)
    dev.sync("comm", "compute", "sum", M)


def _gather(dev: Dev, part: list[tuple[int, int]], m: Meta, value: str, *, skip_wait: bool = False) -> None:
    """All-gather ``ln`` by token partition (Megatron SP), then hand it to compute."""
    n, i = len(part), dev.rank
    if n == 1:
        return
    dev.sync("compute", "comm", "ln_local", m)
    dev.coll("all_gather", "tp", m, reads={f"ln[pos={span(*part[i])}]": value},
             writes={f"ln[pos={span(*part[j])}]": value for j in range(n) if j != i})
    dev.sync("comm", "compute", "ln_all", m, skip_wait=skip_wait)


def _sample(dev: Dev, i: int, n: int, M: Meta, hid: str, hid_val: str, pos: int, tag: str, handoff: bool) -> None:
    """Vocab-parallel logits, rank 0 samples the token at ``pos``; with
    ``handoff`` it is broadcast to the other ranks for the next step."""
    tok, val = f"tok[pos={pos}]", f"tok({pos})"
    if n > 1:
        dev.compute("lm_head", M, reads={hid: hid_val}, writes={f"lp[pos={pos}]": f"lp({tag},r{i})"})
        dev.sync("compute", "comm", "logits_part", M)
        dev.coll("all_gather", "tp", M, reads={f"lp[pos={pos}]": f"lp({tag},r{i})"},
                 writes={f"logits[pos={pos}]": f"logits({tag})"}, size=1)
        if i == 0:
            dev.sync("comm", "compute", "logits", M)
    else:
        dev.compute("lm_head", M, reads={hid: hid_val}, writes={f"logits[pos={pos}]": f"logits({tag})"})
    if i == 0:
        dev.compute("sampler", M, reads={f"logits[pos={pos}]": f"logits({tag})"}, writes={tok: val}, sample=True)
    if handoff and n > 1:
        if i == 0:
            dev.sync("compute", "comm", "sampled", M)
            dev.coll("broadcast", "tp", M, reads={tok: val}, writes={tok: val}, size=1, root=0)
        else:
            dev.coll("broadcast", "tp", M, writes={tok: val}, size=1, root=0)


F_TPSP = (
    Fault("no-wait-gather", "rank 0's column-parallel qkv reads the gathered sequence before the all-gather ends",
          "dataflow", (at_least("tp", 2), ("phase=prefill or both", lambda p: p["phase"] != "decode"))),
    Fault("no-wait-scatter", "rank 0 reads its reduce-scatter output before the reduce-scatter ends", "dataflow",
          (at_least("tp", 2), ("phase=prefill or both", lambda p: p["phase"] != "decode"))),
    Fault("skip-reduce-scatter", "the last rank skips the first reduce-scatter", "matching",
          (at_least("tp", 2), ("phase=prefill or both", lambda p: p["phase"] != "decode"))),
    Fault("sp-in-decode", "the SP code path stays on in decode: decode ops are tagged as SP partitions", "phase",
          (HAS_DECODE,)),
)

MODELS = (
    ModelSpec("sp", "sequence parallelism in prefill: contiguous token partitions, earlier K/V reaches later"
              " partitions (all-gather or ring) before attention; decode without SP",
              (Param("sp", 4, "sequence-parallel ranks (token partitions)", 1, 8),
               Param("chunk", 4, "tokens per partition", 1, 64),
               Param("layers", 2, "transformer layers", 1, 8),
               Param("variant", "allgather", "how K/V of earlier partitions travels", choices=("allgather", "ring")),
               Param("steps", 2, "decode steps after the prefill, on the last rank, without SP", 0, 8),
               Param("phase", "prefill", "SP exists only in prefill; decode is refused",
                     choices=("prefill", "decode"))),
              F_SP, build_sp, _sp_valid, family="sp"),
    ModelSpec("tp-sp", "TP with Megatron sequence parallelism in prefill (all-gather before column-parallel,"
              " reduce-scatter after row-parallel); plain TP in decode",
              (Param("tp", 2, "tensor-parallel ranks (also the SP degree in prefill)", 1, 8),
               Param("chunk", 2, "prefill tokens per rank", 1, 64),
               Param("layers", 2, "transformer layers", 1, 8),
               Param("phase", "both", "prefill, decode (prompt K/V cached) or both",
                     choices=("prefill", "decode", "both")),
               Param("steps", 2, "decode steps (ignored when phase=prefill)", 1, 8)),
              F_TPSP, build_tp_sp, family="sp"),
)
