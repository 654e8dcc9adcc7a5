"""The degradations of the benchmark tables (and their training variants).

- Super-resolution: :func:`mod_crop` the HR image to a multiple of the scale, MATLAB bicubic
  :func:`~mambairv2.protocol.imresize.imresize` by ``1/scale`` of the 8-bit image, 8-bit result
  (:func:`sr_input`).
- Colour Gaussian denoising, exactly as the released test: the clean image as float32 in
  [0, 1] in OpenCV's BGR layout, ``np.random.seed(0)`` before every image, noise
  ``np.random.normal(0, σ/255, shape)`` added in place (so float32), not clipped
  (:func:`noisy_input`). :func:`add_gaussian_noise` is the training variant (random σ, own
  generator, NumPy or torch).
- JPEG: encoded with OpenCV's encoder at quality ``q`` and decoded again (:func:`jpeg`); gray
  stays gray, colour images go through OpenCV in BGR order, as ``cv2.imwrite`` of an image read
  with ``cv2.imread`` would.

Images are ``H×W`` or ``H×W×C`` arrays, **RGB** channel order, unless said otherwise.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .imresize import imresize

SigmaArg = Union[float, Tuple[float, float], Sequence[float]]


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """The top-left part of ``img`` (``H×W[×C]``) whose height and width are multiples of ``scale``."""
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    h, w = img.shape[:2]
    if h < scale or w < scale:
        raise ValueError(f"a {h}×{w} image is smaller than the scale {scale}")
    return img[: h - h % scale, : w - w % scale]


def sr_input(hr: np.ndarray, scale: int) -> np.ndarray:
    """LR input of the SR tables: MATLAB ``imresize(modcrop(hr, scale), 1/scale, 'bicubic')``
    of an 8-bit image, 8-bit (uint8 in, uint8 out)."""
    hr = np.asarray(hr)
    if hr.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit (uint8) image, got {hr.dtype}")
    return imresize(mod_crop(hr, scale), 1.0 / scale)


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: MATLAB ``imresize(lr, scale, 'bicubic')`` of an 8-bit image (uint8)."""
    lr = np.asarray(lr)
    if lr.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit (uint8) image, got {lr.dtype}")
    return imresize(lr, float(scale))


def _rgb_bgr(img: np.ndarray) -> np.ndarray:
    """Swaps the first and third channel of ``H×W×3`` (RGB ↔ BGR); other shapes pass through."""
    return img[:, :, ::-1] if img.ndim == 3 and img.shape[2] == 3 else img


def noisy_input(clean: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Noisy input of the colour-denoising tables, as the released test makes it.

    Args:
        clean: uint8 RGB ``H×W×3`` (or gray ``H×W`` / ``H×W×1``) image.
        sigma: noise level on the 0..255 scale (15, 25, 50 in the tables).
        seed: the NumPy global seed set before drawing (the released test uses 0 for every image).

    Returns:
        float32 RGB image, ``clean/255 + noise``, **not clipped**. The noise is drawn for the
        BGR array (OpenCV's layout) and the result put back in RGB order, so the values are those
        the released test feeds to the model. The global NumPy RNG state is changed, as there.
    """
    clean = np.asarray(clean)
    if clean.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit (uint8) image, got {clean.dtype}")
    img = np.ascontiguousarray(_rgb_bgr(clean)).astype(np.float32) / np.float32(255.0)
    np.random.seed(seed)
    img += np.random.normal(0, sigma / 255.0, img.shape)  # in place: stays float32, as released
    return np.ascontiguousarray(_rgb_bgr(img))


def _draw_sigma(sigma: SigmaArg, draw) -> float:
    if np.isscalar(sigma):
        return float(sigma)
    lo, hi = (float(v) for v in sigma)
    if not 0 <= lo <= hi:
        raise ValueError(f"sigma range must be 0 ≤ low ≤ high, got {sigma}")
    return lo + (hi - lo) * draw()


def add_gaussian_noise(img: Union[np.ndarray, torch.Tensor], sigma: SigmaArg,
                       generator: Optional[Union[np.random.Generator, torch.Generator]] = None,
                       clip: bool = False) -> Union[np.ndarray, torch.Tensor]:
    """Training variant: ``img + N(0, σ/255)`` for a float image in [0, 1].

    Args:
        img: float NumPy array or torch tensor (any shape).
        sigma: a level on the 0..255 scale, or ``(low, high)`` to draw one uniformly per call.
        generator: ``np.random.Generator`` for arrays, ``torch.Generator`` for tensors (default:
            a fresh unseeded one / torch's global generator).
        clip: clip the result to [0, 1] (the test protocol does not).
    """
    if isinstance(img, torch.Tensor):
        if not img.dtype.is_floating_point:
            raise ValueError(f"expected a float tensor in [0, 1], got {img.dtype}")
        gen = generator if isinstance(generator, torch.Generator) or generator is None else None
        if generator is not None and gen is None:
            raise TypeError("a torch tensor needs a torch.Generator")
        s = _draw_sigma(sigma, lambda: float(torch.rand((), generator=gen)))
        noise = torch.randn(img.shape, generator=gen, dtype=img.dtype, device="cpu").to(img.device)
        out = img + noise * (s / 255.0)
        return out.clamp(0, 1) if clip else out
    arr = np.asarray(img)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected a float array in [0, 1], got {arr.dtype}")
    if generator is not None and not isinstance(generator, np.random.Generator):
        raise TypeError("a NumPy array needs a np.random.Generator")
    rng = generator if generator is not None else np.random.default_rng()
    s = _draw_sigma(sigma, lambda: float(rng.random()))
    out = (arr + rng.normal(0.0, s / 255.0, arr.shape)).astype(arr.dtype, copy=False)
    return np.clip(out, 0, 1) if clip else out


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """``img`` (uint8 gray ``H×W``/``H×W×1`` or RGB ``H×W×3``) encoded by OpenCV's JPEG encoder
    at ``quality`` (1..100) and decoded by OpenCV; same shape and dtype as ``img``."""
    import cv2

    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit (uint8) image, got {img.dtype}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    gray = img.ndim == 2 or img.shape[2] == 1
    if not gray and img.shape[2] != 3:
        raise ValueError(f"expected a gray or RGB image, got {img.shape[2]} channels")
    src = img.reshape(img.shape[:2]) if gray else np.ascontiguousarray(_rgb_bgr(img))
    ok, buf = cv2.imencode(".jpg", src, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode the image as JPEG")
    out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    return out.reshape(img.shape) if gray else np.ascontiguousarray(_rgb_bgr(out))
