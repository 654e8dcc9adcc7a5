"""LayerNorm over the last dimension through ``layer_norm_kernel.c`` (CPU, float32, inference),
built on first use. About 2.5× faster than PyTorch's kernel at the light model's 48 channels,
1.2–1.8× at the wider models' 96–174."""
from __future__ import annotations

from typing import Optional

import torch

from .native import F32, I64, INT, PTR, NativeKernel, as_dtype

Tensor = torch.Tensor


_KERNEL = NativeKernel("layer_norm_kernel.c", "layer-norm kernel", "mambairv2_layer_norm_f32",
                       [I64, I64, PTR, I64, PTR, PTR, F32, PTR, I64, INT])


def layer_norm_kernel_available() -> bool:
    """Whether the compiled layer-norm kernel is (or can be) built and loaded here."""
    return _KERNEL.available()


def layer_norm_kernel_error() -> Optional[str]:
    """Why the layer-norm kernel is unavailable (None if available or not tried yet)."""
    return _KERNEL.error()


def layer_norm_compiled(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """``F.layer_norm(x, (C,), weight, bias, eps)`` for ``x`` of any shape ``…×C``."""
    lib = _KERNEL.load()
    if lib is None:
        raise RuntimeError(f"the compiled layer-norm kernel is unavailable: {_KERNEL.error()}")
    c = x.shape[-1]
    if tuple(weight.shape) != (c,) or tuple(bias.shape) != (c,):
        raise ValueError(f"weight and bias must have {c} elements, got {tuple(weight.shape)} and {tuple(bias.shape)}")
    rows = as_dtype(x, torch.float32).reshape(-1, c)  # a view where possible (bfloat16 under autocast: a float32 copy)
    if rows.stride(1) != 1:
        rows = rows.contiguous()
    w, b = weight.contiguous(), bias.contiguous()
    y = torch.empty(x.shape)
    rc = lib.mambairv2_layer_norm_f32(rows.shape[0], c, rows.data_ptr(), rows.stride(0), w.data_ptr(),
                                      b.data_ptr(), float(eps), y.data_ptr(), c, torch.get_num_threads())
    if rc:
        raise RuntimeError(f"layer-norm kernel failed (code {rc})")
    return y
