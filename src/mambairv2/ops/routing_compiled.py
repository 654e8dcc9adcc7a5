"""Inference routing of the ASSM through ``routing_kernel.c`` (CPU, float32), built on first use:
argmax of the routing logits, the stable sort of the tokens by group and its inverse in one call
(PyTorch needs a max, a general sort and a scatter: about 1.4 ms per layer of the light model at
128² on a 2-core Xeon, the kernel about 0.36 ms)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .native import I64, INT, PTR, NativeKernel, as_dtype

Tensor = torch.Tensor


_KERNEL = NativeKernel("routing_kernel.c", "routing kernel", "mambairv2_sgn_route_f32",
                       [I64, I64, I64, PTR, I64, PTR, PTR, PTR, INT])


def routing_kernel_available() -> bool:
    """Whether the compiled routing kernel is (or can be) built and loaded here."""
    return _KERNEL.available()


def routing_kernel_error() -> Optional[str]:
    """Why the routing kernel is unavailable (None if available or not tried yet)."""
    return _KERNEL.error()


def sgn_route_compiled(logits: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """``logits``: ``B×L×T`` → ``(groups, order, inverse)``, each ``B×L`` int64: the first argmax
    per token, the stable sort of the tokens by group, and its inverse permutation."""
    lib = _KERNEL.load()
    if lib is None:
        raise RuntimeError(f"the compiled routing kernel is unavailable: {_KERNEL.error()}")
    if logits.dim() != 3 or logits.shape[-1] < 1:
        raise ValueError(f"logits must be B×L×T with T >= 1, got {tuple(logits.shape)}")
    b, length, ntok = logits.shape
    flat = logits.reshape(b * length, ntok)
    if flat.stride(1) != 1:
        flat = flat.contiguous()
    flat = as_dtype(flat, torch.float32)
    groups, order, inverse = (torch.empty(b, length, dtype=torch.int64) for _ in range(3))
    rc = lib.mambairv2_sgn_route_f32(b, length, ntok, flat.data_ptr(), flat.stride(0),
                                     groups.data_ptr(), order.data_ptr(), inverse.data_ptr(),
                                     torch.get_num_threads())
    if rc:
        raise RuntimeError(f"routing kernel failed (code {rc})")
    return groups, order, inverse
