"""Geometric self-ensemble (x8): run a restoration function on the eight flips/transposes of
an image and average the results mapped back, as in the SR literature's "+" results."""
from __future__ import annotations

from typing import Callable

import torch

Tensor = torch.Tensor


def _transform(x: Tensor, k: int) -> Tensor:
    """k in 0..7: bit 0 flips width, bit 1 flips height, bit 2 transposes H and W."""
    if k & 4:
        x = x.transpose(-2, -1)
    if k & 2:
        x = x.flip(-2)
    if k & 1:
        x = x.flip(-1)
    return x


def _inverse(x: Tensor, k: int) -> Tensor:
    if k & 1:
        x = x.flip(-1)
    if k & 2:
        x = x.flip(-2)
    if k & 4:
        x = x.transpose(-2, -1)
    return x


def self_ensemble(forward: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Mean of ``inverse_k(forward(transform_k(x)))`` over the 8 dihedral transforms.

    ``x`` is ``B×C×H×W``; ``forward`` may change the spatial size by an integer factor.
    """
    out = None
    for k in range(8):
        y = _inverse(forward(_transform(x, k)), k)
        out = y if out is None else out + y
    return out / 8
