"""Pieces both families share around their bodies: the RGB mean shift, the patch-embedding
LayerNorm, mirror padding to a multiple of the window and the released weight initialisation."""
from __future__ import annotations

import torch
import torch.nn as nn

from ...ops import LayerNorm, shape_generic

Tensor = torch.Tensor
RGB_MEAN = (0.4488, 0.4371, 0.4040)


def mirror_pad(x: Tensor, h: int, w: int) -> Tensor:
    """Pads ``x`` (…×H×W) to ``h×w`` by appending the image flipped along each axis, as released.

    Where the released padding breaks (an image shorter than half the padded size) the
    [x, flip(x), x, flip(x), …] pattern is simply continued, which equals the released result
    wherever that one worked. One gather per axis, its indices computed from the sizes, so a
    tracer records the padding for every size (``ops.shape_generic()``)."""
    for dim, target in ((-2, h), (-1, w)):
        size = x.shape[dim]
        if shape_generic() or target > size:
            x = x.index_select(x.dim() + dim, mirror_index(size, target, x.device))
    return x


def mirror_index(size: int, target: int, device: torch.device) -> Tensor:
    """Indices into ``[0, size)`` of ``target`` positions following [x, flip(x), x, …]."""
    i = torch.arange(target, device=device) % (2 * size)
    return torch.where(i < size, i, 2 * size - 1 - i)


class PatchEmbedNorm(nn.Module):
    """Holds the LayerNorm applied to the tokens after ``conv_first`` (released ``patch_embed``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)



def init_weights(m: nn.Module) -> None:
    """Released initialisation: Linear trunc-normal(0.02) with zero bias, LayerNorm 1/0."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
