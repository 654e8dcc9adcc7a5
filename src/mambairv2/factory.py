"""``create_model``: the paper's variants by name."""
from __future__ import annotations

from typing import Any

from .config import variant_config
from .model import MambaIRv2


def create_model(name: str, scale: int = 4, **overrides: Any) -> MambaIRv2:
    """A freshly initialised network of a paper variant.

    Args:
        name: ``light``, ``small``, ``base``, ``large`` (SR, ``scale`` 2/3/4), ``denoise``
            (colour, upscale 1) or ``jpeg`` (grayscale, upscale 1).
        scale: SR factor (ignored by ``denoise`` and ``jpeg``).
        overrides: any :class:`~mambairv2.config.MambaIRv2Config` field.
    """
    return MambaIRv2(variant_config(name, scale, **overrides))
