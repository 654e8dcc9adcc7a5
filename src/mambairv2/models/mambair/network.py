"""MambaIR (v1, ECCV 2024, "A Simple Baseline for Image Restoration with State-Space Model"):
residual state-space groups of VSS blocks, each a 2D selective scan over four directions (SS2D)
and a channel-attention block (CAB), with learnable skip scales.

Parameter names and shapes equal the authors' ``basicsr/archs/mambair_arch.py`` (csguoh/MambaIR
33d7b34), so their state dicts load strictly. The configuration is recovered from a state dict by
:func:`~mambairv2.models.mambair.detect.detect_v1_config`. Inference is exact to the authors' computation; training-only pieces
(DropPath) are not modelled.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...ops import LayerNorm, conv_act, selective_scan
from ..layers.heads import HEADS
from ..layers.layout import image_to_tokens, tokens_to_image
from ..layers.stem import RGB_MEAN, PatchEmbedNorm, init_weights
from .config import MambaIRConfig

Tensor = torch.Tensor
DIRECTIONS = 4  # released: row-major, column-major, and both reversed


class SS2D(nn.Module):
    """2D selective scan (released name ``self_attention``): in-projection to ``x`` and a gate
    ``z``, depthwise conv + SiLU, one selective scan over the four directions (one batched call,
    four groups of B/C), the four results mapped back to row-major order and summed, LayerNorm,
    gate, out-projection.

    Parameters keep the released names: ``x_proj_weight`` (4×(R+2N)×D), ``dt_projs_weight``
    (4×D×R), ``dt_projs_bias`` (4×D), ``A_logs`` (4D×N), ``Ds`` (4D).
    """

    def __init__(self, dim: int, d_state: int, d_inner: int, directions: int = DIRECTIONS) -> None:
        super().__init__()
        k = self.directions = directions
        self.d_state = d_state
        self.d_inner = d_inner
        self.dt_rank = math.ceil(dim / 16)
        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, 3, 1, 1, groups=d_inner)
        self.x_proj_weight = nn.Parameter(torch.empty(k, self.dt_rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_inner, self.dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, d_inner))
        self.A_logs = nn.Parameter(torch.empty(k * d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(k * d_inner))
        self.out_norm = LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, dim, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4) -> None:
        """The released initialisation (Mamba's dt/A/D init; x_proj as default Linear layers)."""
        for w in self.x_proj_weight:
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_projs_weight, -std, std)
        dt = torch.exp(torch.rand(self.dt_projs_bias.shape) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        a = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.A_logs.shape[0], 1)
        self.A_logs.copy_(torch.log(a))
        self.Ds.fill_(1.0)

    def scan(self, x: Tensor) -> Tensor:
        """The scan of ``x`` (``B×D×H×W``) in every direction, summed in row-major order: ``B×D×L``.
        Directions, the first ``directions`` of: row-major, column-major, both reversed."""
        b, d, h, w = x.shape
        length = h * w
        k = self.directions
        hw = x.reshape(b, d, length)
        if k == 1:
            xs = hw.unsqueeze(1)
        else:
            xs = torch.stack([hw, x.transpose(2, 3).reshape(b, d, length)], 1)
            if k == 4:
                xs = torch.cat([xs, xs.flip(-1)], 1)  # B×4×D×L
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, bs, cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        y = selective_scan(xs.reshape(b, -1, length), dts.reshape(b, -1, length),
                           -torch.exp(self.A_logs.to(dtype)), bs, cs, self.Ds.to(dtype),
                           delta_bias=self.dt_projs_bias.reshape(-1).to(dtype), delta_softplus=True)
        y = y.to(x.dtype).view(b, k, d, length)
        if k == 1:
            return y[:, 0]
        col = y[:, 1].view(b, d, w, h).transpose(2, 3).reshape(b, d, length)
        if k == 2:
            return y[:, 0] + col
        inv = y[:, 2:4].flip(-1)
        # released order of the sum: hw + reversed hw + wh + reversed wh
        inv_col = inv[:, 1].reshape(b, d, w, h).transpose(2, 3).reshape(b, d, length)
        return y[:, 0] + inv[:, 0] + col + inv_col

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``B×H×W×C`` → ``B×H×W×C``."""
        b, h, w, _ = x.shape
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = x.permute(0, 3, 1, 2)
        if x.dtype == torch.float64:  # PyTorch's float64 depthwise conv: 2.6× slower channels-last
            x = x.contiguous()
        x = F.silu(self.conv2d(x))
        y = self.scan(x).transpose(1, 2).reshape(b, h, w, -1)
        y = self.out_norm(y) * F.silu(z)
        return self.out_proj(y)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: global average, 1×1 conv down by ``squeeze``, ReLU, up, sigmoid."""

    def __init__(self, dim: int, squeeze: int = 30) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, dim // squeeze, 1), nn.ReLU(inplace=True),
            nn.Conv2d(dim // squeeze, dim, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.attention(x)


class CAB(nn.Module):
    """Channel-attention block (released name ``conv_blk``, layers in ``cab``).

    Classic: 3×3 conv to ``dim/3``, GELU, 3×3 conv back, channel attention. Light: 1×1 conv to
    ``dim/2``, depthwise 3×3, GELU, 1×1 conv back, depthwise 3×3 with dilation 2, channel attention.
    Older light layouts: ``light-06dc6cd`` is the classic block with a conv to ``dim/6``;
    ``light-3ad5892`` a depthwise 3×3 conv and channel attention.
    """

    def __init__(self, dim: int, layout: str) -> None:
        super().__init__()
        self.layout = layout
        self.light = light = layout == "light"
        if layout == "light-3ad5892":
            self.cab = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, groups=dim), ChannelAttention(dim))
        elif light:
            hid = dim // 2
            self.cab = nn.Sequential(
                nn.Conv2d(dim, hid, 1), nn.Conv2d(hid, hid, 3, 1, 1, groups=hid), nn.GELU(),
                nn.Conv2d(hid, dim, 1), nn.Conv2d(dim, dim, 3, 1, 2, groups=dim, dilation=2),
                ChannelAttention(dim))
        else:
            hid = dim // (6 if layout == "light-06dc6cd" else 3)
            self.cab = nn.Sequential(nn.Conv2d(dim, hid, 3, 1, 1), nn.GELU(), nn.Conv2d(hid, dim, 3, 1, 1),
                                     ChannelAttention(dim))

    def forward(self, x: Tensor) -> Tensor:
        cab = self.cab
        if self.layout == "light-3ad5892":
            return cab[1](cab[0](x))
        if self.light:
            x = conv_act(cab[0](x), cab[1], "gelu")
            return cab[5](cab[4](cab[3](x)))
        return cab[3](cab[2](conv_act(x, cab[0], "gelu")))


