"""MambaIRv2 (CVPR 2025, "Attentive State Space Restoration") in pure PyTorch.

>>> import mambairv2
>>> model = mambairv2.load_model("MambaIRv2Light_SRx4.pth")   # configuration detected
>>> model = mambairv2.create_model("light", scale=4)           # fresh network
>>> sharp = mambairv2.restore(model, image, tile=256)           # NumPy array, PIL image or tensor

The names below are imported on first use, so that ``import mambairv2`` (and the command line's
``--version`` and ``--help``) does not load PyTorch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name → the module that defines it
_EXPORTS = {
    "CheckpointError": "errors",
    "load_model": "models", "save_safetensors": "models", "create_model": "models",
    "list_models": "models", "resolve": "models",
    "MambaIRv2Config": "models.mambairv2", "MambaIRv2": "models.mambairv2",
    "MambaIRConfig": "models.mambair", "MambaIR": "models.mambair",
    "restore": "inference",  # the function (no module of the package is named ``restore``)
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mambairv2' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # also replaces the submodule that importing ``.restore`` bound here
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_EXPORTS))
