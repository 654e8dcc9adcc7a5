# {generated}
from __future__ import annotations

from typing_extensions import override

from spandrel.util import KeyCondition

from ...__helpers.model_descriptor import (
    Architecture,
    ImageModelDescriptor,
    ModelTiling,
    SizeRequirements,
    StateDict,
)
from .__arch.MambaIR import MambaIR, detect_head, group_depths

_CAB = "layers.0.residual_group.blocks.0.conv_blk.cab."


def _cab_layout(state_dict: StateDict, embed_dim: int) -> str:
    """The channel-attention block of the first VSS block."""
    if _CAB + "5.attention.1.weight" in state_dict:
        return "light"
    if _CAB + "1.attention.1.weight" in state_dict:
        return "light-3ad5892"
    hidden = state_dict[_CAB + "0.weight"].shape[0]
    return "light-06dc6cd" if hidden == embed_dim // 6 else "classic"


class MambaIRArch(Architecture[MambaIR]):
    def __init__(self) -> None:
        super().__init__(
            id="MambaIR",
            detect=KeyCondition.has_all(
                "conv_first.weight",
                "patch_embed.norm.weight",
                "layers.0.residual_group.blocks.0.ln_1.weight",
                "layers.0.residual_group.blocks.0.self_attention.A_logs",
                "layers.0.residual_group.blocks.0.self_attention.x_proj_weight",
                "layers.0.residual_group.blocks.0.skip_scale",
                "layers.0.residual_group.blocks.0.conv_blk.cab.0.weight",
            ),
        )

    @override
    def load(self, state_dict: StateDict) -> ImageModelDescriptor[MambaIR]:
        first = "layers.0.residual_group.blocks.0.self_attention."
        embed_dim, in_chans = state_dict["conv_first.weight"].shape[:2]
        upsampler, upscale = detect_head(state_dict, in_chans)
        depths = group_depths(state_dict, "blocks")
        scan_channels, d_state = state_dict[first + "A_logs"].shape
        scan_directions = state_dict[first + "x_proj_weight"].shape[0]
        d_inner = scan_channels // scan_directions
        mlp_ratio = d_inner / embed_dim
        # the width itself where int(mlp_ratio * embed_dim) falls one short of it
        hidden_dim = None if int(mlp_ratio * embed_dim) == d_inner else d_inner
        resi_connection = "3conv" if "layers.0.conv.0.weight" in state_dict else "1conv"
        cab = _cab_layout(state_dict, embed_dim)
        if cab == ("light" if upsampler == "pixelshuffledirect" else "classic"):
            cab = "auto"  # the released rule

        model = MambaIR(
            embed_dim=embed_dim,
            d_state=d_state,
            depths=depths,
            mlp_ratio=mlp_ratio,
            hidden_dim=hidden_dim,
            upscale=upscale,
            in_chans=in_chans,
            upsampler=upsampler,
            resi_connection=resi_connection,
            cab=cab,
            scan_directions=scan_directions,
        )

        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR" if upscale > 1 else "Restoration",
            tags=[
                "light" if upsampler == "pixelshuffledirect" else "classic",
                f"{embed_dim}dim",
                f"{sum(depths)}layers",
            ],
            # float16 was not verified; bfloat16 runs with errors of its own size (the scan
            # accumulates in float32)
            supports_half=False,
            supports_bfloat16=True,
            scale=upscale,
            input_channels=in_chans,
            output_channels=in_chans,
            size_requirements=SizeRequirements(minimum=1),
            tiling=ModelTiling.SUPPORTED,
        )