class VSSBlock(nn.Module):
    """``y = x·skip_scale + SS2D(LN(x))``; ``out = y·skip_scale2 + CAB(LN(y))``."""

    def __init__(self, dim: int, d_state: int, d_inner: int, cab: str, directions: int = DIRECTIONS) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(dim)
        self.self_attention = SS2D(dim, d_state, d_inner, directions)
        self.skip_scale = nn.Parameter(torch.ones(dim))
        self.conv_blk = CAB(dim, cab)
        self.ln_2 = LayerNorm(dim)
        self.skip_scale2 = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        """``x``: ``B×L×C`` tokens of an ``H×W`` image."""
        b, length, c = x.shape
        x = x.view(b, *size, c)
        x = x * self.skip_scale + self.self_attention(self.ln_1(x))
        cab = self.conv_blk(self.ln_2(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return (x * self.skip_scale2 + cab).reshape(b, length, c)


class BasicLayer(nn.Module):
    """The VSS blocks of one group (released name ``residual_group``)."""

    def __init__(self, dim: int, depth: int, d_state: int, d_inner: int, cab: str,
                 directions: int = DIRECTIONS) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(VSSBlock(dim, d_state, d_inner, cab, directions) for _ in range(depth))

    def forward(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        for block in self.blocks:
            x = block(x, size)
        return x


def residual_conv(dim: int, kind: str) -> nn.Module:
    """The conv closing a group and the body: ``1conv`` (3×3) or ``3conv`` (3×3 to dim/4, 1×1,
    3×3 back, LeakyReLU 0.2 between)."""
    if kind == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    return nn.Sequential(nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(dim // 4, dim // 4, 1, 1, 0), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(dim // 4, dim, 3, 1, 1))


class ResidualGroup(nn.Module):
    """Residual state-space group: VSS blocks, a conv on the image, the group's input added."""

    def __init__(self, dim: int, depth: int, d_state: int, d_inner: int, cab: str,
                 resi_connection: str, directions: int = DIRECTIONS) -> None:
        super().__init__()
        self.residual_group = BasicLayer(dim, depth, d_state, d_inner, cab, directions)
        self.conv = residual_conv(dim, resi_connection)

    def forward(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        y = self.residual_group(x, size)
        return image_to_tokens(self.conv(tokens_to_image(y, size))) + x


class MambaIR(nn.Module):
    """MambaIR (v1) for super-resolution (classic and light, x2/x3/x4), colour denoising and
    JPEG artifact removal.

    Input ``B×C×H×W`` in [0, 1], any ``H, W ≥ 1`` (no padding, no windows); output
    ``B×C×(H·s)×(W·s)``. Parameter names equal the authors' release.
    """

    def __init__(self, config: Optional[MambaIRConfig] = None, **fields: Any) -> None:
        super().__init__()
        if config is None:
            config = MambaIRConfig(**fields)
        elif fields:
            config = config.replace(**fields)
        self.config = c = config
        self.upscale = c.upscale
        self.img_range = c.img_range
        # released: a float32 tensor cast to the input's dtype (not the exact float64 constants)
        mean = torch.tensor(RGB_MEAN, dtype=torch.float32) if c.in_chans == 3 else torch.zeros(1)
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(c.in_chans, c.embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbedNorm(c.embed_dim)
        self.layers = nn.ModuleList(
            ResidualGroup(c.embed_dim, depth, c.d_state, c.d_inner, c.cab_layout, c.resi_connection,
                          c.scan_directions)
            for depth in c.depths)
        self.norm = LayerNorm(c.embed_dim)
        self.conv_after_body = residual_conv(c.embed_dim, c.resi_connection)
        HEADS[c.upsampler].build(self, c.embed_dim, c.in_chans, c.upscale)
        self.apply(init_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        size = (x.shape[2], x.shape[3])
        t = self.patch_embed(image_to_tokens(x))
        for group in self.layers:
            t = group(t, size)
        return tokens_to_image(self.norm(t), size)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_chans:
            raise ValueError(f"expected a B×{self.config.in_chans}×H×W tensor, got {tuple(x.shape)}")
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        first = self.conv_first(x)
        feat = self.conv_after_body(self.forward_features(first)) + first
        x = HEADS[self.config.upsampler].forward(self, feat, x)
        return x / self.img_range + mean


