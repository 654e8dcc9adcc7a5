"""MambaIR (v1, ECCV 2024, "A Simple Baseline for Image Restoration with State-Space Model"):
residual state-space groups of VSS blocks, each a 2D selective scan over four directions (SS2D)
and a channel-attention block (CAB), with learnable skip scales.

Parameter names and shapes equal the authors' ``basicsr/archs/mambair_arch.py`` (csguoh/MambaIR
33d7b34), so their state dicts load strictly. The configuration is recovered from a state dict by
:func:`detect_v1_config`. Inference is exact to the authors' computation; training-only pieces
(DropPath) are not modelled.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError
from ..ops import LayerNorm, conv_act, selective_scan
from .ffn import image_to_tokens, tokens_to_image
from .heads import HEADS, detect_head
from .network import RGB_MEAN, PatchEmbedNorm, _init_weights  # shared with MambaIRv2

Tensor = torch.Tensor
V1_ARCH = "MambaIR"
UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "")
DIRECTIONS = 4  # row-major, column-major, and both reversed


# -- configuration ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MambaIRConfig:
    """Hyper-parameters of one MambaIR (v1) network: the authors' ``network_g`` keys that change
    the network. The light CAB is chosen by ``upsampler == "pixelshuffledirect"``, as released."""

    embed_dim: int = 60
    d_state: int = 16
    depths: Tuple[int, ...] = (6, 6, 6, 6)
    mlp_ratio: float = 2.0
    upscale: int = 1
    in_chans: int = 3
    img_range: float = 1.0
    upsampler: str = ""
    resi_connection: str = "1conv"

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "mlp_ratio", float(self.mlp_ratio))
        object.__setattr__(self, "img_range", float(self.img_range))
        if not self.depths or min(self.depths) < 1:
            raise ValueError(f"depths must be positive, got {self.depths}")
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {UPSAMPLERS}, got {self.upsampler!r}")
        if self.resi_connection not in ("1conv", "3conv"):
            raise ValueError(f"resi_connection must be '1conv' or '3conv', got {self.resi_connection!r}")
        if self.upsampler == "" and self.upscale != 1:
            raise ValueError("upsampler '' (denoise/JPEG) needs upscale 1")
        if self.upsampler == "pixelshuffle" and self.upscale not in (2, 3, 4, 8):
            raise ValueError("upsampler 'pixelshuffle' supports upscale 2, 3, 4 and 8")
        if self.upsampler and self.upscale < 2:
            raise ValueError(f"upsampler {self.upsampler!r} needs upscale >= 2")
        if self.embed_dim < 30:
            raise ValueError("embed_dim must be at least 30 (channel attention squeezes by 30)")

    @property
    def arch(self) -> str:
        """The authors' class name."""
        return V1_ARCH

    @property
    def light(self) -> bool:
        """Whether the blocks use the light CAB (released rule: the direct pixel-shuffle head)."""
        return self.upsampler == "pixelshuffledirect"

    @property
    def d_inner(self) -> int:
        """Channels of the scan (per direction), as released: ``int(mlp_ratio · embed_dim)``."""
        return int(self.mlp_ratio * self.embed_dim)

    @property
    def task(self) -> str:
        """``sr``, ``denoise`` (colour, upscale 1) or ``jpeg`` (grayscale, upscale 1)."""
        if self.upscale > 1:
            return "sr"
        return "denoise" if self.in_chans == 3 else "jpeg"

    @property
    def tile_defaults(self) -> Dict[str, int]:
        """Tiling the authors' test code (``MambaIRModel.test``) applies to every v1 model: each
        side of an image of 200 px or more is cut into ``size // 200 + 1`` tiles (at most ~200
        px) overlapping by a tenth of a tile. The real-world SR model (``mambair`` x4) is meant
        for large photos, where it also bounds memory. ``tile`` and ``tile_overlap`` in input
        pixels, as ``restore`` takes them."""
        return {"tile": 200, "tile_overlap": 20}

    def to_dict(self) -> Dict[str, Any]:
        """The fields, plus ``arch`` (so a stored configuration says which family it is)."""
        d = dataclasses.asdict(self)
        d["depths"] = list(self.depths)
        return {"arch": V1_ARCH, **d}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MambaIRConfig":
        """From :meth:`to_dict` output; unknown keys are an error."""
        d = dict(d)
        if d.pop("arch", V1_ARCH) != V1_ARCH:
            raise ValueError(f"not a {V1_ARCH} configuration")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**d)

    @classmethod
    def from_network_g(cls, network_g: Mapping[str, Any]) -> "MambaIRConfig":
        """From an authors' option-file ``network_g``. Keys the released class ignores or that do
        not change the network (``type``, ``img_size``, ``patch_size``, ``window_size``, ...) are
        dropped, as the released class does."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in network_g.items() if k in names})

    def replace(self, **changes: Any) -> "MambaIRConfig":
        return dataclasses.replace(self, **changes)


_LIGHT = dict(embed_dim=60, d_state=10, depths=(6,) * 4, mlp_ratio=1.2, upsampler="pixelshuffledirect")
_CLASSIC = dict(embed_dim=180, d_state=16, depths=(6,) * 6, mlp_ratio=2.0, upsampler="pixelshuffle")
_RESTORATION = dict(_CLASSIC, mlp_ratio=1.2, upsampler="", upscale=1)

#: The released MambaIR (v1) configurations: name → config fields (SR scale given separately).
#: ``mambair`` x4 is also the architecture of the released real-world SR model (MambaIR-real).
V1_VARIANTS: Dict[str, Dict[str, Any]] = {
    "mambair-light": _LIGHT,
    "mambair": _CLASSIC,
    "mambair-denoise": dict(_RESTORATION, in_chans=3),
    "mambair-jpeg": dict(_RESTORATION, in_chans=1),
}
V1_SR_VARIANTS = ("mambair-light", "mambair")


def v1_variant_config(name: str, scale: int = 4, **overrides: Any) -> MambaIRConfig:
    """Config of a released v1 variant (``mambair-light``, ``mambair`` (classic SR),
    ``mambair-denoise``, ``mambair-jpeg``)."""
    if name not in V1_VARIANTS:
        raise ValueError(f"unknown MambaIR variant {name!r}; choose one of {', '.join(V1_VARIANTS)}")
    fields = dict(V1_VARIANTS[name])
    if name in V1_SR_VARIANTS:
        if scale not in (2, 3, 4):
            raise ValueError(f"the released {name} models exist for scale 2, 3 and 4, got {scale}")
        fields["upscale"] = scale
    fields.update(overrides)
    return MambaIRConfig(**fields)


def v1_variant_name(config: MambaIRConfig) -> str:
    """The released v1 variant a config equals (ignoring the scale of SR variants), or ``custom``."""
    for name, fields in V1_VARIANTS.items():
        probe = dict(fields)
        if name in V1_SR_VARIANTS:
            probe["upscale"] = config.upscale
        try:
            if MambaIRConfig(**probe) == config:
                return name
        except ValueError:
            continue
    return "custom"


# -- network ---------------------------------------------------------------------------------
class SS2D(nn.Module):
    """2D selective scan (released name ``self_attention``): in-projection to ``x`` and a gate
    ``z``, depthwise conv + SiLU, one selective scan over the four directions (one batched call,
    four groups of B/C), the four results mapped back to row-major order and summed, LayerNorm,
    gate, out-projection.

    Parameters keep the released names: ``x_proj_weight`` (4×(R+2N)×D), ``dt_projs_weight``
    (4×D×R), ``dt_projs_bias`` (4×D), ``A_logs`` (4D×N), ``Ds`` (4D).
    """

    def __init__(self, dim: int, d_state: int, d_inner: int) -> None:
        super().__init__()
        k = DIRECTIONS
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
        """The four-direction scan of ``x`` (``B×D×H×W``), summed in row-major order: ``B×D×L``."""
        b, d, h, w = x.shape
        length = h * w
        hw = x.reshape(b, d, length)
        wh = x.transpose(2, 3).reshape(b, d, length)
        xs = torch.stack([hw, wh], 1)
        xs = torch.cat([xs, xs.flip(-1)], 1)  # B×4×D×L
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, bs, cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        y = selective_scan(xs.reshape(b, -1, length), dts.reshape(b, -1, length),
                           -torch.exp(self.A_logs.to(dtype)), bs, cs, self.Ds.to(dtype),
                           delta_bias=self.dt_projs_bias.reshape(-1).to(dtype), delta_softplus=True)
        y = y.to(x.dtype).view(b, DIRECTIONS, d, length)
        inv = y[:, 2:4].flip(-1)
        # released order of the sum: hw + reversed hw + wh + reversed wh
        col = y[:, 1].view(b, d, w, h).transpose(2, 3).reshape(b, d, length)
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
    """

    def __init__(self, dim: int, light: bool) -> None:
        super().__init__()
        self.light = light
        if light:
            hid = dim // 2
            self.cab = nn.Sequential(
                nn.Conv2d(dim, hid, 1), nn.Conv2d(hid, hid, 3, 1, 1, groups=hid), nn.GELU(),
                nn.Conv2d(hid, dim, 1), nn.Conv2d(dim, dim, 3, 1, 2, groups=dim, dilation=2),
                ChannelAttention(dim))
        else:
            hid = dim // 3
            self.cab = nn.Sequential(nn.Conv2d(dim, hid, 3, 1, 1), nn.GELU(), nn.Conv2d(hid, dim, 3, 1, 1),
                                     ChannelAttention(dim))

    def forward(self, x: Tensor) -> Tensor:
        cab = self.cab
        if self.light:
            x = conv_act(cab[0](x), cab[1], "gelu")
            return cab[5](cab[4](cab[3](x)))
        return cab[3](cab[2](conv_act(x, cab[0], "gelu")))


