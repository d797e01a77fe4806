"""Mixture-of-experts layers with expert parallelism (EP), and DP attention in
front of them.

``ep``: every rank of the expert group serves its own sequence (attention is
data parallel) and hosts one expert.  Each MoE layer: the router picks
experts for the rank's tokens and packs them into a send buffer; an
all-to-all *dispatch* moves every token to its expert's rank; the expert runs
on what arrived; an all-to-all *combine* brings the results back; the rank
merges them (weighted by the routing) into the next layer's input.  Every
hand-off between the compute and comm streams is an event.

``dpattn-ep``: the same, but only the first ``reqs`` ranks have a request.
A rank without one still hosts an expert, so it must run a dummy forward and
join every all-to-all (sending nothing, receiving tokens for its expert),
exactly as DP-attention serving engines do; otherwise the other ranks hang.

Routing is data dependent.  The schedule does not depend on it: an
all-to-all is a collective of the whole group, every rank joins every
instance whatever it sends, the dispatch fills the receive buffer and the
combine fills the return buffer each time, so the ordering constraints and
the buffers' writers are the same for every routing.  ``docs/models.md``
states the argument; the ``ep-routing`` parametric proof checks the buffer
part for symbolic token counts.
"""

from __future__ import annotations

from .common import (
    PHASES,
    Dev,
    Fault,
    Meta,
    ModelSpec,
    Param,
    Schedule,
    ScheduleBuilder,
    Value,
    at_least,
    equals,
    meta,
    span,
)

Iteration = tuple[str, int, int, int | None, str]  # phase, lo, hi, step, tag


def _iterations(phase: str, prompt: int, steps: int) -> list[Iteration]:
    its: list[Iteration] = []
    if phase in ("prefill", "both"):
        its.append(("prefill", 0, prompt, None, "pre"))
    if phase in ("decode", "both"):
        its += [("decode", t, t + 1, t, f"t{t}") for t in range(prompt, prompt + steps)]
    return its


