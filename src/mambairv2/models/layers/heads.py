"""Reconstruction heads: pixel-shuffle, direct pixel-shuffle (light), nearest+conv, and the
residual head of denoising/JPEG models (no upsampling).

:data:`HEADS` is the one table of what each head is: how it is built (released module names),
how it runs, which state-dict keys belong to it (warm starts re-initialise them when the scale
changes), and how its upsampler and scale are recognised from a state dict.
"""
from __future__ import annotations

import math
import re
from typing import Callable, Dict, Mapping, NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import sizes as S

Tensor = torch.Tensor
NUM_FEAT = 64


class Upsample(nn.Sequential):
    """[3×3 conv num_feat→4·num_feat, PixelShuffle(2)] per factor 2, or one ×3 step."""

    def __init__(self, scale: int, num_feat: int) -> None:
        layers: list = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"scale {scale} is not supported: use 2^n or 3")
        super().__init__(*layers)


class UpsampleOneStep(nn.Sequential):
    """One 3×3 conv to ``out_ch·scale²`` channels and a PixelShuffle (light models)."""

    def __init__(self, scale: int, num_feat: int, out_ch: int) -> None:
        super().__init__(nn.Conv2d(num_feat, scale * scale * out_ch, 3, 1, 1), nn.PixelShuffle(scale))


def _conv_before(embed_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(embed_dim, NUM_FEAT, 3, 1, 1), nn.LeakyReLU(inplace=True))


# -- building: modules added to the network under their released names -----------------------
def _build_pixelshuffle(net: nn.Module, embed_dim: int, out_ch: int, scale: int) -> None:
    net.conv_before_upsample = _conv_before(embed_dim)
    net.upsample = Upsample(scale, NUM_FEAT)
    net.conv_last = nn.Conv2d(NUM_FEAT, out_ch, 3, 1, 1)


def _build_direct(net: nn.Module, embed_dim: int, out_ch: int, scale: int) -> None:
    net.upsample = UpsampleOneStep(scale, embed_dim, out_ch)


def _build_nearest(net: nn.Module, embed_dim: int, out_ch: int, scale: int) -> None:
    net.conv_before_upsample = _conv_before(embed_dim)
    net.conv_up1 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
    net.conv_up2 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
    net.conv_hr = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
    net.conv_last = nn.Conv2d(NUM_FEAT, out_ch, 3, 1, 1)


def _build_residual(net: nn.Module, embed_dim: int, out_ch: int, scale: int) -> None:
    net.conv_last = nn.Conv2d(embed_dim, out_ch, 3, 1, 1)


# -- forward: image from body features ``feat`` and the normalised input ``x_in`` -------------
def _forward_pixelshuffle(net: nn.Module, feat: Tensor, x_in: Tensor) -> Tensor:
    return net.conv_last(net.upsample(net.conv_before_upsample(feat)))


def _forward_direct(net: nn.Module, feat: Tensor, x_in: Tensor) -> Tensor:
    return net.upsample(feat)


def _forward_nearest(net: nn.Module, feat: Tensor, x_in: Tensor) -> Tensor:
    x = net.conv_before_upsample(feat)
    x = F.leaky_relu(net.conv_up1(F.interpolate(x, scale_factor=2, mode="nearest")), 0.2)
    x = F.leaky_relu(net.conv_up2(F.interpolate(x, scale_factor=2, mode="nearest")), 0.2)
    return net.conv_last(F.leaky_relu(net.conv_hr(x), 0.2))


def _forward_residual(net: nn.Module, feat: Tensor, x_in: Tensor) -> Tensor:
    return x_in + net.conv_last(feat)


# -- size: the state dict's tensors and values, counted without building ------------------------
def _size_pixelshuffle(embed_dim: int, out_ch: int, scale: int) -> S.Size:
    steps = [S.conv(NUM_FEAT, 9 * NUM_FEAT, 3)] if scale == 3 else \
        [S.conv(NUM_FEAT, 4 * NUM_FEAT, 3)] * max(int(scale).bit_length() - 1, 0)
    return sum(steps, S.conv(embed_dim, NUM_FEAT, 3)) + S.conv(NUM_FEAT, out_ch, 3)


