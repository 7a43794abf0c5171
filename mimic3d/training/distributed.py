"""Multi-process training under ``torchrun``: process group, device, and the collectives we need.

Gradients are averaged with one all-reduce of the flattened gradient per optimiser step, as
EG3D does (no DistributedDataParallel: the R1 double-backward and the several phases per step
make manual reduction simpler and identical in effect). NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class ProcessInfo:
    """Where this process sits: rank among ``world`` processes, and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}: expected an integer, got {value!r}") from None


def choose_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA device ``local_rank % device_count()`` when available, else CPU.

    The modulo serves launchers that give each task only its own GPU (SLURM with one GPU per task:
    LOCAL_RANK may be 3 while the task sees one device, cuda:0).
    """
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("run.device: 'cuda' requested but no CUDA device is available")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def setup_processes(device_preference: str = "auto") -> ProcessInfo:
    """Join the ``torchrun`` process group when WORLD_SIZE > 1 (env://), else run alone."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    device = choose_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # device_id binds the NCCL communicator to this GPU at once (no guessing from the rank).
        options: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=TIMEOUT, **options)
    return ProcessInfo(rank=rank, world=world, device=device)


def teardown_processes() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over processes (no-op alone)."""
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor


def broadcast_modules(modules: Iterable[nn.Module | None]) -> None:
    """Copy rank 0's parameters and buffers to every process."""
    if not is_distributed():
        return
    for module in modules:
        if module is None:
            continue
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.numel() > 0:
                dist.broadcast(tensor.data, src=0)


def average_buffers(module: nn.Module, names: Iterable[str]) -> None:
    """Average the named buffers (e.g. the mapping network's ``w_avg``) over processes."""
    if not is_distributed():
        return
    buffers = dict(module.named_buffers())
    world = dist.get_world_size()
    for name in names:
        if name in buffers:
            dist.all_reduce(buffers[name].data)
            buffers[name].data /= world


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every process (e.g. the run folder it chose)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier()
