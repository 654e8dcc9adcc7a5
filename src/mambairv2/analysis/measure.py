"""Measurements: latency, peak memory, MACs (the paper's convention, scan included), achieved
GFLOP/s and the device's sgemm roofline measured in the same run."""
from __future__ import annotations

import resource
import statistics
import time
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional

import torch



Tensor = torch.Tensor


def count_macs(model: torch.nn.Module, x: Tensor) -> Dict[str, float]:
    """MACs of one inference forward of ``x``'s shape, from the one counter
    (:func:`mambairv2.analysis.complexity.count_complexity`): ``total`` as the paper counts
    (comparable with its tables), ``all`` (every arithmetic operation) and ``scan``."""
    from .complexity import count_complexity

    c = count_complexity(model, (x.shape[2], x.shape[3]), batch=x.shape[0])
    return {"total": c.macs_paper, "all": c.macs_all, "scan": c.by_module["scan"].macs_paper}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, warmup: int = 1, repeats: int = 3) -> List[float]:
    """Wall times (s) of ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def sgemm_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: Optional[int] = None) -> float:
    """Achieved GFLOP/s of a large square matmul: the device's practical matmul roofline."""
    n = n or (2048 if device.type == "cpu" else 8192)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = time_call(lambda: torch.mm(a, b), device, warmup=1, repeats=5 if device.type == "cpu" else 20)
    return 2 * n ** 3 / min(times) / 1e9


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA max allocated, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def autocast_for(device: torch.device, dtype: torch.dtype):
    """Mixed-precision context for half dtypes on CUDA (weights stay float32), else a no-op."""
    if dtype in (torch.float16, torch.bfloat16):
        return torch.autocast(device_type=device.type, dtype=dtype)
    return nullcontext()


def median(xs: List[float]) -> float:
    return statistics.median(xs)