def build_moe(name: str, p: dict[str, Value], fault: str | None) -> Schedule:
    n, layers = int(p["ep"]), int(p["layers"])
    reqs = int(p.get("reqs", n))
    p2p = p.get("a2a", "collective") == "p2p"
    phase, steps, prompt = str(p["phase"]), int(p["steps"]), int(p["prompt"])
    its = _iterations(phase, prompt, steps)
    b = ScheduleBuilder(name, description=f"{name}: MoE with expert parallelism over {n} ranks, {reqs} with"
                        " requests" + (f", fault {fault}" if fault else ""))
    b.buffer("tok", "pos").buffer("x", "pos", "layer").buffer("kv", "layer", "pos")
    for buf in ("q", "h", "route", "logits"):
        b.buffer(buf)
    if p2p:  # one slice per peer: what goes to rank j, what came from rank j
        b.buffer("send", "dst").buffer("recv", "src").buffer("eout", "src").buffer("back", "src")
    else:
        for buf in ("send", "recv", "eout", "back"):
            b.buffer(buf)
    b.group("ep", list(range(n)))
    if phase in ("prefill", "both"):
        b.init(f"tok[pos=0:{prompt}]", "prompt")
    else:
        b.init(f"tok[pos={prompt}]", f"tok({prompt})")
        for layer in range(layers):
            b.init(f"kv[layer={layer}, pos=0:{prompt}]", f"kv{layer}(pre)")
    for r in range(n):
        dev = Dev(b.rank(r))
        idle = r >= reqs
        for k, (ph, lo, hi, step, tag) in enumerate(its):
            if idle:
                if fault == "idle-skips-a2a" and r == reqs and k == 0:
                    continue  # the bug: no request, so this rank skips the forward and its all-to-alls
                Mi = meta(ph)
                for layer in range(layers):
                    M = dict(Mi, layer=layer)
                    w = f"idle {tag}"
                    # Sends nothing, receives the tokens routed to its expert, returns their results.
                    dev.coll("all_to_all", "ep", M, writes={"recv": f"disp{layer}({tag})@r{r}"}, name=w)
                    dev.sync("comm", "compute", "dispatched", M)
                    dev.compute(f"expert({w})", M, reads={"recv": f"disp{layer}({tag})@r{r}"},
                                writes={"eout": f"exp{layer}({tag})@r{r}"})
                    dev.sync("compute", "comm", "expert_done", M)
                    dev.coll("all_to_all", "ep", M, reads={"eout": f"exp{layer}({tag})@r{r}"}, name=w)
                continue
            M0 = meta(ph, step=step, seqs=[r], tokens=(lo, hi))
            dev.open("seq", M0)
            P = f"pos={span(lo, hi)}"
            dev.compute("embed", M0, reads={f"tok[{P}]": "prompt" if ph == "prefill" else f"tok({lo})"},
                        writes={f"x[{P}, layer=0]": f"h0({tag})"})
            for layer in range(layers):
                M = dict(M0, layer=layer)
                at0 = k == 0 and layer == 0 and r == 0
                dev.compute("qkv", M, reads={f"x[{P}, layer={layer}]": f"h{layer}({tag})"},
                            writes={"q": f"q{layer}({tag})", f"kv[layer={layer}, {P}]": f"kv{layer}({tag})"})
                reads = {"q": f"q{layer}({tag})"}
                if phase == "decode":
                    reads[f"kv[layer={layer}, pos=0:{prompt}]"] = f"kv{layer}(pre)"
                for _ph, lo2, hi2, _step, tag2 in its:
                    if lo2 < hi:
                        reads[f"kv[layer={layer}, pos={span(lo2, hi2)}]"] = f"kv{layer}({tag2})"
                dev.compute("attn", M, reads=reads, writes={"h": f"a{layer}({tag})"})
                tokens, expo = f"tokens{layer}({tag})", f"exp{layer}({tag})"
                sendbuf = f"send[dst=0:{n}]" if p2p else "send"
                dev.compute("router", M, reads={"h": f"a{layer}({tag})"},
                            writes={sendbuf: f"{tokens}@r{r}", "route": f"route{layer}({tag})@r{r}"})
                dev.sync("compute", "comm", "routed", M, skip_wait=fault == "no-wait-router" and at0)
                if p2p:
                    # one group call of a send to and a recv from every peer (the no-batch fault: one by one)
                    exchange(dev, n, M, "send", "recv", tokens, grouped=not (fault == "no-batch" and k == 0
                                                                            and layer == 0))
                    disp = {f"recv[src={j}]": f"{tokens}@r{j}" for j in range(n) if j != r}
                    disp[f"send[dst={r}]"] = f"{tokens}@r{r}"  # its own tokens stay where the router put them
                else:
                    dev.coll("all_to_all", "ep", M, reads={"send": f"{tokens}@r{r}"},
                             writes={"recv": f"disp{layer}({tag})@r{r}"}, name="dispatch")
                    disp = {"recv": f"disp{layer}({tag})@r{r}"}
                dev.sync("comm", "compute", "dispatched", M, skip_wait=fault == "no-wait-dispatch" and at0)
                eout = f"eout[src=0:{n}]" if p2p else "eout"
                dev.compute("expert", M, reads=disp, writes={eout: f"{expo}@r{r}"})
                dev.sync("compute", "comm", "expert_done", M)
                if not (fault == "skip-a2a" and k == 0 and layer == 0 and r == reqs - 1):
                    if p2p:
                        exchange(dev, n, M, "eout", "back", expo)
                    else:
                        dev.coll("all_to_all", "ep", M, reads={"eout": f"{expo}@r{r}"},
                                 writes={"back": f"comb{layer}({tag})@r{r}"}, name="combine")
                dev.sync("comm", "compute", "combined", M, skip_wait=fault == "no-wait-combine" and at0)
                if p2p:
                    back = {f"back[src={j}]": f"{expo}@r{j}" for j in range(n) if j != r}
                    back[f"eout[src={r}]"] = f"{expo}@r{r}"
                else:
                    back = {"back": f"comb{layer}({tag})@r{r}"}
                dev.compute("merge", M, reads={**back, "route": f"route{layer}({tag})@r{r}", "h": f"a{layer}({tag})"},
                            writes={f"x[{P}, layer={layer + 1}]": f"h{layer + 1}({tag})"})
            dev.compute("lm_head", M0, reads={f"x[pos={hi - 1}, layer={layers}]": f"h{layers}({tag})"},
                        writes={"logits": f"logits({tag})"})
            dev.compute("sampler", M0, reads={"logits": f"logits({tag})"}, writes={f"tok[pos={hi}]": f"tok({hi})"},
                        sample=True)
            if k + 1 < len(its):
                dev.close("seq", M0)
    return b.build()


