"""MATLAB-compatible ``imresize`` (bicubic, antialiased when shrinking) for NumPy arrays and
torch tensors.

The SR literature makes its low-resolution inputs and its bicubic baselines with MATLAB's
``imresize(img, scale, 'bicubic')``; other bicubic resizers (PIL, OpenCV, torch) differ from
it at the borders, in the antialiasing or in the kernel, by several 8-bit levels. This module
reproduces MATLAB's computation:

- Keys cubic kernel with a = -0.5, support 4 input pixels;
- when shrinking (scale < 1) with antialiasing, the kernel is stretched by 1/scale;
- output pixel ``x`` (1-based) samples input position ``x/scale + 0.5·(1 - 1/scale)``;
- weights normalised to sum 1 per output pixel; pixels outside the image mirror it with the
  edge pixel repeated (``[1..n, n..1]`` periodically, so any size works, even 1 pixel);
- the dimension with the smaller scale is resized first (rows first on ties), each pass
  separable;
- the output size is ``ceil(scale · size)``; the computation is in double precision;
- integer images (uint8…) are rounded half away from zero and saturated **after each of the two
  passes**, as MATLAB's ``imresizemex`` returns the input's class from every pass. This matters:
  with it the Set5 LR files made by MATLAB are reproduced bit for bit, while resizing the same
  uint8 image in floating point throughout (as BasicSR's Python port does) is off by ±1 on
  10-15% of the values.

Each pass is vectorised: the banded resize matrix is applied in blocks of output pixels, each
a small dense matrix product over the input pixels that block reads.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np
import torch

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)
Scale = Union[float, Tuple[float, float], Sequence[float]]

KERNEL_WIDTH = 4.0


def cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB's bicubic kernel (Keys, a = -0.5)."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def contributions(in_length: int, out_length: int, scale: float,
                  antialiasing: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Weights (``out_length×P`` float64) and 0-based input indices (``out_length×P``) of a
    one-dimensional resize, as MATLAB's ``contributions``: ``out[i] = Σ_k w[i,k]·in[idx[i,k]]``."""
    if in_length < 1 or out_length < 1:
        raise ValueError(f"lengths must be positive, got {in_length} -> {out_length}")
    width = KERNEL_WIDTH
    stretch = scale < 1 and antialiasing
    if stretch:
        width = KERNEL_WIDTH / scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * cubic(distance * scale) if stretch else cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    keep = np.any(weights != 0, axis=0)  # columns of zeros only (MATLAB drops them too)
    return np.ascontiguousarray(weights[:, keep]), np.ascontiguousarray(indices[:, keep])


def output_size(in_hw: Tuple[int, int], scale: Optional[Scale] = None,
                output_shape: Optional[Tuple[int, int]] = None) -> Tuple[Tuple[int, int], Tuple[float, float]]:
    """``(out_h, out_w)`` and the per-axis scales MATLAB uses for a ``scale`` or an
    ``output_shape`` (exactly one of them)."""
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale and output_shape")
    if scale is not None:
        sh, sw = (float(scale), float(scale)) if np.isscalar(scale) else tuple(float(s) for s in scale)
        if not (sh > 0 and sw > 0 and math.isfinite(sh) and math.isfinite(sw)):
            raise ValueError(f"scale must be positive and finite, got {scale}")
        return (int(math.ceil(in_hw[0] * sh)), int(math.ceil(in_hw[1] * sw))), (sh, sw)
    oh, ow = (int(v) for v in output_shape)
    if oh < 1 or ow < 1:
        raise ValueError(f"output shape must be positive, got {output_shape}")
    return (oh, ow), (oh / in_hw[0], ow / in_hw[1])


def _order(scales: Tuple[float, float]) -> Tuple[int, int]:
    # MATLAB: [~, order] = sort(scale), a stable sort.
    return (0, 1) if scales[0] <= scales[1] else (1, 0)


def _blocks(weights: np.ndarray, indices: np.ndarray, scale: float):
    """Splits a resize into blocks of consecutive output pixels, each a small dense matrix
    ``(block × window)`` over the input pixels it reads (a slice when they are contiguous, an
    index array otherwise, e.g. at a mirrored border)."""
    n_out, taps = weights.shape
    # Blocks of about two kernel supports of input: matmul-friendly, few wasted zeros.
    block = int(min(256, max(8, round(2 * taps * scale))))
    rows = np.repeat(np.arange(block), taps).reshape(block, taps)
    for start in range(0, n_out, block):
        w = weights[start:start + block]
        idx = indices[start:start + block]
        uniq, inv = np.unique(idx, return_inverse=True)
        mat = np.zeros((w.shape[0], uniq.size), dtype=np.float64)
        np.add.at(mat, (rows[: w.shape[0]], inv.reshape(idx.shape)), w)  # mirrored taps may coincide
        if uniq[-1] - uniq[0] + 1 == uniq.size:
            where = slice(int(uniq[0]), int(uniq[-1]) + 1)
        else:
            where = uniq
        yield slice(start, start + w.shape[0]), where, mat


def _resize_rows(x: torch.Tensor, n_out: int, scale: float, antialiasing: bool) -> torch.Tensor:
    """Resizes the first dim of a contiguous 2-D tensor (one plain matrix product per block)."""
    weights, indices = contributions(x.shape[0], n_out, scale, antialiasing)
    out = torch.empty((n_out, x.shape[1]), dtype=x.dtype, device=x.device)
    for rows, where, mat in _blocks(weights, indices, scale):
        m = torch.from_numpy(mat).to(device=x.device, dtype=x.dtype)
        src = x[where] if isinstance(where, slice) else x.index_select(0, torch.from_numpy(where).to(x.device))
        torch.matmul(m, src, out=out[rows])
    return out


