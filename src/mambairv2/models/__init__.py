"""Models: the two families (MambaIRv2, MambaIR v1), their checkpoints and every name a user
can type for one. The face of the package's model layer:

>>> from mambairv2.models import create_model, load_model, resolve, list_models
>>> model = load_model("default")                # a file, a bundled or a downloaded authors' name
>>> fresh = create_model("light", scale=4)       # a paper variant, random weights

The names are imported on first use, so listing names does not load PyTorch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_model": "registry", "family_of": "registry", "describe": "registry", "set_routing": "registry", "part_classes": "registry",
    "use_routing_generator": "registry", "check_state_size": "registry",
    "FAMILIES": "registry", "MODEL_NAMES": "registry", "ModelInfo": "registry",
    "resolve": "catalog", "load_model": "catalog", "list_models": "catalog", "ModelRef": "catalog",
    "bundled_models": "catalog", "load_bundled": "catalog",
    "load_file": "checkpoint", "save_safetensors": "checkpoint", "save_checkpoint": "checkpoint",
    "read_state_dict": "checkpoint", "CheckpointError": "checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mambairv2.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_EXPORTS))
