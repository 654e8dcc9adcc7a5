"""torchrun support: process-group set-up (NCCL on GPU, gloo on CPU) and the few collectives
the trainer needs. Single-process runs go through the same functions (as no-ops)."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.distributed as dist

from ..utils.devices import resolve_device
from ..utils.distributed import Ranks


@dataclass
class DistInfo:
    """Where this process stands: rank, number of ranks, local GPU index and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Joins the process group when launched by torchrun (``WORLD_SIZE`` > 1)."""
    launch = Ranks.from_env()
    world, rank, local_rank = launch.world, launch.rank, launch.local_rank
    dev = resolve_device(device, local_rank)
    if world > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def mean_across(info: DistInfo, value: float) -> float:
    """The mean of a float over all ranks."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def any_across(info: DistInfo, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_objects(info: DistInfo, obj: Any) -> List[Any]:
    """``[obj of rank 0, obj of rank 1, …]`` on every rank."""
    if not info.enabled:
        return [obj]
    out: List[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def weights_checksum(model: torch.nn.Module) -> List[float]:
    """A cheap fingerprint of the weights (float64 sum and sum of squares over all parameters)."""
    with torch.no_grad():
        total = sum(float(p.double().sum()) for p in model.parameters())
        squares = sum(float(p.double().pow(2).sum()) for p in model.parameters())
    return [total, squares]


def average_gradients(info: DistInfo, params) -> None:
    """Replaces each gradient by its mean over the ranks (a module trained without DDP)."""
    if not info.enabled:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(info.world_size)
