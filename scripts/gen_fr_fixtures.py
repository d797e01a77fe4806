#!/usr/bin/env python3
"""Regenerate the Flight Recorder / profiler fixtures in tests/fixtures/fr/.

Each scenario is a real run of a small tensor- x pipeline-parallel inference
loop on CPU with the gloo backend: 2 or 4 processes on 127.0.0.1, the Flight
Recorder switched on (TORCH_FR_BUFFER_SIZE, which torch 2.13 reads for every
backend; TORCH_NCCL_TRACE_BUFFER_SIZE, the older name, is read too) and the
PyTorch profiler recording each rank.  One scenario runs the loop as written,
the others inject one fault on one rank.  When a run hangs, a watchdog thread in
every process dumps the Flight Recorder while the ops are still in flight (as
the NCCL watchdog does on a timeout); gloo's own timeout then unblocks the main
thread, which saves the profiler trace and exits.

    .venv/bin/python scripts/gen_fr_fixtures.py               # every scenario
    .venv/bin/python scripts/gen_fr_fixtures.py --only swap   # one scenario

Needs torch (the `torch` extra, exactly 2.13.0).  Not run in CI: the tests use
the committed output.  Every run has a hard deadline, after which the parent
kills the worker processes it started, by PID.

The model (4 ranks: tp=2 x pp=2; ranks 0,1 are stage 0 and form group tp0,
ranks 2,3 are stage 1 and form tp1; rank r of stage 0 talks to rank r+2):

    prefill   per layer: attn = all_gather + reduce_scatter (sequence
              parallel), mlp = all_gather + reduce_scatter; stage 0 sends its
              activation shard to stage 1; stage 1 samples and sends the token
              back to stage 0
    decode t  per layer: attn = all_reduce, mlp = all_reduce; the activation
              goes forward by send/recv, the sampled token comes back

Every op runs inside record_function ranges (step / layer / block), so the
profiler labels an op like ``decode2/L1/mlp``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "fr"

H = 8  # hidden size
S = 4  # prompt length
HANG_AFTER_S = 10.0  # no communication call returned for this long: dump the Flight Recorder
GLOO_TIMEOUT_S = 30.0  # then gloo raises in the blocked op
DEADLINE_S = 300.0  # hard limit per scenario (slow machines import torch slowly), enforced by the parent

# name -> (world, tp, pp, decode steps, buffer size, fault, ground truth, description)
SCENARIOS: dict[str, dict[str, Any]] = {
    "clean": {
        "world": 4, "tp": 2, "pp": 2, "steps": 3, "buffer": 2000, "fault": None,
        "description": "the loop as written: nothing hangs",
        "truth": None,
    },
    "skip_collective": {
        "world": 4, "tp": 2, "pp": 2, "steps": 3, "buffer": 2000,
        "fault": {"kind": "skip_collective", "rank": 1, "step": "decode2", "layer": 1, "block": "mlp"},
        "description": "rank 1 skips the all_reduce of decode2/L1/mlp on tp0",
        "truth": {"rank": 1, "op": "all_reduce", "group": "tp0", "label": "decode2/L1/mlp"},
    },
    "swap": {
        "world": 4, "tp": 2, "pp": 2, "steps": 3, "buffer": 2000,
        "fault": {"kind": "swap", "rank": 1, "step": "prefill", "layer": 1},
        "description": "rank 1 issues the all_gather of prefill/L1/mlp before the reduce_scatter of prefill/L1/attn",
        "truth": {"rank": 1, "op": "all_gather", "group": "tp0", "label": "prefill/L1/mlp"},
    },
    "size_mismatch": {
        "world": 4, "tp": 2, "pp": 2, "steps": 3, "buffer": 2000,
        "fault": {"kind": "size", "rank": 3, "step": "decode2", "layer": 2, "block": "attn"},
        "description": "rank 3 all-reduces 16 elements instead of 8 in decode2/L2/attn (gloo aborts rank 2,"
                       " whose dump is then missing)",
        "truth": {"rank": 3, "op": "all_reduce", "group": "tp1", "label": "decode2/L2/attn"},
    },
    "dtype_mismatch": {
        "world": 4, "tp": 2, "pp": 2, "steps": 3, "buffer": 2000,
        "fault": {"kind": "dtype", "rank": 1, "step": "decode2", "layer": 0, "block": "mlp"},
        "description": "rank 1 all-reduces its float32 activation reinterpreted as int32 in decode2/L0/mlp"
                       " (same bytes: nothing hangs, the sum is garbage)",
        "truth": {"rank": 1, "op": "all_reduce", "group": "tp0", "label": "decode2/L0/mlp"},
    },
    "skipped_send": {
        "world": 4, "tp": 2, "pp": 2, "steps": 3, "buffer": 2000,
        "fault": {"kind": "skip_send", "rank": 0, "step": "decode2"},
        "description": "rank 0 does not send its decode2 activation to rank 2",
        "truth": {"rank": 0, "op": "send", "peer": 2, "label": "decode2/pp"},
    },
    "skip_collective_small_buffer": {
        "world": 4, "tp": 2, "pp": 2, "steps": 3, "buffer": 10,
        "fault": {"kind": "skip_collective", "rank": 1, "step": "decode2", "layer": 1, "block": "mlp"},
        "description": "as skip_collective, with a 10-entry Flight Recorder ring buffer (the dumps are truncated)",
        "truth": {"rank": 1, "op": "all_reduce", "group": "tp0", "label": "decode2/L1/mlp"},
    },
    "swap_rank0": {
        "world": 4, "tp": 2, "pp": 2, "steps": 3, "buffer": 2000,
        "fault": {"kind": "swap", "rank": 0, "step": "prefill", "layer": 1},
        "description": "as swap, on rank 0 (the rank an analyzer that takes rank 0 as the reference trusts)",
        "truth": {"rank": 0, "op": "all_gather", "group": "tp0", "label": "prefill/L1/mlp"},
    },
    "tp2_first_skip": {
        "world": 2, "tp": 2, "pp": 1, "steps": 1, "buffer": 2000,
        "fault": {"kind": "skip_collective", "rank": 0, "step": "prefill", "layer": 0, "block": "attn",
                  "which": "all_gather"},
        "description": "two ranks, tensor parallel only: rank 0 skips the very first collective (no history"
                       " tells which rank is wrong)",
        "truth": {"rank": 0, "op": "all_gather", "group": "tp0", "label": "prefill/L0/attn"},
    },
}


# ---------------------------------------------------------------- worker side
def _worker(args: argparse.Namespace) -> int:  # pragma: no cover - runs under torch only
    os.environ["TORCH_FR_BUFFER_SIZE"] = str(args.buffer)
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the parent asks for stacks before a kill
    from datetime import timedelta

    import torch
    import torch.distributed as dist
    from torch.profiler import ProfilerActivity, profile, record_function

    cfg = SCENARIOS[args.scenario]
    fault = cfg["fault"]
    rank, world, tp, pp = args.rank, cfg["world"], cfg["tp"], cfg["pp"]
    out = Path(args.out)
    # Warm the profiler up first: its first start imports a lot (seconds on a busy machine), which must not
    # happen while the other ranks already wait in a collective.  The real one starts after the process
    # groups exist, so that the trace header lists them (distributedInfo).
    with profile(activities=[ProfilerActivity.CPU]):
        pass
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=GLOO_TIMEOUT_S))
    stage, _ = divmod(rank, tp)
    groups = [dist.new_group(list(range(s * tp, (s + 1) * tp)), timeout=timedelta(seconds=GLOO_TIMEOUT_S),
                             group_desc=f"tp{s}") for s in range(pp)]
    g = groups[stage]
    prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
    prof.start()
    layers_per_stage = 2

    last_progress = [time.monotonic()]

    def tick() -> None:
        """A communication call returned: the run makes progress."""
        last_progress[0] = time.monotonic()

    def is_fault(kind: str, step: str, layer: int | None = None, block: str | None = None,
                 which: str | None = None) -> bool:
        if fault is None or fault["kind"] != kind or fault["rank"] != rank or fault["step"] != step:
            return False
        if layer is not None and fault.get("layer") != layer:
            return False
        if block is not None and fault.get("block") != block:
            return False
        return which is None or fault.get("which", which) == which

    def all_reduce(h: Any, step: str, layer: int, block: str) -> Any:
        if is_fault("skip_collective", step, layer, block):
            return h
        buf = h
        if is_fault("size", step, layer, block):
            buf = torch.cat([h, h], dim=-1)  # twice the elements
        if is_fault("dtype", step, layer, block):
            buf = h.view(torch.int32)  # same bytes, another dtype
        dist.all_reduce(buf, group=g)  # every variant goes through this one line
        tick()
        return h

    def layer_prefill(h: Any, layer: int) -> Any:
        """Sequence-parallel prefill: each block all-gathers the sequence shards
        and reduce-scatters its output.  The four collectives run from one
        plan, so a swapped plan issues them from the same source lines."""
        step = "prefill"
        plan = [("attn", "all_gather"), ("attn", "reduce_scatter"), ("mlp", "all_gather"), ("mlp", "reduce_scatter")]
        if is_fault("swap", step, layer):
            plan[1], plan[2] = plan[2], plan[1]  # mlp's all_gather before attn's reduce_scatter
        gathered: dict[str, Any] = {}
        with record_function(f"L{layer}"):
            for block, op in plan:
                with record_function(block):
                    if is_fault("skip_collective", step, layer, block, op):
                        continue
                    if op == "all_gather":
                        full = torch.empty(S, H)
                        dist.all_gather_single(full, h.contiguous(), group=g)
                        tick()
                        gathered[block] = torch.tanh(full)
                    else:
                        part = torch.empty(S // tp, H)
                        dist.reduce_scatter_single(part, gathered.get(block, torch.zeros(S, H)) * 0.5, group=g)
                        tick()
                        h = part
            return h

    def layer_decode(h: Any, step: str, layer: int) -> Any:
        with record_function(f"L{layer}"):
            for block in ("attn", "mlp"):
                with record_function(block):
                    h = all_reduce(torch.tanh(h) / tp, step, layer, block)
            return h

    first = stage == 0
    last = stage == pp - 1
    layers = range(stage * layers_per_stage, (stage + 1) * layers_per_stage)

    def run_step(step: str, token: Any) -> Any:
        with record_function(step):
            rows = S // tp if step == "prefill" else 1
            h = torch.full((rows, H), float(token.item() % 7) + 1.0)
            if not first:
                with record_function("pp"):
                    dist.recv(h, rank - tp)
                    tick()
            for layer in layers:
                h = layer_prefill(h, layer) if step == "prefill" else layer_decode(h, step, layer)
            if not last:
                with record_function("pp"):
                    if not is_fault("skip_send", step):
                        dist.send(h.contiguous(), rank + tp)
                        tick()
            tok = torch.zeros(1, dtype=torch.int64)
            if last:
                with record_function("sample"):
                    tok = torch.argmax(h.sum(dim=0)).reshape(1)
            if pp > 1:
                with record_function("token"):
                    if last:
                        dist.send(tok, rank - tp * (pp - 1))
                    elif first:
                        dist.recv(tok, rank + tp * (pp - 1))
                    tick()
            return tok

    state = {"done": False, "dumped": None, "error": None}
    lock = threading.Lock()

    def dump(why: str) -> None:
        with lock:
            if state["dumped"]:
                return
            state["dumped"] = why
            fr = torch._C._distributed_c10d
            (out / "pickle" / f"rank_{rank}").write_bytes(fr._dump_fr_trace())
            (out / "json" / f"rank_{rank}.json").write_bytes(fr._dump_fr_trace_json())

    def watchdog() -> None:
        while not state["done"]:
            if time.monotonic() - last_progress[0] > HANG_AFTER_S:
                dump("hang")
                return
            time.sleep(0.05)

    # Start together (a barrier on the store, which records no communication op), then watch for progress.
    store = dist.distributed_c10d._get_default_store()
    store.add("fixture_ready", 1)
    while int(store.add("fixture_ready", 0)) < world:
        time.sleep(0.05)
    tick()
    threading.Thread(target=watchdog, daemon=True).start()
    try:
        token = torch.zeros(1, dtype=torch.int64)
        for step in ["prefill"] + [f"decode{t}" for t in range(1, cfg["steps"] + 1)]:
            token = run_step(step, token)
    except Exception as exc:  # the blocked op timed out (or failed): record it and save what we have
        state["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    state["done"] = True
    dump("end")
    prof.stop()
    prof.export_chrome_trace(str(out / "profiler" / f"rank_{rank}.trace.json"))
    (out / "status" / f"rank_{rank}.json").write_text(json.dumps(
        {"rank": rank, "dumped": state["dumped"], "error": state["error"]}))
    sys.stdout.flush()
    os._exit(0)


# ---------------------------------------------------------------- parent side
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _slim_trace(path: Path) -> None:
    """Drop the compute events (``aten::*`` cpu ops) from a profiler trace:
    the importer reads only communication calls and record_function ranges,
    and this keeps the fixture small.  Everything else is kept as torch wrote
    it, except the trace's own output path (``traceName``)."""
    doc = json.loads(path.read_text())
    keep = []
    for ev in doc.get("traceEvents", []):
        name = str(ev.get("name", ""))
        if ev.get("ph") == "X" and ev.get("cat") == "cpu_op" and not name.startswith("c10d::"):
            continue
        keep.append(ev)
    doc["traceEvents"] = keep
    doc["traceName"] = path.name  # torch writes the absolute output path here
    path.write_text(json.dumps(doc, indent=None, separators=(",", ":")) + "\n")


