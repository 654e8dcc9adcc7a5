"""The tensors and values of a MambaIRv2 state dict, counted from its configuration alone
(:func:`state_size`; ``tests/test_state_size.py`` compares it with built networks)."""
from __future__ import annotations

import math

from ..layers import sizes as S
from ..layers.heads import HEADS
from .config import MambaIRv2Config


def _ffn(c: MambaIRv2Config) -> S.Size:
    e, h = c.embed_dim, c.hidden
    if c.ffn == "gated":
        half = h // 2
        return S.linear(e, h) + S.norm(half) + S.conv(half, half, 5, groups=half) + S.linear(half, e)
    k = c.convffn_kernel_size
    return S.linear(e, h) + S.conv(h, h, k, groups=h) + S.linear(h, e)


def _assm(c: MambaIRv2Config) -> S.Size:
    e, d, n = c.embed_dim, c.hidden, c.d_state
    rank = math.ceil(d / 16)
    size = (S.table(1, rank + 2 * n, d) + S.table(1, d, rank) + S.table(1, d) + S.table(d, n) + S.table(d)
            + S.norm(d) + S.linear(d, e) + S.conv(e, d, 1) + S.conv(d, d, 3, groups=d))
    if c.ase:
        size = size + S.table(c.num_tokens, c.inner_rank)
    if c.ase or c.sgn:
        size = size + S.linear(e, e // 3) + S.linear(e // 3, c.num_tokens)
    return size


def _layer(c: MambaIRv2Config, heads: int) -> S.Size:
    e, w = c.embed_dim, c.window_size
    size = (S.norm(e).times(4) + S.table(e).times(2) + S.linear(e, 3 * e)
            + S.table((2 * w - 1) ** 2, heads) + S.linear(e, e) + _assm(c) + _ffn(c).times(2))
    if c.ase and c.prompt_basis == "layer":
        size = size + S.table(c.inner_rank, c.prompt_dim)
    return size


def state_size(c: MambaIRv2Config) -> S.Size:
    """Tensors and values of the state dict a network of ``c`` has (parameters and persistent
    buffers), in time linear in the number of groups."""
    e, w = c.embed_dim, c.window_size
    size = S.table(w * w, w * w) + S.conv(c.in_chans, e, 3) + S.norm(e)
    per_heads = {}
    for depth, heads in zip(c.depths, c.num_heads):
        if heads not in per_heads:
            per_heads[heads] = _layer(c, heads)
        size = size + per_heads[heads].times(depth) + S.residual_conv(e, c.resi_connection)
    if c.ase and c.prompt_basis == "shared":
        size = size + S.table(c.inner_rank, c.prompt_dim)
    size = size + S.norm(e) + S.residual_conv(e, c.resi_connection)
    return size + HEADS[c.upsampler].size(e, c.in_chans, c.upscale)
