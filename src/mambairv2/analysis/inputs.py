"""Loading what the figure analyses need: a model (checkpoint or bundled name) and images."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Union

import numpy as np
import torch
from PIL import Image

PathLike = Union[str, Path]


def load_weights(name_or_path: str) -> torch.nn.Module:
    """A checkpoint file, or the name of a bundled model (``default``: MambaIRv2-Light x4).
    Returned in eval mode on the CPU with argmax routing."""
    from ..bundled import load_bundled
    from ..checkpoint import load_model

    path = Path(name_or_path)
    is_file = path.exists() or path.suffix in (".pth", ".pt", ".safetensors") or "/" in name_or_path
    model = load_model(path) if is_file else load_bundled(name_or_path)
    return model.eval().set_routing("argmax")


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size×size`` part of ``…×H×W`` (less where the image is smaller)."""
    h, w = x.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top:top + ch, left:left + cw]


def load_images(paths: Sequence[PathLike], channels: int = 3, crop: int = 0) -> List[torch.Tensor]:
    """Images as ``1×C×H×W`` float32 tensors in [0, 1] (RGB, or gray for ``channels`` = 1),
    centre-cropped to ``crop`` pixels per side when ``crop`` > 0."""
    out = []
    for p in paths:
        with Image.open(p) as img:
            arr = np.asarray(img.convert("RGB" if channels == 3 else "L"), dtype=np.float32) / 255.0
        if arr.ndim == 2:
            arr = arr[..., None]
        x = torch.from_numpy(arr.transpose(2, 0, 1).copy()).unsqueeze(0)
        out.append(centre_crop(x, crop) if crop > 0 else x)
    return out
