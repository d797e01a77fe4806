"""Dense decoder models: tensor (TP), pipeline (PP) and data (DP) parallelism,
the KV cache and chunked prefill, and their compositions.

One generator builds them all; each registered model (``tp``, ``pp``, ``dp``,
``kv``, ``chunked-prefill``, ``tp-pp``, ``tp-pp-dp``) fixes some of its knobs.

Layout.  Rank ``(d, s, i)`` = replica ``d`` (DP), pipeline stage ``s`` (PP),
tensor rank ``i`` (TP) is global rank ``(d * pp + s) * tp + i``.  Replica ``d``
serves microbatches ``m = 0 .. mb-1``; microbatch ``m`` is sequence
``q = d * mb + m`` with a prompt of ``prompt + m`` tokens (microbatches differ
in shape, as real batches do).  Every sequence runs the same iterations:
the prefill (in ``chunks`` chunks) and then ``steps`` decode steps; decode
step ``t`` feeds the token at position ``t``, appends K/V at position ``t`` and
samples the token at ``t + 1``.

Streams of a rank: ``compute`` (kernels), ``comm`` (TP and DP collectives),
``send``/``recv`` (pipeline p2p), ``cache`` (asynchronous KV append, for the
``kv`` and ``chunked-prefill`` models).  Every hand-off between streams is an
event; at the end of an iteration the rank records an event on every stream
with outstanding work and the next iteration of the same sequence starts by
waiting for them (the per-step KV/communication sync of the seeds).

A Megatron layer on TP rank ``i``: ``qkv`` (column parallel, writes this
rank's K/V heads into its cache), ``attn`` (reads the cache prefix),
``out_proj`` (row parallel, a partial sum), all-reduce, ``mlp_up`` (column
parallel), ``mlp_down`` (row parallel), all-reduce.  With ``tp = 1`` there is
nothing to reduce.  The last stage computes logits (vocab parallel, then an
all-gather), TP rank 0 samples; the token goes back to stage 0 by p2p (PP)
and to the other TP ranks by a broadcast.  With DP, the sampled tokens of
all replicas are all-gathered every step: the only cross-replica sync.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .common import (
    PHASES,
    Dev,
    Fault,
    Meta,
    ModelSpec,
    Param,
    Params,
    Requirement,
    Schedule,
    ScheduleBuilder,
    Value,
    at_least,
    meta,
    span,
    split_even,
)


# ------------------------------------------------------------------ config
@dataclass(frozen=True)
class Cfg:
    tp: int = 1
    pp: int = 1
    dp: int = 1
    mb: int = 1
    layers: int = 2
    prompt: int = 4
    steps: int = 2
    phase: str = "both"
    chunks: int = 1
    cache_stream: bool = False
    fault: str | None = None
    # Over-synchronized variants (issue 14): syncs that keep every proof but are not needed.
    oversync: str = "none"


@dataclass(frozen=True)
class Iter:
    """One forward pass of one sequence: a prefill chunk or a decode step."""

    index: int
    phase: str
    lo: int
    hi: int
    step: int | None
    samples: bool
    tag: str


def iterations(cfg: Cfg, prompt: int) -> list[Iter]:
    its: list[Iter] = []
    if cfg.phase in ("prefill", "both"):
        bounds = split_even(prompt, cfg.chunks)
        for c, (lo, hi) in enumerate(bounds):
            its.append(Iter(len(its), "prefill", lo, hi, None, c == len(bounds) - 1,
                            "pre" if cfg.chunks == 1 else f"c{c}"))
    if cfg.phase in ("decode", "both"):
        for k in range(cfg.steps):
            t = prompt + k
            its.append(Iter(len(its), "decode", t, t + 1, t, True, f"t{t}"))
    return its


def n_iterations(p: Params) -> int:
    phase = str(p.get("phase", "both"))
    n = 0
    if phase in ("prefill", "both"):
        n += int(p.get("chunks", 1))
    if phase in ("decode", "both"):
        n += int(p.get("steps", 1))
    return n


@dataclass
class Gen:
    cfg: Cfg
    b: ScheduleBuilder
    devs: dict[int, Dev] = field(default_factory=dict)
    # recv events posted ahead of their iteration (the swapped-mb-order fault)
    prerecv: dict[tuple[int, int, int], str] = field(default_factory=dict)
    # (rank, microbatch) -> event recorded once the received activations were read
    inb_free: dict[tuple[int, int], str] = field(default_factory=dict)
    # rank -> event recorded after the previous layer's KV append (the layer-wait variant)
    append_done: dict[int, str] = field(default_factory=dict)

    # ---- layout --------------------------------------------------------
    def rank(self, d: int, s: int, i: int) -> int:
        return (d * self.cfg.pp + s) * self.cfg.tp + i

    def tp_group(self, d: int, s: int) -> str:
        parts = ["tp"]
        if self.cfg.dp > 1:
            parts.append(f"d{d}")
        if self.cfg.pp > 1:
            parts.append(f"s{s}")
        return ".".join(parts)

    def bar_group(self, d: int, s: int, i: int) -> str:
        """The pair of ranks of the barrier-before-send variant: (d, s, i) and (d, s+1, i)."""
        return f"bar.d{d}.s{s}.i{i}"

    def stage_layers(self, s: int) -> tuple[int, int]:
        return split_even(self.cfg.layers, self.cfg.pp)[s]

    def prompt_of(self, m: int) -> int:
        return self.cfg.prompt + m

    @property
    def crossed(self) -> bool:
        """The last stage sends each token back as soon as it is sampled (the
        crossed launch order of the crossed-comm-order and single-stream-p2p faults)."""
        return self.cfg.fault in ("crossed-comm-order", "single-stream-p2p")

    @property
    def tok_channel(self) -> str:
        # one-comm-two-streams: the token shares the activations' communicator
        return "act" if self.cfg.fault == "one-comm-two-streams" else "tok"

    def credit(self, d: int, i: int) -> bool:
        """The relies-on-rendezvous fault, between ranks (0, 0, 0) and (0, 1, 0)."""
        return self.cfg.fault == "relies-on-rendezvous" and (d, i) == (0, 0)

    def stream(self, name: str) -> str:
        # The single-stream-p2p fault issues pipeline sends and recvs on the compute stream.
        if self.cfg.fault == "single-stream-p2p" and name in ("send", "recv"):
            return "compute"
        return name

    # ---- values --------------------------------------------------------
    @staticmethod
    def kv_segments(its: list[Iter], q: int, upto: int, layer: int, prompt_in_init: bool,
                    prompt: int) -> dict[str, str]:
        """The cache prefix ``[0, upto)`` of sequence q, one read entry per writer."""
        out: dict[str, str] = {}
        if prompt_in_init and upto > 0:
            out[f"kv[seq={q}, layer={layer}, pos={span(0, min(prompt, upto))}]"] = f"kv{layer}(s{q},pre)"
        for it in sorted(its, key=lambda x: x.lo):
            if it.lo >= upto:
                continue
            hi = min(it.hi, upto)
            out[f"kv[seq={q}, layer={layer}, pos={span(it.lo, hi)}]"] = f"kv{layer}(s{q},{it.tag})"
        return out

    # ---- the schedule --------------------------------------------------
    def build(self) -> Schedule:
        c = self.cfg
        b = self.b
        b.buffer("tok", "seq", "pos").buffer("x", "seq", "pos", "layer").buffer("kv", "seq", "layer", "pos")
        for ws in ("q", "o", "y", "u", "logits"):
            b.buffer(ws, "seq")
        if c.tp > 1:
            b.buffer("part", "seq").buffer("lp", "seq")
        if c.cache_stream:
            b.buffer("kvnew", "seq", "layer")
        if c.pp > 1:
            b.buffer("inb", "mb").buffer("outb", "mb")
        if c.dp > 1:
            b.buffer("outs", "seq", "pos")
        for d in range(c.dp):
            for s in range(c.pp):
                if c.tp > 1:
                    b.group(self.tp_group(d, s), [self.rank(d, s, i) for i in range(c.tp)])
        if c.dp > 1:
            b.group("dp", [self.rank(d, c.pp - 1, 0) for d in range(c.dp)])
        if c.oversync == "barrier-before-send":
            for d in range(c.dp):
                for s in range(c.pp - 1):
                    for i in range(c.tp):
                        b.group(self.bar_group(d, s, i), [self.rank(d, s, i), self.rank(d, s + 1, i)])
        for d in range(c.dp):
            for m in range(c.mb):
                q, prompt = d * c.mb + m, self.prompt_of(m)
                if c.phase in ("prefill", "both"):
                    b.init(f"tok[seq={q}, pos=0:{prompt}]", f"prompt(s{q})")
                else:
                    b.init(f"tok[seq={q}, pos={prompt}]", f"tok(s{q},{prompt})")
                    for L in range(c.layers):
                        b.init(f"kv[seq={q}, layer={L}, pos=0:{prompt}]", f"kv{L}(s{q},pre)")
        for d in range(c.dp):
            for s in range(c.pp):
                for i in range(c.tp):
                    r = self.rank(d, s, i)
                    self.devs[r] = Dev(b.rank(r))
        # Issue order, per rank: iteration by iteration, microbatch by microbatch.
        for d in range(c.dp):
            for s in range(c.pp):
                for i in range(c.tp):
                    dev = self.devs[self.rank(d, s, i)]
                    per_mb = [iterations(c, self.prompt_of(m)) for m in range(c.mb)]
                    order = list(range(len(per_mb[0])))
                    if c.fault == "chunk-reorder":
                        order[0], order[1] = order[1], order[0]
                    for pos, k in enumerate(order):
                        for m in range(c.mb):
                            self.iteration(dev, d, s, i, m, per_mb[m], k, pos)
        return b.build()

    def iteration(self, dev: Dev, d: int, s: int, i: int, m: int, its: list[Iter], k: int, pos: int) -> None:
        c = self.cfg
        it = its[k]
        q = d * c.mb + m
        prompt = self.prompt_of(m)
        lo, hi = it.lo, it.hi
        M = meta(it.phase, step=it.step, mb=m if c.mb > 1 else None, seqs=[q], tokens=(lo, hi))
        first = pos == 0
        prev = its[k - 1] if k > 0 else None
        last = pos == len(its) - 1
        # -- fences: everything of the previous iteration of this sequence has ended on this rank
        skip = self.fence_skips(pos, m, d, s, i)
        dev.open(m, M, skip=skip)
        L0, L1 = self.stage_layers(s)
        value0 = f"h{L0}(s{q},{it.tag})"
        late = c.fault == "one-comm-two-streams"  # the bug: the token goes back after the next recv
        back = prev if s == c.pp - 1 and s > 0 and i == 0 and it.phase == "decode" and not self.crossed else None
        if back is not None and not late:
            self.token_out(dev, d, q, back, m)
        # -- input
        if s == 0:
            tok = f"tok[seq={q}, pos={span(lo, hi)}]"
            tokval = f"prompt(s{q})" if it.phase == "prefill" else f"tok(s{q},{lo})"
            if it.phase == "decode" and prev is not None and c.pp > 1:
                self.token_in(dev, d, i, q, lo, prev, m, pos)
            dev.compute("embed", M, reads={tok: tokval},
                        writes={f"x[seq={q}, pos={span(lo, hi)}, layer={L0}]": value0})
            inp = (f"x[seq={q}, pos={span(lo, hi)}, layer={L0}]", value0)
        else:
            credit = s == 1 and self.credit(d, i)
            slot = 0 if c.fault == "shared-recv-buffer" or credit else m
            inb = f"inb[mb={slot}]"
            ev = self.prerecv.pop((dev.rank, pos, m), None)
            if ev is None:
                if c.fault in ("swapped-mb-order", "recv-order-swapped") and pos == 0 and (d, s, m) == (0, 1, 0) \
                        and c.mb > 1:
                    self.post_recvs_reversed(dev, d, s, i, k, pos, L0)
                    ev = self.prerecv.pop((dev.rank, pos, m))
                else:
                    free = self.inb_free.pop((dev.rank, 0 if credit else m), None)
                    if free is not None and credit:
                        # The bug: stage 1 tells stage 0 that the buffer is free by posting the recv
                        # of a credit once it has read it, and stage 0 takes the return of its
                        # credit send for that (true only if the send waits for its recv).
                        dev.wait(free, "ctl", M)
                        dev.recv(self.rank(d, 0, i), M, stream="ctl", channel="ctl", writes={}, size=1)
                    elif free is not None:
                        # Do not receive into the slot before the previous iteration has read it.
                        dev.wait(free, self.stream("recv"), M)
                    if c.oversync == "barrier-before-send":
                        # the receiving end of the redundant barrier, on the current (compute) stream,
                        # issued before the recv (both ends launch the two communicators in one order)
                        dev.coll("barrier", self.bar_group(d, s - 1, i), M, stream="compute", name="pp_barrier")
                    dev.recv(self.rank(d, s - 1, i), M, stream=self.stream("recv"), channel="act",
                             writes={inb: value0}, size=hi - lo)
                    ev = dev.record(self.stream("recv"), "act_in", M)
            no_wait = c.fault == "no-recv-wait" and first and m == 0 and (d, s, i) == (0, 1, 0)
            if not no_wait and self.stream("recv") != "compute":
                dev.wait(ev, "compute", M)
                dev.pending[self.stream("recv")] = False
            inp = (inb, value0)
        if back is not None and late:
            self.token_out(dev, d, q, back, m)
        # -- layers
        for L in range(L0, L1):
            if L == L1 - 1 and s < c.pp - 1:
                out = (f"outb[mb={m}]", f"h{L1}(s{q},{it.tag})")
            else:
                out = (f"x[seq={q}, pos={span(lo, hi)}, layer={L + 1}]", f"h{L + 1}(s{q},{it.tag})")
            self.layer(dev, d, s, i, m, q, it, its, prompt, L, inp, out, M, first)
            inp = out
        # -- output
        if s < c.pp - 1:
            if c.oversync == "barrier-before-send":
                # Over-synchronized: dist.barrier() of the two stages before every activation send, on
                # the current (compute) stream of both ends (the next stage joins it before posting
                # the recv).  The send/recv pair and the events already order everything the proofs
                # need: each barrier is redundant.  With mb >= 2 the next microbatch's barrier also
                # orders a recv after the last read of its slot, so each recv-slot wait (act_read) is
                # redundant alone too (not together with every barrier).
                dev.coll("barrier", self.bar_group(d, s, i), M, stream="compute", name="pp_barrier")
            dev.sync("compute", self.stream("send"), "act_out", M)
            if s == 0 and self.credit(d, i) and (pos, m) != (0, 0):
                dev.send(self.rank(d, 1, i), M, stream=self.stream("send"), channel="ctl", reads={}, size=1)
            dev.send(self.rank(d, s + 1, i), M, stream=self.stream("send"), channel="act",
                     reads={inp[0]: inp[1]}, size=hi - lo)
        elif it.samples:
            self.sample(dev, d, s, i, m, q, it, its, k, pos, M)
        if not last:
            dev.close(m, M)
            if c.oversync == "step-sync":
                # Over-synchronized: the host blocks on the whole device at the end of every iteration
                # (torch.cuda.synchronize(), or a .tolist() of the sampled token).  The next iteration's
                # fence waits already order what it needs: the host sync and those waits are each
                # redundant alone, but one of the two must stay.
                dev.rb.sync(name="step_sync", **{k: v for k, v in M.items() if k not in ("layer", "sp")})
        elif c.dp > 1 and s == c.pp - 1 and i == 0:
            # The host hands the gathered tokens of every step to the user.
            done = dev.record("out", "gathered", M)
            dev.wait(done, "host", {})
            q2s = [d2 * c.mb + m for d2 in range(c.dp)]
            dev.compute("emit", {}, stream="host",
                        reads={f"outs[seq={q2}, pos={x.hi}]": f"tok(s{q2},{x.hi})" for q2 in q2s for x in its
                               if x.samples})

    def fence_skips(self, pos: int, m: int, d: int, s: int, i: int) -> tuple[str, ...]:
        """The fence waits a fault leaves out, at the second iteration of microbatch 0."""
        c = self.cfg
        if pos != 1 or m != 0:
            return ()
        at = (d, s, i)
        if c.fault == "no-step-wait" and at == (c.dp - 1, c.pp - 1, 0):
            return ("out",)  # the replica does not wait for the previous step's token gather
        if c.fault == "no-send-wait" and at == (0, 0, 0):
            return ("send",)
        if c.fault == "no-append-wait" and at == (0, 0, 0):
            return ("cache",)
        if c.fault == "step-early" and c.pp == 1 and at == (0, 0, c.tp - 1):
            return ("comm",)  # the token broadcast
        if c.fault == "root-skips-bcast-wait" and at == (0, 0, 0):
            return ("comm",)
        return ()

    def post_recvs_reversed(self, dev: Dev, d: int, s: int, i: int, k: int, pos: int, L0: int) -> None:
        """The swapped-mb-order fault: stage 1 posts the recvs of all microbatches of
        this iteration up front, in reverse order."""
        c = self.cfg
        for m2 in reversed(range(c.mb)):
            it2 = iterations(c, self.prompt_of(m2))[k]
            q2 = d * c.mb + m2
            M2 = meta(it2.phase, step=it2.step, mb=m2, seqs=[q2], tokens=(it2.lo, it2.hi))
            dev.recv(self.rank(d, s - 1, i), M2, stream=self.stream("recv"), channel="act",
                     writes={f"inb[mb={m2}]": f"h{L0}(s{q2},{it2.tag})"}, size=it2.hi - it2.lo)
            self.prerecv[(dev.rank, pos, m2)] = dev.record(self.stream("recv"), "act_in", M2)

    def token_out(self, dev: Dev, d: int, q: int, prev: Iter, m: int) -> None:
        """The last stage hands the token sampled in the previous iteration of
        microbatch m back to stage 0 at the start of the microbatch's next
        iteration: the place in issue order where stage 0 receives it, so both
        ends launch the token and activation communicators in one order.  (The
        token stream already waits for the sampler: see :meth:`sample`.)"""
        c = self.cfg
        Mp = meta(prev.phase, step=prev.step, mb=m if c.mb > 1 else None, seqs=[q], tokens=(prev.lo, prev.hi))
        tok = f"tok[seq={q}, pos={prev.hi}]"
        dev.send(self.rank(d, 0, 0), Mp, stream=f"tok{m}", channel=self.tok_channel,
                 reads={tok: f"tok(s{q},{prev.hi})"}, size=1)

    def token_in(self, dev: Dev, d: int, i: int, q: int, pos_t: int, prev: Iter, m: int, pos: int) -> None:
        """Stage 0 gets the token of the previous iteration from the last stage (PP),
        then hands it to its TP peers.  These ops belong to the previous iteration
        (they deliver its token)."""
        c = self.cfg
        Mp = meta(prev.phase, step=prev.step, mb=m if c.mb > 1 else None, seqs=[q], tokens=(prev.lo, prev.hi))
        tok = f"tok[seq={q}, pos={pos_t}]"
        val = f"tok(s{q},{pos_t})"
        early = c.fault == "step-early" and pos == 1 and m == 0 and d == 0
        if i == 0:
            dev.recv(self.rank(d, c.pp - 1, 0), Mp, stream=self.stream("recv"), channel=self.tok_channel,
                     writes={tok: val}, size=1)
            if c.tp > 1:
                dev.sync(self.stream("recv"), "comm", "tok_in", Mp)
                dev.coll("broadcast", self.tp_group(d, 0), Mp, reads={tok: val}, writes={tok: val}, size=1,
                         root=dev.rank)
                dev.sync("comm", "compute", "tok_bcast", Mp)
            else:
                dev.sync(self.stream("recv"), "compute", "tok_in", Mp, skip_wait=early)
        else:
            dev.coll("broadcast", self.tp_group(d, 0), Mp, writes={tok: val}, size=1,
                     root=self.rank(d, 0, 0))
            dev.sync("comm", "compute", "tok_bcast", Mp, skip_wait=early and i == c.tp - 1)

    def layer(self, dev: Dev, d: int, s: int, i: int, m: int, q: int, it: Iter, its: list[Iter], prompt: int,
              L: int, inp: tuple[str, str], out: tuple[str, str], M0: Meta, first: bool) -> None:
        c = self.cfg
        M = dict(M0, layer=L)
        sq = f"s{q},{it.tag}"
        lo, hi = it.lo, it.hi
        at0 = first and m == 0 and (d, s) == (0, 0) and L == 0
        in_init = c.phase == "decode"
        qbuf = f"q[seq={q}]"
        if c.cache_stream:
            kvnew = f"kvnew[seq={q}, layer={L}]"
            dev.compute("qkv", M, reads={inp[0]: inp[1]}, writes={qbuf: f"q{L}({sq})", kvnew: f"kvnew{L}({sq})"})
            dev.sync("compute", "cache", "kv_new", M, skip_wait=c.fault == "append-before-qkv" and at0 and i == 0)
            plo, phi = (lo + 1, hi + 1) if c.fault == "wrong-position" and at0 and i == 0 else (lo, hi)
            dev.compute("kv_append", M, stream="cache", reads={kvnew: f"kvnew{L}({sq})"},
                        writes={f"kv[seq={q}, layer={L}, pos={span(plo, phi)}]": f"kv{L}({sq})"})
            if c.oversync == "layer-wait":
                # Over-synchronized: the compute stream waits at every layer boundary for the previous
                # layer's append, where the per-step fence (the cache stream's event at the end of the
                # iteration, waited at the start of the next) suffices: each such wait is redundant.
                # The cache stream stays pending, so the fence is still recorded and waited.
                first_layer, end_layer = self.stage_layers(s)
                if L - first_layer > 0:  # not the first layer
                    dev.wait(self.append_done.pop(dev.rank), "compute", M)
                if end_layer - L > 1:  # not the last layer
                    self.append_done[dev.rank] = dev.record("cache", "append_done", M)
            reads = {qbuf: f"q{L}({sq})", kvnew: f"kvnew{L}({sq})"}
            reads.update(self.kv_segments(its, q, lo, L, in_init, prompt))
        else:
            dev.compute("qkv", M, reads={inp[0]: inp[1]},
                        writes={qbuf: f"q{L}({sq})", f"kv[seq={q}, layer={L}, pos={span(lo, hi)}]": f"kv{L}({sq})"})
            reads = {qbuf: f"q{L}({sq})"}
            reads.update(self.kv_segments(its, q, hi, L, in_init, prompt))
        if inp[0].startswith("inb[") and self.stream("recv") != "compute":
            slot = 0 if s == 1 and self.credit(d, i) else m
            self.inb_free[(dev.rank, slot)] = dev.record("compute", "act_read", M)
        dev.compute("attn", M, reads=reads, writes={f"o[seq={q}]": f"o{L}({sq})"})
        y = (f"y[seq={q}]", f"y{L}({sq})")
        n = hi - lo
        if c.tp > 1:
            group = self.tp_group(d, s)
            part = f"part[seq={q}]"
            dev.compute("out_proj", M, reads={f"o[seq={q}]": f"o{L}({sq})"}, writes={part: f"pa{L}({sq},r{i})"})
            dev.sync("compute", "comm", "attn_part", M, skip_wait=c.fault == "no-wait-partial" and at0 and i == 0)
            dev.coll("all_reduce", group, M, reads={part: f"pa{L}({sq},r{i})"}, writes={y[0]: y[1]}, size=n)
            dev.sync("comm", "compute", "attn_sum", M, skip_wait=c.fault == "no-wait-allreduce" and at0 and i == 0)
        else:
            dev.compute("out_proj", M, reads={f"o[seq={q}]": f"o{L}({sq})"}, writes={y[0]: y[1]})
        dev.compute("mlp_up", M, reads={y[0]: y[1]}, writes={f"u[seq={q}]": f"u{L}({sq})"})
        if c.tp > 1:
            part = f"part[seq={q}]"
            dev.compute("mlp_down", M, reads={f"u[seq={q}]": f"u{L}({sq})"}, writes={part: f"pm{L}({sq},r{i})"})
            dev.sync("compute", "comm", "mlp_part", M)
            if not (c.fault == "skip-allreduce" and at0 and i == c.tp - 1):
                dev.coll("all_reduce", self.tp_group(d, s), M, reads={part: f"pm{L}({sq},r{i})"},
                         writes={out[0]: out[1]}, size=n)
            dev.sync("comm", "compute", "mlp_sum", M)
        else:
            dev.compute("mlp_down", M, reads={f"u[seq={q}]": f"u{L}({sq})"}, writes={out[0]: out[1]})

    def sample(self, dev: Dev, d: int, s: int, i: int, m: int, q: int, it: Iter, its: list[Iter], k: int,
               pos: int, M: Meta) -> None:
        """Logits, sampling, and handing the token on (last stage only)."""
        c = self.cfg
        sq = f"s{q},{it.tag}"
        hid = (f"x[seq={q}, pos={it.hi - 1}, layer={c.layers}]", f"h{c.layers}({sq})")
        logits = (f"logits[seq={q}]", f"logits({sq})")
        tok = f"tok[seq={q}, pos={it.hi}]"
        val = f"tok(s{q},{it.hi})"
        nxt = k + 1 < len(its) and its[k + 1].phase == "decode"
        group = self.tp_group(d, s)
        swapped = c.fault == "swapped-collectives" and pos == 0 and m == 0 and d == 0 and i == c.tp - 1
        bcast_here = nxt and c.pp == 1 and c.tp > 1
        if swapped and bcast_here:
            dev.coll("broadcast", group, M, writes={tok: val}, size=1, root=self.rank(d, 0, 0))
        if c.tp > 1:
            lp = f"lp[seq={q}]"
            dev.compute("lm_head", M, reads={hid[0]: hid[1]}, writes={lp: f"lp({sq},r{i})"})
            dev.sync("compute", "comm", "logits_part", M)
            dev.coll("all_gather", group, M, reads={lp: f"lp({sq},r{i})"}, writes={logits[0]: logits[1]},
                     size=1)
            if i == 0:
                dev.sync("comm", "compute", "logits", M)
        else:
            dev.compute("lm_head", M, reads={hid[0]: hid[1]}, writes={logits[0]: logits[1]})
        if i != 0:
            if bcast_here and not swapped:
                dev.coll("broadcast", group, M, writes={tok: val}, size=1, root=self.rank(d, 0, 0))
            return
        dev.compute("sampler", M, reads={logits[0]: logits[1]}, writes={tok: val}, sample=True)
        first = pos == 0 and m == 0
        # With pp=1 and tp>1, rank 0's in-place token broadcast rewrites the buffer the DP gather
        # reads: the gather waits for the broadcast (comm stream) instead of the sampler.
        after_bcast = nxt and c.pp == 1 and c.tp > 1
        if c.dp > 1 and not after_bcast:
            self.gather(dev, d, m, it, tok, val, first, "compute", M)
        if nxt:
            if c.pp > 1 and not self.crossed:
                # The microbatch's token stream waits for the sampler now (the iteration's fence
                # covers the wait); the send itself is issued at the start of the next iteration
                # (token_out).  One stream per microbatch: a token never waits for another
                # microbatch's sampler.
                dev.sync("compute", f"tok{m}", "tok_out", M)
                dev.pending[f"tok{m}"] = True
            elif c.pp > 1:
                # the bug: the token goes back as soon as it is sampled, before the next
                # microbatch's activations are received (stage 0 receives it after sending them)
                dev.sync("compute", self.stream("send"), "tok_out", M)
                dev.send(self.rank(d, 0, 0), M, stream=self.stream("send"), channel="tok", reads={tok: val},
                         size=1)
            elif c.pp == 1 and c.tp > 1:
                dev.sync("compute", "comm", "sampled", M)
                dev.coll("broadcast", group, M, reads={tok: val}, writes={tok: val}, size=1, root=dev.rank)
        if c.dp > 1 and after_bcast:
            self.gather(dev, d, m, it, tok, val, first, "comm", M)

    def gather(self, dev: Dev, d: int, m: int, it: Iter, tok: str, val: str, first: bool, after: str,
               M: Meta) -> None:
        """DP: gather every replica's token for this step (the batch output), on a side
        stream, once ``after`` (the stream that last wrote the token) is done with it."""
        c = self.cfg
        skip_gather = c.fault == "skip-gather" and first and d == c.dp - 1
        dev.sync(after, "out", "sampled", M, skip_wait=c.fault == "gather-before-sample" and first and d == 0)
        if not skip_gather:
            outs = {f"outs[seq={d2 * c.mb + m}, pos={it.hi}]": f"tok(s{d2 * c.mb + m},{it.hi})"
                    for d2 in range(c.dp)}
            dev.coll("all_gather", "dp", M, stream="out", reads={tok: val}, writes=outs, size=1)


# ------------------------------------------------------------------ faults
ITERS2: Requirement = ("at least two iterations (phase=both, or steps>=2)", lambda p: n_iterations(p) >= 2)
PREFILL_FIRST: Requirement = ("phase=prefill or both", lambda p: p.get("phase", "both") != "decode")
PP1: Requirement = ("pp=1", lambda p: int(p.get("pp", 1)) == 1)
TP_OR_PP: Requirement = ("tp>=2 or pp>=2", lambda p: int(p.get("tp", 1)) >= 2 or int(p.get("pp", 1)) >= 2)
# With pp=1 and several microbatches, the next microbatch's collectives on the shared comm stream
# already order the token broadcast before the step: skipping its fence changes nothing.
PP_OR_MB1: Requirement = ("pp>=2 or mb=1", lambda p: int(p.get("pp", 1)) >= 2 or int(p.get("mb", 1)) == 1)
# The crossing needs the token of microbatch 0 to come back while microbatch mb-1 is still on its
# way to the last stage: at least as many microbatches as stages.
MB_GE_PP: Requirement = ("mb>=pp", lambda p: int(p.get("mb", 1)) >= int(p.get("pp", 1)))

F_TP = (
    Fault("no-wait-allreduce", "rank 0 reads the attention all-reduce's output without waiting for it (layer 0)",
          "dataflow", (at_least("tp", 2),)),
    Fault("no-wait-partial", "rank 0 starts the attention all-reduce before out_proj has written its partial sum",
          "dataflow", (at_least("tp", 2),)),
    Fault("skip-allreduce", "the last TP rank skips the MLP all-reduce of layer 0", "matching",
          (at_least("tp", 2),)),
)
F_SWAP = Fault("swapped-collectives", "the last TP rank issues the token broadcast before the logits all-gather",
               "matching", (at_least("tp", 2), PP1, ITERS2))
F_ROOT = Fault("root-skips-bcast-wait", "rank 0 already holds the token it sampled, so it starts the next step"
               " without waiting for its in-place broadcast, which is still writing that buffer", "race",
               (at_least("tp", 2), PP1, ITERS2))
# oversync=step-sync adds a host sync after every step: the next step's ops are issued after it, so the
# early start the fault makes cannot happen (the variant's extra sync is exactly what the fault removes)
NOT_STEP_SYNC: Requirement = ("oversync other than step-sync (its host sync after every step orders the next step)",
                              lambda p: p.get("oversync", "none") != "step-sync")
F_STEP = Fault("step-early", "a stage-0 rank starts the next decode step before the sampled token has reached it",
               "phase", (TP_OR_PP, PP_OR_MB1, ITERS2, NOT_STEP_SYNC))
MB1: Requirement = ("mb=1", lambda p: int(p.get("mb", 1)) == 1)
# With one rank per stage and DP replicas, the host waits for each microbatch's token gather before it
# issues the next recv, which orders that recv after the last read of the shared buffer: in a single
# iteration nothing is left for the fault to break (a second iteration reuses the buffer unguarded).
SHARED_RECV_VISIBLE: Requirement = (
    "tp>=2, dp=1 or at least two iterations (with tp=1 the host's wait for each DP token gather orders the"
    " next recv)",
    lambda p: int(p.get("tp", 1)) >= 2 or int(p.get("dp", 1)) == 1 or n_iterations(p) >= 2)
PP2: Requirement = ("pp=2", lambda p: int(p.get("pp", 1)) == 2)
DECODE_ONLY: Requirement = ("phase=decode", lambda p: p.get("phase", "both") == "decode")
F_PP = (
    Fault("no-recv-wait", "stage 1 computes on its received activations without waiting for the recv",
          "dataflow", (at_least("pp", 2),)),
    Fault("shared-recv-buffer", "every microbatch receives into one buffer: a recv overwrites activations still"
          " in use", "dataflow", (at_least("pp", 2), at_least("mb", 2), SHARED_RECV_VISIBLE)),
    Fault("no-send-wait", "stage 0 overwrites its send buffer in the next step before the previous send has"
          " finished (with mb>=2 the next microbatch's send on the same communicator already waits for it)",
          "dataflow", (at_least("pp", 2), MB1, ITERS2)),
    Fault("single-stream-p2p", "pipeline sends and recvs are blocking calls on the compute stream, and the last"
          " stage sends each token back as soon as it is sampled: a hang even when kernels of different"
          " communicators run side by side", "deadlock", (at_least("pp", 2), MB_GE_PP, ITERS2)),
    Fault("crossed-comm-order", "the last stage sends each sampled token back at once, before it receives the"
          " next microbatch's activations, while stage 0 receives it after sending them: the two communicators"
          " are launched in opposite orders on the two ends", "deadlock",
          (at_least("pp", 2), MB_GE_PP, ITERS2)),
    Fault("one-comm-two-streams", "the token goes back on the activations' communicator (one per rank pair, as"
          " torch creates) and the last stage receives the next activations before it sends the token: both"
          " ends post a recv, then a send, on one communicator", "deadlock", (PP2, ITERS2)),
    Fault("relies-on-rendezvous", "stage 1 receives every microbatch into one buffer and says it is free by"
          " posting the recv of a credit from stage 0; stage 0 sends the next microbatch once its credit send"
          " returns, which proves nothing when a small send completes before its recv is posted", "dataflow",
          (at_least("pp", 2), at_least("mb", 2), PREFILL_FIRST)),
    Fault("swapped-mb-order", "stage 1 posts the first iteration's recvs in reverse microbatch order (shapes"
          " differ)", "matching", (at_least("pp", 2), at_least("mb", 2), PREFILL_FIRST)),
    Fault("recv-order-swapped", "stage 1 posts the first decode step's recvs in reverse microbatch order; the"
          " shapes agree, so only the values carried by the messages tell", "dataflow",
          (at_least("pp", 2), at_least("mb", 2), DECODE_ONLY)),
)
F_DP = (
    Fault("gather-before-sample", "replica 0 gathers the step's tokens without waiting for its sampler",
          "dataflow", (at_least("dp", 2),)),
    Fault("skip-gather", "the last replica skips the first token gather", "matching", (at_least("dp", 2),)),
    Fault("no-step-wait", "the last replica starts the next step while the previous step's gather still runs",
          "phase", (at_least("dp", 2), ITERS2)),
)
F_KV = (
    Fault("no-append-wait", "rank 0 starts the next iteration without waiting for the KV append of the previous"
          " one", "dataflow", (ITERS2,)),
    Fault("append-before-qkv", "rank 0's cache stream appends K/V before qkv has produced it", "dataflow"),
    Fault("wrong-position", "rank 0 appends the first iteration's K/V one position too far", "dataflow",
          (ITERS2,)),
)
F_CHUNK = Fault("chunk-reorder", "prefill chunks 0 and 1 are issued in swapped order", "dataflow",
                (at_least("chunks", 2),))


# ------------------------------------------------------------------ models
def _phase(default: str = "both") -> Param:
    return Param("phase", default, "prefill, decode (prompt K/V already cached) or both", choices=PHASES)


def _steps(default: int = 2, lo: int = 1) -> Param:
    return Param("steps", default, "decode steps per sequence (ignored when phase=prefill)", lo, 8)


def _prompt(default: int = 4) -> Param:
    return Param("prompt", default, "prompt tokens of sequence 0 (microbatch m has prompt+m)", 1, 64)


def _layers(default: int = 2, hi: int = 8) -> Param:
    return Param("layers", default, "transformer layers", 1, hi)


Builder = Callable[[str, dict[str, Value], str | None], Schedule]


def _make(*, cache_stream: bool = False) -> Builder:
    def builder(name: str, p: dict[str, Value], fault: str | None) -> Schedule:
        phase = str(p.get("phase", "both"))
        if "chunks" in p and int(p["steps"]) == 0:
            phase = "prefill"
        cfg = Cfg(tp=int(p.get("tp", 1)), pp=int(p.get("pp", 1)), dp=int(p.get("dp", 1)), mb=int(p.get("mb", 1)),
                  layers=int(p["layers"]), prompt=int(p["prompt"]), steps=int(p["steps"]), phase=phase,
                  chunks=int(p.get("chunks", 1)), cache_stream=cache_stream, fault=fault,
                  oversync=str(p.get("oversync", "none")))
        desc = f"{name}: generated by syncproof.models" + (f" with fault {fault}" if fault else "")
        return Gen(cfg, ScheduleBuilder(name, description=desc)).build()
    return builder


def _layers_vs_pp(p: dict[str, Value]) -> str | None:
    if int(p["layers"]) < int(p["pp"]):
        return f"layers={p['layers']} must be at least pp={p['pp']} (every stage needs a layer)"
    return None


def _chunks_vs_prompt(p: dict[str, Value]) -> str | None:
    if int(p["chunks"]) > int(p["prompt"]):
        return f"chunks={p['chunks']} cannot exceed prompt={p['prompt']} (every chunk needs a token)"
    return None


def _tp(default: int = 2) -> Param:
    return Param("tp", default, "tensor-parallel ranks per stage", 1, 8)


def _pp(default: int = 2) -> Param:
    return Param("pp", default, "pipeline stages (contiguous layer ranges)", 1, 8)


def _dp(default: int = 2) -> Param:
    return Param("dp", default, "data-parallel replicas", 1, 8)


def _oversync(*variants: str) -> Param:
    return Param("oversync", "none", "none, or an over-synchronized variant whose extra syncs keep every proof"
                 " and are not needed (issue 14: --redundant names them)", choices=("none", *variants))


def _mb(default: int = 2) -> Param:
    return Param("mb", default, "microbatches (sequences) in flight per replica", 1, 8)


MODELS = (
    ModelSpec("tp", "Megatron tensor parallelism: column/row-parallel linears, all-reduce after each, head-sharded"
              " KV cache", (_tp(), _layers(), _phase(), _steps(), _prompt(), _oversync("step-sync")),
              F_TP + (F_SWAP, F_STEP, F_ROOT), _make(), family="dense"),
    ModelSpec("pp", "pipeline parallelism: layer stages, activations by p2p per microbatch, sampled token fed back"
              " to stage 0", (_pp(), _mb(), _layers(4, 16), _phase(), _steps(), _prompt(),
                              _oversync("barrier-before-send")),
              F_PP + (F_STEP,), _make(), _layers_vs_pp, family="dense"),
    ModelSpec("dp", "data parallelism: independent replicas, sampled tokens all-gathered every step",
              (_dp(), _layers(), _phase(), _steps(), _prompt()), F_DP, _make(),
              family="dense"),
    ModelSpec("kv", "KV cache: K/V appended on a cache stream, one position per decode step, synced per step",
              (_tp(2), _layers(), _phase(), _steps(4), _prompt(), _oversync("layer-wait")), F_KV + (F_STEP,),
              _make(cache_stream=True), family="dense"),
    ModelSpec("chunked-prefill", "chunked prefill: chunk c attends to the cached K/V of chunks < c, then decode",
              (Param("chunks", 3, "prefill chunks", 1, 8), _prompt(9), _layers(), _steps(2, 0), _tp(1)),
              (F_KV[0], F_CHUNK, F_KV[2]), _make(cache_stream=True), _chunks_vs_prompt,
              family="dense"),
    ModelSpec("tp-pp", "TP inside every pipeline stage, PP across stages, microbatches in flight",
              (_tp(), _pp(), _mb(), _layers(4, 16), _phase(), _steps(), _prompt()),
              F_TP + F_PP + (F_STEP,), _make(), _layers_vs_pp, family="dense"),
    ModelSpec("tp-pp-dp", "DP replicas of a TP x PP pipeline; tokens gathered across replicas every step",
              (_tp(), _pp(), _dp(), _mb(), _layers(2, 16), _phase(), _steps(), _prompt()),
              F_TP + F_PP + F_DP + (F_STEP,), _make(), _layers_vs_pp, family="dense"),
)
