"""Tensor-parallel decode loop with two overlaps.

Each layer is an attention block split over the ranks (column-parallel QKV,
row-parallel output projection). The batch is decoded as two micro-batches so
that communication hides behind compute:

* the all-reduce of one micro-batch's attention output runs asynchronously
  (async_op=True) while the other micro-batch's GEMMs run, and the next layer
  waits for it (work.wait()) only when it needs the sum;
* the new token's K and V are appended to the KV cache on a side stream.

Run on GPUs:       torchrun --nproc-per-node 2 examples/pytorch/tp_decode.py [--bug]
Capture and check: syncproof capture examples/pytorch/tp_decode.py --world 2 --check [-- --bug]

--bug: the KV-append stream does not wait for the QKV GEMM before it reads the
new K and V (the kv_stream.wait_stream(current_stream) is missing).
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.profiler import record_function

HIDDEN = 32
HEAD_DIM = 16  # per rank: one head of HEAD_DIM on each rank
LAYERS = 2
STEPS = 2
PROMPT = 2  # tokens already in the KV cache of each sequence
MAX_LEN = PROMPT + STEPS
VOCAB = 64
MICROBATCHES = 2  # one sequence each


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="tensor-parallel decode with a KV-append side stream")
    p.add_argument("--bug", action="store_true",
                   help="append K/V on the side stream without waiting for the QKV GEMM")
    return p.parse_args()


class Attention(nn.Module):
    def __init__(self, device: torch.device, bug: bool) -> None:
        super().__init__()
        self.qkv = nn.Linear(HIDDEN, 3 * HEAD_DIM, bias=False, device=device)  # column-parallel
        self.o = nn.Linear(HEAD_DIM, HIDDEN, bias=False, device=device)  # row-parallel: a partial sum
        self.register_buffer("k_cache", torch.zeros(MICROBATCHES, MAX_LEN, HEAD_DIM, device=device))
        self.register_buffer("v_cache", torch.zeros(MICROBATCHES, MAX_LEN, HEAD_DIM, device=device))
        self.bug = bug

    def forward(self, x: torch.Tensor, seq: int, pos: int, kv_stream: torch.cuda.Stream) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        # append this token's K and V on the side stream
        if not self.bug:
            kv_stream.wait_stream(torch.cuda.current_stream())  # K and V are written by the GEMM above
        with torch.cuda.stream(kv_stream):
            self.k_cache[seq, pos].copy_(k[0])
            self.v_cache[seq, pos].copy_(v[0])
        # attention over the whole cache, this token included
        torch.cuda.current_stream().wait_stream(kv_stream)
        keys = self.k_cache[seq, : pos + 1]
        values = self.v_cache[seq, : pos + 1]
        att = torch.softmax(q @ keys.T, dim=-1) @ values  # (the 1/sqrt(d) scale is folded into qkv)
        return self.o(att)  # this rank's partial sum of the output


class Model(nn.Module):
    def __init__(self, device: torch.device, bug: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN, device=device)
        self.layers = nn.ModuleList(Attention(device, bug) for _ in range(LAYERS))
        self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False, device=device)

    def forward(self, tokens: list[torch.Tensor], pos: int, kv_stream: torch.cuda.Stream) -> list[torch.Tensor]:
        h = [self.embed(t) for t in tokens]
        partial: list[torch.Tensor] = [torch.empty(0)] * MICROBATCHES
        work: list[dist.Work | None] = [None] * MICROBATCHES
        for layer in self.layers:
            for mb in range(MICROBATCHES):
                w = work[mb]
                if w is not None:  # the previous layer's all-reduce of this micro-batch
                    w.wait()
                    h[mb] = h[mb] + partial[mb]
                partial[mb] = layer(h[mb], mb, pos, kv_stream)
                # sum the partial outputs while the other micro-batch computes
                work[mb] = dist.all_reduce(partial[mb], async_op=True)
        out = []
        for mb in range(MICROBATCHES):
            w = work[mb]
            assert w is not None
            w.wait()
            logits = self.lm_head(h[mb] + partial[mb])
            with record_function("sample"):
                out.append(logits.argmax(-1))  # greedy
        return out


def setup(rank: int, world: int) -> torch.device:
    torch.cuda.set_device(rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl", rank=rank, world_size=world)
    return torch.device("cuda", rank)


def main(rank: int, world: int) -> torch.Tensor:
    args = parse_args()
    device = setup(rank, world)
    torch.manual_seed(0)  # the same weights on every rank (a real model loads its shard)
    model = Model(device, args.bug)
    kv_stream = torch.cuda.Stream()
    tokens = [torch.tensor([mb + 1], device=device) for mb in range(MICROBATCHES)]
    generated = []
    with torch.no_grad():
        for step in range(STEPS):
            with record_function(f"phase=decode step={step}"):
                tokens = model(tokens, PROMPT + step, kv_stream)
            generated.append(torch.cat(tokens))
    return torch.stack(generated).cpu()  # waits for the last step


if __name__ == "__main__":  # torchrun --nproc-per-node 2 tp_decode.py
    print(main(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])).tolist())
    dist.destroy_process_group()
