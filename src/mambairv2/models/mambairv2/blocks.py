"""Attentive layer (window attention + ASSM, each with its FFN) and the residual group."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn as nn

from .assm import ASSM
from .attention import RolledWindows, WindowAttention, WindowPlan
from ..layers.layout import image_to_tokens, tokens_to_image
from .ffn import ConvFFN, GatedMLP
from ...ops import LayerNorm, linear

Tensor = torch.Tensor
# without shift, with shift: cached plans, or Swin's roll + mask where traced
Plans = Union[Tuple[WindowPlan, WindowPlan], Tuple[RolledWindows, RolledWindows]]


def make_ffn(kind: str, dim: int, hidden: int, kernel_size: int) -> nn.Module:
    return GatedMLP(dim, hidden) if kind == "gated" else ConvFFN(dim, hidden, kernel_size)


class AttentiveLayer(nn.Module):
    """One layer: shifted-window attention + FFN, then ASSM + FFN, each with a layer-scaled
    shortcut (``x = s·scale + f(x)``)."""

    def __init__(self, dim: int, d_state: int, num_heads: int, window_size: int, shift_size: int,
                 inner_rank: int, num_tokens: int, convffn_kernel_size: int, hidden: int,
                 ffn: str, ase: bool = True, sgn: bool = True, prompt_position: str = "C",
                 prompt_basis: str = "layer", prompt_order: str = "raster") -> None:
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = LayerNorm(dim)
        self.norm2 = LayerNorm(dim)
        self.norm3 = LayerNorm(dim)
        self.norm4 = LayerNorm(dim)
        self.scale1 = nn.Parameter(1e-4 * torch.ones(dim))
        self.scale2 = nn.Parameter(1e-4 * torch.ones(dim))
        self.wqkv = nn.Linear(dim, 3 * dim)
        self.win_mhsa = WindowAttention(dim, window_size, num_heads)
        self.assm = ASSM(dim, d_state, num_tokens, inner_rank, hidden, ase, sgn, prompt_position, prompt_order)
        self.convffn1 = make_ffn(ffn, dim, hidden, convffn_kernel_size)
        self.convffn2 = make_ffn(ffn, dim, hidden, convffn_kernel_size)
        if ase and prompt_basis == "layer":  # "shared": the network holds the one basis
            self.embeddingA = nn.Embedding(inner_rank, self.assm.prompt_dim)
            nn.init.uniform_(self.embeddingA.weight, -1 / inner_rank, 1 / inner_rank)

    def forward(self, x: Tensor, size: Tuple[int, int], rpi: Tensor, plans: Plans,
                basis: Optional[Tensor] = None) -> Tensor:
        """``x``: ``B×L×C`` tokens of an ``H×W`` image (H, W multiples of the window);
        ``plans``: the window partitions without and with shift (``WindowPlan``, or
        ``RolledWindows`` where traced); ``basis``: the network's shared prompt basis N
        (``prompt_basis="shared"``), else this layer's is used."""
        plan = plans[1] if self.shift_size else plans[0]

        shortcut = x
        # (shifted) window partition of the normalised tokens: the per-token wqkv commutes with it
        attn = self.win_mhsa(linear(plan.partition(self.norm1(x)), self.wqkv), rpi, plan)
        x_win = _add_into(plan.merge(attn, x), shortcut)
        # residual sums in place on fresh outputs that autograd does not keep (linear layers,
        # index_select) and as one addcmul: fewer passes over the tokens and fewer allocations
        x_win = _add_into(self.convffn1(self.norm2(x_win), size), x_win)
        x = torch.addcmul(x_win, shortcut, self.scale1)

        shortcut = x
        if basis is None and "embeddingA" in self._modules:
            basis = self.embeddingA.weight
        x_aca = _add_into(self.assm(self.norm3(x), size, basis), x)
        x = _add_into(self.convffn2(self.norm4(x_aca), size), x_aca)
        return torch.addcmul(x, shortcut, self.scale2)


def _add_into(fresh: Tensor, other: Tensor) -> Tensor:
    """``fresh + other``, written into ``fresh`` when that keeps the dtype (under autocast a
    half-precision ``fresh`` must be promoted, as the out-of-place sum does)."""
    return fresh.add_(other) if fresh.dtype == other.dtype else fresh + other


class BasicBlock(nn.Module):
    """The attentive layers of one group (released name ``residual_group``); odd layers shift."""

    def __init__(self, dim: int, depth: int, layer_kwargs: dict) -> None:
        super().__init__()
        ws = layer_kwargs["window_size"]
        self.layers = nn.ModuleList(
            AttentiveLayer(dim=dim, shift_size=0 if i % 2 == 0 else ws // 2, **layer_kwargs)
            for i in range(depth))

    def forward(self, x: Tensor, size: Tuple[int, int], rpi: Tensor, plans: Plans,
                basis: Optional[Tensor] = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, size, rpi, plans, basis)
        return x


class ResidualGroup(nn.Module):
    """Attentive state-space group (released class ASSB): layers, a conv on the image, residual."""

    def __init__(self, dim: int, depth: int, resi_connection: str, layer_kwargs: dict) -> None:
        super().__init__()
        self.residual_group = BasicBlock(dim, depth, layer_kwargs)
        if resi_connection == "1conv":
            self.conv = nn.Conv2d(dim, dim, 3, 1, 1)
        else:
            self.conv = nn.Sequential(
                nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(dim // 4, dim // 4, 1, 1, 0), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(dim // 4, dim, 3, 1, 1))

    def forward(self, x: Tensor, size: Tuple[int, int], rpi: Tensor, plans: Plans,
                basis: Optional[Tensor] = None) -> Tensor:
        y = self.residual_group(x, size, rpi, plans, basis)
        return image_to_tokens(self.conv(tokens_to_image(y, size))) + x
