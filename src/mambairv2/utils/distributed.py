"""This process's place in a ``torchrun`` launch: the one reading of ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``, and the few collectives of small Python objects that
batch restoration needs (gloo)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, List

#: how long ranks wait for each other's results (restoring a share of the files may take days)
GATHER_TIMEOUT = timedelta(days=7)


@dataclass
class Ranks:
    """This process's place in a ``torchrun`` launch (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``LOCAL_WORLD_SIZE``); one rank when not launched that way."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    _group: bool = False

    @classmethod
    def from_env(cls) -> "Ranks":
        def num(name: str, default: int) -> int:
            try:
                return int(os.environ.get(name, default))
            except ValueError:
                return default

        world = num("WORLD_SIZE", 1)
        if world <= 1:
            return cls()
        local_world = num("LOCAL_WORLD_SIZE", world)
        return cls(num("RANK", 0), world, num("LOCAL_RANK", 0), local_world)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def start(self) -> None:
        """Joins the gloo process group (collectives of small Python objects only)."""
        if not self.distributed or self._group:
            return
        import torch.distributed as dist

        dist.init_process_group("gloo", timeout=GATHER_TIMEOUT)
        self._group = True

    def stop(self) -> None:
        if self._group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._group = False

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self._group:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> List[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self._group:
            return [obj]
        import torch.distributed as dist

        out: List[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def device(self, name: str) -> str:
        """The device for this rank: ``auto`` and ``cuda`` → this rank's own GPU
        (``cuda:LOCAL_RANK``) when there are GPUs (``auto``: else the CPU); others unchanged."""
        if not self.distributed or name not in ("auto", "cuda"):
            return name
        import torch

        if torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return "cpu" if name == "auto" else name

    def share_cpu_threads(self) -> None:
        """Splits the CPU cores among the ranks of this machine. torchrun sets OMP_NUM_THREADS=1
        unless told otherwise; another value is the user's and is kept."""
        if not self.distributed or os.environ.get("OMP_NUM_THREADS", "1") != "1":
            return
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // max(1, self.local_world)))