class VSSBlock(nn.Module):
    """``y = x·skip_scale + SS2D(LN(x))``; ``out = y·skip_scale2 + CAB(LN(y))``."""

    def __init__(self, dim: int, d_state: int, d_inner: int, light: bool) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(dim)
        self.self_attention = SS2D(dim, d_state, d_inner)
        self.skip_scale = nn.Parameter(torch.ones(dim))
        self.conv_blk = CAB(dim, light)
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

    def __init__(self, dim: int, depth: int, d_state: int, d_inner: int, light: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(VSSBlock(dim, d_state, d_inner, light) for _ in range(depth))

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

    def __init__(self, dim: int, depth: int, d_state: int, d_inner: int, light: bool,
                 resi_connection: str) -> None:
        super().__init__()
        self.residual_group = BasicLayer(dim, depth, d_state, d_inner, light)
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
            ResidualGroup(c.embed_dim, depth, c.d_state, c.d_inner, c.light, c.resi_connection)
            for depth in c.depths)
        self.norm = LayerNorm(c.embed_dim)
        self.conv_after_body = residual_conv(c.embed_dim, c.resi_connection)
        HEADS[c.upsampler].build(self, c.embed_dim, c.in_chans, c.upscale)
        self.apply(_init_weights)

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


# -- configuration from a state dict ---------------------------------------------------------
_SCAN_KEY = "self_attention.A_logs"
_BLOCK = re.compile(r"layers\.(\d+)\.residual_group\.blocks\.(\d+)\.")
_CAB = "layers.0.residual_group.blocks.0.conv_blk.cab."
_RELEASED_LIGHT = "the light weights the authors link since 2024-11-07 load"


