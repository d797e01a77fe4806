"""Models with run-time choices (DESIGN.md section 2c): what each rank decides
while it runs, and the hangs that come from deciding it alone.

Every model here builds one schedule with *choice variables*: ops guarded by
``when="..."`` and sizes or split counts that are expressions.  A choice is
rank-local (each rank's own batch: idle, prefill or decode; whether its
grammar aborted a request; how many draft tokens its sampler accepted; how
many tokens it routes to each expert) or uniform on a group (it came out of a
collective on that group, named by its ``via``).  The correct schedule, the
default, branches only on uniform values, or makes every branch issue the
same communication; each fault reproduces a bug class of vLLM or SGLang in
which one rank branched on a value only it held, so its collectives stop
matching its peers' for some assignment of the choices.

* ``dpattn-ep-states``: DP attention + EP MoE, every rank idle, prefilling or
  decoding; the idle rank's dummy forward.
* ``overlap-switch``: a per-step overlap (two-micro-batch) decision taken from
  the rank's own forward mode instead of from every rank's flags.
* ``grammar-abort``: a disaggregated decode loop in which a grammar abort
  made one DP rank skip the step's forward.
* ``spec-decode``: speculative decoding under TP, the accepted length sampled
  on every rank instead of broadcast from rank 0.
* ``moe-routing``: MoE token counts per expert, exchanged before the
  variable-size all-to-all (or all-gather); the faults use counts that were
  not exchanged.

Models use only ``syncproof.ir``; ``docs/models.md`` ("Choices") describes
them, ``proofs/choices.toml`` pins their verdicts.
"""

from __future__ import annotations

from typing import Any

from .common import Fault, ModelSpec, Param, RankBuilder, Schedule, ScheduleBuilder, Value, at_least, equals

Acc = dict[str, str]


def _when(cond: str | None) -> dict[str, Any]:
    return {"when": cond} if cond else {}


class Lane:
    """One rank: ops with optional guards (``when``), and event pairs between
    its ``compute`` and ``comm`` streams.  ``extra`` carries the fields whose
    values may be expressions (``size``, ``counts``, ``recv_counts``)."""

    def __init__(self, rb: RankBuilder) -> None:
        self.rb = rb
        self.rank = rb.rank
        self._n = 0

    def event(self, tag: str) -> str:
        self._n += 1
        return f"{tag}.{self._n}"

    def compute(self, name: str, *, when: str | None = None, reads: Acc | None = None,
                writes: Acc | None = None, stream: str = "compute", **meta: Any) -> None:
        self.rb.compute(name, stream=stream, reads=dict(reads or {}), writes=dict(writes or {}), **_when(when),
                        **meta)

    def coll(self, kind: str, group: str, *, name: str, when: str | None = None, reads: Acc | None = None,
             writes: Acc | None = None, stream: str = "comm", **extra: Any) -> None:
        fields = {k: v for k, v in extra.items() if v is not None}
        self.rb.collective(kind, group, stream=stream, reads=dict(reads or {}), writes=dict(writes or {}),
                           name=name, **_when(when), **fields)

    def sync(self, src: str, dst: str, tag: str, *, when: str | None = None, wait_when: str | None = None) -> None:
        """Record an event on ``src`` and make ``dst`` wait for it.  Both are
        guarded by ``when``; ``wait_when`` guards the wait alone (a fault: on
        the other branches nothing orders ``dst`` after ``src``)."""
        e = self.event(tag)
        self.rb.record(e, stream=src, **_when(when))
        self.rb.wait(e, stream=dst, **_when(_and(when, wait_when)))


def _and(*conds: str | None) -> str | None:
    parts = [c for c in conds if c]
    if not parts:
        return None
    return " and ".join(f"({c})" if " or " in c else c for c in parts)