def run_scenario(name: str, out_root: Path, python: str) -> dict[str, Any]:
    cfg = SCENARIOS[name]
    out = out_root / name
    if out.exists():
        shutil.rmtree(out)
    for sub in ("pickle", "json", "profiler", "status"):
        (out / sub).mkdir(parents=True)
    port = _free_port()
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1",
               TORCH_FR_BUFFER_SIZE=str(cfg["buffer"]))
    procs = []
    logs = []
    t0 = time.monotonic()
    for rank in range(cfg["world"]):
        cmd = [python, str(Path(__file__).resolve()), "--worker", "--scenario", name, "--rank", str(rank),
               "--port", str(port), "--buffer", str(cfg["buffer"]), "--out", str(out)]
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after the process ends
        logs.append(log)
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log))
    deadline = t0 + DEADLINE_S
    killed = []
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
    for rank, p in enumerate(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGUSR1)  # Python stacks into the log, then kill
            time.sleep(1.0)
            p.kill()  # by PID: only the processes this script started
            p.wait(timeout=10)
            killed.append(rank)
    codes = {rank: p.returncode for rank, p in enumerate(procs)}
    for rank, log in enumerate(logs):
        log.seek(0)
        tail = log.read().decode(errors="replace").strip().splitlines()[-3 if rank not in killed else -40:]
        log.close()
        if codes[rank] != 0:
            print(f"  rank {rank} exited with {codes[rank]}: " + "\n    ".join(tail), flush=True)
    for trace in (out / "profiler").glob("*.json"):
        _slim_trace(trace)
    statuses = {}
    for st in sorted((out / "status").glob("*.json")):
        d = json.loads(st.read_text())
        statuses[d["rank"]] = d
    shutil.rmtree(out / "status")
    truth = {
        "scenario": name,
        "description": cfg["description"],
        "world": cfg["world"], "tp": cfg["tp"], "pp": cfg["pp"], "decode_steps": cfg["steps"],
        "fr_buffer_size": cfg["buffer"],
        "fault": cfg["fault"],
        "culprit": cfg["truth"],
        "run": {
            "seconds": round(time.monotonic() - t0, 1),
            "exit_codes": {str(r): c for r, c in codes.items()},
            "killed_after_deadline": killed,
            "ranks": {str(r): statuses.get(r, {"rank": r, "dumped": None, "error": "process died (no status)"})
                      for r in range(cfg["world"])},
        },
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="run only this scenario (repeatable)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--scenario", help=argparse.SUPPRESS)
    ap.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--buffer", type=int, default=2000, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return _worker(args)
    names = args.only or list(SCENARIOS)
    for name in names:
        truth = _scenario_summary(run_scenario(name, args.out, sys.executable))
        print(truth, flush=True)
    return 0


def _scenario_summary(truth: dict[str, Any]) -> str:
    run = truth["run"]
    dumped = {r: d.get("dumped") for r, d in run["ranks"].items()}
    errors = {r: d.get("error") for r, d in run["ranks"].items() if d.get("error")}
    return (f"{truth['scenario']}: {run['seconds']} s, exit codes {run['exit_codes']}, dumps {dumped}"
            + (f", killed {run['killed_after_deadline']}" if run["killed_after_deadline"] else "")
            + (f", errors {errors}" if errors else ""))


if __name__ == "__main__":
    sys.exit(main())
