"""The host in the loop: an async-scheduling decode loop (``async-decode``) and
SGLang's overlap scheduler (``overlap-scheduler``), on one or more TP ranks.

Both are written with the host model of DESIGN.md §2b: host work on the
``host`` stream (run synchronously at its place in issue order), host syncs
(``event.synchronize()``), events recorded again every iteration (a wait
binds to the latest record issued before it) and the caching allocator
(``alloc``/``free``/``record_stream``, with the block each allocation reuses).
No pseudo-stream stands in for the host.

``async-decode`` (vLLM V1 ``GPUModelRunner`` with async scheduling).  Each step
``t`` every TP rank

1. refills the reused pinned input buffer ``pin_in`` on the host (positions,
   slot mapping: ``meta(t)``).  vLLM first calls
   ``prepare_inputs_event.synchronize()`` ("Ensure prior step has finished
   with reused CPU tensors.  This is required in the async scheduling case
   because the CPU->GPU transfer happens async"), the event being recorded
   after the previous step's copies were enqueued.  That is the default
   (``inputs=event``); ``inputs=double`` alternates two pinned buffers and
   needs no event (the host's read of step ``t-2``'s token already follows the
   copy that read the buffer it refills);
2. allocates the device input ``x{t}`` on the copy stream ``h2d`` and
   enqueues a ``non_blocking`` H2D copy into it, then records ``copied``; the
   forward on ``compute`` waits for ``copied`` (recorded again every step);
3. runs the forward (and a TP all-reduce on ``compute``) and the sampler,
   which writes the next token on the device (the next step's forward reads it
   there: async scheduling never waits for the host to see a token);
4. the D2H stream ``d2h`` waits for the sampler and copies the token into a
   fresh pinned output tensor ``out[step=t]`` (vLLM: ``.to("cpu",
   non_blocking=True)`` on ``async_output_copy_stream``), then records that
   step's own event ``out{t}``;
5. ``x{t}.record_stream(compute)`` and ``del x{t}``: the allocator hands the
   block to ``x{t+2}`` (the block freed one step before is still held back by
   the recorded use on ``compute``; the one freed two steps before is free,
   because the host has synchronized on step ``t-1``'s output by then);
6. only then synchronizes on step ``t-1``'s output (``out{t-1}``) and reads
   its token: the host's work for step ``t+1`` overlaps step ``t`` on the device.

After the last step the host synchronizes on its output (the device fence of
the step that last writes the KV blocks), returns the finished request's KV
blocks to the pool, and a synchronous KV transfer (a host op, as a transfer
engine's ``transfer_sync``) writes the next request's prefix into them; its
first attention reads them.

Only the device work of a step (forward, all-reduce, sampler) carries the
step's phase metadata: the host preparation and the copies of step ``t+1``
overlap step ``t`` on purpose, which is what async scheduling is.

``overlap-scheduler`` (SGLang's overlap scheduler).  The host schedules batch
``t`` into a fresh pinned tensor; the schedule stream ``schedule`` copies it
into the *shared* device index buffer ``idx`` (request pool indices, output
cache locations); the forward stream ``forward`` waits for the schedule stream
(``forward_stream.wait_stream(schedule_stream)``, the data direction: the
forward reads what the schedule stream wrote), runs the forward, which last
reads ``idx``, records ``idx_free``, samples and copies the token to the
host; the host processes batch ``t-1``'s result (after its copy event)
while batch ``t`` runs.  Batch ``t+1``'s copy into ``idx`` must wait for
``idx_free`` of batch ``t``: one event record/wait pair, the schedule stream
waiting for the forward stream (``wait=one-way``, the default).
``wait=oversync`` adds the second direction the SGLang fix added with it
(another ``forward_stream.wait_stream(schedule_stream)`` before batch ``t+1``'s
copy), which the data direction already implies: it is proved too, and only
costs throughput (issue 14's redundant-sync pass should name it).
"""

from __future__ import annotations

from .common import Dev, Fault, ModelSpec, Param, RankBuilder, Schedule, ScheduleBuilder, Value, equals, meta, span