def exchange(dev: Dev, n: int, M: Meta, src: str, dst: str, value: str, *, grouped: bool = True) -> None:
    """An all-to-all as ProcessGroupNCCL runs it: a send of ``src[dst=j]`` to
    every peer j and a recv from it into ``dst[src=j]``, in one group call
    (ncclGroupStart/End), so no part waits for another.  ``grouped=False``
    (the no-batch fault) issues every send, then every recv, one by one."""
    r = dev.rank
    peers = [j for j in range(n) if j != r]
    sends = [(j, {f"{src}[{'dst' if src == 'send' else 'src'}={j}]": f"{value}@r{r}"}) for j in peers]
    recvs = [(j, {f"{dst}[src={j}]": f"{value}@r{j}"}) for j in peers]

    def issue() -> None:
        for j, reads in sends:
            dev.send(j, M, stream="comm", channel="0", reads=reads)
        for j, writes in recvs:
            dev.recv(j, M, stream="comm", channel="0", writes=writes)

    if not peers:
        return
    if grouped:
        with dev.rb.group_call():
            issue()
    else:
        issue()


def _ep_valid(p: dict[str, Value]) -> str | None:
    if p.get("a2a") == "p2p" and int(p["ep"]) < 2:
        return "a2a=p2p needs ep>=2 (with one rank there is no peer to send to)"
    return None


def _reqs_valid(p: dict[str, Value]) -> str | None:
    if int(p["reqs"]) > int(p["ep"]):
        return f"reqs={p['reqs']} cannot exceed ep={p['ep']} (one request per rank at most)"
    return None


F_EP = (
    Fault("no-wait-router", "rank 0 dispatches before its router has packed the tokens", "dataflow"),
    Fault("no-wait-dispatch", "rank 0's expert reads its tokens before the dispatch all-to-all ends", "dataflow"),
    Fault("no-wait-combine", "rank 0 merges expert outputs before the combine all-to-all ends", "dataflow"),
    Fault("skip-a2a", "the last rank with a request skips the first combine all-to-all", "matching",
          (at_least("ep", 2),)),
)

_COMMON = (
    Param("layers", 2, "MoE layers", 1, 8),
    Param("phase", "both", "prefill, decode (prompt K/V cached) or both", choices=PHASES),
    Param("steps", 2, "decode steps (ignored when phase=prefill)", 1, 8),
    Param("prompt", 4, "prompt tokens per sequence", 1, 64),
)

MODELS = (
    ModelSpec("ep", "MoE expert parallelism: router, all-to-all dispatch, expert, all-to-all combine, merge; one"
              " sequence per rank", (Param("ep", 4, "expert-parallel ranks", 1, 8),) + _COMMON
              + (Param("a2a", "collective", "each all-to-all as one NCCL collective, or as a group call of a send"
                       " to and a recv from every peer (how ProcessGroupNCCL runs all_to_all)",
                       choices=("collective", "p2p")),),
              F_EP + (Fault("no-batch", "the first dispatch's sends and recvs are issued one by one instead of in"
                            " one group call: every rank sends before it receives", "deadlock",
                            (equals("a2a", "p2p"), at_least("ep", 2))),),
              build_moe, _ep_valid, family="moe"),
    ModelSpec("dpattn-ep", "DP attention + EP MoE: ranks without requests run a dummy forward and join every"
              " all-to-all", (Param("ep", 4, "expert-parallel ranks", 1, 8),
                              Param("reqs", 2, "ranks with a request (the others are idle)", 1, 8)) + _COMMON,
              F_EP + (Fault("idle-skips-a2a", "the first idle rank skips its dummy forward (and all-to-alls) in the"
                            " first iteration", "matching", (("reqs<ep", lambda p: int(p["reqs"]) < int(p["ep"])),)),),
              build_moe, _reqs_valid, family="moe"),
)
