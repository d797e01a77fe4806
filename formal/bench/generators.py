"""Synthetic inference schedules of a chosen size, for benchmarks.

``tp_pp_decode`` is TP x PP decode with microbatches in flight: per rank, per
decode step, per microbatch and per layer of the rank's stage: QKV plus KV
append, attention over the cache, an all-reduce on the comm stream with
events both ways.  Stages pass activations by send/recv; the last stage
samples each microbatch's token and sends it back to the first stage.  The
token message is a few bytes, so the generator declares it eager (it fits
NCCL's connection buffer): stage 0 sends microbatch m+1's activation before it
receives microbatch m's token, and the last stage does the opposite, so
blocking tokens would close a cycle once messages are large.
``prefill`` is the same with one prefill pass over a prompt split into
chunks.  Both are correct by construction; ``fault=True`` drops one event
wait in the middle, which must give a dataflow counterexample;
``host_sync=True`` adds a host ``stream.synchronize()`` of the compute stream
at the end of every step on every rank (issue 12's benchmark).
"""

from __future__ import annotations

from typing import Any

from ..gcpause import gc_paused
from ..ir import Schedule, ScheduleBuilder

MIXES = ("decode", "prefill")


def tp_pp_decode(tp: int = 2, pp: int = 2, layers: int = 4, steps: int = 4, prompt: int = 16,
                 mbs: int = 1, fault: bool = False, prefill: bool = False, host_sync: bool = False) -> Schedule:
    # the document is millions of small acyclic objects: the cyclic collector
    # would only walk it again and again as it grows
    with gc_paused():
        return _tp_pp_decode(tp, pp, layers, steps, prompt, mbs, fault, prefill, host_sync)