HOST = "host"


def _kv_reads(prompt: int, t: int) -> dict[str, str]:
    """What step ``t``'s forward reads of the KV cache: the prompt and the
    K/V appended by the steps before it (its own it writes)."""
    reads = {f"kv[pos={span(0, prompt)}]": "kv(prompt)"}
    for u in range(t):
        reads[f"kv[pos={prompt + u}]"] = f"kv(step {u})"
    return reads


def _forward(dev: Dev, t: int, tp: int, prompt: int, stream: str, x: dict[str, str], tag: str = "") -> None:
    """One decode step's device work on ``stream``: the forward (reads the
    inputs ``x``, the token and the KV cache, appends this step's K/V), the TP
    all-reduce, the sampler (the next token, on the device)."""
    M = meta("decode", step=t)
    reads = dict(x)
    reads[f"tok[step={t}]"] = f"tok({t})"
    reads.update(_kv_reads(prompt, t))
    writes = {f"kv[pos={prompt + t}]": f"kv(step {t})"}
    if tp > 1:
        writes["part"] = f"partial({t})"
        dev.compute("forward" + tag, M, stream=stream, reads=reads, writes=writes)
        dev.coll("all_reduce", "tp", M, stream=stream, reads={"part": f"partial({t})"},
                 writes={"hid": f"hidden({t})"})
    else:
        writes["hid"] = f"hidden({t})"
        dev.compute("forward" + tag, M, stream=stream, reads=reads, writes=writes)
    dev.compute("sampler", M, stream=stream, reads={"hid": f"hidden({t})"},
                writes={f"tok[step={t + 1}]": f"tok({t + 1})"}, sample=True)


def _buffers(b: ScheduleBuilder, tp: int, steps: int, prompt: int) -> None:
    b.buffer("kv", "pos").buffer("tok", "step").buffer("out", "step").buffer("hid")
    if tp > 1:
        b.buffer("part")
        b.group("tp", list(range(tp)))
    b.init(f"kv[pos={span(0, prompt)}]", "kv(prompt)")
    b.init("tok[step=0]", "tok(0)")


# ------------------------------------------------------------------ async-decode
def build_async_decode(name: str, p: dict[str, Value], fault: str | None) -> Schedule:
    tp, steps, inputs = int(p["tp"]), int(p["steps"]), str(p["inputs"])
    prompt = 4
    b = ScheduleBuilder(name, description=f"{name}: async-scheduling decode loop on {tp} TP rank(s), {steps} steps,"
                        f" pinned inputs ({'one buffer and an event' if inputs == 'event' else 'two buffers'}),"
                        " H2D and D2H copy streams, caching allocator" + (f", fault {fault}" if fault else ""))
    _buffers(b, tp, steps, prompt)
    b.buffer("pin_in", "slot")
    for t in range(steps):
        b.buffer(f"x{t}")
    for r in range(tp):
        rb = b.rank(r)
        dev = Dev(rb)
        for t in range(steps):
            slot = t % 2 if inputs == "double" else 0
            pin = f"pin_in[slot={slot}]"
            stale = fault == "stale-event" and t > 0  # step 0 (the warm-up) is issued in order
            if stale:
                # the wait is issued before this step's record: it binds to last step's
                rb.wait("copied", stream="compute")
            # 1. refill the pinned input buffer
            if inputs == "event" and t > 0 and fault != "refill-before-copy":
                rb.sync(event="prep_inputs")  # prepare_inputs_event.synchronize()
            rb.compute("prepare_inputs", stream=HOST, writes={pin: f"meta({t})"})
            # 2. the device input on the copy stream, a non_blocking H2D copy
            if fault == "no-record-stream":
                reuses = f"x{t - 1}" if t >= 1 else None  # the block freed last step, at once
            else:
                reuses = f"x{t - 2}" if t >= 2 else None  # the last step's block is held by record_stream
            rb.alloc(f"x{t}", "h2d", reuses=reuses)
            rb.compute("h2d", stream="h2d", reads={pin: f"meta({t})"}, writes={f"x{t}": f"meta({t})"})
            if inputs == "event":
                rb.record("prep_inputs", stream="h2d")  # prepare_inputs_event.record()
            rb.record("copied", stream="h2d")
            if not stale:
                rb.wait("copied", stream="compute")
            # 3. forward, all-reduce, sampler
            _forward(dev, t, tp, prompt, "compute", {f"x{t}": f"meta({t})"})
            # 4. the sampled token to a fresh pinned output tensor on the D2H stream
            rb.record("sampled", stream="compute")
            rb.wait("sampled", stream="d2h")
            rb.compute("d2h", stream="d2h", reads={f"tok[step={t + 1}]": f"tok({t + 1})"},
                       writes={f"out[step={t}]": f"tok({t + 1})"})
            rb.record(f"out{t}", stream="d2h")
            # 5. the device input is dropped; its block goes back to the copy stream's pool
            if fault != "no-record-stream":
                rb.record_stream(f"x{t}", "compute")
            rb.free(f"x{t}")
            # 6. the previous step's token, read after its copy event
            if t > 0:
                _read_output(rb, t - 1, fault)
        # the request is finished: its KV blocks go back to the pool, and the next
        # request's prefix arrives into them, after the last step's device fence
        if fault == "kv-freed-early":
            _reuse_kv(rb, prompt, steps)
            _read_output(rb, steps - 1, fault)
        else:
            _read_output(rb, steps - 1, fault)
            _reuse_kv(rb, prompt, steps)
    return b.build()


