"""How a compute dtype runs on a device: the one place that decides mixed precision.

On a CPU, ``bfloat16`` is autocast with float32 weights: oneDNN runs the linear layers and
convolutions in bfloat16 (about twice the float32 GEMM roof on CPUs with AVX512-BF16 or AMX),
while the selective scan's recurrence, the attention softmax, LayerNorm and SGN routing stay in
float32 in the compiled kernels, which take the bfloat16 activations in float32 (see
``dispatch.Probe.cpu_float32_inference``): what keeps the error small. Without native bfloat16
instructions oneDNN emulates them, slower than float32, so such CPUs are refused. Elsewhere
(CUDA, MPS, and float16 on a CPU) the weights are converted to the dtype, as before.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager, NamedTuple, Optional, Union

import torch

from ..utils.devices import CPU_BFLOAT16_ENV, DeviceError, cpu_native_bfloat16, resolve_dtype

DtypeArg = Union[None, str, torch.dtype]


class Precision(NamedTuple):
    """The dtype of a model's weights and the autocast dtype of its forward (None: no autocast)."""

    weights: torch.dtype
    autocast: Optional[torch.dtype]


def _dtype(dtype: DtypeArg) -> Optional[torch.dtype]:
    return resolve_dtype(dtype) if isinstance(dtype, str) else dtype


def check_cpu_bfloat16() -> None:
    """Refuses bfloat16 on a CPU without native bfloat16 products.

    Raises:
        DeviceError: the CPU has neither AVX512-BF16, AMX nor Arm BF16.
    """
    if not cpu_native_bfloat16():
        raise DeviceError("bfloat16 on this CPU is emulated (no AVX512-BF16, AMX or Arm BF16 "
                          "instructions) and slower than float32; use --dtype float32 "
                          f"(${CPU_BFLOAT16_ENV}=native forces it)")


def precision_plan(device: Union[str, torch.device], dtype: DtypeArg) -> Precision:
    """How a model runs in ``dtype`` on ``device``: CPU bfloat16 as float32 weights under
    bfloat16 autocast (checked by :func:`check_cpu_bfloat16`), anything else as weights in
    ``dtype`` without autocast."""
    dtype = _dtype(dtype) or torch.float32
    if torch.device(device).type == "cpu" and dtype == torch.bfloat16:
        check_cpu_bfloat16()
        return Precision(torch.float32, torch.bfloat16)
    return Precision(dtype, None)


def compute_precision(device: Union[str, torch.device], dtype: DtypeArg) -> ContextManager:
    """The context a forward in ``dtype`` on ``device`` runs in: autocast for ``bfloat16`` and
    ``float16`` (CPU bfloat16 checked by :func:`check_cpu_bfloat16`), nothing otherwise."""
    dtype = _dtype(dtype)
    kind = torch.device(device).type
    if dtype not in (torch.bfloat16, torch.float16):
        return contextlib.nullcontext()
    if kind == "cpu" and dtype == torch.bfloat16:
        check_cpu_bfloat16()
    return torch.autocast(device_type=kind, dtype=dtype)
