"""Mixture of experts, one expert per rank, dispatch and combine on a side stream.

Each rank sorts its tokens by the expert they score highest and sends the same
number to every expert (a capacity-balanced top-1 routing: a full expert's
overflow goes to the next one). The dispatch (pack the
gated tokens by expert, all_to_all_single) and the combine (all_to_all_single
back) run on a communication stream, so the shared expert, which every rank
runs on its own tokens, overlaps the dispatch on the current stream.

Run on GPUs:       torchrun --nproc-per-node 2 examples/pytorch/moe_a2a.py [--bug]
Capture and check: syncproof capture examples/pytorch/moe_a2a.py --world 2 --check [-- --bug]

--bug: the gated tokens are allocated on the current stream and read on the
communication stream, then freed without record_stream: the caching allocator
gives their block to the shared expert's output at once, while the pack on the
communication stream may still be reading it.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.profiler import record_function

HIDDEN = 64
TOKENS = 8  # per rank
LAYERS = 2


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="MoE dispatch/combine with all_to_all_single on a side stream")
    p.add_argument("--bug", action="store_true", help="free a tensor still used by the side stream, no record_stream")
    return p.parse_args()


class MoE(nn.Module):
    def __init__(self, world: int, device: torch.device, bug: bool) -> None:
        super().__init__()
        self.world = world
        self.router = nn.Linear(HIDDEN, world, bias=False, device=device)
        self.expert = nn.Linear(HIDDEN, HIDDEN, bias=False, device=device)  # this rank's expert
        self.shared = nn.Linear(HIDDEN, HIDDEN, bias=False, device=device)  # the shared expert
        self.bug = bug

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The order that groups this rank's tokens by expert (TOKENS / world per expert), and the gates."""
        scores = self.router(x)
        order = scores.argmax(-1).argsort(stable=True)
        gate = torch.sigmoid(scores).amax(-1, keepdim=True)
        return order, gate

    def forward(self, x: torch.Tensor, comm: torch.cuda.Stream) -> torch.Tensor:
        current = torch.cuda.current_stream()
        order, gate = self.route(x)
        gated = x * gate

        # dispatch on the communication stream
        comm.wait_stream(current)
        with torch.cuda.stream(comm):
            send = gated.index_select(0, order)
            recv = torch.empty_like(send)
            dist.all_to_all_single(recv, send)
        if not self.bug:
            gated.record_stream(comm)  # allocated on the current stream, read on comm
        del gated  # free the activations early

        # the shared expert overlaps the dispatch
        shared = self.shared(x)

        current.wait_stream(comm)
        expert_out = self.expert(recv)

        # combine on the communication stream
        comm.wait_stream(current)
        with torch.cuda.stream(comm):
            back = torch.empty_like(expert_out)
            dist.all_to_all_single(back, expert_out)
        current.wait_stream(comm)
        routed = torch.empty_like(back).index_copy_(0, order, back)
        return x + shared + routed


class Model(nn.Module):
    def __init__(self, world: int, device: torch.device, bug: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MoE(world, device, bug) for _ in range(LAYERS))

    def forward(self, x: torch.Tensor, comm: torch.cuda.Stream) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            with record_function(f"layer={i}"):
                x = layer(x, comm)
        return x


def setup(rank: int, world: int) -> torch.device:
    torch.cuda.set_device(rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl", rank=rank, world_size=world)
    return torch.device("cuda", rank)


def main(rank: int, world: int) -> torch.Tensor:
    args = parse_args()
    device = setup(rank, world)
    torch.manual_seed(0)
    model = Model(world, device, args.bug)
    comm = torch.cuda.Stream()  # dispatch and combine run here
    torch.manual_seed(1 + rank)  # each rank has its own tokens
    x = torch.randn(TOKENS, HIDDEN, device=device)
    with torch.no_grad():
        out = model(x, comm)
    return out.cpu()


if __name__ == "__main__":  # torchrun --nproc-per-node 2 moe_a2a.py
    print(main(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])).sum().item())
    dist.destroy_process_group()
