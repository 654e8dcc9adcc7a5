"""Reconstruction heads: pixel-shuffle, direct pixel-shuffle (light), nearest+conv, and the
residual head of denoising/JPEG models (no upsampling)."""
from __future__ import annotations

import math
import re
from typing import Mapping, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

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


def build_head(net: nn.Module, upsampler: str, embed_dim: int, out_ch: int, scale: int) -> None:
    """Adds the head's modules to ``net`` under their released names."""
    if upsampler == "pixelshuffle":
        net.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, NUM_FEAT, 3, 1, 1), nn.LeakyReLU(inplace=True))
        net.upsample = Upsample(scale, NUM_FEAT)
        net.conv_last = nn.Conv2d(NUM_FEAT, out_ch, 3, 1, 1)
    elif upsampler == "pixelshuffledirect":
        net.upsample = UpsampleOneStep(scale, embed_dim, out_ch)
    elif upsampler == "nearest+conv":
        net.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, NUM_FEAT, 3, 1, 1), nn.LeakyReLU(inplace=True))
        net.conv_up1 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
        net.conv_up2 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
        net.conv_hr = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
        net.conv_last = nn.Conv2d(NUM_FEAT, out_ch, 3, 1, 1)
    else:
        net.conv_last = nn.Conv2d(embed_dim, out_ch, 3, 1, 1)


def head_forward(net: nn.Module, upsampler: str, feat: Tensor, x_in: Tensor) -> Tensor:
    """Image from body features ``feat`` (``conv_after_body`` output + ``conv_first`` output);
    ``x_in`` is the normalised input, used by the residual head only."""
    if upsampler == "pixelshuffle":
        return net.conv_last(net.upsample(net.conv_before_upsample(feat)))
    if upsampler == "pixelshuffledirect":
        return net.upsample(feat)
    if upsampler == "nearest+conv":
        x = net.conv_before_upsample(feat)
        x = F.leaky_relu(net.conv_up1(F.interpolate(x, scale_factor=2, mode="nearest")), 0.2)
        x = F.leaky_relu(net.conv_up2(F.interpolate(x, scale_factor=2, mode="nearest")), 0.2)
        return net.conv_last(F.leaky_relu(net.conv_hr(x), 0.2))
    return x_in + net.conv_last(feat)


def detect_head(sd: Mapping[str, Tensor], out_ch: int) -> Tuple[str, int]:
    """``(upsampler, scale)`` of a state dict's head, from its keys and shapes (built by
    :func:`build_head`; ``out_ch`` is the image's channel count).

    Raises:
        ValueError: a pixel-shuffle head without its upsampling convolutions.
    """
    if "conv_up1.weight" in sd:
        return "nearest+conv", 4
    if "conv_before_upsample.0.weight" in sd:
        convs = [k for k in sd if re.fullmatch(r"upsample\.\d+\.weight", k)]
        if not convs:
            raise ValueError("pixelshuffle head without upsample convolutions")
        if sd["upsample.0.weight"].shape[0] == 9 * sd["upsample.0.weight"].shape[1]:
            return "pixelshuffle", 3
        return "pixelshuffle", 2 ** len(convs)
    if "upsample.0.weight" in sd:
        return "pixelshuffledirect", int(round(math.sqrt(sd["upsample.0.weight"].shape[0] / out_ch)))
    return "", 1
