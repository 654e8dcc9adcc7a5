"""Loading what the figure analyses need: a model (checkpoint or bundled name) and images."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Union

import numpy as np
import torch

PathLike = Union[str, Path]


def load_weights(name: str) -> torch.nn.Module:
    """Any model name :func:`mambairv2.models.load_model` takes (``default``: the bundled
    MambaIRv2-Light x4), in eval mode on the CPU with argmax routing where the family routes."""
    from ..models import load_model, set_routing

    return set_routing(load_model(name).eval(), "argmax")


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size×size`` part of ``…×H×W`` (less where the image is smaller)."""
    h, w = x.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top:top + ch, left:left + cw]


def image_tensor(path: PathLike, channels: int = 3) -> torch.Tensor:
    """An image file as a ``1×channels×H×W`` float32 tensor in [0, 1], read as ``mambairv2
    restore`` reads it (16-bit kept, EXIF orientation applied); alpha is dropped, colour becomes
    gray with the ITU-R 601 luma weights and gray is repeated for colour models.

    Raises:
        ImageReadError: the file is missing or not a readable image (one-line reason, path included).
    """
    from ..utils.imageio import ImageReadError, full_scale, read_image

    try:
        pixels = read_image(path).pixels
    except ImageReadError as exc:
        raise ImageReadError(f"{path}: {exc}") from None
    x = torch.from_numpy(pixels.astype(np.float32) / full_scale(pixels)).permute(2, 0, 1)[None]
    x = x[:, :3] if x.shape[1] >= 3 else x[:, :1]
    if channels == 1 and x.shape[1] == 3:
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif channels == 3 and x.shape[1] == 1:
        x = x.expand(1, 3, *x.shape[-2:])
    return x.contiguous()


def load_images(paths: Sequence[PathLike], channels: int = 3, crop: int = 0) -> List[torch.Tensor]:
    """:func:`image_tensor` of each path, centre-cropped to ``crop`` pixels per side when ``crop`` > 0."""
    images = [image_tensor(p, channels) for p in paths]
    return [centre_crop(x, crop) for x in images] if crop > 0 else images
