"""Data parallel over processes (``torchrun`` / ``accelerate launch``): this process's rank and device, and the few
collectives the fit loop needs.

Every process samples the same sub-networks (same seed, same sampler state), so the graphs match; each takes its own
rows of the global micro-batch. Gradients are averaged by one all-reduce per step over the parameters that have a
gradient (identical on every process, since the archs are). We do not wrap the model in
``DistributedDataParallel``: with a different sub-network per backward, DDP would need ``find_unused_parameters`` and
``no_sync`` for all but the last backward of a step; one explicit all-reduce after the last backward is the same
arithmetic without the bucket bookkeeping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Procs", "processes"]


@dataclass(frozen=True)
class Procs:
    """This process's place among the training processes (one process: rank 0 of 1, every collective a no-op)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    @torch.no_grad()
    def broadcast(self, params: list[torch.Tensor]) -> None:
        """Rank 0's values of ``params`` on every process."""
        if self.world > 1:
            for p in params:
                dist.broadcast(p.data, src=0)

    def all_reduce_grads(self, params: list[torch.Tensor]) -> None:
        """Average the gradients of ``params`` over the processes (one all-reduce of their flattened concatenation)."""
        if self.world == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= self.world
        for g, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
            g.copy_(synced)

    def decide(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every process (decisions that depend on each process's clock)."""
        return bool(self.agree(int(flag)))

    def agree(self, value: int) -> int:
        """Rank 0's integer ``value`` on every process."""
        if self.world == 1:
            return value
        tensor = torch.tensor([value], device=self.device)
        dist.broadcast(tensor, src=0)
        return int(tensor.item())


def processes() -> Procs:
    """This process's rank, world size and device; joins the process group when ``WORLD_SIZE`` > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if world > 1:
        return Procs(dist.get_rank(), dist.get_world_size(), device)
    return Procs(0, 1, device)