# ======================================================================= dpattn-ep-states
def build_states(name: str, p: dict[str, Value], fault: str | None) -> Schedule:
    """DP attention + EP MoE; ``state`` is each rank's own batch: idle (no
    request this step), prefill or decode.

    The bug class: with data-parallel attention in front of expert-parallel
    MoE layers (SGLang's DP attention, vLLM's DP + EP), every DP rank must
    take part in the MoE layers' collectives, because the experts it hosts
    serve the other ranks' tokens.  A rank with no request therefore runs a
    dummy forward on an empty batch (SGLang's idle batch, vLLM's dummy run).
    Reported hangs came from an idle rank that skipped part of it: the others
    block in a collective it never joins.  Here attention is the only work
    that depends on the state (prefill writes the layer's K/V, decode reads
    the cached K/V, the dummy kernel touches none); the MLP-sync all-gather on
    ``dp``, the dispatch and combine all-to-alls on ``ep`` are unguarded, so
    every rank issues the same collectives whatever the assignment.  The
    all-to-alls carry no split sizes (routing does not change which
    collectives are issued; ``moe-routing`` models the sizes).

    ``idle-skips-mlp-sync`` guards the MLP-sync all-gather with ``state !=
    idle``: with one idle rank among 16, the 15 busy ones hang in it
    (matching).  ``idle-no-wait`` guards only the comm stream's wait after
    attention: on an idle rank the all-gather may read ``h`` while the dummy
    attention still writes it (dataflow, race)."""
    n, layers = int(p["dp"]), int(p["layers"])
    b = ScheduleBuilder(name, description=f"{name}: DP attention + EP MoE over {n} ranks, each idle, prefilling"
                        " or decoding" + (f", fault {fault}" if fault else ""))
    b.buffer("x", "layer").buffer("kv", "layer")
    for buf in ("h", "g", "send", "recv", "eout", "back", "out"):
        b.buffer(buf)
    b.group("dp", list(range(n))).group("ep", list(range(n)))
    b.choice("state", scope="rank", values=["idle", "prefill", "decode"])
    for layer in range(layers):
        b.init(f"kv[layer={layer}]", f"kv{layer}(pre)")
    b.init("x[layer=0]", "h0")  # the embedded batch on every rank (an idle rank's is empty)
    busy = "state != idle"
    for r in range(n):
        d = Lane(b.rank(r))
        for layer in range(layers):
            x, a = f"x[layer={layer}]", f"a{layer}@r{r}"
            hx = "h0" if layer == 0 else f"h{layer}@r{r}"
            # Attention is the only rank-local work: its kernel depends on the rank's own batch.
            d.compute("attn_prefill", when="state == prefill", reads={x: hx},
                      writes={"h": a, f"kv[layer={layer}]": f"kv{layer}(new)"}, layer=layer)
            d.compute("attn_decode", when="state == decode",
                      reads={x: hx, f"kv[layer={layer}]": f"kv{layer}(pre)"}, writes={"h": a},
                      layer=layer)
            d.compute("attn_dummy", when="state == idle", reads={x: hx}, writes={"h": a}, layer=layer)
            d.sync("compute", "comm", "attn_done", wait_when=busy if fault == "idle-no-wait" else None)
            # The MLP sync: every DP rank's hidden states (an idle rank's are empty) before the MoE.
            d.coll("all_gather", "dp", name="mlp_sync", when=busy if fault == "idle-skips-mlp-sync" else None,
                   reads={"h": a}, writes={"g": f"g{layer}"}, layer=layer)
            d.sync("comm", "compute", "gathered")
            d.compute("router", reads={"g": f"g{layer}"}, writes={"send": f"tok{layer}@r{r}"}, layer=layer)
            d.sync("compute", "comm", "routed")
            d.coll("all_to_all", "ep", name="dispatch", reads={"send": f"tok{layer}@r{r}"},
                   writes={"recv": f"disp{layer}@r{r}"}, layer=layer)
            d.sync("comm", "compute", "dispatched")
            d.compute("expert", reads={"recv": f"disp{layer}@r{r}"}, writes={"eout": f"exp{layer}@r{r}"}, layer=layer)
            d.sync("compute", "comm", "expert_done")
            d.coll("all_to_all", "ep", name="combine", reads={"eout": f"exp{layer}@r{r}"},
                   writes={"back": f"comb{layer}@r{r}"}, layer=layer)
            d.sync("comm", "compute", "combined")
            d.compute("merge", reads={"back": f"comb{layer}@r{r}", "h": a},
                      writes={f"x[layer={layer + 1}]": f"h{layer + 1}@r{r}"}, layer=layer)
        # lm_head and sampling: only a rank with requests has tokens to sample
        d.compute("sampler", when=busy, reads={f"x[layer={layers}]": f"h{layers}@r{r}"}, writes={"out": f"out@r{r}"})
    return b.build()


