"""Pieces both families share around their bodies: the RGB mean shift, the patch-embedding
LayerNorm, mirror padding to a multiple of the window and the released weight initialisation."""
from __future__ import annotations

import torch
import torch.nn as nn

from ...ops import LayerNorm

Tensor = torch.Tensor
RGB_MEAN = (0.4488, 0.4371, 0.4040)


def mirror_pad(x: Tensor, h: int, w: int) -> Tensor:
    """Pads ``x`` (…×H×W) to ``h×w`` by appending the image flipped along each axis, as released.

    Where the released padding breaks (an image shorter than half the padded size) the
    [x, flip(x), x, flip(x), …] pattern is simply continued, which equals the released result
    wherever that one worked."""
    for dim, target in ((-2, h), (-1, w)):
        size = x.shape[dim]
        if target > size:
            reps = -(-target // size)
            parts = [x if i % 2 == 0 else torch.flip(x, [dim]) for i in range(reps)]
            x = torch.cat(parts, dim).narrow(dim, 0, target)
    return x


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
