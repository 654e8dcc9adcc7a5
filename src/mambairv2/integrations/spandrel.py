"""MambaIRv2 and MambaIR (v1) as `spandrel <https://github.com/chaiNNer-org/spandrel>`_
architectures (spandrel >= 0.4), one per family of :data:`mambairv2.models.FAMILIES`, so that
tools loading models through spandrel (ComfyUI, chaiNNer) load the authors' checkpoints of both
(MambaIRv2, MambaIRv2Light, MambaIR classic/light/real-world SR, denoising, JPEG)::

    import mambairv2.integrations.spandrel as mambairv2_spandrel
    mambairv2_spandrel.install()                      # adds it to spandrel.MAIN_REGISTRY
    model = spandrel.ModelLoader().load_from_file("MambaIRv2_lightSR_x4.pth")

Detection asks the family's own key test and then infers the full configuration from the keys
and shapes (the family's ``detect``), which no other spandrel architecture's state dict passes.
Everything spandrel-specific lives in this module; spandrel is imported when it is.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch

from ..errors import CheckpointError
from ..models import FAMILIES, check_state_size, family_of
from ..models.family import Family

# CPU, against the authors' float64 outputs (golden cases), see the notes of issue 16: bfloat16
# runs end to end with errors of bfloat16 size. float16 was not verified on a GPU, so it is not
# claimed (spandrel then keeps such models in float32).
#: the spandrel ids of the families (``MambaIRv2``, ``MambaIR``)
ARCH_IDS = tuple(f.display for f in FAMILIES)
ARCH_ID = ARCH_IDS[0]
SUPPORTS_HALF = False
SUPPORTS_BFLOAT16 = True


def detects(family: Family, state_dict: Dict[str, Any]) -> bool:
    """Detection from keys and shapes: the state dict is the family's and its configuration can
    be inferred."""
    try:
        if not family.owns(state_dict):
            return False
        family.detect(state_dict, "state dict")
    except (CheckpointError, KeyError, AttributeError, IndexError, TypeError, ValueError):
        return False
    return True


def is_mambairv2_state_dict(state_dict: Dict[str, Any]) -> bool:
    """Whether any family of this package reads ``state_dict``."""
    return any(detects(f, state_dict) for f in FAMILIES)


def descriptor_fields(config: Any) -> Dict[str, Any]:
    """The spandrel-independent part of the descriptor: purpose, scale, channels and tags."""
    family = family_of(config)
    upsampler = config.upsampler or "no-upsampler"
    return {
        "purpose": "SR" if config.upscale > 1 else "Restoration",
        "scale": config.upscale,
        "input_channels": config.in_chans,
        "output_channels": config.in_chans,
        "tags": [family.variant_name(config), config.arch, f"{config.embed_dim}dim",
                 f"{sum(config.depths)}layers", upsampler,
                 *(f"{k}={v}" for k, v in config.switches().items())],  # ablation switches
    }


def _architecture_class():
    from spandrel import Architecture, ImageModelDescriptor, ModelTiling, SizeRequirements

    class FamilyArch(Architecture[torch.nn.Module]):
        """spandrel architecture for one family (SR, denoising, JPEG)."""

        def __init__(self, family: Family) -> None:
            super().__init__(id=family.display, name=family.display,
                             detect=lambda state_dict: detects(family, state_dict))
            self.family = family

        def load(self, state_dict: Dict[str, torch.Tensor]) -> "ImageModelDescriptor[torch.nn.Module]":
            config = self.family.detect(state_dict, "state dict")
            check_state_size(state_dict, config)
            model = self.family.build(config)
            return ImageModelDescriptor(
                model, state_dict, architecture=self,
                supports_half=SUPPORTS_HALF, supports_bfloat16=SUPPORTS_BFLOAT16,
                # any size works: the network pads to a multiple of its window itself
                size_requirements=SizeRequirements(minimum=1),
                tiling=ModelTiling.SUPPORTED,
                **descriptor_fields(config))

    return FamilyArch


def architectures() -> List[Any]:
    """New instances of the spandrel ``Architecture`` of every family."""
    cls = _architecture_class()
    return [cls(f) for f in FAMILIES]


def architecture():
    """A new instance of the spandrel ``Architecture`` for MambaIRv2."""
    return architectures()[0]


def builtin_ids() -> List[str]:
    """The families spandrel itself already has (a spandrel version that ships the
    ``MambaIRv2`` / ``MambaIR`` architectures proposed from ``integrations/spandrel_upstream``)."""
    from spandrel import MAIN_REGISTRY

    return [i for i in ARCH_IDS if i in MAIN_REGISTRY
            and type(MAIN_REGISTRY[i].architecture).__module__.startswith("spandrel.")]


def install(*, ignore_duplicates: bool = False) -> List[Any]:
    """Adds every family to ``spandrel.MAIN_REGISTRY`` (as ``spandrel_extra_arches.install()``
    does); returns the added ``ArchSupport`` entries (empty when already installed and
    ``ignore_duplicates`` is set). A family spandrel already ships (:func:`builtin_ids`) is left
    to spandrel's own architecture. No other architecture claims these keys, and the families'
    detection rejects theirs, so the registry order does not matter."""
    from spandrel import MAIN_REGISTRY, ArchSupport

    builtin = set(builtin_ids())
    return MAIN_REGISTRY.add(*(ArchSupport.from_architecture(a) for a in architectures() if a.id not in builtin),
                             ignore_duplicates=ignore_duplicates)
