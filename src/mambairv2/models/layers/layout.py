"""Token ↔ image layouts shared by both families."""
from __future__ import annotations

from typing import Tuple

import torch

Tensor = torch.Tensor


def tokens_to_image(x: Tensor, size: Tuple[int, int]) -> Tensor:
    """``B×L×C`` (raster order) → ``B×C×H×W``, a channels-last view of contiguous tokens.

    Built as ``view(B, H, W, C).permute``: ``transpose(1, 2).reshape`` gives the same strides
    except the batch stride, which makes oneDNN convolutions fall back to a path 5–40× slower.
    """
    b, _, c = x.shape
    return x.reshape(b, size[0], size[1], c).permute(0, 3, 1, 2)


def image_to_tokens(x: Tensor) -> Tensor:
    """``B×C×H×W`` → contiguous ``B×L×C`` in raster order (a view for channels-last images)."""
    return x.flatten(2).transpose(1, 2).contiguous()
