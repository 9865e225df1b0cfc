"""DistributedDataParallel plumbing for ``torchrun`` (NCCL on GPU, gloo on CPU); a no-op for a
single process."""
from __future__ import annotations

import torch
import torch.distributed as dist

from ..inference.sharded import world


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group when launched by torchrun; returns (rank, world size)."""
    rank, size = world()
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, size


def all_sum(t: torch.Tensor, size: int) -> torch.Tensor:
    """Sum ``t`` over all ranks in place."""
    if size > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(size: int) -> None:
    """Wait for every rank."""
    if size > 1:
        dist.barrier()
