"""Async scheduling: the host prepares step t+1 while the GPU runs step t.

Every step the host writes the positions of the batch into one pinned staging
buffer and copies it to the GPU with non_blocking=True; the sampled tokens stay
on the GPU and feed the next step, so the host never waits for the model. The
only thing the host must wait for is the copy: the pinned buffer may be
written again only once the previous step's copy has read it, which an event
recorded after the copy tells.

The model is a small tensor-parallel MLP block (column-parallel up projection,
row-parallel down projection, a synchronous all-reduce).

Run on GPUs:       torchrun --nproc-per-node 2 examples/pytorch/async_inputs.py [--bug]
Capture and check: syncproof capture examples/pytorch/async_inputs.py --world 2 --check [-- --bug]

--bug: the host refills the pinned buffer without copy_done.synchronize(), while
the previous step's non_blocking copy may still be reading it.
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
FFN = 64  # per rank
VOCAB = 64
MAX_POS = 16
BATCH = 4
STEPS = 4


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="async scheduling with a pinned input buffer")
    p.add_argument("--bug", action="store_true", help="refill the pinned buffer before the copy has finished")
    return p.parse_args()


class TinyLM(nn.Module):
    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN, device=device)
        self.pos_embed = nn.Embedding(MAX_POS, HIDDEN, device=device)
        self.up = nn.Linear(HIDDEN, FFN, bias=False, device=device)  # column-parallel
        self.down = nn.Linear(FFN, HIDDEN, bias=False, device=device)  # row-parallel
        self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False, device=device)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.pos_embed(positions)
        mlp = self.down(F.gelu(self.up(h)))
        dist.all_reduce(mlp)  # synchronous: the current stream waits for it
        return self.lm_head(h + mlp)


def setup(rank: int, world: int) -> torch.device:
    torch.cuda.set_device(rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl", rank=rank, world_size=world)
    return torch.device("cuda", rank)


def main(rank: int, world: int) -> torch.Tensor:
    args = parse_args()
    device = setup(rank, world)
    torch.manual_seed(0)
    model = TinyLM(device)

    prompt_lens = torch.tensor([3, 0, 5, 1])  # on the host: the scheduler's view of the batch
    pinned_pos = torch.empty(BATCH, dtype=torch.long, pin_memory=True)  # reused every step
    positions = torch.empty(BATCH, dtype=torch.long, device=device)
    copy_done = torch.cuda.Event()
    tokens = torch.ones(BATCH, dtype=torch.long, device=device)
    sampled = []
    with torch.no_grad():
        for step in range(STEPS):
            # host: prepare this step's inputs while the GPU may still run the previous step
            if step > 0 and not args.bug:
                copy_done.synchronize()  # the previous copy has finished reading pinned_pos
            torch.add(prompt_lens, step, out=pinned_pos)
            positions.copy_(pinned_pos, non_blocking=True)
            copy_done.record()
            # device: the forward pass, enqueued without waiting for anything
            with record_function(f"phase=decode step={step}"):
                logits = model(tokens, positions)
                with record_function("sample"):
                    tokens = logits.argmax(-1)
            sampled.append(tokens)
    return torch.stack(sampled).cpu()  # the only point where the host waits for the model


if __name__ == "__main__":  # torchrun --nproc-per-node 2 async_inputs.py
    print(main(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])).tolist())
    dist.destroy_process_group()
