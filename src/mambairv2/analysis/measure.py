"""Measurements: latency, peak memory, MACs (the paper's convention, scan included), achieved
GFLOP/s and the device's matmul roof measured in the same run (:func:`roofs`)."""
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


def _gemm_size(device: torch.device, n: Optional[int]) -> int:
    return n or (2048 if device.type == "cpu" else 8192)


def sgemm_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: Optional[int] = None) -> float:
    """GFLOP/s of a large square ``torch.mm`` (MKL on CPU, cuBLAS on CUDA), best of several."""
    n = _gemm_size(device, n)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = time_call(lambda: torch.mm(a, b), device, warmup=1, repeats=5 if device.type == "cpu" else 20)
    return 2 * n ** 3 / min(times) / 1e9


def onednn_gflops(dtype: torch.dtype = torch.float32, n: int = 2048) -> Optional[float]:
    """GFLOP/s of the same product through oneDNN's linear (``mkldnn._linear_pointwise``, the
    path ``ops.linear`` takes on CPU), best of 5; None where PyTorch lacks it."""
    from ..ops.fused import onednn_available

    if not onednn_available():
        return None
    a = torch.randn(n, n).to(dtype)
    w = torch.randn(n, n).to(dtype)
    linear = torch.ops.mkldnn._linear_pointwise
    times = time_call(lambda: linear(a, w, None, "none", [], ""), torch.device("cpu"), warmup=1, repeats=5)
    return 2 * n ** 3 / min(times) / 1e9


def roofs(device: torch.device, dtype: torch.dtype = torch.float32) -> Dict[str, Optional[float]]:
    """The machine's matmul roof for ``dtype`` measured now: ``matmul`` (``torch.mm``: MKL on
    CPU, which takes a slow path on some CPUs, e.g. AMD's), ``onednn`` (oneDNN's linear, CPU
    only, else None) and ``roof``, the faster of the two, that fractions are taken against."""
    matmul = sgemm_gflops(device, dtype)
    onednn = onednn_gflops(dtype) if device.type == "cpu" else None
    return {"matmul": matmul, "onednn": onednn, "roof": max(matmul, onednn or 0.0)}


def describe_roofs(r: Dict[str, Optional[float]], dtype: torch.dtype = torch.float32) -> str:
    """One line naming both roofs, e.g. ``float32 roof 410 GFLOP/s (matmul 188, oneDNN 410)``."""
    name = str(dtype).replace("torch.", "")
    parts = f"matmul {r['matmul']:.0f}" + (f", oneDNN {r['onednn']:.0f}" if r.get("onednn") else "")
    return f"{name} roof {r['roof']:.0f} GFLOP/s ({parts})"


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
