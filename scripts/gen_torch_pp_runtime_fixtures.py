#!/usr/bin/env python3
"""Run torch's pipeline schedules for real (gloo, CPU) and record which recvs
got another send's tensor: the runtime confirmation of the torch-pp checks.

For each scenario below it starts one process per pipeline rank (gloo on
127.0.0.1), builds the schedule class with two Linear stages per rank, runs
one training ``step()`` with ``defer_pp_recv`` on and once off (the
reference), and records, per rank:

* every isend/irecv torch's ``_batch_p2p`` issues, with the action that
  issued it (``PP:<action>`` record_function ranges, as the runtime names
  them) and its step in the rank's list, and a checksum of the tensor sent
  or received;
* the parameters' gradients.

The parent pairs each recv with the send whose tensor it received (same
checksum, from its peer) and writes ``tests/fixtures/torch_pp/runtime.json``:
per scenario, the lowered lists the runtime ran (so a test can check they
are the committed ``*-defer.csv``), the recvs that got another action's
tensor, and the largest gradient difference from the reference.

    .venv/bin/python scripts/gen_torch_pp_runtime_fixtures.py

Needs torch (the `torch` extra).  Not run in CI: ``tests/test_torch_pp.py``
reads the committed output.  Each run has a deadline, after which the parent
kills the workers it started, by PID.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "torch_pp" / "runtime.json"
H = 8  # hidden size: activations and gradients have one shape, so a mix-up raises no error
DEADLINE_S = 240.0

# name -> (schedule class, ranks, microbatches): the lowerings issue 11 names
SCENARIOS: dict[str, tuple[str, int, int]] = {
    "zbvzerobubble-p2-m4-defer": ("ZBVZeroBubble", 2, 4),
    "interleavedzerobubble-p2-m4-defer": ("InterleavedZeroBubble", 2, 4),
    "dualpipev-p4-m8-defer": ("DualPipeV", 4, 8),
    "interleaved1f1b-p2-m4-defer": ("Interleaved1F1B", 2, 4),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker(rank: int, world: int, cls_name: str, n_mb: int, defer: bool, port: int, out: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.distributed.pipelining import PipelineStage
    from torch.distributed.pipelining import schedules as sch

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    cls = sch.get_schedule_class(cls_name)
    n_stages = 2 * world
    v = cls_name in ("ZBVZeroBubble", "DualPipeV")
    mine = [rank, 2 * world - 1 - rank] if v else [rank, rank + world]
    stages = []
    for s in mine:
        torch.manual_seed(100 + s)
        stages.append(PipelineStage(torch.nn.Linear(H, H), s, n_stages, torch.device("cpu")))

    def loss_fn(y: Any, t: Any) -> Any:
        return ((y - t) ** 2).sum()

    schedule = cls(stages, n_mb, loss_fn=loss_fn, defer_pp_recv=defer)
    state = {"step": -1, "action": ""}
    log: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], Any]] = []
    real_rf = sch.record_function

    class _Track:
        def __init__(self, name: str) -> None:
            self.name = name
            self.inner = real_rf(name)

        def __enter__(self) -> Any:
            if self.name.startswith("PP:"):
                state["step"] += 1
                state["action"] = self.name[3:]
            return self.inner.__enter__()

        def __exit__(self, *a: Any) -> Any:
            return self.inner.__exit__(*a)

    real_batch = sch._batch_p2p

    def batch(ops: list[Any], desc: str | None = None) -> list[Any]:
        for p in ops:
            peer = dist.get_global_rank(p.group, p.group_peer) if p.group is not None else p.peer
            rec = {"kind": "send" if p.op is dist.isend else "recv", "peer": int(peer),
                   "action": state["action"], "step": state["step"]}
            if rec["kind"] == "send":
                rec["sum"] = float(p.tensor.detach().double().sum())
            else:
                pending.append((rec, p.tensor))
            log.append(rec)
        return real_batch(ops, desc)

    sch.record_function = _Track
    sch._batch_p2p = batch
    torch.manual_seed(7)
    x = torch.randn(n_mb * 2, H)
    target = torch.randn(n_mb * 2, H)
    has_first = 0 in mine
    has_last = n_stages - 1 in mine
    kwargs: dict[str, Any] = {}
    if has_last:
        kwargs["target"] = target
        kwargs["losses"] = []
    if has_first:
        schedule.step(x, **kwargs)
    else:
        schedule.step(**kwargs)
    for rec, t in pending:
        rec["sum"] = float(t.detach().double().sum())
    grads = {str(s.stage_index): [p.grad.tolist() if p.grad is not None else None
                                  for p in s.submod.parameters()] for s in stages}
    order = {str(r): [str(a) for a in acts if a is not None]
             for r, acts in schedule.pipeline_order_with_comms.items()}
    Path(out).write_text(json.dumps({"log": log, "grads": grads, "order": order}), encoding="utf-8")
    dist.barrier()
    dist.destroy_process_group()


def run(cls_name: str, world: int, n_mb: int, defer: bool) -> list[dict[str, Any]]:
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for r in range(world):
            out = str(Path(tmp) / f"rank{r}.json")
            procs.append(subprocess.Popen([sys.executable, __file__, "--worker", str(r), str(world), cls_name,
                                           str(n_mb), "1" if defer else "0", str(port), out]))
        t0 = time.monotonic()
        try:
            for p in procs:
                left = DEADLINE_S - (time.monotonic() - t0)
                if p.wait(timeout=max(left, 1)) != 0:
                    raise RuntimeError(f"{cls_name} rank worker exited with {p.returncode}")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        return [json.loads((Path(tmp) / f"rank{r}.json").read_text(encoding="utf-8")) for r in range(world)]


def _expected_sender(action: str) -> str:
    """The send a recv is named after: RECV_F of stage s <- SEND_F of s-1; RECV_B of s <- SEND_B of s+1."""
    import re

    m = re.fullmatch(r"(\d+)RECV_([FB])(\d+)", action)
    assert m is not None, action
    s, d, mb = int(m.group(1)), m.group(2), m.group(3)
    return f"{s - 1 if d == 'F' else s + 1}SEND_{d}{mb}"


def scenario(name: str, cls_name: str, world: int, n_mb: int) -> dict[str, Any]:
    got = run(cls_name, world, n_mb, True)
    ref = run(cls_name, world, n_mb, False)
    wrong = []
    for r, res in enumerate(got):
        for rec in res["log"]:
            if rec["kind"] != "recv":
                continue
            senders = [s for s in got[rec["peer"]]["log"] if s["kind"] == "send" and s["peer"] == r
                       and abs(s["sum"] - rec["sum"]) < 1e-9]
            sender = senders[0]["action"] if len(senders) == 1 else None
            if sender != _expected_sender(rec["action"]):
                wrong.append({"rank": r, "recv": f"{rec['action']} step {rec['step']}", "got": sender})
    diff = 0.0
    for res_g, res_r in zip(got, ref, strict=True):
        for stage, params in res_g["grads"].items():
            for a, b in zip(params, res_r["grads"][stage], strict=True):
                flat_a = a if isinstance(a[0], float) else [x for row in a for x in row]
                flat_b = b if isinstance(b[0], float) else [x for row in b for x in row]
                diff = max(diff, max(abs(x - y) for x, y in zip(flat_a, flat_b, strict=True)))
    order = {k: v for res in got for k, v in res["order"].items()}
    return {"class": cls_name, "ranks": world, "microbatches": n_mb, "defer_pp_recv": True, "backend": "gloo",
            "hidden": H, "wrong_recvs": wrong, "max_grad_diff": diff, "order": order}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        r, w, c, m, d, port, out = sys.argv[2:9]
        worker(int(r), int(w), c, int(m), d == "1", int(port), out)
        return 0
    import torch

    doc: dict[str, Any] = {"torch": torch.__version__, "generator": "scripts/gen_torch_pp_runtime_fixtures.py",
                           "scenarios": {}}
    for name, (cls_name, world, n_mb) in SCENARIOS.items():
        t0 = time.monotonic()
        doc["scenarios"][name] = res = scenario(name, cls_name, world, n_mb)
        print(f"{name}: {len(res['wrong_recvs'])} recvs got another send's tensor; max gradient difference"
              f" {res['max_grad_diff']:.3g} ({time.monotonic() - t0:.0f} s)", flush=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
