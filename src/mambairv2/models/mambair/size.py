"""The tensors and values of a MambaIR (v1) state dict, counted from its configuration alone
(:func:`state_size`; ``tests/test_state_size.py`` compares it with built networks)."""
from __future__ import annotations

import math

from ..layers import sizes as S
from ..layers.heads import HEADS
from .config import MambaIRConfig


def _channel_attention(e: int) -> S.Size:
    return S.conv(e, e // 30, 1) + S.conv(e // 30, e, 1)


def _cab(e: int, layout: str) -> S.Size:
    if layout == "light-3ad5892":
        return S.conv(e, e, 3, groups=e) + _channel_attention(e)
    if layout == "light":
        h = e // 2
        return (S.conv(e, h, 1) + S.conv(h, h, 3, groups=h) + S.conv(h, e, 1) + S.conv(e, e, 3, groups=e)
                + _channel_attention(e))
    h = e // (6 if layout == "light-06dc6cd" else 3)
    return S.conv(e, h, 3) + S.conv(h, e, 3) + _channel_attention(e)


def _block(c: MambaIRConfig) -> S.Size:
    e, d, n, k = c.embed_dim, c.d_inner, c.d_state, c.scan_directions
    rank = math.ceil(e / 16)
    scan = (S.linear(e, 2 * d, bias=False) + S.conv(d, d, 3, groups=d) + S.table(k, rank + 2 * n, d)
            + S.table(k, d, rank) + S.table(k, d) + S.table(k * d, n) + S.table(k * d) + S.norm(d)
            + S.linear(d, e, bias=False))
    return S.norm(e).times(2) + scan + S.table(e).times(2) + _cab(e, c.cab_layout)


def state_size(c: MambaIRConfig) -> S.Size:
    """Tensors and values of the state dict a network of ``c`` has, in time linear in the
    number of groups."""
    e = c.embed_dim
    block = _block(c)
    size = S.conv(c.in_chans, e, 3) + S.norm(e)
    for depth in c.depths:
        size = size + block.times(depth) + S.residual_conv(e, c.resi_connection)
    size = size + S.norm(e) + S.residual_conv(e, c.resi_connection)
    return size + HEADS[c.upsampler].size(e, c.in_chans, c.upscale)
