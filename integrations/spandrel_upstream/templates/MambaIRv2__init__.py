# {generated}
from __future__ import annotations

import math

from typing_extensions import override

from spandrel.util import KeyCondition

from ...__helpers.model_descriptor import (
    Architecture,
    ImageModelDescriptor,
    ModelTiling,
    SizeRequirements,
    StateDict,
)
from .__arch.MambaIRv2 import MambaIRv2, detect_head, group_depths


class MambaIRv2Arch(Architecture[MambaIRv2]):
    def __init__(self) -> None:
        super().__init__(
            id="MambaIRv2",
            detect=KeyCondition.has_all(
                "conv_first.weight",
                "patch_embed.norm.weight",
                "layers.0.residual_group.layers.0.wqkv.weight",
                "layers.0.residual_group.layers.0.win_mhsa.relative_position_bias_table",
                "layers.0.residual_group.layers.0.assm.selectiveScan.A_logs",
                "layers.0.residual_group.layers.0.assm.embeddingB.weight",
                "layers.0.residual_group.layers.0.assm.route.0.weight",
                "layers.0.residual_group.layers.0.embeddingA.weight",
            ),
        )

    @override
    def load(self, state_dict: StateDict) -> ImageModelDescriptor[MambaIRv2]:
        first = "layers.0.residual_group.layers.0."
        embed_dim, in_chans = state_dict["conv_first.weight"].shape[:2]
        depths = group_depths(state_dict, "layers")
        num_heads = [
            state_dict[
                f"layers.{g}.residual_group.layers.0.win_mhsa.relative_position_bias_table"
            ].shape[1]
            for g in range(len(depths))
        ]
        table = state_dict[first + "win_mhsa.relative_position_bias_table"].shape[0]
        window_size = (math.isqrt(table) + 1) // 2
        hidden, d_state = state_dict[first + "assm.selectiveScan.A_logs"].shape
        num_tokens, inner_rank = state_dict[first + "assm.embeddingB.weight"].shape
        if first + "convffn1.sg.norm.weight" in state_dict:
            ffn = "gated"
            convffn_kernel_size = 5  # not used by the gated MLP
        else:
            ffn = "conv"
            convffn_kernel_size = state_dict[
                first + "convffn1.dwconv.depthwise_conv.0.weight"
            ].shape[-1]
        upsampler, upscale = detect_head(state_dict, in_chans)
        resi_connection = "3conv" if "layers.0.conv.0.weight" in state_dict else "1conv"
        mlp_ratio = hidden / embed_dim
        # the width itself where int(embed_dim * mlp_ratio) falls one short of it
        hidden_dim = None if int(embed_dim * mlp_ratio) == hidden else hidden

        model = MambaIRv2(
            embed_dim=embed_dim,
            d_state=d_state,
            depths=depths,
            num_heads=num_heads,
            window_size=window_size,
            inner_rank=inner_rank,
            num_tokens=num_tokens,
            convffn_kernel_size=convffn_kernel_size,
            mlp_ratio=mlp_ratio,
            hidden_dim=hidden_dim,
            upscale=upscale,
            in_chans=in_chans,
            upsampler=upsampler,
            resi_connection=resi_connection,
            ffn=ffn,
        )

        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR" if upscale > 1 else "Restoration",
            tags=[
                "MambaIRv2Light" if ffn == "gated" else "MambaIRv2",
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
            # any size: the network mirror-pads to a multiple of its window itself
            size_requirements=SizeRequirements(minimum=1),
            tiling=ModelTiling.SUPPORTED,
        )
