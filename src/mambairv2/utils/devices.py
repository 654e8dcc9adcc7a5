"""Devices and dtypes by name, as the command line and the library accept them."""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional

import torch

from ..errors import MambaIRv2Error

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class DeviceError(MambaIRv2Error, ValueError):
    """A device or dtype name that is unknown or not available on this machine."""


def resolve_device(name: str = "auto", local_rank: Optional[int] = None) -> torch.device:
    """``auto`` → CUDA if available (``cuda:<local_rank>`` when given, as under torchrun), else
    Apple MPS, else CPU; other names are checked (``cuda`` without an index also takes
    ``local_rank``).

    Raises:
        DeviceError: an unknown device or one not available on this machine.
    """
    name = (name or "auto").lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    cuda = "cuda" if local_rank is None else f"cuda:{local_rank}"
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device(cuda)
        return torch.device("mps") if mps_ok else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA GPU is available (this PyTorch build: "
                         f"{torch.__version__}); use --device cpu")
    if device.type == "cuda" and device.index is None and local_rank is not None:
        device = torch.device(cuda)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    if device.type == "mps" and not mps_ok:
        raise DeviceError("--device mps: Apple MPS is not available here; use --device cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {name!r}; use auto, cpu, cuda or mps")
    return device


def resolve_dtype(name: str) -> torch.dtype:
    """``float32``, ``bfloat16`` or ``float16`` → the torch dtype."""
    try:
        return DTYPES[name]
    except KeyError:
        raise DeviceError(f"unknown dtype {name!r}; use {', '.join(DTYPES)}") from None


#: overrides the detection of native CPU bfloat16: ``native`` or ``emulated`` (e.g. to check the
#: refusal on a CPU that has it)
CPU_BFLOAT16_ENV = "MAMBAIRV2_CPU_BFLOAT16"


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def cpu_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 products natively (x86 AVX512-BF16 or AMX-BF16, Arm
    BF16); without them oneDNN emulates bfloat16, slower than float32. ``$MAMBAIRV2_CPU_BFLOAT16``
    (``native`` / ``emulated``) overrides the detection."""
    forced = os.environ.get(CPU_BFLOAT16_ENV, "").strip().lower()
    if forced in ("native", "emulated"):
        return forced == "native"
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})