def _read_output(rb: RankBuilder, t: int, fault: str | None) -> None:
    if fault == "read-before-sync":
        rb.compute("read_token", stream=HOST, reads={f"out[step={t}]": f"tok({t + 1})"})
        rb.sync(event=f"out{t}")  # too late
    else:
        rb.sync(event=f"out{t}")  # the output event's synchronize()
        rb.compute("read_token", stream=HOST, reads={f"out[step={t}]": f"tok({t + 1})"})


def _reuse_kv(rb: RankBuilder, prompt: int, steps: int) -> None:
    whole = f"kv[pos={span(0, prompt + steps)}]"
    rb.compute("free_kv_blocks", stream=HOST)
    rb.compute("receive_kv", stream=HOST, writes={whole: "kv(next request)"})
    rb.compute("attn_next", stream="compute", reads={whole: "kv(next request)"})


# ------------------------------------------------------------------ overlap-scheduler
def build_overlap_scheduler(name: str, p: dict[str, Value], fault: str | None) -> Schedule:
    tp, steps, wait = int(p["tp"]), int(p["steps"]), str(p["wait"])
    prompt = 4
    b = ScheduleBuilder(name, description=f"{name}: SGLang overlap scheduler on {tp} TP rank(s), {steps} batches:"
                        " the schedule stream copies the next batch into a shared index buffer while the forward"
                        f" stream runs the current one ({wait})" + (f", fault {fault}" if fault else ""))
    _buffers(b, tp, steps, prompt)
    b.buffer("pin_idx", "step").buffer("idx")
    for r in range(tp):
        rb = b.rank(r)
        dev = Dev(rb)
        for t in range(steps):
            rb.compute("schedule_batch", stream=HOST, writes={f"pin_idx[step={t}]": f"idx({t})"})
            if t > 0 and fault != "no-wait-stream":
                rb.wait("idx_free", stream="schedule")  # schedule_stream waits for the last read of idx
            if t > 0 and wait == "oversync":
                # the other direction, added with it: implied by the batch_ready wait already there
                rb.record("sched_state", stream="schedule")
                rb.wait("sched_state", stream="forward")
            rb.compute("prepare_batch", stream="schedule", reads={f"pin_idx[step={t}]": f"idx({t})"},
                       writes={"idx": f"idx({t})"})
            rb.record("batch_ready", stream="schedule")
            rb.wait("batch_ready", stream="forward")  # forward_stream.wait_stream(schedule_stream)
            _forward_overlap(dev, rb, t, tp, prompt)
            rb.compute("copy_to_cpu", stream="forward", reads={f"tok[step={t + 1}]": f"tok({t + 1})"},
                       writes={f"out[step={t}]": f"tok({t + 1})"})
            rb.record(f"copy_done{t}", stream="forward")
            if t > 0:
                rb.sync(event=f"copy_done{t - 1}")  # process_batch_result of the previous batch
                rb.compute("process_result", stream=HOST, reads={f"out[step={t - 1}]": f"tok({t})"})
        rb.sync(event=f"copy_done{steps - 1}")
        rb.compute("process_result", stream=HOST, reads={f"out[step={steps - 1}]": f"tok({steps})"})
    return b.build()


