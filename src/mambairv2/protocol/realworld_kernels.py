"""Blur kernels, sharpening and JPEG of the real-world degradation model
(:mod:`mambairv2.protocol.realworld`), in torch.

Kernels follow the definitions of Real-ESRGAN / BasicSR (``basicsr/data/degradations.py``):
bivariate Gaussian ``exp(-½ xᵀΣ⁻¹x)``, generalized Gaussian ``exp(-½ (xᵀΣ⁻¹x)^β)``, plateau
``1 / ((xᵀΣ⁻¹x)^β + 1)`` with ``Σ = R diag(σx², σy²) Rᵀ``, and the circular low-pass (sinc)
``ω J₁(ω r) / (2π r)``; every kernel sums to 1.

JPEG is a torch model of baseline JPEG (as DiffJPEG, which Real-ESRGAN runs on the GPU): YCbCr,
4:2:0 chroma (2×2 mean, bilinear upsampling back as libjpeg's), 8×8 DCT, the standard quantisation tables
scaled by the IJG quality factor, rounding. It is not bit-exact with libjpeg (no entropy coding,
steps clamped to ≥ 1 only): it makes the same kinds of artifacts at the same quality.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _grid(size: int) -> Tuple[Tensor, Tensor]:
    ax = torch.arange(-(size // 2), size // 2 + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> Tensor:
    """``xᵀ Σ⁻¹ x`` over a ``size``×``size`` grid centred on 0."""
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    sigma = rot @ torch.diag(torch.tensor([sigma_x ** 2, sigma_y ** 2], dtype=torch.float64)) @ rot.T
    inv = torch.linalg.inv(sigma)
    xx, yy = _grid(size)
    return inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, kind: str = "gaussian",
                    beta: float = 1.0) -> Tensor:
    """A normalised ``size``×``size`` kernel: ``kind`` gaussian, generalized or plateau."""
    q = _quadratic_form(size, sigma_x, sigma_y, theta)
    if kind == "gaussian":
        k = torch.exp(-0.5 * q)
    elif kind == "generalized":
        k = torch.exp(-0.5 * q.pow(beta))
    elif kind == "plateau":
        k = 1.0 / (q.pow(beta) + 1.0)
    else:
        raise ValueError(f"unknown kernel kind {kind!r}")
    return (k / k.sum()).float()


def sinc_kernel(size: int, cutoff: float) -> Tensor:
    """The circular low-pass kernel with cutoff ``cutoff`` (radians per pixel), normalised."""
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    r = torch.sqrt(xx * xx + yy * yy)
    safe = torch.where(r == 0, torch.ones_like(r), r)
    k = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    k = torch.where(r == 0, torch.full_like(r, cutoff ** 2 / (4 * math.pi)), k)
    return (k / k.sum()).float()


def filter2d(img: Tensor, kernel: Tensor) -> Tensor:
    """``img`` (N×C×H×W) filtered with one 2-D ``kernel`` (reflect padding; edge replication where
    the image is smaller than the kernel's reach)."""
    k = kernel.shape[-1]
    pad = k // 2
    mode = "reflect" if min(img.shape[-2:]) > pad else "replicate"
    x = F.pad(img, (pad, pad, pad, pad), mode=mode)
    c = img.shape[1]
    weight = kernel.to(img.dtype).to(img.device).expand(c, 1, k, k)
    return F.conv2d(x, weight, groups=c)


def _separable(img: Tensor, g: Tensor) -> Tensor:
    """``img`` filtered with the outer product ``g gᵀ`` as two 1-D passes (reflect padding)."""
    pad, c = g.numel() // 2, img.shape[1]
    mode = "reflect" if min(img.shape[-2:]) > pad else "replicate"
    g = g.to(img.device, img.dtype)
    x = F.conv2d(F.pad(img, (pad, pad, 0, 0), mode=mode), g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, pad, pad), mode=mode), g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def usm_sharpen(img: Tensor, radius: int = 50, weight: float = 0.5, threshold: float = 10.0) -> Tensor:
    """Unsharp masking as Real-ESRGAN sharpens its ground truth (BasicSR's USMSharp):
    ``img + weight·(img − blur)`` where ``|img − blur|·255 > threshold``, blended through the
    blurred mask. ``radius`` is BasicSR's: the Gaussian's size, made odd (50 → 51, sigma as
    OpenCV derives it from the size). ``img``: N×C×H×W in [0, 1]."""
    size = radius if radius % 2 else radius + 1
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for a kernel of this size
    ax = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-ax * ax / (2 * sigma * sigma))
    g = (g / g.sum()).float()
    blur = _separable(img, g)
    residual = img - blur
    mask = ((residual.abs() * 255) > threshold).to(img.dtype)
    soft = _separable(mask, g)
    sharp = (img + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * img


# -- JPEG -------------------------------------------------------------------------------------
_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
         14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
         49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
_CHROMA_TOP = [17, 18, 24, 47, 18, 21, 26, 66, 24, 26, 56, 99, 47, 66, 99, 99]  # the 4×4 corner; 99 elsewhere


def _tables() -> Tuple[Tensor, Tensor]:
    luma = torch.tensor(_LUMA, dtype=torch.float32).view(8, 8)
    chroma = torch.full((8, 8), 99.0)
    chroma[:4, :4] = torch.tensor(_CHROMA_TOP, dtype=torch.float32).view(4, 4)
    return luma, chroma


def _dct_matrix() -> Tensor:
    n = torch.arange(8, dtype=torch.float64)
    m = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m.float()  # orthonormal DCT-II: coefficients = M · block · Mᵀ


def quality_factor(quality: float) -> float:
    """The IJG scaling of the quantisation tables for a quality in [1, 100]."""
    q = float(quality)
    return (5000.0 / q if q < 50 else 200.0 - 2 * q) / 100.0


def _code_plane(plane: Tensor, table: Tensor, dct: Tensor) -> Tensor:
    """Quantise and restore one plane (H×W, multiples of 8, values 0..255)."""
    h, w = plane.shape
    blocks = (plane - 128).view(h // 8, 8, w // 8, 8).permute(0, 2, 1, 3)
    coef = dct @ blocks @ dct.T
    coef = torch.round(coef / table) * table
    back = dct.T @ coef @ dct
    return back.permute(0, 2, 1, 3).reshape(h, w) + 128


def jpeg(img: Tensor, quality: float) -> Tensor:
    """One image (C×H×W, RGB in [0, 1]) compressed and decoded at ``quality`` (4:2:0)."""
    c, h, w = img.shape
    ph, pw = (-h) % 16, (-w) % 16
    x = F.pad(img[None], (0, pw, 0, ph), mode="replicate")[0] * 255 if (ph or pw) else img * 255
    r, g, b = x[0], x[1], x[2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    luma, chroma = _tables()
    factor = quality_factor(quality)
    dct = _dct_matrix().to(img.device)
    # steps below 1 would only add rounding noise (libjpeg clamps them too)
    luma, chroma = (luma * factor).clamp(min=1).to(img.device), (chroma * factor).clamp(min=1).to(img.device)
    y = _code_plane(y, luma, dct)
    planes = []
    for p in (cb, cr):
        small = F.avg_pool2d(p[None, None], 2)[0, 0]
        small = _code_plane(small, chroma, dct)
        # libjpeg's "fancy" upsampling (3/4, 1/4 weights) is bilinear at half-pixel centres
        planes.append(F.interpolate(small[None, None], scale_factor=2, mode="bilinear", align_corners=False)[0, 0])
    cb, cr = planes[0] - 128, planes[1] - 128
    out = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb])
    return (out[:, :h, :w] / 255).clamp(0, 1)
