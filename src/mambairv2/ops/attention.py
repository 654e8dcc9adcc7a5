"""``window_attention``: multi-head softmax attention inside each window, on precomputed q, k, v.

Implementations (chosen by :func:`choose` from ``ops.implementation``):

- ``reference``: the plain formula ``softmax(q·kᵀ·scale + bias + mask)·v``;
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` (flash/efficient kernels);
- ``compiled``: ``attention_kernel.c`` (CPU float32 inference, heads of ≤ 32 channels);
- ``export``: the plain formula computed over a fixed number of parts of the windows, one
  after another (what ``torch.onnx.export`` records; see :func:`_attention_in_parts`).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.onnx.operators import shape_as_tensor

from .attention_compiled import (
    MAX_HEAD_DIM,
    attention_kernel_error,
    attention_kernel_native,
    window_attention_compiled,
)
from .dispatch import Choice, Probe, selected

Tensor = torch.Tensor
#: Parts of the windows the ``export`` formulation computes one after another. onnxruntime runs
#: each node over its whole input, so in one part the scores (windows × heads × n × n) would
#: pass through memory between the product, the bias, the softmax and the product with v; a
#: part's scores stay in cache (light x4 at 128²: 64 windows, 2 per part; at 1 thread one block's
#: attention alone 1.7x faster than in one part, the model's attention nodes 1.4x in its
#: profile). A fixed count, so the graph serves every size.
EXPORT_PARTS = 32
#: consecutive windows sharing a mask: (number of windows, or None for all the rows; the mask:
#: n×n for every window of the run, nW×n×n for window i using mask[i mod nW], or None)
WindowGroups = Sequence[Tuple[Optional[int], Optional[Tensor]]]


def choose(probe: Probe, head_dim: int) -> Choice:
    """The implementation for heads of ``head_dim`` channels on ``probe``'s device/dtype."""
    sel = selected("window_attention")
    if sel == "reference":
        return Choice("reference", "selected 'reference'")
    if sel == "export":
        return Choice("export", "selected 'export' (the plain formula in parts: MatMul, Add, Softmax)")
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
    if name == "export":
        return _window_attention_export(qkv, heads, bias, groups, scale)
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


def _window_attention_export(qkv: Tensor, heads: int, bias: Tensor, groups: WindowGroups,
                             scale: float) -> Tensor:
    """:func:`window_attention` by :func:`_attention_in_parts` (what ``torch.onnx.export`` records)."""
    c = qkv.shape[1] // 3
    n = bias.shape[-1]
    bias = bias.unsqueeze(0).to(qkv.dtype)  # 1×heads×n×n
    outs, start = [], 0
    for windows, mask in groups:
        rows = qkv if windows is None else qkv[start:start + windows * n]
        q, k, v = rows.reshape(-1, n, 3 * heads, c // heads).transpose(1, 2).unflatten(1, (3, heads)).unbind(1)
        x = _attention_in_parts(q, k, v, bias, mask, scale, EXPORT_PARTS, shape_as_tensor(rows)[0] // n)
        outs.append(x.transpose(1, 2).reshape(-1, c))
        if windows is not None:
            start += windows * n
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def _attention_in_parts(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, mask: Optional[Tensor],
                        scale: float, parts: int, windows: Tensor) -> Tensor:
    """``softmax(q·kᵀ·scale + bias + mask)·v`` over ``parts`` consecutive runs of windows (the
    last ones empty when there are fewer windows than parts). ``q, k, v``: ``W×heads×n×hd``;
    ``bias``: ``1×heads×n×n``; ``mask``: ``n×n``, ``nW×n×n`` (window i: ``mask[i mod nW]``) or None;
    ``windows``: W as a 0-d tensor read from the input rows (sizes of q, k, v may be traced as
    constants). Runs are gathered by indices computed from it, so a traced graph serves every size."""
    per_window = mask is not None and mask.dim() == 3
    if per_window:  # images × nW × …: the runs cut the windows of every image alike
        nw = mask.shape[0]
        q, k, v = (t.unflatten(0, (-1, nw)) for t in (q, k, v))
        windows = shape_as_tensor(mask)[0]
        mask = mask.unsqueeze(1).to(q.dtype)  # nW×1×n×n
    elif mask is not None:
        mask = mask.to(q.dtype)
    axis = 1 if per_window else 0
    outs = []
    for run in _runs(windows, parts):
        qi, ki, vi = (t.index_select(axis, run) for t in (q, k, v))
        scores = (qi * scale) @ ki.transpose(-2, -1) + bias
        if mask is not None:
            scores = scores + (mask.index_select(0, run) if per_window else mask)
        outs.append(scores.softmax(-1) @ vi)
    out = torch.cat(outs, axis)
    return out.flatten(0, 1) if per_window else out


def _runs(windows: Tensor, parts: int) -> List[Tensor]:
    """Indices of ``parts`` consecutive runs covering ``0 … windows−1`` (the last ones empty if
    need be). ``windows`` is a 0-d tensor: a tracer records the arithmetic (a Python int read
    from a size would be traced as a constant)."""
    step = (windows + parts - 1) // parts
    ends = [torch.minimum(i * step, windows) for i in range(parts + 1)]
    return [torch.arange(ends[i], ends[i + 1], device=windows.device) for i in range(parts)]
