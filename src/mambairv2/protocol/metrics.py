"""PSNR and SSIM with the conventions of the restoration literature (BasicSR's
``calculate_psnr`` / ``calculate_ssim``), on 8-bit images.

- Inputs are ``H×W`` or ``H×W×C`` arrays holding 8-bit values (uint8, or floats on the 0..255
  scale), **RGB** channel order (BasicSR gets BGR from OpenCV; the Y weights are the same once
  matched to their channel).
- ``crop_border`` pixels are removed from every side first.
- ``channels``: ``"y"`` — the luma of ITU-R BT.601 YCbCr, ``Y = 16 + (65.481 R + 128.553 G +
  24.966 B) / 255`` with R, G, B scaled to [0, 1] (float32, as BasicSR's ``to_y_channel``) and Y
  computed in float64 and **not rounded**, then put back on the 0..255 scale (16..235); ``"rgb"`` —
  every channel as is; a single-channel (gray) image is used as is in both modes.
- PSNR: ``10·log10(255² / MSE)`` over all remaining values in float64 (``inf`` when equal).
- SSIM (Wang et al. 2004): 11×11 Gaussian window with σ = 1.5 (OpenCV's
  ``getGaussianKernel(11, 1.5)`` outer product), ``'valid'`` filtering (no padding),
  ``C1 = (0.01·255)²``, ``C2 = (0.03·255)²``, computed per channel and averaged.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

#: BT.601 luma weights of R, G, B (on [0, 1] data, giving Y in 16..235).
Y_WEIGHTS = (65.481, 128.553, 24.966)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2
CHANNEL_MODES = ("y", "rgb")


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Y channel (``H×W`` float64, 16..235 scale) of an ``H×W×3`` RGB image on the 0..255 scale,
    exactly as BasicSR's ``to_y_channel`` (input scaled to [0, 1] in float32 first)."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {img.shape}")
    unit = img.astype(np.float32) / np.float32(255.0)
    y = unit @ np.asarray(Y_WEIGHTS, dtype=np.float64) + 16.0
    return y / 255.0 * 255.0


def _prepare(img: np.ndarray, img2: np.ndarray, crop_border: int, channels: str) -> Tuple[np.ndarray, np.ndarray]:
    """Checks, crops, converts to Y if asked; returns two ``H×W×C`` float64 arrays."""
    a, b = np.asarray(img), np.asarray(img2)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected H×W or H×W×C images, got shape {a.shape}")
    if channels not in CHANNEL_MODES:
        raise ValueError(f"channels must be one of {CHANNEL_MODES}, got {channels!r}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be ≥ 0, got {crop_border}")
    if a.ndim == 2:
        a, b = a[:, :, None], b[:, :, None]
    if crop_border:
        if a.shape[0] <= 2 * crop_border or a.shape[1] <= 2 * crop_border:
            raise ValueError(f"crop_border {crop_border} leaves nothing of a {a.shape[0]}×{a.shape[1]} image")
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if channels == "y" and a.shape[2] == 3:
        a, b = rgb_to_y(a)[:, :, None], rgb_to_y(b)[:, :, None]
    elif a.shape[2] not in (1, 3):
        raise ValueError(f"expected 1 (gray) or 3 (RGB) channels, got {a.shape[2]}")
    return a.astype(np.float64), b.astype(np.float64)


def psnr(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, channels: str = "y") -> float:
    """PSNR in dB of two 8-bit-scale images (see the module's conventions); ``inf`` if equal."""
    a, b = _prepare(img, img2, crop_border, channels)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0:
        return float("inf")
    return 10.0 * math.log10(255.0 * 255.0 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian (float64), as OpenCV's ``getGaussianKernel(size, sigma)``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of an ``H×W`` float64 array with ``outer(g, g)``."""
    n = g.size
    h, w = x.shape[0] - n + 1, x.shape[1] - n + 1
    rows = np.zeros((h, x.shape[1]), dtype=np.float64)
    for k in range(n):
        rows += g[k] * x[k:k + h]
    out = np.zeros((h, w), dtype=np.float64)
    for k in range(n):
        out += g[k] * rows[:, k:k + w]
    return out


def ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two ``H×W`` float64 planes on the 0..255 scale (mean of the 'valid' SSIM map)."""
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW} pixels "
                         f"(after cropping), got {a.shape[0]}×{a.shape[1]}")
    g = gaussian_window()
    mu1, mu2 = _filter_valid(a, g), _filter_valid(b, g)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = _filter_valid(a * a, g) - mu1_sq
    s2 = _filter_valid(b * b, g) - mu2_sq
    s12 = _filter_valid(a * b, g) - mu12
    ssim_map = ((2 * mu12 + C1) * (2 * s12 + C2)) / ((mu1_sq + mu2_sq + C1) * (s1 + s2 + C2))
    return float(ssim_map.mean())


def ssim(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, channels: str = "y") -> float:
    """SSIM of two 8-bit-scale images (see the module's conventions), channels averaged."""
    a, b = _prepare(img, img2, crop_border, channels)
    return float(np.mean([ssim_channel(a[:, :, i], b[:, :, i]) for i in range(a.shape[2])]))


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (any range: clipped) → uint8 as BasicSR's ``tensor2img``: in
    float32, ``round(clamp(x, 0, 1) · 255)`` (NumPy rounds halves to even)."""
    x = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
    return np.round(x * np.float32(255.0)).astype(np.uint8)
