"""Measurements: latency, peak memory, MACs (scan included), achieved GFLOP/s and the device's
sgemm roofline measured in the same run."""
from __future__ import annotations

import math
import resource
import statistics
import time
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional

import torch

from .model import MambaIRv2
from .model.assm import SelectiveScan
from .model.attention import WindowAttention
from .ops import implementation

Tensor = torch.Tensor


def scan_macs(batch: int, dim: int, length: int, d_state: int) -> int:
    """MACs of one selective scan as MambaIR's counter (``flops_selective_scan_ref``) gives them:
    exp(ΔA), ΔB·u, the state update and C·h per state, plus the D skip."""
    return 4 * batch * dim * length * d_state + batch * dim * length


def count_macs(model: MambaIRv2, x: Tensor) -> Dict[str, float]:
    """MACs of one forward: linear layers and convolutions counted by ``FlopCounterMode``
    (FLOPs/2), window attention (q·k and attn·v, each window once) and every selective scan
    counted analytically. Returns ``total``, ``dense``, ``attention`` and ``scan`` MACs."""
    from torch.utils.flop_counter import FlopCounterMode

    scans: List[int] = []
    attention: List[int] = []

    def scan_hook(mod: SelectiveScan, inputs, output) -> None:
        xs = inputs[0]
        scans.append(scan_macs(xs.shape[0], mod.d_inner, xs.shape[1], mod.d_state))

    def attention_hook(mod: WindowAttention, inputs, output) -> None:
        tokens, c3 = inputs[0].shape  # tokens of all windows, q|k|v channels
        attention.append(2 * tokens * mod.window_size ** 2 * (c3 // 3))

    handles = [m.register_forward_hook(scan_hook) for m in model.modules() if isinstance(m, SelectiveScan)]
    handles += [m.register_forward_hook(attention_hook) for m in model.modules() if isinstance(m, WindowAttention)]
    try:
        counter = FlopCounterMode(display=False)
        # the counter knows aten's linear/conv ops, not the fused oneDNN ones: count unfused; the
        # chunked scan computes Δ's projection as a matmul the counter sees, and its own work
        # with elementwise ops the counter ignores (the scan is counted by the hook)
        with torch.no_grad(), implementation(linear_act="pytorch", selective_scan="chunked"), counter:
            model(x)
    finally:
        for h in handles:
            h.remove()
    # attention kernels are counted above (the counter knows some backends' kernels, not others)
    sdpa = sum(v for op, v in counter.get_flop_counts().get("Global", {}).items()
               if "scaled_dot_product" in str(op))
    dense = (counter.get_total_flops() - sdpa) / 2
    attn, scan = float(sum(attention)), float(sum(scans))
    return {"total": dense + attn + scan, "dense": dense, "attention": attn, "scan": scan}


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


def geometric_sizes(lo: int, hi: int) -> List[int]:
    """Powers of two from lo to hi inclusive."""
    return [2 ** k for k in range(int(math.log2(lo)), int(math.log2(hi)) + 1)]
