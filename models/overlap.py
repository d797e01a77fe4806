"""Two-microbatch overlap (``overlap``): compute and communication on separate
streams, one microbatch's collective running while the other computes.

The batch is split into microbatches 0 and 1.  Per layer each goes through
the same stages; the communication stages run on the ``comm`` stream, the
rest on ``compute``.  The buffers that feed and receive the communication are
*shared* by the two microbatches (to save memory), so a microbatch may write
one only after the other microbatch's reader is done with it.

* ``comm=alltoall`` (MoE, two-batch overlap): attn, router (-> ``send``),
  dispatch all-to-all (``send`` -> ``recv``), expert (``recv`` -> ``eout``),
  combine all-to-all (``eout`` -> per-microbatch ``cout``), merge.
* ``comm=allreduce`` (dense TP): attn, out_proj (-> ``part``), all-reduce
  (``part`` -> ``red``), mlp_up, mlp_down (-> ``part``), all-reduce
  (``part`` -> ``red``), residual.

The host issues the stages interleaved (microbatch 1's compute next to
microbatch 0's communication).  The events are derived from the data: before
an op, its stream waits for the last writer of what it reads and for the last
writer and readers of what it writes, when they ran on the other stream and no
earlier wait already covers them (vector clocks over the two streams).
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import Dev, Fault, ModelSpec, Param, Schedule, ScheduleBuilder, Value, meta


@dataclass(frozen=True)
class Stage:
    name: str
    stream: str  # "compute" or "comm"
    kind: str  # "compute", "all_to_all" or "all_reduce"
    reads: tuple[str, ...]  # buffer templates, {m} = microbatch, {l} = layer, {n} = next layer
    writes: tuple[str, ...]


A2A = (
    Stage("attn", "compute", "compute", ("x[mb={m}, layer={l}]",), ("h[mb={m}]",)),
    Stage("router", "compute", "compute", ("h[mb={m}]",), ("send",)),
    Stage("dispatch", "comm", "all_to_all", ("send",), ("recv",)),
    Stage("expert", "compute", "compute", ("recv",), ("eout",)),
    Stage("combine", "comm", "all_to_all", ("eout",), ("cout[mb={m}]",)),
    Stage("merge", "compute", "compute", ("cout[mb={m}]", "h[mb={m}]"), ("x[mb={m}, layer={n}]",)),
)
A2A_ORDER = ((0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (3, 0), (2, 1), (4, 0), (3, 1), (5, 0), (4, 1), (5, 1))

AR = (
    Stage("attn", "compute", "compute", ("x[mb={m}, layer={l}]",), ("o[mb={m}]",)),
    Stage("out_proj", "compute", "compute", ("o[mb={m}]",), ("part",)),
    Stage("attn_allreduce", "comm", "all_reduce", ("part",), ("red",)),
    Stage("mlp_up", "compute", "compute", ("red",), ("u[mb={m}]",)),
    Stage("mlp_down", "compute", "compute", ("u[mb={m}]",), ("part",)),
    Stage("mlp_allreduce", "comm", "all_reduce", ("part",), ("red",)),
    Stage("residual", "compute", "compute", ("red",), ("x[mb={m}, layer={n}]",)),
)
AR_ORDER = ((0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (3, 0), (2, 1), (3, 1), (4, 0), (5, 0), (6, 0), (4, 1),
            (5, 1), (6, 1))

# The fault targets, in layer 0 on rank 0, as (consumer (stage, mb), producer (stage, mb)).
# F is the first communication stage (stage 2), IN its input buffer, OUT its output.
FAULT_EDGES = {
    "no-wait-compute": ((2, 0), (1, 0)),  # F(mb0) does not wait for the writer of IN
    "reuse-early": ((2, 1), (3, 0)),  # F(mb1) overwrites OUT while mb0 still reads it
    "reuse-send-early": ((1, 1), (2, 0)),  # mb1 overwrites IN while F(mb0) still reads it
}
# A reader of a collective's output whose wait no other wait covers: merge of mb1 (combine of mb1)
# for all-to-all, mlp_up of mb1 (first all-reduce of mb1) for all-reduce.
NO_WAIT_COMM = {"alltoall": ((5, 1), (4, 1)), "allreduce": ((3, 1), (2, 1))}


def build_overlap(name: str, p: dict[str, Value], fault: str | None) -> Schedule:
    n, layers, comm, phase = int(p["ranks"]), int(p["layers"]), str(p["comm"]), str(p["phase"])
    stages, order = (A2A, A2A_ORDER) if comm == "alltoall" else (AR, AR_ORDER)
    b = ScheduleBuilder(name, description=f"{name}: two-microbatch overlap of {comm} with compute on {n} ranks,"
                        " shared communication buffers" + (f", fault {fault}" if fault else ""))
    for buf in ("x",):
        b.buffer(buf, "mb", "layer")
    for buf in ("h", "o", "u", "cout"):
        b.buffer(buf, "mb")
    for buf in ("send", "recv", "eout", "part", "red"):
        b.buffer(buf)
    b.group("g", list(range(n)))
    for m in (0, 1):
        b.init(f"x[mb={m}, layer=0]", f"x0(mb{m})")
    step = 0 if phase == "decode" else None
    skip = NO_WAIT_COMM[comm] if fault == "no-wait-comm" else FAULT_EDGES.get(fault or "")
    for r in range(n):
        dev = Dev(b.rank(r))
        writer: dict[str, tuple[str, int]] = {}  # buffer -> (stream, op index) of its last writer
        readers: dict[str, list[tuple[str, int]]] = {}  # buffer -> readers since that write
        value: dict[str, str] = {f"x[mb={m}, layer=0]": f"x0(mb{m})" for m in (0, 1)}
        known = {"compute": {"compute": -1, "comm": -1}, "comm": {"compute": -1, "comm": -1}}
        clock_after: dict[int, dict[str, int]] = {}
        event_after: dict[int, str] = {}
        tag_of: dict[int, tuple[int, int, int]] = {}
        idx = 0
        for layer in range(layers):
            for si, m in order:
                st = stages[si]
                fmt = {"m": m, "l": layer, "n": layer + 1}
                reads = [t.format(**fmt) for t in st.reads]
                writes = [t.format(**fmt) for t in st.writes]
                M = meta(phase, step=step, layer=layer, mb=m, seqs=[m])
                deps: list[tuple[str, int]] = []
                for buf in reads:
                    if buf in writer:
                        deps.append(writer[buf])
                for buf in writes:
                    if buf in writer:
                        deps.append(writer[buf])
                    deps += readers.get(buf, [])
                mine = known[st.stream]
                # Latest producer first: waiting for it often covers the earlier ones.
                for dstream, d in sorted(set(deps), key=lambda x: -x[1]):
                    if dstream == st.stream or mine[dstream] >= d:
                        continue
                    if skip is not None and r == 0 and layer == 0 and ((si, m), tag_of[d][1:]) == skip:
                        continue
                    if d not in event_after:
                        raise AssertionError("producer without an event")  # every op records one, below
                    dev.wait(event_after[d], st.stream, M)
                    for s2, v in clock_after[d].items():
                        mine[s2] = max(mine[s2], v)
                in_vals = {buf: value[buf] for buf in reads if buf in value}
                out_vals = {buf: f"{st.name}{layer}(mb{m})" for buf in writes}
                if st.kind == "compute":
                    dev.compute(st.name, M, stream=st.stream, reads=in_vals, writes=out_vals)
                else:
                    dev.coll(st.kind, "g", M, stream=st.stream, reads=in_vals, writes=out_vals)
                mine[st.stream] = idx
                clock_after[idx] = dict(mine)
                tag_of[idx] = (layer, si, m)
                # Record an event after every op: a later op on the other stream may need it.
                event_after[idx] = dev.record(st.stream, f"{st.name}{layer}.mb{m}", M)
                for buf in reads:
                    readers.setdefault(buf, []).append((st.stream, idx))
                for buf in writes:
                    writer[buf] = (st.stream, idx)
                    readers[buf] = []
                    value[buf] = out_vals[buf]
                idx += 1
    return b.build()


MODELS = (
    ModelSpec("overlap", "two-microbatch overlap: one microbatch's all-to-all/all-reduce runs beside the other's"
              " compute; the communication buffers are shared and reused between microbatches",
              (Param("ranks", 2, "ranks in the communication group", 1, 8),
               Param("layers", 2, "layers", 1, 8),
               Param("comm", "alltoall", "MoE all-to-all or dense all-reduce", choices=("alltoall", "allreduce")),
               Param("phase", "decode", "the phase the forward pass belongs to", choices=("prefill", "decode"))),
              (Fault("no-wait-compute", "rank 0 starts microbatch 0's first collective before its input is written",
                     "dataflow"),
               Fault("no-wait-comm", "rank 0 reads microbatch 1's collective output before the collective ends",
                     "dataflow"),
               Fault("reuse-early", "microbatch 1's collective overwrites the shared output buffer while microbatch"
                     " 0 still reads it", "dataflow"),
               Fault("reuse-send-early", "microbatch 1 overwrites the shared input buffer while microbatch 0's"
                     " collective still reads it", "dataflow")),
              build_overlap, family="overlap"),
)