# ======================================================================= overlap-switch
def build_overlap_switch(name: str, p: dict[str, Value], fault: str | None) -> Schedule:
    """Per step, the MoE layers run as one batch or as two overlapped
    micro-batches (two-batch overlap: micro-batch 1's router and expert run
    while micro-batch 0's all-to-alls do); ``state`` is the rank's own
    forward mode, prefill (extend) or decode.

    The bug class: SGLang decided per step whether to take the overlapped
    path from the rank's own batch (is its forward mode extend or decode?).
    With DP attention the ranks' batches differ, so one rank splits its
    dispatch and combine into two half-size all-to-alls while its peer issues
    one full-size all-to-all: the sequences on ``ep`` diverge at once.  The fix
    gathers every rank's flag in the step's batch-sync all-gather
    (``sync_batch_flags``, before any guarded op) and overlaps only when all
    ranks can: the derived, uniform ``all_decode = all(state == decode)``.

    ``overlap-local`` guards the two paths with ``state == decode`` instead
    (matching: sizes 2048 vs 4096 at collective #0 of ``ep``)."""
    n, layers = int(p["dp"]), int(p["layers"])
    size = int(p["tokens"])
    b = ScheduleBuilder(name, description=f"{name}: per-step overlap switch over {n} DP/EP ranks"
                        + (f", fault {fault}" if fault else ""))
    b.buffer("flag").buffer("flags").buffer("x", "layer").buffer("h")
    for buf in ("send", "recv", "eout", "back"):
        b.buffer(buf, mb=2)
    b.buffer("out")
    b.group("dp", list(range(n))).group("ep", list(range(n)))
    b.choice("state", scope="rank", values=["prefill", "decode"])
    b.choice("all_decode", scope="dp", value="all(state == decode)", via="sync_batch_flags")
    b.init("flag", "flag").init("x[layer=0]", "h0")  # the scheduler's flag for the step's batch; the embedded batch
    ov = "state == decode" if fault == "overlap-local" else "all_decode"
    one = f"not {ov}" if ov == "all_decode" else "state != decode"
    for r in range(n):
        d = Lane(b.rank(r))
        # The step's batch flags (can this rank overlap: is its batch a decode batch?) go to every rank.
        d.coll("all_gather", "dp", name="sync_batch_flags", reads={"flag": "flag"}, writes={"flags": "flags"},
               size=1)
        for layer in range(layers):
            x, a, nxt = f"x[layer={layer}]", f"a{layer}@r{r}", f"x[layer={layer + 1}]"
            d.compute("attn", reads={x: "h0" if layer == 0 else f"h{layer}@r{r}"}, writes={"h": a}, layer=layer)
            # one batch: dispatch and combine the whole batch
            v = f"{layer}@r{r}"
            d.compute("router", when=one, reads={"h": a}, writes={"send": f"t{v}"}, layer=layer)
            d.sync("compute", "comm", "routed", when=one)
            d.coll("all_to_all", "ep", name="dispatch", when=one, reads={"send": f"t{v}"}, writes={"recv": f"d{v}"},
                   size=size, layer=layer)
            d.sync("comm", "compute", "dispatched", when=one)
            d.compute("expert", when=one, reads={"recv": f"d{v}"}, writes={"eout": f"e{v}"}, layer=layer)
            d.sync("compute", "comm", "expert_done", when=one)
            d.coll("all_to_all", "ep", name="combine", when=one, reads={"eout": f"e{v}"}, writes={"back": f"c{v}"},
                   size=size, layer=layer)
            d.sync("comm", "compute", "combined", when=one)
            d.compute("merge", when=one, reads={"back": f"c{v}", "h": a}, writes={nxt: f"h{layer + 1}@r{r}"},
                      layer=layer)
            # two micro-batches: micro-batch 1's router and expert run while micro-batch 0's all-to-alls do
            _overlapped(d, ov, layer, size // 2, a, nxt, f"h{layer + 1}@r{r}")
        d.compute("sampler", reads={f"x[layer={layers}]": f"h{layers}@r{r}"}, writes={"out": f"out@r{r}"})
    return b.build()


def _overlapped(d: Lane, ov: str, layer: int, size: int, a: str, nxt: str, out: str) -> None:
    """One MoE layer as two micro-batches on the two streams (host issue order
    interleaves them; every hand-off between the streams is an event)."""
    r = d.rank

    def v(stage: str, m: int) -> str:
        return f"{stage}{layer}.{m}@r{r}"

    def rec(e: str, stream: str) -> None:
        d.rb.record(e, stream=stream, when=ov)

    def wait(e: str, stream: str) -> None:
        d.rb.wait(e, stream=stream, when=ov)

    def a2a(stage: str, m: int, src: str, dst: str, val_in: str, val_out: str) -> None:
        d.coll("all_to_all", "ep", name=f"{stage}_mb{m}", when=ov, reads={f"{src}[mb={m}]": val_in},
               writes={f"{dst}[mb={m}]": val_out}, size=size, layer=layer, mb=m)

    routed, dispatched, expert_done, combined = ([d.event(tag) for _ in (0, 1)]
                                                 for tag in ("routed", "dispatched", "expert_done", "combined"))
    for m in (0, 1):
        d.compute("router", when=ov, reads={"h": a}, writes={f"send[mb={m}]": v("t", m)}, layer=layer, mb=m)
        rec(routed[m], "compute")
        wait(routed[m], "comm")
        a2a("dispatch", m, "send", "recv", v("t", m), v("d", m))
        rec(dispatched[m], "comm")
    for m in (0, 1):
        wait(dispatched[m], "compute")
        d.compute("expert", when=ov, reads={f"recv[mb={m}]": v("d", m)}, writes={f"eout[mb={m}]": v("e", m)},
                  layer=layer, mb=m)
        rec(expert_done[m], "compute")
        wait(expert_done[m], "comm")
        a2a("combine", m, "eout", "back", v("e", m), v("c", m))
        rec(combined[m], "comm")
    for m in (0, 1):
        wait(combined[m], "compute")
    d.compute("merge", when=ov, reads={"back[mb=0]": v("c", 0), "back[mb=1]": v("c", 1), "h": a},
              writes={nxt: out}, layer=layer)


# ======================================================================= grammar-abort
def build_grammar_abort(name: str, p: dict[str, Value], fault: str | None) -> Schedule:
    """A decode loop over ``steps`` steps; ``aborted[t]``: this rank's grammar
    aborted a request in step t.

    The bug class: on the decode side of a prefill/decode-disaggregated
    deployment with structured output (SGLang), a request whose grammar
    fails is aborted.  The rank holding it left the step early and skipped
    the step's forward, with its MLP-sync all-gathers; the other DP ranks,
    whose grammars were fine, hang in them.  The fix makes the abort known to
    all ranks before the forward: an all-reduce of the abort flags
    (``sync_abort_t``, deriving ``any_abort_t = any(aborted[t])``) and every
    rank takes the same branch: when any rank aborted, every rank retracts
    the step (drops the aborted requests; the step is redone in the next
    iteration) and none issues the forward's collectives.

    ``abort-local`` has no flag exchange and guards the forward with ``not
    aborted[t]`` (matching: the aborting rank never issues the all-gather)."""
    n, layers, steps = int(p["dp"]), int(p["layers"]), int(p["steps"])
    b = ScheduleBuilder(name, description=f"{name}: disaggregated decode over {n} DP ranks, grammar aborts"
                        + (f", fault {fault}" if fault else ""))
    b.buffer("tok").buffer("flag", "step").buffer("flags", "step").buffer("x", "step", "layer")
    for buf in ("h", "g", "logits", "out"):
        b.buffer(buf, "step")
    b.group("dp", list(range(n)))
    b.choice("aborted", scope="rank", values=[False, True], length=steps)
    local = fault == "abort-local"
    if not local:
        for t in range(steps):
            b.choice(f"any_abort_{t}", scope="dp", value=f"any(aborted[{t}])", via=f"sync_abort_{t}")
    b.init("tok", "tok")
    for r in range(n):
        d = Lane(b.rank(r))
        for t in range(steps):
            S = f"step={t}"
            d.compute("grammar", reads={"tok": "tok"}, writes={f"flag[{S}]": f"abort{t}@r{r}"})
            if local:  # the bug: the rank decides from its own grammar result
                run, abort = f"not aborted[{t}]", f"aborted[{t}]"
            else:  # the fix: every rank learns whether any rank aborted, and all take one branch
                d.sync("compute", "comm", "flag_ready")
                d.coll("all_reduce", "dp", name=f"sync_abort_{t}", reads={f"flag[{S}]": f"abort{t}@r{r}"},
                       writes={f"flags[{S}]": f"abort{t}"}, size=1)
                d.sync("comm", "compute", "flags_ready")
                d.compute("read_aborts", reads={f"flags[{S}]": f"abort{t}"})
                run, abort = f"not any_abort_{t}", f"any_abort_{t}"
            # abort path: drop the aborted requests, release their KV; the step is redone without them
            d.compute("abort_requests", when=abort, writes={f"out[{S}]": f"retracted{t}@r{r}"})
            # forward path
            d.compute("embed", when=run, reads={"tok": "tok"}, writes={f"x[{S}, layer=0]": f"h0.{t}@r{r}"})
            for layer in range(layers):
                x = f"x[{S}, layer={layer}]"
                hv, gv = f"a{layer}.{t}@r{r}", f"g{layer}.{t}"
                d.compute("attn", when=run, reads={x: f"h{layer}.{t}@r{r}"}, writes={f"h[{S}]": hv}, layer=layer)
                d.sync("compute", "comm", "attn_done", when=run)
                d.coll("all_gather", "dp", name="mlp_sync", when=run, reads={f"h[{S}]": hv},
                       writes={f"g[{S}]": gv}, layer=layer)
                d.sync("comm", "compute", "gathered", when=run)
                d.compute("mlp", when=run, reads={f"g[{S}]": gv, f"h[{S}]": hv},
                          writes={f"x[{S}, layer={layer + 1}]": f"h{layer + 1}.{t}@r{r}"}, layer=layer)
            d.compute("lm_head", when=run, reads={f"x[{S}, layer={layers}]": f"h{layers}.{t}@r{r}"},
                      writes={f"logits[{S}]": f"logits{t}@r{r}"})
            d.compute("sampler", when=run, reads={f"logits[{S}]": f"logits{t}@r{r}"},
                      writes={f"out[{S}]": f"tok{t}@r{r}"})
    return b.build()


# ======================================================================= spec-decode
def build_spec_decode(name: str, p: dict[str, Value], fault: str | None) -> Schedule:
    """TP speculative decoding: draft k tokens, verify them, accept 1..k, and
    run the draft model on the accepted tokens (a collective of accept * hidden).

    The bug class: the accepted length comes out of rejection sampling,
    which is random.  When every TP rank runs the sampler itself (vLLM-style
    speculative decoding with per-rank generators, or any sampler that is not
    bit-identical across ranks), the ranks may accept different numbers of
    draft tokens and then issue the next collective with different sizes: a
    hang or a corrupted reduction.  The fix samples on TP rank 0 and
    broadcasts the result (``bcast_accept_t``) before anything is sized by
    it: ``accept_t`` is uniform on ``tp`` with that broadcast as its ``via``.

    ``accept-local`` makes ``accept_t`` rank-scoped (every rank samples, no
    broadcast): the draft-extend all-reduce of ``accept_t * hidden``
    elements differs across the ranks (matching)."""
    n, k, steps, hidden = int(p["tp"]), int(p["k"]), int(p["steps"]), int(p["hidden"])
    local = fault == "accept-local"
    b = ScheduleBuilder(name, description=f"{name}: speculative decoding over {n} TP ranks, {k} draft tokens"
                        + (f", fault {fault}" if fault else ""))
    b.buffer("tok")
    for buf in ("draft", "dpart", "dsum", "vpart", "vsum", "samp", "acc", "epart", "esum"):
        b.buffer(buf, "step")
    b.group("tp", list(range(n)))
    for t in range(steps):
        if local:
            b.choice(f"accept_{t}", scope="rank", range=(1, k))
        else:
            b.choice(f"accept_{t}", scope="tp", range=(1, k), via=f"bcast_accept_{t}")
    b.init("tok", "tok")
    for r in range(n):
        d = Lane(b.rank(r))
        for t in range(steps):
            S = f"step={t}"
            # draft k tokens (TP-sharded draft model: one all-reduce)
            d.compute("draft", reads={"tok": "tok"}, writes={f"dpart[{S}]": f"dp{t}@r{r}"})
            d.sync("compute", "comm", "drafted")
            d.coll("all_reduce", "tp", name="draft_allreduce", reads={f"dpart[{S}]": f"dp{t}@r{r}"},
                   writes={f"dsum[{S}]": f"ds{t}"}, size=k * hidden)
            d.sync("comm", "compute", "draft_reduced")
            # verify the k drafts (+1 bonus position) with the target model
            d.compute("verify", reads={f"dsum[{S}]": f"ds{t}"}, writes={f"vpart[{S}]": f"vp{t}@r{r}"})
            d.sync("compute", "comm", "verified")
            d.coll("all_reduce", "tp", name="verify_allreduce", reads={f"vpart[{S}]": f"vp{t}@r{r}"},
                   writes={f"vsum[{S}]": f"vs{t}"}, size=(k + 1) * hidden)
            d.sync("comm", "compute", "verify_reduced")
            acc = f"acc[{S}]"
            if local:  # the bug: every rank runs the rejection sampler itself
                d.compute("rejection_sampler", reads={f"vsum[{S}]": f"vs{t}"}, writes={acc: f"acc{t}@r{r}"})
                av = f"acc{t}@r{r}"
            else:  # the fix: rank 0 samples and broadcasts the accepted tokens
                if r == 0:
                    d.compute("rejection_sampler", reads={f"vsum[{S}]": f"vs{t}"}, writes={acc: f"acc{t}"})
                d.sync("compute", "comm", "sampled")
                d.coll("broadcast", "tp", name=f"bcast_accept_{t}", reads={acc: f"acc{t}"} if r == 0 else None,
                       writes={acc: f"acc{t}"}, root=0, size=k + 1)
                d.sync("comm", "compute", "accept_known")
                av = f"acc{t}"
            # the draft model catches up on the accepted tokens: accept * hidden elements
            d.compute("draft_extend", reads={acc: av}, writes={f"epart[{S}]": f"ep{t}@r{r}"})
            d.sync("compute", "comm", "extended")
            d.coll("all_reduce", "tp", name="extend_allreduce", reads={f"epart[{S}]": f"ep{t}@r{r}"},
                   writes={f"esum[{S}]": f"es{t}"}, size=f"accept_{t} * {hidden}")
            d.sync("comm", "compute", "extend_reduced")
            d.compute("update_kv", reads={f"esum[{S}]": f"es{t}"})
    return b.build()


# ======================================================================= moe-routing
def build_routing(name: str, p: dict[str, Value], fault: str | None) -> Schedule:
    """One MoE layer; ``tokens[j]``: how many tokens this rank routes to rank
    j's experts (``0..cap``).

    Variable-size MoE communication needs every rank to know the sizes it
    sends and receives.  The correct schedule exchanges the counts first
    (``exchange_counts``, an all-gather of every rank's vector: the derived
    ``all_tokens``), then ``dispatch=a2a`` runs all-to-alls whose split
    sizes are ``tokens[j]`` (to j) and ``all_tokens@j[r]`` (from j), the
    combine the same reversed; ``dispatch=agrs`` (vLLM's all-gather /
    reduce-scatter path of chunked MoE) gathers each member's tokens with
    the counts vector ``[total of member j]``, the same on every member.

    ``counts-patched-local`` is the chunked-MoE bug: each rank builds the
    counts vector from what it knows, its own total in its own entry and a
    stale value (here the padded maximum ``cap * ep``) in the others', so
    the members' vectors differ unless every rank happens to be full.
    ``recv-counts-guessed``: the dispatch receiver assumes it gets from each
    peer what it sends to it (``tokens[j]``) instead of using the exchanged
    counts: right only for symmetric routings.  Both break matching.  The
    ``agrs`` counts are sums of ``ep`` entries for each of ``ep`` members:
    the schedule grows as ``ep^3``, so ``ep`` stops at 32."""
    n, cap = int(p["ep"]), int(p["cap"])
    agrs = p["dispatch"] == "agrs"
    b = ScheduleBuilder(name, description=f"{name}: MoE routing over {n} EP ranks, up to {cap} tokens per expert"
                        f" ({'all-gather/reduce-scatter' if agrs else 'all-to-all'} dispatch)"
                        + (f", fault {fault}" if fault else ""))
    for buf in ("x", "cnt", "cnts", "send", "recv", "eout", "back", "y"):
        b.buffer(buf)
    b.group("ep", list(range(n)))
    b.choice("tokens", scope="rank", range=(0, cap), length=n)
    b.choice("all_tokens", scope="ep", gathers="tokens", via="exchange_counts")
    b.init("x", "x")
    members = range(n)

    def total(j: int) -> str:  # member j's tokens, as every rank knows them after the exchange
        return " + ".join(f"all_tokens@{j}[{i}]" for i in members)

    own_total = " + ".join(f"tokens[{i}]" for i in members)
    for r in range(n):
        d = Lane(b.rank(r))
        d.compute("router", reads={"x": "x"}, writes={"send": f"t@r{r}", "cnt": f"cnt@r{r}"})
        d.sync("compute", "comm", "routed")
        d.coll("all_gather", "ep", name="exchange_counts", reads={"cnt": f"cnt@r{r}"}, writes={"cnts": "cnts"},
               size=n)
        if agrs:
            # dispatch: all-gather every rank's tokens (member j contributes its total), combine: reduce-scatter
            if fault == "counts-patched-local":  # own entry patched in, the others stale (padded to the maximum)
                counts = [own_total if j == r else str(cap * n) for j in members]
            else:
                counts = [total(j) for j in members]
            d.coll("all_gather", "ep", name="dispatch", reads={"send": f"t@r{r}"}, writes={"recv": "d"},
                   counts=counts)
            d.sync("comm", "compute", "dispatched")
            d.compute("expert", reads={"recv": "d"}, writes={"eout": f"e@r{r}"})
            d.sync("compute", "comm", "expert_done")
            d.coll("reduce_scatter", "ep", name="combine", reads={"eout": f"e@r{r}"}, writes={"back": f"c@r{r}"},
                   counts=counts)
        else:
            sent = [f"tokens[{j}]" for j in members]
            if fault == "recv-counts-guessed":  # assumes it gets from each peer what it sends to that peer
                got = list(sent)
            else:
                got = [f"all_tokens@{j}[{r}]" for j in members]
            d.coll("all_to_all", "ep", name="dispatch", reads={"send": f"t@r{r}"}, writes={"recv": f"d@r{r}"},
                   counts=sent, recv_counts=got)
            d.sync("comm", "compute", "dispatched")
            d.compute("expert", reads={"recv": f"d@r{r}"}, writes={"eout": f"e@r{r}"})
            d.sync("compute", "comm", "expert_done")
            d.coll("all_to_all", "ep", name="combine", reads={"eout": f"e@r{r}"}, writes={"back": f"c@r{r}"},
                   counts=got, recv_counts=sent)
        d.sync("comm", "compute", "combined")
        d.compute("merge", reads={"back": f"c@r{r}"}, writes={"y": f"y@r{r}"})
    return b.build()


MODELS = (
    ModelSpec("dpattn-ep-states", "DP attention + EP MoE with each rank's batch a choice (idle, prefill, decode):"
              " an idle rank runs a dummy forward and joins every collective",
              (Param("dp", 4, "DP attention ranks (also the EP group)", 1, 512),
               Param("layers", 2, "MoE layers", 1, 8)),
              (Fault("idle-skips-mlp-sync", "an idle rank does not join the MLP-sync all-gather (guarded"
                     " state != idle): the busy ranks hang in it", "matching", (at_least("dp", 2),)),
               Fault("idle-no-wait", "the comm stream waits for the attention only on the busy paths (the wait"
                     " is guarded state != idle, its record is not): on an idle rank the MLP-sync all-gather may"
                     " read the hidden states before the dummy attention has written them", "dataflow")),
              build_states, family="choices"),
    ModelSpec("overlap-switch", "per-step two-micro-batch overlap of the MoE all-to-alls, switched on when every"
              " rank's batch is a decode batch (gathered flags)",
              (Param("dp", 4, "DP/EP ranks", 1, 512), Param("layers", 1, "MoE layers", 1, 8),
               Param("tokens", 4096, "all-to-all size of the whole batch (a micro-batch moves half)", 2, 1 << 20)),
              (Fault("overlap-local", "each rank switches overlap on from its own batch (state == decode), not"
                     " from the gathered flags: a decode rank splits its all-to-alls while a prefill rank does not",
                     "matching", (at_least("dp", 2),)),),
              build_overlap_switch, family="choices"),
    ModelSpec("grammar-abort", "disaggregated decode loop where a grammar abort retracts the step: the abort"
              " flags are all-reduced and every DP rank takes the same branch",
              (Param("dp", 4, "DP ranks", 1, 512), Param("layers", 1, "layers per forward", 1, 8),
               Param("steps", 2, "decode steps", 1, 8)),
              (Fault("abort-local", "the rank whose grammar aborted skips the step's forward (and its MLP-sync"
                     " all-gathers) on its own", "matching", (at_least("dp", 2),)),),
              build_grammar_abort, family="choices"),
    ModelSpec("spec-decode", "TP speculative decoding: the accepted length is sampled on rank 0 and broadcast,"
              " then sizes a collective (accept * hidden)",
              (Param("tp", 2, "TP ranks", 1, 512), Param("k", 3, "draft tokens (accept is 1..k)", 1, 8),
               Param("steps", 1, "decode steps", 1, 4), Param("hidden", 4096, "hidden size", 1, 1 << 16)),
              (Fault("accept-local", "every TP rank runs the rejection sampler itself and sizes the draft-extend"
                     " all-reduce by its own accepted length: the ranks' sizes differ", "matching",
                     (at_least("tp", 2), at_least("k", 2))),),
              build_spec_decode, family="choices"),
    ModelSpec("moe-routing", "MoE routing with per-expert token counts as choices: counts exchanged before the"
              " variable-size dispatch and combine",
              (Param("ep", 4, "EP ranks (one expert each)", 1, 32), Param("cap", 2, "most tokens a rank sends to"
                     " one expert", 0, 64),
               Param("dispatch", "a2a", "all-to-all with split sizes, or all-gather / reduce-scatter with per-rank"
                     " counts (vLLM's chunked MoE path)", choices=("a2a", "agrs"))),
              (Fault("counts-patched-local", "each rank's all-gather counts hold its own total in its entry and a"
                     " stale padded count elsewhere: the members' counts vectors differ", "matching",
                     (equals("dispatch", "agrs"), at_least("ep", 2), at_least("cap", 1))),
               Fault("recv-counts-guessed", "the dispatch receiver expects from each peer what it sends to it,"
                     " not the exchanged counts: wrong as soon as the routing is not symmetric", "matching",
                     (equals("dispatch", "a2a"), at_least("ep", 2), at_least("cap", 1)))),
              build_routing, family="choices"),
)

__all__ = ["MODELS", "Lane"]
