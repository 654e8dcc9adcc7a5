"""Models shipped inside the package (``mambairv2/weights/*.safetensors``), trained by this
project; ``default`` names the one used when no model is given.

>>> from mambairv2.bundled import load_bundled
>>> model = load_bundled("default")       # MambaIRv2-Light x4
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Union

if TYPE_CHECKING:  # torch is imported lazily: the command line lists models before loading one
    import torch

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: Aliases: name → file stem in ``weights/``. Every file is also usable by its own stem.
ALIASES: Dict[str, str] = {"default": "light_x4"}


def bundled_models() -> Dict[str, Path]:
    """Name → weights file of every bundled model (aliases included, only installed files)."""
    files = {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.safetensors"))} if WEIGHTS_DIR.is_dir() else {}
    for alias, stem in ALIASES.items():
        if stem in files:
            files.setdefault(alias, files[stem])
    return files


def bundled_path(name: str) -> Path:
    """The weights file of a bundled model; ``KeyError`` with the known names if there is none."""
    models = bundled_models()
    if name not in models:
        known = ", ".join(models) or "none (this install has no bundled weights)"
        raise KeyError(f"no bundled model named {name!r}; bundled: {known}")
    return models[name]


def load_bundled(name: str = "default", device: Union[str, "torch.device"] = "cpu",
                 dtype: Optional["torch.dtype"] = None) -> "torch.nn.Module":
    """Loads a bundled model (eval mode), like :func:`mambairv2.load_model` on its file."""
    from .checkpoint import load_model

    return load_model(bundled_path(name), device=device, dtype=dtype)
