"""The MambaIR (v1) configuration of a state dict, read from its keys and shapes alone."""
from __future__ import annotations

from typing import Mapping, Optional

import torch

from ...errors import CheckpointError
from ..layers.depths import group_depths
from ..layers.heads import detect_head
from .config import MambaIRConfig
from .network import DIRECTIONS

Tensor = torch.Tensor

_SCAN_KEY = "self_attention.A_logs"
_CAB = "layers.0.residual_group.blocks.0.conv_blk.cab."


def is_v1_state_dict(sd: Mapping[str, Tensor]) -> bool:
    """Whether ``sd`` belongs to the MambaIR (v1) family: its VSS blocks' ``self_attention``
    scan (also true of the versions recognised but not supported, see :func:`detect_v1_config`)."""
    return any(k.endswith(_SCAN_KEY) for k in sd)


def detect_v1_config(sd: Mapping[str, Tensor], source: str = "state dict") -> MambaIRConfig:
    """Infers a MambaIR (v1) configuration from a state dict's keys and shapes.

    Recognised but not supported (a one-line :class:`~mambairv2.errors.CheckpointError`
    saying what the file is): the real-image denoising U-Net ``MambaIRUNet``. The light SR
    checkpoints linked before 2024-11-07 (block layouts of commits 06dc6cd and 3ad5892) load as
    the ``cab`` layouts ``light-06dc6cd`` and ``light-3ad5892``; the number of scan directions
    is read from the scan's parameters.
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
    cab = _cab_layout(sd, embed_dim)
    if cab is None:
        fail("not a MambaIR state dict: unknown channel-attention block layout")
    try:
        depths = group_depths(sd, "blocks")
    except ValueError as exc:
        fail(str(exc))
    scan_channels, d_state = (int(v) for v in sd[marker].shape)
    first = "layers.0.residual_group.blocks.0.self_attention."
    directions = int(sd[first + "x_proj_weight"].shape[0]) if first + "x_proj_weight" in sd else DIRECTIONS
    d_inner = scan_channels // directions
    ratio = d_inner / embed_dim
    # released rule: d_inner = int(mlp_ratio · embed_dim); a width it misses is kept as such
    exact = None if int(ratio * embed_dim) == d_inner else d_inner
    resi = "3conv" if "layers.0.conv.0.weight" in sd else "1conv"
    try:
        return MambaIRConfig(embed_dim=embed_dim, d_state=d_state, depths=depths,
                             mlp_ratio=ratio, hidden_dim=exact, upscale=upscale, in_chans=in_chans,
                             upsampler=upsampler, resi_connection=resi, scan_directions=directions, cab=cab)
    except ValueError as exc:
        fail(f"inconsistent MambaIR state dict: {exc}")
    raise AssertionError("unreachable")


def _cab_layout(sd: Mapping[str, Tensor], embed_dim: int) -> Optional[str]:
    """The channel-attention block layout of the first block (None: not one we know)."""
    if _CAB + "5.attention.1.weight" in sd:
        return "light"
    if _CAB + "1.attention.1.weight" in sd:
        return "light-3ad5892"
    if _CAB + "3.attention.1.weight" in sd and _CAB + "0.weight" in sd:
        hidden = int(sd[_CAB + "0.weight"].shape[0])
        return {embed_dim // 3: "classic", embed_dim // 6: "light-06dc6cd"}.get(hidden)
    return None
