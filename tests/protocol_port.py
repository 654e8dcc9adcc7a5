"""An independent, straightforward port of the field's evaluation protocol as BasicSR codes it,
used only to check ``mambairv2.protocol`` (nothing here imports it).

- ``imresize``: BasicSR's ``matlab_functions.imresize`` — weights from ``calculate_weights_indices``
  in float32 (torch's default), symmetric padding by flipping, height first then width, on a float
  image in [0, 1], with no rounding between the passes; written as a sum over the kernel taps.
- ``bgr2y`` / ``calculate_psnr`` / ``calculate_ssim``: BasicSR's ``to_y_channel`` and
  ``metrics/psnr_ssim.py`` (SSIM through ``cv2.filter2D`` with ``cv2.getGaussianKernel``).
- ``sr_bicubic_scores``: the SR bicubic baseline computed with those functions, as a Python
  evaluation script of the literature does it (LR = round(imresize(HR/255, 1/s)·255), SR =
  round(clip(imresize(LR/255, s))·255)).
"""
from __future__ import annotations

import math
from typing import Tuple

import cv2
import numpy as np
import torch


def _cubic(x: torch.Tensor) -> torch.Tensor:
    absx = torch.abs(x)
    absx2, absx3 = absx ** 2, absx ** 3
    return ((1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1).type_as(absx)
            + (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((absx > 1) & (absx <= 2)).type_as(absx))


def _weights_indices(in_length: int, out_length: int, scale: float, kernel_width: float = 4.0,
                     antialiasing: bool = True) -> Tuple[torch.Tensor, torch.Tensor, int, int]:
    if scale < 1 and antialiasing:
        kernel_width = kernel_width / scale
    x = torch.linspace(1, out_length, out_length)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    p = math.ceil(kernel_width) + 2
    indices = left.view(out_length, 1).expand(out_length, p) + torch.linspace(0, p - 1, p).view(1, p)
    distance = u.view(out_length, 1) - indices
    weights = scale * _cubic(distance * scale) if (scale < 1 and antialiasing) else _cubic(distance)
    weights = weights / weights.sum(1, keepdim=True)
    zeros = torch.sum(weights == 0, 0)
    if not math.isclose(zeros[0], 0, rel_tol=1e-6):
        indices, weights = indices.narrow(1, 1, p - 2), weights.narrow(1, 1, p - 2)
    if not math.isclose(zeros[-1], 0, rel_tol=1e-6):
        indices, weights = indices.narrow(1, 0, p - 2), weights.narrow(1, 0, p - 2)
    sym_len_s = int(-indices.min() + 1)
    sym_len_e = int(indices.max() - in_length)
    indices = indices + sym_len_s - 1
    return weights.contiguous(), indices.long().contiguous(), sym_len_s, sym_len_e


def _pad_sym(x: torch.Tensor, dim: int, before: int, after: int) -> torch.Tensor:
    parts = []
    if before > 0:
        parts.append(x.narrow(dim, 0, before).flip(dim))
    parts.append(x)
    if after > 0:
        n = x.shape[dim]
        parts.append(x.narrow(dim, n - after, after).flip(dim))
    return torch.cat(parts, dim)


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """BasicSR's ``imresize`` of an ``H×W×C`` float image (returns float, unclipped)."""
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()
    c, h, w = x.shape
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    wh, ih, sh0, sh1 = _weights_indices(h, oh, scale)
    ww, iw, sw0, sw1 = _weights_indices(w, ow, scale)
    xp = _pad_sym(x, 1, sh0, sh1)
    tmp = torch.zeros(c, oh, w)
    for k in range(wh.shape[1]):  # one kernel tap at a time, for all output rows
        tmp += wh[:, k].view(1, oh, 1) * xp[:, ih[:, k], :]
    tp = _pad_sym(tmp, 2, sw0, sw1)
    out = torch.zeros(c, oh, ow)
    for k in range(ww.shape[1]):  # one kernel tap at a time, for all output columns
        out += ww[:, k].view(1, 1, ow) * tp[:, :, iw[:, k]]
    return out.numpy().transpose(1, 2, 0)


def bgr2y(img_bgr_uint8: np.ndarray) -> np.ndarray:
    """BasicSR ``to_y_channel`` of an 8-bit BGR image: Y on the 0..255 scale, float64."""
    img = img_bgr_uint8.astype(np.float32) / 255.0
    y = np.dot(img, [24.966, 128.553, 65.481]) + 16.0
    y = y / 255.0
    return (y * 255.0)[..., None]


def calculate_psnr(img: np.ndarray, img2: np.ndarray, crop_border: int, test_y_channel: bool) -> float:
    """BasicSR ``calculate_psnr`` (HWC, BGR, 8-bit)."""
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border, ...]
    if test_y_channel:
        img, img2 = bgr2y(img), bgr2y(img2)
    img, img2 = img.astype(np.float64), img2.astype(np.float64)
    mse = np.mean((img - img2) ** 2)
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 * 255.0 / mse)


def _ssim(img: np.ndarray, img2: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    img, img2 = img.astype(np.float64), img2.astype(np.float64)
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.transpose())
    mu1 = cv2.filter2D(img, -1, window)[5:-5, 5:-5]
    mu2 = cv2.filter2D(img2, -1, window)[5:-5, 5:-5]
    mu1_sq, mu2_sq, mu1_mu2 = mu1 ** 2, mu2 ** 2, mu1 * mu2
    sigma1_sq = cv2.filter2D(img ** 2, -1, window)[5:-5, 5:-5] - mu1_sq
    sigma2_sq = cv2.filter2D(img2 ** 2, -1, window)[5:-5, 5:-5] - mu2_sq
    sigma12 = cv2.filter2D(img * img2, -1, window)[5:-5, 5:-5] - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(ssim_map.mean())


def calculate_ssim(img: np.ndarray, img2: np.ndarray, crop_border: int, test_y_channel: bool) -> float:
    """BasicSR ``calculate_ssim`` (HWC, BGR, 8-bit)."""
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border, ...]
    if test_y_channel:
        img, img2 = bgr2y(img), bgr2y(img2)
    return float(np.mean([_ssim(img[..., i], img2[..., i]) for i in range(img.shape[2])]))


def sr_bicubic_scores(hr_bgr: np.ndarray, scale: int) -> Tuple[float, float]:
    """PSNR/SSIM (Y, crop = scale) of the bicubic baseline for one 8-bit BGR HR image."""
    h, w = hr_bgr.shape[:2]
    hr = hr_bgr[: h - h % scale, : w - w % scale]
    lr = np.round(np.clip(imresize(hr.astype(np.float32) / 255.0, 1 / scale), 0, 1) * 255.0).astype(np.uint8)
    sr = np.round(np.clip(imresize(lr.astype(np.float32) / 255.0, scale), 0, 1) * 255.0).astype(np.uint8)
    return calculate_psnr(sr, hr, scale, True), calculate_ssim(sr, hr, scale, True)
