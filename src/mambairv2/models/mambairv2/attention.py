"""Window multi-head self-attention with Swin's relative position bias and shift mask."""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

import torch
import torch.nn as nn

from ...ops import linear, shape_generic, window_attention

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


def shifted_window_mask(h: int, w: int, ws: int, shift: int, device: Optional[torch.device] = None) -> Tensor:
    """Swin's attention mask for a cyclic shift: ``nW×ws²×ws²``, 0 within a region, −100 across.

    The regions are numbered by index comparisons, so ``h`` and ``w`` may be sizes a tracer
    reads from a tensor (the graph computes the mask for every size)."""

    def region(n: int) -> Tensor:  # 0 before the last window, 1 in it before the shift, 2 after
        i = torch.arange(n, device=device)
        return (i >= n - ws).to(torch.int64) + (i >= n - shift).to(torch.int64)

    ids = (region(h)[:, None] * 3 + region(w)[None, :]).to(torch.float32)
    win = window_partition(ids[None, :, :, None], ws).squeeze(-1)  # nW×ws²
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return torch.where(diff != 0, torch.full_like(diff, -100.0), torch.zeros_like(diff))


class WindowGroup(NamedTuple):
    """Consecutive windows of a :class:`WindowPlan` that share one shift mask."""

    windows: int  #: number of windows (over the whole batch)
    mask: Optional[Tensor]  #: ws²×ws² shift mask (0 / −100), None where it is all zero


class WindowPlan(NamedTuple):
    """Where each token goes for window attention, replacing Swin's roll + window partition
    (the formulation of :func:`window_plan`; :class:`RolledWindows` is the traceable one).

    ``index[p]`` is the position, in the flattened ``B×H×W`` raster, of the token that sits at
    position ``p`` of the window order. Windows come in groups by shift mask (without shift one
    group; with it: inner windows, last row, last column, corner), batch-major within a group,
    tokens in raster order within a window, so every group is one contiguous slice and gets a
    single broadcast mask instead of one mask per window.
    """

    index: Tensor
    groups: Tuple[WindowGroup, ...]
    inverse: Tensor  #: the inverse permutation: window-order position of each raster token

    def partition(self, x: Tensor) -> Tensor:
        """Tokens ``B×L×C`` (raster order) → rows ``(B·L)×C`` in window order: one gather."""
        return x.reshape(-1, x.shape[-1]).index_select(0, self.index)

    def merge(self, rows: Tensor, like: Tensor) -> Tensor:
        """Rows in window order → tokens shaped as ``like`` (``B×L×C``) in raster order: a
        gather by the inverse permutation (faster than a scatter on CPUs)."""
        return rows.index_select(0, self.inverse).view(like.shape[0], like.shape[1], rows.shape[-1])


class RolledWindows(NamedTuple):
    """Swin's own formulation: ``roll`` by the shift, then window partition, with one mask per
    window computed from the size. Every step is a tensor operation on sizes read from the
    tokens, so a tracer records one graph for every size (``ops.shape_generic()``)."""

    size: Tuple[int, int]  #: padded height and width (traced values when tracing)
    window_size: int
    shift: int
    groups: Tuple[Tuple[None, Optional[Tensor]], ...]  #: all rows, nW×ws²×ws² masks or None

    def partition(self, x: Tensor) -> Tensor:
        """Tokens ``B×L×C`` (raster order) → rows ``(B·L)×C`` in window order."""
        c = x.shape[-1]
        img = x.reshape(x.shape[0], self.size[0], self.size[1], c)
        if self.shift:
            img = torch.roll(img, shifts=(-self.shift, -self.shift), dims=(1, 2))
        return window_partition(img, self.window_size).reshape(-1, c)

    def merge(self, rows: Tensor, like: Tensor) -> Tensor:
        """Rows in window order → tokens ``B×L×C`` in raster order (``like``: the tokens)."""
        (h, w), ws, c = self.size, self.window_size, rows.shape[-1]
        img = rows.reshape(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)
        if self.shift:
            img = torch.roll(img, shifts=(self.shift, self.shift), dims=(1, 2))
        return img.reshape(like.shape[0], like.shape[1], c)


def rolled_windows(h: int, w: int, ws: int, shift: int, device: torch.device) -> RolledWindows:
    """The :class:`RolledWindows` of an ``h×w`` token grid (multiples of ``ws``)."""
    mask = shifted_window_mask(h, w, ws, shift, device) if shift else None
    return RolledWindows((h, w), ws, shift, ((None, mask),))


def window_plan(b: int, h: int, w: int, ws: int, shift: int, device: torch.device) -> WindowPlan:
    """The plan of a ``b×h×w`` token grid (``h``, ``w`` multiples of ``ws``); ``shift`` is the
    cyclic shift of the released model (0, or ``ws // 2`` in odd layers). Built on ``device``
    with arithmetic only (no data-dependent step), so on the ``meta`` device it allocates nothing
    whatever the size."""
    rows, cols = h // ws, w // ws

    def span(last: int, n: int) -> Tensor:  # rows (or columns) of windows not last / last
        if n == 1:
            return torch.zeros(1, dtype=torch.long, device=device)
        return torch.arange(n - 1, device=device) if last == 0 else torch.full((1,), n - 1, device=device)

    # a window's mask depends only on whether it is in the last row / the last column
    kinds = [(lr, lc) for lr in ((0, 1) if rows > 1 and shift else (0,)) for lc in ((0, 1) if cols > 1 and shift else (0,))]
    if shift:
        small = shifted_window_mask(min(h, 2 * ws), min(w, 2 * ws), ws, shift)  # at most 4 windows, CPU
        sc = min(w, 2 * ws) // ws
        masks = [small[lr * sc + lc] if bool(small[lr * sc + lc].any()) else None for lr, lc in kinds]
        members = [(span(lr, rows)[:, None] * cols + span(lc, cols)[None, :]).reshape(-1) for lr, lc in kinds]
    else:
        members, masks = [torch.arange(rows * cols, device=device)], [None]
    a = torch.arange(ws, device=device)
    parts, groups = [], []
    for wins, mask in zip(members, masks):
        r, c = (wins // cols)[:, None, None], (wins % cols)[:, None, None]
        tok = ((r * ws + a[None, :, None] + shift) % h) * w + (c * ws + a[None, None, :] + shift) % w
        parts.append((torch.arange(b, device=device)[:, None] * (h * w) + tok.reshape(1, -1)).reshape(-1))
        groups.append(WindowGroup(b * wins.numel(), None if mask is None else mask.to(device)))
    index = torch.cat(parts)
    inverse = torch.empty_like(index)
    inverse[index] = torch.arange(index.numel(), device=device)
    return WindowPlan(index, tuple(groups), inverse)


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
        is cached until the table or the index changes (in place or replaced), except when traced;
        tensors made under ``torch.inference_mode()`` are gathered every call."""
        table = self.relative_position_bias_table
        if (torch.is_grad_enabled() and table.requires_grad) or shape_generic():
            return self._gather_bias(rpi)  # traced: the gather, not a cached constant
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

    def forward(self, qkv: Tensor, rpi: Tensor, plan: Union[WindowPlan, RolledWindows]) -> Tensor:
        """``qkv``: ``N×3C`` tokens in the window order of ``plan`` → ``N×C`` in that order."""
        bias = self.position_bias(rpi)  # heads×n×n
        out = window_attention(qkv, self.num_heads, bias, plan.groups, self.scale)
        return linear(out, self.proj)