def _forward_overlap(dev: Dev, rb: RankBuilder, t: int, tp: int, prompt: int) -> None:
    """The forward reads the index buffer in its first kernel; the event after
    it frees the buffer for the next batch's copy."""
    M = meta("decode", step=t)
    dev.compute("resolve_indices", M, stream="forward", reads={"idx": f"idx({t})"},
                writes={"hid": f"positions({t})"})
    rb.record("idx_free", stream="forward")
    _forward(dev, t, tp, prompt, "forward", {"hid": f"positions({t})"})


# ------------------------------------------------------------------ specs
MODELS = (
    ModelSpec("async-decode", "async-scheduling decode loop (vLLM V1): the host refills a reused pinned input"
              " buffer and reads the previous step's token while the device runs the current step; H2D and D2H"
              " copy streams, events recorded every step, device inputs recycled by the caching allocator",
              (Param("tp", 2, "TP ranks, each running the same loop", 1, 8),
               Param("steps", 3, "decode steps", 1, 16),
               Param("inputs", "event", "pinned inputs: one buffer guarded by an event (vLLM), or two alternating",
                     choices=("event", "double"))),
              (Fault("refill-before-copy", "the host refills the pinned input buffer without synchronizing on the"
                     " event of the previous step's H2D copy, which may still be reading it", "dataflow",
                     (equals("inputs", "event"), ("steps>=2", lambda q: int(q["steps"]) >= 2))),
               Fault("read-before-sync", "the host reads a step's copied-back token before the copy event's"
                     " synchronize()", "dataflow"),
               Fault("kv-freed-early", "the host returns the finished request's KV blocks to the pool and the next"
                     " request's KV is received into them before the device fence of the last step, which still"
                     " reads and writes them", "dataflow"),
               Fault("no-record-stream", "the device input, allocated on the copy stream and read on the compute"
                     " stream, is freed without record_stream(compute): the next step's allocation on the copy"
                     " stream gets its block while the forward may still read it", "race",
                     (("steps>=2", lambda q: int(q["steps"]) >= 2),)),
               Fault("stale-event", "the compute stream's wait on the re-recorded copy event is issued before this"
                     " step's record: it binds to the previous step's copy", "dataflow",
                     (("steps>=2", lambda q: int(q["steps"]) >= 2),))),
              build_async_decode, family="host", phases=("decode",)),
    ModelSpec("overlap-scheduler", "SGLang overlap scheduler: a schedule stream copies the next batch into a shared"
              " index buffer while the forward stream runs the current batch; one record/wait pair makes the"
              " schedule stream wait for the forward's last read of the buffer",
              (Param("tp", 2, "TP ranks, each running the same loop", 1, 8),
               Param("steps", 3, "batches (decode steps)", 1, 16),
               Param("wait", "one-way", "the schedule stream waits for the forward (one-way), or the fix's extra"
                     " forward-waits-schedule direction too (oversync: redundant, costs throughput)",
                     choices=("one-way", "oversync"))),
              (Fault("no-wait-stream", "the schedule stream copies the next batch into the index buffer without"
                     " waiting for the forward that still reads it", "race",
                     (("steps>=2", lambda q: int(q["steps"]) >= 2),)),),
              build_overlap_scheduler, family="host", phases=("decode",)),
)
