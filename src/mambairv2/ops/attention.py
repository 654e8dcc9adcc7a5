"""``window_attention``: multi-head softmax attention inside each window, on precomputed q, k, v.

Implementations (chosen by :func:`choose` from ``ops.implementation``):

- ``reference``: the plain formula ``softmax(q·kᵀ·scale + bias + mask)·v``;
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` (flash/efficient kernels);
- ``compiled``: ``attention_kernel.c`` (CPU float32 inference, heads of ≤ 32 channels).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .attention_compiled import (
    MAX_HEAD_DIM,
    attention_kernel_error,
    attention_kernel_native,
    window_attention_compiled,
)
from .dispatch import Choice, Probe, selected

Tensor = torch.Tensor
#: consecutive windows sharing a mask: (number of windows, or None for all the rows; the mask:
#: n×n for every window of the run, nW×n×n for window i using mask[i mod nW], or None)
WindowGroups = Sequence[Tuple[Optional[int], Optional[Tensor]]]


def choose(probe: Probe, head_dim: int) -> Choice:
    """The implementation for heads of ``head_dim`` channels on ``probe``'s device/dtype."""
    sel = selected("window_attention")
    if sel == "reference":
        return Choice("reference", "selected 'reference'")
    if sel == "export":
        return Choice("reference", "selected 'export' (the plain formula: MatMul, Add, Softmax)")
    if sel not in ("auto", "pytorch"):
        return Choice(sel, f"selected {sel!r}")
    if sel == "auto" and probe.cpu_float32_inference:
        if not 1 <= head_dim <= MAX_HEAD_DIM:
            return Choice("sdpa", f"heads of {head_dim} channels (SDPA is as fast above {MAX_HEAD_DIM})")
        if attention_kernel_native():
            return Choice("compiled", f"float32 CPU inference, heads of ≤ {MAX_HEAD_DIM} channels")
        error = attention_kernel_error()
        return Choice("sdpa", f"compiled kernel unavailable: {error}" if error
                      else "compiled kernel not built for this CPU's vector units (slower than SDPA)")
    if probe.device == "cpu" and probe.grad:
        # CPU SDPA with a bias that needs a gradient takes an unfused fallback that guards the
        # softmax against all -inf rows: the plain formula is 1.5x faster
        return Choice("reference", "CPU training with a trainable bias (SDPA's fallback is slower)")
    return Choice("sdpa", "PyTorch SDPA")


def window_attention(qkv: Tensor, heads: int, bias: Tensor, groups: WindowGroups, scale: float) -> Tensor:
    """Attention in every window.

    Args:
        qkv: ``(windows·n)×3C`` token rows in window order, each ``[q | k | v]`` with the heads
            side by side (``C = heads·hd``).
        heads: number of heads.
        bias: ``heads×n×n`` position bias (added to every window).
        groups: runs of consecutive windows with their mask (see :data:`WindowGroups`); the
            compiled kernel takes ``n×n`` masks only.
        scale: multiplies q·kᵀ.
    Returns:
        ``(windows·n)×C``: the heads side by side.
    """
    c = qkv.shape[1] // 3
    hd = c // heads
    n = bias.shape[-1]
    name = choose(Probe.of(qkv, bias), hd).name
    if name == "compiled":
        out, start = qkv.new_empty(qkv.shape[0], c, dtype=torch.float32), 0
        for windows, mask in groups:
            tokens = windows * n
            window_attention_compiled(qkv[start:start + tokens], heads, bias, mask, scale,
                                      out[start:start + tokens])
            start += tokens
        return out
    outs, start = [], 0
    bias = bias.unsqueeze(0).to(qkv.dtype)  # 1×heads×n×n
    for windows, mask in groups:
        rows = qkv if windows is None else qkv[start:start + windows * n]
        # one transpose of (token, head) blocks; q/k/v are views with contiguous rows
        qkv_heads = rows.reshape(-1, n, 3 * heads, hd).transpose(1, 2)
        if qkv.device.type != "cpu":
            qkv_heads = qkv_heads.contiguous()  # GPU kernels want aligned, dense heads
        q, k, v = qkv_heads.unflatten(1, (3, heads)).unbind(1)
        per_window = mask is not None and mask.dim() == 3  # window i: mask[i mod nW]
        full = bias if mask is None else bias + (mask.unsqueeze(1) if per_window else mask).to(qkv.dtype)
        if name == "reference":
            scores = (q * scale) @ k.transpose(-2, -1)
            if per_window:  # images × nW × heads × n × n: the masks broadcast over the images
                scores = (scores.unflatten(0, (-1, mask.shape[0])) + full).flatten(0, 1)
            else:
                scores = scores + full
            x = scores.softmax(-1) @ v
        else:
            if per_window:
                full = full.repeat(q.shape[0] // mask.shape[0], 1, 1, 1)
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=full, scale=scale)
        outs.append(x.transpose(1, 2).reshape(-1, c))
        if windows is not None:
            start += windows * n
    return outs[0] if len(outs) == 1 else torch.cat(outs)