def is_v1_state_dict(sd: Mapping[str, Tensor]) -> bool:
    """Whether ``sd`` belongs to the MambaIR (v1) family: its VSS blocks' ``self_attention``
    scan (also true of the versions recognised but not supported, see :func:`detect_v1_config`)."""
    return any(k.endswith(_SCAN_KEY) for k in sd)


def detect_v1_config(sd: Mapping[str, Tensor], source: str = "state dict") -> MambaIRConfig:
    """Infers a MambaIR (v1) configuration from a state dict's keys and shapes.

    Recognised but not supported (a one-line :class:`~mambairv2.errors.CheckpointError`
    saying what the file is): the real-image denoising U-Net ``MambaIRUNet`` and the light SR
    checkpoints linked before 2024-11-07 (block layouts of commits 06dc6cd and 3ad5892).
    ``img_range`` is not stored; the released value 1.0 is assumed.
    """
    def fail(message: str) -> None:
        raise CheckpointError(f"{source}: {message}")

    n = sum(int(t.numel()) for t in sd.values())
    if any(k.startswith("encoder_level1.") for k in sd) and "patch_embed.proj.weight" in sd:
        fail(f"MambaIRUNet (MambaIR's real-image denoising U-Net, {n:,} parameters): recognised, "
             "not supported (MambaIR's SR, colour-denoising and JPEG networks are)")
    marker = "layers.0.residual_group.blocks.0." + _SCAN_KEY
    missing = [k for k in ("conv_first.weight", "patch_embed.norm.weight", marker) if k not in sd]
    if missing:
        fail(f"not a MambaIR state dict: missing {', '.join(missing)} (first keys: {', '.join(list(sd)[:3])})")
    embed_dim, in_chans = (int(v) for v in sd["conv_first.weight"].shape[:2])
    try:
        upsampler, upscale = detect_head(sd, in_chans)
    except ValueError as exc:
        fail(f"not a MambaIR state dict: {exc}")
    if _CAB + "1.attention.1.weight" in sd:
        fail(f"MambaIR light SR x{upscale} checkpoint in the layout published before 2024-03-19 "
             f"(commit 3ad5892: CAB = depthwise 3×3 + channel attention; {n:,} parameters): recognised, "
             f"not supported ({_RELEASED_LIGHT})")
    light = _CAB + "5.attention.1.weight" in sd
    if not light and _CAB + "3.attention.1.weight" not in sd:
        fail("not a MambaIR state dict: unknown channel-attention block layout")
    if upsampler == "pixelshuffledirect" and not light:
        fail(f"MambaIR light SR x{upscale} checkpoint in the layout published 2024-03-19..2024-11-07 "
             f"(commit 06dc6cd: classic CAB with a 3×3 conv to embed_dim/6, d_state 16, mlp_ratio 1.5; "
             f"{n:,} parameters): recognised, not supported ({_RELEASED_LIGHT})")
    depth_of: Dict[int, int] = {}
    for key in sd:
        m = _BLOCK.match(key)
        if m:
            g, j = int(m.group(1)), int(m.group(2))
            depth_of[g] = max(depth_of.get(g, 0), j + 1)
    groups = sorted(depth_of)
    if groups != list(range(len(groups))):
        fail(f"group indices are not contiguous: {groups}")
    scan_channels, d_state = (int(v) for v in sd[marker].shape)
    d_inner = scan_channels // DIRECTIONS
    ratio = d_inner / embed_dim
    if int(ratio * embed_dim) != d_inner:  # released rule: d_inner = int(mlp_ratio · embed_dim)
        ratio = math.nextafter(ratio, math.inf)
    resi = "3conv" if "layers.0.conv.0.weight" in sd else "1conv"
    try:
        return MambaIRConfig(embed_dim=embed_dim, d_state=d_state, depths=tuple(depth_of[g] for g in groups),
                             mlp_ratio=ratio, upscale=upscale, in_chans=in_chans, upsampler=upsampler,
                             resi_connection=resi)
    except ValueError as exc:
        fail(f"inconsistent MambaIR state dict: {exc}")
    raise AssertionError("unreachable")
