"""Window multi-head self-attention with Swin's relative position bias and shift mask."""
from __future__ import annotations

from typing import NamedTuple, Optional

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


class BorderMask(NamedTuple):
    """Shift mask of the windows that need one (the last row and column of windows)."""

    index: Tensor  #: nB window indices (raster order within an image)
    masks: Tensor  #: nB×ws²×ws², 0 / −100
    windows: int  #: windows per image


def border_windows(h: int, w: int, ws: int, shift: int) -> BorderMask:
    """The windows whose shift mask is not all zero and their masks; every other window of a
    shifted layer attends with the position bias only, exactly as with the full mask."""
    rows, cols = h // ws, w // ws
    idx = sorted({(rows - 1) * cols + j for j in range(cols)} | {i * cols + cols - 1 for i in range(rows)})
    index = torch.tensor(idx, dtype=torch.long)
    # the mask of a window depends only on whether it is in the last row / last column
    small = shifted_window_mask(min(h, 2 * ws), min(w, 2 * ws), ws, shift)
    sc = min(w, 2 * ws) // ws
    pick = [(1 if i // cols == rows - 1 and rows > 1 else 0) * sc + (1 if i % cols == cols - 1 and cols > 1 else 0)
            for i in idx]
    return BorderMask(index, small[torch.tensor(pick, dtype=torch.long)], rows * cols)


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

    def forward(self, qkv: Tensor, rpi: Tensor, border: Optional[BorderMask] = None) -> Tensor:
        """``qkv``: ``(B·nW)×n×3C`` → ``(B·nW)×n×C``.

        ``border``: for shifted layers, the windows that need Swin's shift mask (see
        :func:`border_windows`); the others attend with the position bias only.
        """
        bw, n, c3 = qkv.shape
        c = c3 // 3
        heads = self.num_heads
        hd = c // heads
        q, k, v = qkv.view(bw, n, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)  # bw×heads×n×hd
        bias = self.position_bias(rpi).unsqueeze(0).to(qkv.dtype)  # 1×heads×n×n
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        if border is not None:
            index, masks, nw = border
            nb = index.numel()
            b = bw // nw

            def pick(t: Tensor) -> Tensor:  # B×nW×heads×n×hd → B×(nB·heads)×n×hd
                return t.reshape(b, nw, heads, n, hd).index_select(1, index).reshape(b, nb * heads, n, hd)

            masked_bias = (bias + masks.to(qkv.dtype).unsqueeze(1)).reshape(1, nb * heads, n, n)
            xb = F.scaled_dot_product_attention(pick(q), pick(k), pick(v), attn_mask=masked_bias,
                                                scale=self.scale)
            x = x.reshape(b, nw, heads, n, hd).index_copy(1, index, xb.reshape(b, nb, heads, n, hd))
        x = x.reshape(bw, heads, n, hd).transpose(1, 2).reshape(bw, n, c)
        return self.proj(x)
