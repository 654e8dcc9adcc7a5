"""The one import point for the evaluation-protocol pieces the trainer needs: MATLAB-style
bicubic downscaling (to make LR inputs) and BasicSR's Y-channel PSNR (validation).

Minimal, self-contained implementations. The lead will swap this module for
``mambairv2.protocol`` (``protocol.imresize`` / ``protocol.metrics``) on merge: keep every use
of these functions going through this file.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Tuple

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


@lru_cache(maxsize=64)
def _contributions(in_len: int, out_len: int, scale: float) -> Tuple[np.ndarray, np.ndarray]:
    """Weights and (0-based) source indices, each ``out_len×P``, as MATLAB ``imresize``
    computes them: antialiasing (kernel stretched by 1/scale) when shrinking, symmetric
    padding at the borders, all-zero columns dropped."""
    width = 4.0
    if scale < 1:
        width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - idx
    weights = scale * _cubic(dist * scale) if scale < 1 else _cubic(dist)
    weights = weights / weights.sum(1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], idx[:, keep]


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    weights, idx = _contributions(img.shape[axis], out_len, scale)
    moved = np.moveaxis(img, axis, 0)  # L×…
    out = np.zeros((out_len,) + moved.shape[1:], dtype=np.float64)
    shape = (out_len,) + (1,) * (moved.ndim - 1)
    for k in range(weights.shape[1]):
        out += weights[:, k].reshape(shape) * moved[idx[:, k]]
    return np.moveaxis(out, 0, axis)


def imresize_bicubic(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` (antialiased when shrinking).

    Args:
        img: ``H×W`` or ``H×W×C``, uint8 or float.
        scale: factor, e.g. ``1/4`` to make an x4 LR image.
    Returns:
        The resized image; uint8 input gives uint8 (rounded once, at the end), float input
        gives float64.
    """
    src = np.asarray(img)
    out = src.astype(np.float64)
    h, w = src.shape[:2]
    out_h, out_w = int(math.ceil(h * scale)), int(math.ceil(w * scale))
    out = _resize_axis(out, 0, out_h, scale)
    out = _resize_axis(out, 1, out_w, scale)
    if src.dtype == np.uint8:
        return np.clip(np.round(out), 0, 255).astype(np.uint8)
    return out


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Y of YCbCr (ITU-R BT.601, [16, 235]) of an RGB ``H×W×3`` image in [0, 255], float64."""
    img = img.astype(np.float64) / 255.0
    return img @ np.array([65.481, 128.553, 24.966]) + 16.0


def psnr_y(a: np.ndarray, b: np.ndarray, crop: int = 0) -> float:
    """BasicSR PSNR on the Y channel (``test_y_channel=True``) of two 8-bit RGB images
    (``H×W×3``, values in [0, 255]); ``crop`` pixels are removed at every border first.
    Single-channel images are compared as they are."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if crop:
        a, b = a[crop:-crop, crop:-crop], b[crop:-crop, crop:-crop]
    if a.ndim == 3 and a.shape[2] == 3:
        a, b = rgb_to_y(a), rgb_to_y(b)
    return psnr(a, b)


def psnr(a: np.ndarray, b: np.ndarray, crop: int = 0) -> float:
    """PSNR of two arrays with values in [0, 255] (all channels)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if crop:
        a, b = a[crop:-crop, crop:-crop], b[crop:-crop, crop:-crop]
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)
