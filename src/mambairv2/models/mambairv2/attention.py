"""Window multi-head self-attention with Swin's relative position bias and shift mask."""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn as nn

from ...ops import linear, window_attention

Tensor = torch.Tensor


def window_partition(x: Tensor, ws: int) -> Tensor:
    """``B×H×W×C`` → ``(B·nW)×(ws·ws)×C``, windows in raster order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)


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


class WindowGroup(NamedTuple):
    """Consecutive windows of a :class:`WindowPlan` that share one shift mask."""

    windows: int  #: number of windows (over the whole batch)
    mask: Optional[Tensor]  #: ws²×ws² shift mask (0 / −100), None where it is all zero


class WindowPlan(NamedTuple):
    """Where each token goes for window attention, replacing Swin's roll + window partition.

    ``index[p]`` is the position, in the flattened ``B×H×W`` raster, of the token that sits at
    position ``p`` of the window order. Windows come in groups by shift mask (without shift one
    group; with it: inner windows, last row, last column, corner), batch-major within a group,
    tokens in raster order within a window, so every group is one contiguous slice and gets a
    single broadcast mask instead of one mask per window.
    """

    index: Tensor
    groups: Tuple[WindowGroup, ...]
    inverse: Tensor  #: the inverse permutation: window-order position of each raster token


def window_plan(b: int, h: int, w: int, ws: int, shift: int, device: torch.device) -> WindowPlan:
    """The plan of a ``b×h×w`` token grid (``h``, ``w`` multiples of ``ws``); ``shift`` is the
    cyclic shift of the released model (0, or ``ws // 2`` in odd layers)."""
    rows, cols = h // ws, w // ws
    window = torch.arange(rows * cols)
    if shift:
        # a window's mask depends only on whether it is in the last row / the last column
        small = shifted_window_mask(min(h, 2 * ws), min(w, 2 * ws), ws, shift)
        sc = min(w, 2 * ws) // ws
        code = ((window // cols == rows - 1) & (rows > 1)).long() * sc + \
            ((window % cols == cols - 1) & (cols > 1)).long()
        keys = sorted(set(code.tolist()))
        members = [window[code == k] for k in keys]
        masks = [small[k] if bool(small[k].any()) else None for k in keys]
    else:
        members, masks = [window], [None]
    a = torch.arange(ws)
    parts, groups = [], []
    for wins, mask in zip(members, masks):
        r, c = (wins // cols)[:, None, None], (wins % cols)[:, None, None]
        tok = ((r * ws + a[None, :, None] + shift) % h) * w + (c * ws + a[None, None, :] + shift) % w
        parts.append((torch.arange(b)[:, None] * (h * w) + tok.reshape(1, -1)).reshape(-1))
        groups.append(WindowGroup(b * wins.numel(), None if mask is None else mask.to(device)))
    index = torch.cat(parts)
    inverse = torch.empty_like(index)
    inverse[index] = torch.arange(index.numel())
    return WindowPlan(index.to(device), tuple(groups), inverse.to(device))


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
        """``heads×n×n`` bias gathered from the table (contiguous). Without autograd the result
        is cached until the table or the index changes (in place or replaced); tensors made
        under ``torch.inference_mode()`` are gathered every call."""
        table = self.relative_position_bias_table
        if torch.is_grad_enabled() and table.requires_grad:
            return self._gather_bias(rpi)
        if table.is_inference() or rpi.is_inference():
            # inference tensors keep no version counter, so an in-place change (a state dict
            # loaded under inference mode, as ComfyUI loads models) could not be seen by a cache
            return self._gather_bias(rpi).contiguous()
        # a bias gathered under inference mode is an inference tensor: reused only there
        key = (id(table), table.data_ptr(), table._version, rpi.data_ptr(), rpi._version, table.dtype,
               table.device, torch.is_inference_mode_enabled())
        cached = self.__dict__.get("_bias_cache")
        if cached is None or cached[0] != key:
            cached = (key, self._gather_bias(rpi).contiguous())
            self.__dict__["_bias_cache"] = cached
        return cached[1]

    def _gather_bias(self, rpi: Tensor) -> Tensor:
        n = self.window_size ** 2
        return self.relative_position_bias_table[rpi.reshape(-1)].view(n, n, -1).permute(2, 0, 1)

    def forward(self, qkv: Tensor, rpi: Tensor, plan: WindowPlan) -> Tensor:
        """``qkv``: ``N×3C`` tokens in the window order of ``plan`` → ``N×C`` in that order."""
        bias = self.position_bias(rpi)  # heads×n×n
        groups = [(group.windows, group.mask) for group in plan.groups]
        out = window_attention(qkv, self.num_heads, bias, groups, self.scale)
        return linear(out, self.proj)
