"""``create_model``: the paper's variants by name."""
from __future__ import annotations

from typing import Any, Union

from .config import VARIANTS, variant_config
from .model import MambaIRv2
from .model.mambair_v1 import V1_VARIANTS, MambaIR, v1_variant_config

#: every name ``create_model`` takes: MambaIRv2's variants, then MambaIR (v1)'s
MODEL_NAMES = tuple(VARIANTS) + tuple(V1_VARIANTS)


def create_model(name: str, scale: int = 4, **overrides: Any) -> Union[MambaIRv2, MambaIR]:
    """A freshly initialised network of a paper variant.

    Args:
        name: ``light``, ``small``, ``base``, ``large`` (SR, ``scale`` 2/3/4), ``denoise``
            (colour, upscale 1) or ``jpeg`` (grayscale, upscale 1).
        scale: SR factor (ignored by ``denoise`` and ``jpeg``).
        overrides: any :class:`~mambairv2.config.MambaIRv2Config` field.

    MambaIR (v1): ``mambair-light`` and ``mambair`` (classic; also the real-world SR model's
    architecture at x4), SR with ``scale`` 2/3/4, ``mambair-denoise`` and ``mambair-jpeg``;
    overrides are :class:`~mambairv2.model.mambair_v1.MambaIRConfig` fields.
    """
    if name in V1_VARIANTS:
        return MambaIR(v1_variant_config(name, scale, **overrides))
    return MambaIRv2(variant_config(name, scale, **overrides))
