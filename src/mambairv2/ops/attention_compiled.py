"""Window attention through ``attention_kernel.c`` (CPU, float32, inference), built on first use.

For the light model's 12-channel heads (16×16 windows) the kernel is about 1.7× faster than
PyTorch's CPU flash attention (whose matrix products waste most of their work on such thin
operands), for the base and large models' 29-channel heads (8×8 windows) about 1.15× (one
thread, CPU time, in the same run), and it writes the heads side by side in the layout the output
projection reads. For the small model's 33-channel heads the two are even, so
``ops.attention.choose`` uses the kernel for heads up to :data:`MAX_HEAD_DIM` channels.
"""
from __future__ import annotations

from typing import Optional

import torch

from .native import F32, I64, INT, PTR, NativeKernel, as_dtype

Tensor = torch.Tensor
MAX_HEAD_DIM = 32


_KERNEL = NativeKernel("attention_kernel.c", "attention kernel", "mambairv2_window_attention_f32",
                       [I64, I64, I64, I64, PTR, I64, PTR, PTR, F32, PTR, I64, INT])


def attention_kernel_available() -> bool:
    """Whether the compiled window-attention kernel is (or can be) built and loaded here."""
    return _KERNEL.available()


def attention_kernel_error() -> Optional[str]:
    """Why the attention kernel is unavailable (None if available or not tried yet)."""
    return _KERNEL.error()


def attention_kernel_native() -> bool:
    """Whether the kernel is loaded and was built for this CPU's vector units (-march=native):
    built without, it is slower than SDPA."""
    return _KERNEL.native()


def window_attention_compiled(qkv: Tensor, heads: int, bias: Tensor, mask: Optional[Tensor],
                              scale: float, out: Optional[Tensor] = None) -> Tensor:
    """``softmax(q·kᵀ·scale + bias + mask)·v`` in every window and head.

    Args:
        qkv: ``(windows·n)×3C`` token rows in window order, each ``[q | k | v]`` with the heads
            side by side (``C = heads·hd``); rows may be strided, channels must be contiguous.
        heads: number of heads.
        bias: ``heads×n×n`` position bias; mask: ``n×n`` (added to every window) or None.
        scale: multiplies q·kᵀ.
        out: optional ``(windows·n)×C`` destination (channels contiguous), e.g. a slice of a
            larger tensor; allocated when None.
    Returns:
        ``(windows·n)×C``: the heads side by side, as the output projection reads them.
    """
    lib = _KERNEL.load()
    if lib is None:
        raise RuntimeError(f"the compiled attention kernel is unavailable: {_KERNEL.error()}")
    tokens, width = qkv.shape
    c = width // 3
    n = bias.shape[-1]
    if width % 3 or c % heads or tuple(bias.shape) != (heads, n, n) or tokens % n:
        raise ValueError(f"qkv {tuple(qkv.shape)} and bias {tuple(bias.shape)} do not match "
                         f"{heads} heads of windows of {n} tokens")
    if mask is not None and tuple(mask.shape) != (n, n):
        raise ValueError(f"mask must be {n}×{n}, got {tuple(mask.shape)}")
    qkv = as_dtype(qkv, torch.float32)  # bfloat16 under autocast: the kernel computes in float32
    if qkv.stride(1) != 1:
        qkv = qkv.contiguous()
    bias = as_dtype(bias, torch.float32).contiguous()
    mask = None if mask is None else as_dtype(mask, torch.float32).contiguous()
    if out is None:
        out = torch.empty(tokens, c)
    elif tuple(out.shape) != (tokens, c) or out.stride(1) != 1 or out.dtype != torch.float32:
        raise ValueError(f"out must be a float32 {tokens}×{c} tensor with contiguous rows")
    rc = lib.mambairv2_window_attention_f32(tokens // n, n, heads, c // heads, qkv.data_ptr(),
                                            qkv.stride(0), bias.data_ptr(),
                                            None if mask is None else mask.data_ptr(), float(scale),
                                            out.data_ptr(), out.stride(0), torch.get_num_threads())
    if rc:
        raise RuntimeError(f"attention kernel failed (code {rc})")
    return out