def _size_direct(embed_dim: int, out_ch: int, scale: int) -> S.Size:
    return S.conv(embed_dim, scale * scale * out_ch, 3)


def _size_nearest(embed_dim: int, out_ch: int, scale: int) -> S.Size:
    return S.conv(embed_dim, NUM_FEAT, 3) + S.conv(NUM_FEAT, NUM_FEAT, 3).times(3) + S.conv(NUM_FEAT, out_ch, 3)


def _size_residual(embed_dim: int, out_ch: int, scale: int) -> S.Size:
    return S.conv(embed_dim, out_ch, 3)


# -- detection: the scale, where a state dict holds this head ----------------------------------
StateDict = Mapping[str, Tensor]


def _detect_pixelshuffle(sd: StateDict, in_chans: int) -> Optional[int]:
    if "conv_before_upsample.0.weight" not in sd or "conv_up1.weight" in sd:
        return None
    convs = [k for k in sd if re.fullmatch(r"upsample\.\d+\.weight", k)]
    if not convs:
        raise ValueError("pixelshuffle head without upsample convolutions")
    w = sd["upsample.0.weight"]
    return 3 if w.shape[0] == 9 * w.shape[1] else 2 ** len(convs)


def _detect_direct(sd: StateDict, in_chans: int) -> Optional[int]:
    if "upsample.0.weight" not in sd or "conv_before_upsample.0.weight" in sd:
        return None
    return int(round(math.sqrt(sd["upsample.0.weight"].shape[0] / in_chans)))


def _detect_nearest(sd: StateDict, in_chans: int) -> Optional[int]:
    return 4 if "conv_up1.weight" in sd else None


def _detect_residual(sd: StateDict, in_chans: int) -> Optional[int]:
    return 1 if "conv_last.weight" in sd and "upsample.0.weight" not in sd \
        and "conv_before_upsample.0.weight" not in sd else None


class Head(NamedTuple):
    """One reconstruction head (see :data:`HEADS`)."""

    build: Callable[[nn.Module, int, int, int], None]  #: (net, embed_dim, out_ch, scale)
    forward: Callable[[nn.Module, Tensor, Tensor], Tensor]  #: (net, feat, x_in) → image
    detect: Callable[[StateDict, int], Optional[int]]  #: (state dict, in_chans) → scale or None
    prefixes: Tuple[str, ...]  #: state-dict key prefixes of its parameters
    size: Callable[[int, int, int], S.Size]  #: (embed_dim, out_ch, scale) → its tensors and values


#: upsampler name (the released ``upsampler`` option) → head
HEADS: Dict[str, Head] = {
    "pixelshuffle": Head(_build_pixelshuffle, _forward_pixelshuffle, _detect_pixelshuffle,
                         ("conv_before_upsample.", "upsample.", "conv_last."), _size_pixelshuffle),
    "pixelshuffledirect": Head(_build_direct, _forward_direct, _detect_direct, ("upsample.",), _size_direct),
    "nearest+conv": Head(_build_nearest, _forward_nearest, _detect_nearest,
                         ("conv_before_upsample.", "conv_up1.", "conv_up2.", "conv_hr.", "conv_last."),
                         _size_nearest),
    "": Head(_build_residual, _forward_residual, _detect_residual, ("conv_last.",), _size_residual),
}

#: every head's key prefixes (a warm start across scales re-initialises these)
HEAD_PREFIXES: Tuple[str, ...] = tuple(dict.fromkeys(p for h in HEADS.values() for p in h.prefixes))


def detect_head(sd: StateDict, in_chans: int) -> Tuple[str, int]:
    """The upsampler name and scale of the head in ``sd``.

    Raises:
        ValueError: no head recognised, or a malformed one.
    """
    for name, head in HEADS.items():
        scale = head.detect(sd, in_chans)
        if scale is not None:
            return name, scale
    raise ValueError("no reconstruction head found (no conv_last or upsample weights)")