def _resize_hwn(x: torch.Tensor, out_hw: Tuple[int, int], scales: Tuple[float, float],
                antialiasing: bool,
                quantise: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """Resizes an ``H×W×N`` float tensor in MATLAB's dimension order; returns ``H'×W'×N``.
    ``quantise`` (for integer images) is applied after each pass."""
    for axis in _order(scales):
        if x.shape[axis] == out_hw[axis] and scales[axis] == 1:
            continue
        # Bring the resized axis first so each block is a 2-D product over whole rows.
        y = x if axis == 0 else x.transpose(0, 1)
        rest = y.shape[1:]
        y = _resize_rows(y.contiguous().reshape(y.shape[0], -1), out_hw[axis], scales[axis], antialiasing)
        y = y.reshape((out_hw[axis],) + tuple(rest))
        x = y if axis == 0 else y.transpose(0, 1)
        if quantise is not None:
            x = quantise(x)
    return x


def imresize(img: ArrayOrTensor, scale: Optional[Scale] = None, *,
             output_shape: Optional[Tuple[int, int]] = None,
             antialiasing: bool = True) -> ArrayOrTensor:
    """Bicubic resize as MATLAB's ``imresize(img, scale)`` / ``imresize(img, [h w])``.

    Args:
        img: NumPy ``H×W`` or ``H×W×C`` array, or torch tensor ``…×H×W`` (e.g. ``B×C×H×W``).
            Integer images (uint8, uint16, …) come back in their dtype, rounded half away from
            zero and saturated after each pass as in MATLAB; floats come back in their dtype,
            unclipped.
        scale: factor, or ``(scale_h, scale_w)``; the output size is ``ceil(scale·size)``.
        output_shape: ``(out_h, out_w)`` instead of ``scale``.
        antialiasing: widen the kernel when shrinking (MATLAB's default).

    NumPy computes in float64. Torch computes float64 tensors and integer tensors in float64,
    other float tensors in float32 (on their device).
    """
    is_torch = isinstance(img, torch.Tensor)
    if is_torch:
        if img.dim() < 2:
            raise ValueError(f"expected a tensor with at least 2 dims (…×H×W), got {tuple(img.shape)}")
        if img.dtype == torch.bool or img.is_complex():
            raise ValueError(f"expected an integer or float image, got dtype {img.dtype}")
        in_hw = (int(img.shape[-2]), int(img.shape[-1]))
    else:
        img = np.asarray(img)
        if not (np.issubdtype(img.dtype, np.integer) or np.issubdtype(img.dtype, np.floating)):
            raise ValueError(f"expected an integer or float image, got dtype {img.dtype}")
        if img.ndim not in (2, 3):
            raise ValueError(f"expected an H×W or H×W×C array, got shape {img.shape}")
        in_hw = (int(img.shape[0]), int(img.shape[1]))
    if (img.numel() if is_torch else img.size) == 0:
        raise ValueError(f"cannot resize an empty image of shape {tuple(img.shape)}")
    out_hw, scales = output_size(in_hw, scale, output_shape)

    if is_torch:
        src_dtype = img.dtype
        work_dtype = torch.float64 if (src_dtype == torch.float64 or not src_dtype.is_floating_point) \
            else torch.float32
        lead = tuple(img.shape[:-2])
        planes = img.to(work_dtype).reshape((-1,) + in_hw).permute(1, 2, 0)
        quantise = None if src_dtype.is_floating_point else _quantiser(*_torch_int_range(src_dtype))
        out = _resize_hwn(planes, out_hw, scales, antialiasing, quantise).permute(2, 0, 1)
        return _back_to_dtype_torch(out.reshape(lead + out_hw).contiguous(), src_dtype)

    src_dtype = img.dtype
    planes = torch.from_numpy(np.atleast_3d(img).astype(np.float64))  # H×W×C, no copy when float64
    quantise = None
    if np.issubdtype(src_dtype, np.integer):
        info = np.iinfo(src_dtype)
        quantise = _quantiser(int(info.min), int(info.max))
    out = _resize_hwn(planes, out_hw, scales, antialiasing, quantise).contiguous().numpy()
    return _back_to_dtype_numpy(out[..., 0] if img.ndim == 2 else out, src_dtype)


def _torch_int_range(dtype: torch.dtype) -> Tuple[int, int]:
    info = torch.iinfo(dtype)
    return int(info.min), int(info.max)


def _quantiser(lo: int, hi: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Rounds half away from zero and saturates to ``[lo, hi]``, staying in floating point."""
    def quantise(x: torch.Tensor) -> torch.Tensor:
        return (torch.sign(x) * torch.floor(x.abs() + 0.5)).clamp_(lo, hi)
    return quantise


def _back_to_dtype_numpy(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if info.min == 0:  # clipping first lets the rounding be a plain floor(x + 0.5)
            y = np.clip(x, 0, info.max)
            y += 0.5
            return np.floor(y, out=y).astype(dtype)
        return np.clip(round_half_away(x), info.min, info.max).astype(dtype)
    return x.astype(dtype, copy=False)


def _back_to_dtype_torch(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype.is_floating_point:
        return x.to(dtype)
    info = torch.iinfo(dtype)
    if info.min == 0:
        return torch.floor(x.clamp(0, info.max) + 0.5).to(dtype)
    return (torch.sign(x) * torch.floor(x.abs() + 0.5)).clamp(info.min, info.max).to(dtype)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Rounds half away from zero (MATLAB's ``round`` and its conversion to integer types)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)