def _tp_pp_decode(tp: int, pp: int, layers: int, steps: int, prompt: int, mbs: int, fault: bool,
                  prefill: bool, host_sync: bool = False) -> Schedule:
    kind = "prefill" if prefill else "decode"
    b = ScheduleBuilder(f"synthetic-{kind}-tp{tp}-pp{pp}-L{layers}-t{steps}-mb{mbs}")
    per_stage = max(1, layers // pp)
    for s in range(pp):
        b.group(f"tp{s}", [s * tp + i for i in range(tp)])
    b.buffer("x", "mb", "step", "layer").buffer("a", "mb", "step", "layer")
    b.buffer("kv", "mb", "layer", "token").buffer("tok", "mb", "step")
    if not prefill:
        b.init(f"kv[token=0:{prompt}]", "kv")
    b.init("tok[step=0]", "tok0")
    fault_at = (steps // 2, mbs // 2, per_stage // 2)
    for s in range(pp):
        first = s * per_stage
        last = first + per_stage
        group = f"tp{s}"
        # The regions, values, events and metadata of the stage's ops, the same
        # on each of its TP ranks: made once, shared by the ranks' documents.
        rows = []
        for t in range(steps):
            for mb in range(mbs):
                m: dict[str, Any] = {"phase": kind, "mb": mb, "seqs": [mb]}
                if not prefill:
                    m["step"] = t
                toks = (t * prompt, (t + 1) * prompt) if prefill else (prompt + t, prompt + t + 1)
                per_layer = []
                for k in range(per_stage):
                    L = first + k
                    per_layer.append((
                        k, dict(m, layer=L), f"x[mb={mb}, step={t}, layer={L}]", f"x{t}.{L}",
                        f"x[mb={mb}, step={t}, layer={L + 1}]", f"x{t}.{L + 1}",
                        f"a[mb={mb}, step={t}, layer={L}]", f"p{t}.{L}",
                        f"kv[mb={mb}, layer={L}, token={toks[0]}:{toks[1]}]",
                        f"kv[mb={mb}, layer={L}, token=0:{toks[1]}]",
                        f"p{t}.{mb}.{L}", f"r{t}.{mb}.{L}",
                    ))
                rows.append((
                    t, mb, m, f"tok[mb={mb}, step={t}]", f"tok{t}", f"tok{t}.{mb}",
                    f"x[mb={mb}, step={t}, layer={first}]", f"x{t}.{first}",
                    f"x[mb={mb}, step={t}, layer={last}]", f"x{t}.{last}",
                    f"tok[mb={mb}, step={t + 1}]", f"tok{t + 1}", f"smp{t}.{mb}", per_layer,
                ))
        for i in range(tp):
            r = b.rank(s * tp + i)
            for t, mb, m, tok, tok_v, tok_ev, x0, x0_v, xo, xo_v, tok_next, tok_next_v, smp_ev, per_layer in rows:
                if s == 0:
                    if t > 0 and pp > 1:  # the token comes back on its own stream, as engines do
                        r.recv((pp - 1) * tp + i, writes={tok: tok_v}, channel="tok", stream="p2p", p2p="eager",
                               **m)
                        r.record(tok_ev, stream="p2p", **m)
                        r.wait(tok_ev, stream="compute", **m)
                    r.compute("embed", reads={tok: tok_v}, writes={x0: x0_v}, **m)
                else:
                    r.recv((s - 1) * tp + i, writes={x0: x0_v}, channel="act", stream="compute", **m)
                for k, lm, xin, xin_v, xout, xout_v, a, a_v, kv_new, kv_all, p_ev, r_ev in per_layer:
                    r.compute("qkv", reads={xin: xin_v}, writes={kv_new: "kv"}, **lm)
                    r.compute("attn", reads={kv_all: "kv", xin: xin_v}, writes={a: a_v}, **lm)
                    r.record(p_ev, stream="compute", **lm)
                    if not (fault and s == 0 and i == 0 and (t, mb, k) == fault_at):
                        r.wait(p_ev, stream="comm", **lm)
                    r.all_reduce(group, stream="comm", reads={a: a_v}, writes={xout: xout_v}, **lm)
                    r.record(r_ev, stream="comm", **lm)
                    r.wait(r_ev, stream="compute", **lm)
                if host_sync and mb == mbs - 1:  # the host waits for the step's last kernel (e.g. .item())
                    r.sync(target="compute", **m)
                if s < pp - 1:
                    r.send((s + 1) * tp + i, reads={xo: xo_v}, channel="act", stream="compute", **m)
                else:
                    r.compute("sample", reads={xo: xo_v}, writes={tok_next: tok_next_v}, sample=True, **m)
                    if t + 1 < steps and pp > 1:
                        r.record(smp_ev, stream="compute", **m)
                        r.wait(smp_ev, stream="p2p", **m)
                        r.send(i, reads={tok_next: tok_next_v}, channel="tok", stream="p2p", p2p="eager", **m)
    return b.build()


def ops_per_step(tp: int, pp: int, layers: int, mbs: int) -> int:
    return tp * mbs * (7 * layers + 6 * pp)


def schedule_of_size(n_ops: int, mix: str = "decode", fault: bool = False, host_sync: bool = False) -> Schedule:
    """A schedule of about ``n_ops`` ops: TP8 x PP4 x 80 layers x 8 microbatches
    when large (the shape of a real 70B-class deployment), scaled down for
    small sizes; the number of steps makes up the size."""
    if mix not in MIXES:
        from ..errors import UsageError

        raise UsageError(f"unknown benchmark mix {mix!r}; choose from {', '.join(MIXES)}")
    configs = [(8, 4, 80, 8), (8, 4, 40, 4), (4, 4, 16, 4), (4, 2, 8, 2), (2, 2, 4, 2), (2, 2, 2, 1)]
    for tp, pp, layers, mbs in configs:
        per = ops_per_step(tp, pp, layers, mbs)
        if n_ops >= 2 * per or (tp, pp, layers, mbs) == configs[-1]:
            steps = max(2, round(n_ops / per))
            return tp_pp_decode(tp, pp, layers, steps, mbs=mbs, fault=fault, prefill=(mix == "prefill"),
                                host_sync=host_sync)
    raise AssertionError("unreachable")
