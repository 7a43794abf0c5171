"""The few collective operations the metrics need; plain pass-throughs in a single process."""

from __future__ import annotations

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """(rank, number of ranks) of the default process group; (0, 1) when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _collective_device() -> torch.device:
    """NCCL only moves CUDA tensors; every other backend takes CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over all ranks (a new CPU tensor)."""
    _, world = rank_and_world()
    if world == 1:
        return x.clone()
    y = x.to(_collective_device()).clone()
    dist.all_reduce(y)
    return y.cpu()


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows [B_r, ...] of every rank concatenated in rank order (a CPU tensor on every rank).

    Ranks may hold different numbers of rows; they are padded for the exchange and trimmed after.
    """
    _, world = rank_and_world()
    if world == 1:
        return x.cpu()
    device = _collective_device()
    counts = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([x.shape[0]], dtype=torch.int64, device=device))
    counts = [int(c.item()) for c in counts]
    padded = torch.zeros((max(counts), *x.shape[1:]), dtype=x.dtype, device=device)
    padded[: x.shape[0]] = x.to(device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:count].cpu() for part, count in zip(parts, counts)])
