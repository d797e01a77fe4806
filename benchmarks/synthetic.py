"""A synthetic TP x PP decode schedule of a chosen size, for timing the checker.

Each rank runs, per decode step and per layer of its stage: QKV on the
compute stream, KV append, attention over the cache, out-projection, an
all-reduce on the comm stream (with events both ways), and MLP with a second
all-reduce.  Stages pass activations by send/recv; the last stage samples and
sends the token back to the first stage.  Correct by construction;
``fault=True`` drops one event wait in the middle of the schedule.
"""

from __future__ import annotations

from syncproof.ir import Schedule, ScheduleBuilder


def tp_pp_decode(tp: int = 2, pp: int = 2, layers: int = 4, steps: int = 4, prompt: int = 16,
                 fault: bool = False) -> Schedule:
    b = ScheduleBuilder(f"synthetic-tp{tp}-pp{pp}-L{layers}-t{steps}")
    ranks = [s * tp + i for s in range(pp) for i in range(tp)]
    per_stage = max(1, layers // pp)
    for s in range(pp):
        b.group(f"tp{s}", [s * tp + i for i in range(tp)])
    b.buffer("x", "step", "layer").buffer("a", "step", "layer").buffer("kv", "layer", "token").buffer("tok", "step")
    b.init(f"kv[token=0:{prompt}]", "kv")
    b.init("tok[step=0]", "tok0")
    fault_at = (steps // 2, per_stage // 2, 0)
    for s in range(pp):
        for i in range(tp):
            r = b.rank(s * tp + i)
            for t in range(steps):
                m = {"phase": "decode", "step": t, "seqs": [0]}
                pos = prompt + t
                first_layer = s * per_stage
                if s == 0:
                    if t > 0:
                        r.recv((pp - 1) * tp + i, writes={f"tok[step={t}]": f"tok{t}"}, channel="tok",
                               stream="compute", **m)
                    r.compute("embed", reads={f"tok[step={t}]": f"tok{t}"},
                              writes={f"x[step={t}, layer={first_layer}]": f"x{t}.{first_layer}"}, **m)
                else:
                    xin0 = f"x[step={t}, layer={first_layer}]"
                    r.recv(ranks[(s - 1) * tp + i], writes={xin0: f"x{t}.{first_layer}"}, channel="act",
                           stream="compute", **m)
                for k in range(per_stage):
                    L = first_layer + k
                    lm = dict(m, layer=L)
                    xin, xout = f"x[step={t}, layer={L}]", f"x[step={t}, layer={L + 1}]"
                    r.compute("qkv_append", reads={xin: f"x{t}.{L}"}, writes={f"kv[layer={L}, token={pos}]": "kv"},
                              **lm)
                    r.compute("attn", reads={f"kv[layer={L}, token=0:{pos + 1}]": "kv", xin: f"x{t}.{L}"},
                              writes={f"a[step={t}, layer={L}]": f"p{t}.{L}"}, **lm)
                    r.record(f"p{t}.{L}", stream="compute", **lm)
                    skip = fault and (t, k, i) == fault_at and s == 0
                    if not skip:
                        r.wait(f"p{t}.{L}", stream="comm", **lm)
                    r.all_reduce(f"tp{s}", stream="comm", reads={f"a[step={t}, layer={L}]": f"p{t}.{L}"},
                                 writes={xout: f"x{t}.{L + 1}"}, **lm)
                    r.record(f"r{t}.{L}", stream="comm", **lm)
                    r.wait(f"r{t}.{L}", stream="compute", **lm)
                last_layer = first_layer + per_stage
                xo = f"x[step={t}, layer={last_layer}]"
                if s < pp - 1:
                    r.send(ranks[(s + 1) * tp + i], reads={xo: f"x{t}.{last_layer}"}, channel="act",
                           stream="compute", **m)
                else:
                    r.compute("sample", reads={xo: f"x{t}.{last_layer}"},
                              writes={f"tok[step={t + 1}]": f"tok{t + 1}"}, sample=True, **m)
                    if t + 1 < steps:
                        r.send(i, reads={f"tok[step={t + 1}]": f"tok{t + 1}"}, channel="tok", stream="compute", **m)
    return b.build()
