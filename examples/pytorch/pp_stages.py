"""Two-stage pipeline: rank 0 runs the first stage, rank 1 the second.

Stage 0 sends each micro-batch's activation to stage 1 with isend as soon as
it is computed. Stage 1 posts the irecv of the next micro-batch before it
computes the current one, so the transfer of micro-batch m+1 overlaps the
compute of micro-batch m.

Run on GPUs:       torchrun --nproc-per-node 2 examples/pytorch/pp_stages.py [--bug]
Capture and check: syncproof capture examples/pytorch/pp_stages.py --world 2 --check [-- --bug]

--bug: stage 1 reads the received activation before work.wait() (it waits for
all its receives at the end instead).
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function

HIDDEN = 32
MB_SIZE = 4  # tokens per micro-batch
MICROBATCHES = 3


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="two-stage pipeline with isend/irecv per micro-batch")
    p.add_argument("--bug", action="store_true", help="read each received activation before work.wait()")
    return p.parse_args()


class Stage(nn.Module):
    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.fc1 = nn.Linear(HIDDEN, 2 * HIDDEN, device=device)
        self.fc2 = nn.Linear(2 * HIDDEN, HIDDEN, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def first_stage(stage: Stage, inputs: torch.Tensor) -> None:
    sends = []
    for mb in range(MICROBATCHES):
        with record_function(f"mb={mb}"):
            act = stage(inputs[mb])
            sends.append(dist.isend(act, dst=1))
    for work in sends:
        work.wait()


def last_stage(stage: Stage, device: torch.device, bug: bool) -> torch.Tensor:
    def post_recv(mb: int) -> tuple[torch.Tensor, dist.Work]:
        with record_function(f"mb={mb}"):
            buf = torch.empty(MB_SIZE, HIDDEN, device=device)
            return buf, dist.irecv(buf, src=0)

    outputs = []
    late = []
    pending = post_recv(0)
    for mb in range(MICROBATCHES):
        with record_function(f"mb={mb}"):
            act, work = pending
            if mb + 1 < MICROBATCHES:
                pending = post_recv(mb + 1)  # the next transfer overlaps this micro-batch's compute
            if bug:
                late.append(work)  # "we wait for everything at the end"
            else:
                work.wait()
            outputs.append(stage(act))
    for work in late:
        work.wait()
    return torch.stack(outputs)


def setup(rank: int, world: int) -> torch.device:
    torch.cuda.set_device(rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl", rank=rank, world_size=world)
    return torch.device("cuda", rank)


def main(rank: int, world: int) -> torch.Tensor | None:
    args = parse_args()
    if world != 2:
        raise SystemExit("pp_stages.py runs on 2 ranks")
    device = setup(rank, world)
    torch.manual_seed(rank)  # each stage has its own weights
    stage = Stage(device)
    with torch.no_grad():
        if rank == 0:
            first_stage(stage, torch.randn(MICROBATCHES, MB_SIZE, HIDDEN, device=device))
            return None
        return last_stage(stage, device, args.bug).cpu()


if __name__ == "__main__":  # torchrun --nproc-per-node 2 pp_stages.py
    out = main(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))
    if out is not None:
        print(out.sum().item())
    dist.destroy_process_group()
