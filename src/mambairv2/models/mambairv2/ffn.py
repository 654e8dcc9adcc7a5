"""The two feed-forward networks of an attentive layer: conv-FFN (MambaIRv2) and gated MLP
(MambaIRv2Light). Both take tokens ``B×L×C`` plus the image size."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn

from ...ops import conv_act, linear, linear_act
from ..layers.layout import image_to_tokens, tokens_to_image

Tensor = torch.Tensor


class DepthwiseConv(nn.Module):
    """Depthwise k×k conv + GELU on the image layout (``dwconv.depthwise_conv``)."""

    def __init__(self, hidden: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.depthwise_conv = nn.Sequential(
            nn.Conv2d(hidden, hidden, kernel_size, 1, (kernel_size - 1) // 2, groups=hidden), nn.GELU())

    def forward(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        return image_to_tokens(conv_act(tokens_to_image(x, size), self.depthwise_conv[0], "gelu"))


class ConvFFN(nn.Module):
    """``fc1``, GELU, ``h + dwconv(h)``, ``fc2``."""

    def __init__(self, dim: int, hidden: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DepthwiseConv(hidden, kernel_size)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        x = linear_act(x, self.fc1, "gelu")
        d = self.dwconv(x, size)
        # the sum goes into the conv's fresh output (one buffer fewer; GELU's backward needs
        # its input, not this output)
        x = d.add_(x) if d.dtype == x.dtype else x + d
        return linear(x, self.fc2)


class SpatialGate(nn.Module):
    """Splits channels into halves ``x1|x2`` and returns ``x1 · conv5×5dw(LayerNorm(x2))``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv2d(dim, dim, 5, 1, 2, groups=dim)

    def forward(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        # LayerNorm of a strided half is several times slower than a copy plus LayerNorm
        x2 = image_to_tokens(self.conv(tokens_to_image(self.norm(x2.contiguous()), size)))
        return x1 * x2


class GatedMLP(nn.Module):
    """``fc1`` C→hidden, GELU, spatial gate (hidden→hidden/2), ``fc2`` hidden/2→C."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.sg = SpatialGate(hidden // 2)
        self.fc2 = nn.Linear(hidden // 2, dim)

    def forward(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        return linear(self.sg(linear_act(x, self.fc1, "gelu"), size), self.fc2)
