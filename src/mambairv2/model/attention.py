"""Window multi-head self-attention with Swin's relative position bias and shift mask."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor


def window_partition(x: Tensor, ws: int) -> Tensor:
    """``B×H×W×C`` → ``(B·nW)×(ws·ws)×C``, windows in raster order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)


def window_reverse(windows: Tensor, ws: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition`: ``(B·nW)×(ws·ws)×C`` → ``B×H×W×C``."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // ws) * (w // ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def relative_position_index(ws: int) -> Tensor:
    """Swin's ``(ws²)×(ws²)`` index into the ``(2ws−1)²`` relative position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij"))
    flat = coords.flatten(1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += ws - 1
    rel[:, :, 1] += ws - 1
    rel[:, :, 0] *= 2 * ws - 1
    return rel.sum(-1)


def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> Tensor:
    """Swin's attention mask for a cyclic shift: ``nW×ws²×ws²``, 0 within a region, −100 across."""
    img = torch.zeros(1, h, w, 1)
    slices = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    cnt = 0
    for hs in slices:
        for wsl in slices:
            img[:, hs, wsl, :] = cnt
            cnt += 1
    win = window_partition(img, ws).squeeze(-1)  # nW×ws²
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class WindowAttention(nn.Module):
    """Multi-head attention inside each window, on precomputed q, k, v (``wqkv`` is outside).

    Parameters: ``relative_position_bias_table`` ((2ws−1)²×heads) and ``proj``.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self, rpi: Tensor) -> Tensor:
        """``heads×n×n`` bias gathered from the table."""
        n = self.window_size ** 2
        return self.relative_position_bias_table[rpi.reshape(-1)].view(n, n, -1).permute(2, 0, 1)

    def forward(self, qkv: Tensor, rpi: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """``qkv``: ``(B·nW)×n×3C`` → ``(B·nW)×n×C``. ``mask``: ``nW×n×n`` or None."""
        bw, n, c3 = qkv.shape
        c = c3 // 3
        hd = c // self.num_heads
        q, k, v = qkv.view(bw, n, 3, self.num_heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.position_bias(rpi).unsqueeze(0).to(qkv.dtype)  # 1×heads×n×n
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias + mask.to(qkv.dtype).unsqueeze(1))  # nW×heads×n×n
            q = q.reshape(bw // nw, nw, self.num_heads, n, hd)
            k = k.reshape(bw // nw, nw, self.num_heads, n, hd)
            v = v.reshape(bw // nw, nw, self.num_heads, n, hd)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        x = x.reshape(bw, self.num_heads, n, hd).transpose(1, 2).reshape(bw, n, c)
        return self.proj(x)
