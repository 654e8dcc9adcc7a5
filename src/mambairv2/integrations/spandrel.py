"""MambaIRv2 as a `spandrel <https://github.com/chaiNNer-org/spandrel>`_ architecture (spandrel
>= 0.4), so that tools loading models through spandrel (ComfyUI, chaiNNer) load the authors'
MambaIRv2 and MambaIRv2Light checkpoints::

    import mambairv2.integrations.spandrel as mambairv2_spandrel
    mambairv2_spandrel.install()                      # adds it to spandrel.MAIN_REGISTRY
    model = spandrel.ModelLoader().load_from_file("MambaIRv2_lightSR_x4.pth")

Detection needs the keys of MambaIRv2's attentive layers (``...residual_group.layers.0.wqkv`` and
the ASSM's scan parameters), which no other spandrel architecture has, and then the full
configuration inferred from the keys and shapes by :func:`mambairv2.checkpoint.detect_config`.
Everything spandrel-specific lives in this module; spandrel is imported when it is.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch

from ..checkpoint import CheckpointError, detect_config
from ..config import MambaIRv2Config, variant_name
from ..model import MambaIRv2

ARCH_ID = "MambaIRv2"

# CPU, against the authors' float64 outputs (golden light_x2, two-group x2, denoise), see the
# notes of issue 16: bfloat16 runs end to end with errors of bfloat16 size. float16 was not
# verified on a GPU, so it is not claimed (spandrel then keeps such models in float32).
SUPPORTS_HALF = False
SUPPORTS_BFLOAT16 = True


def is_mambairv2_state_dict(state_dict: Dict[str, Any]) -> bool:
    """Detection from keys and shapes: the state dict's configuration can be inferred."""
    try:
        detect_config(state_dict)
    except (CheckpointError, KeyError, AttributeError, IndexError, TypeError, ValueError):
        return False
    return True


def descriptor_fields(config: MambaIRv2Config) -> Dict[str, Any]:
    """The spandrel-independent part of the descriptor: purpose, scale, channels and tags."""
    upsampler = config.upsampler or "no-upsampler"
    return {
        "purpose": "SR" if config.upscale > 1 else "Restoration",
        "scale": config.upscale,
        "input_channels": config.in_chans,
        "output_channels": config.in_chans,
        "tags": [variant_name(config), config.arch, f"{config.embed_dim}dim",
                 f"{sum(config.depths)}layers", upsampler],
    }


def _architecture_class():
    from spandrel import Architecture, ImageModelDescriptor, ModelTiling, SizeRequirements

    class MambaIRv2Arch(Architecture[MambaIRv2]):
        """spandrel architecture for MambaIRv2 and MambaIRv2Light (SR, denoising, JPEG)."""

        def __init__(self) -> None:
            super().__init__(id=ARCH_ID, name="MambaIRv2", detect=is_mambairv2_state_dict)

        def load(self, state_dict: Dict[str, torch.Tensor]) -> "ImageModelDescriptor[MambaIRv2]":
            config = detect_config(state_dict)
            model = MambaIRv2(config)
            return ImageModelDescriptor(
                model, state_dict, architecture=self,
                supports_half=SUPPORTS_HALF, supports_bfloat16=SUPPORTS_BFLOAT16,
                # any size works: the network mirror-pads to a multiple of its window itself
                size_requirements=SizeRequirements(minimum=1),
                tiling=ModelTiling.SUPPORTED,
                **descriptor_fields(config))

    return MambaIRv2Arch


def architecture():
    """A new instance of the spandrel ``Architecture`` for MambaIRv2."""
    return _architecture_class()()


def install(*, ignore_duplicates: bool = False) -> List[Any]:
    """Adds MambaIRv2 to ``spandrel.MAIN_REGISTRY`` (as ``spandrel_extra_arches.install()`` does);
    returns the added ``ArchSupport`` entries (empty when it was already installed and
    ``ignore_duplicates`` is set). No other architecture claims MambaIRv2's keys, and its
    detection rejects theirs, so the registry order does not matter."""
    from spandrel import MAIN_REGISTRY, ArchSupport

    return MAIN_REGISTRY.add(ArchSupport.from_architecture(architecture()),
                             ignore_duplicates=ignore_duplicates)
