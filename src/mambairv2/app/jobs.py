"""What one click of the page does, without Gradio: check an upload against the limits, restore
it with :func:`mambairv2.restore` and encode the download exactly as ``mambairv2 restore`` does,
or degrade a clean image with the benchmark protocol, restore it and score it (PSNR/SSIM).
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple, Union

import numpy as np

if TYPE_CHECKING:
    import torch

from ..defaults import APP_MAX_PIXELS as DEFAULT_MAX_PIXELS
from ..defaults import APP_MAX_UPLOAD_MB as DEFAULT_MAX_UPLOAD_MB
from ..utils.imageio import (
    ImageData,
    ImageReadError,
    array_to_pil,
    decode_image,
    encode_image,
    to_8bit,
    with_pixels,
)



class UploadError(ValueError):
    """An upload the page refuses; the message (one line) is shown on the page."""


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1e6)
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Options:
    """Restoration settings chosen on the page (see :func:`mambairv2.restore`)."""

    tile: Union[None, int, str] = None  # None: whole image; "auto": from free memory
    self_ensemble: bool = False
    simulate: bool = False  # degrade the upload as the benchmark protocol does, then score
    sigma: float = 25.0  # noise level of the simulated denoising input (0..255 scale)
    quality: int = 10  # JPEG quality of the simulated JPEG input


@dataclass
class Restored:
    """One restored upload: 8-bit previews of the same size, the download and a summary."""

    name: str
    before: np.ndarray  # the input (degraded one when simulating), enlarged to the output's size
    after: np.ndarray
    download: Path
    summary: str
    psnr: Optional[float] = None
    ssim: Optional[float] = None
    baseline_psnr: Optional[float] = None
    baseline_ssim: Optional[float] = None


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def read_upload(path: Union[str, os.PathLike], name: str, limits: Limits) -> ImageData:
    """Reads an uploaded image file, refusing what is over the limits or not an image.

    Raises:
        UploadError: too big (bytes or pixels), or not a readable image (the reason given).
    """
    size = os.path.getsize(path)
    if size > limits.max_upload_bytes:
        raise UploadError(f"{name}: the file is {_mb(size)}, over this page's upload limit of "
                          f"{_mb(limits.max_upload_bytes)} (start the app with a larger --max-upload-mb)")
    return decode_upload(Path(path).read_bytes(), name, limits)


def decode_upload(data: bytes, name: str, limits: Limits) -> ImageData:
    """Decodes the bytes of an uploaded image, refusing what is over the pixel limit or not an image.

    Raises:
        UploadError: too many pixels, or not a readable image (the reason given).
    """
    dims = _peek_size(data)
    if dims is not None and dims[0] * dims[1] > limits.max_pixels:
        w, h = dims
        raise UploadError(f"{name}: {w}×{h} is {w * h:,} pixels, over this page's limit of "
                          f"{limits.max_pixels:,} input pixels (crop it, or start the app with a "
                          f"larger --max-pixels)")
    try:
        return decode_image(data, max_pixels=limits.max_pixels)
    except ImageReadError as exc:
        raise UploadError(f"{name}: cannot be used: {exc}") from None


def _peek_size(data: bytes):
    """``(width, height)`` from the header, or None when Pillow cannot tell (decoding reports why)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # noqa: BLE001 - any failure here is reported by the full decode
        return None


def preview(pixels: np.ndarray, size: Optional[tuple] = None):
    """An 8-bit Pillow image for display, enlarged to ``size`` (width, height) with nearest
    neighbours so that every input pixel shows as a block at the output's zoom."""
    from PIL import Image

    px = to_8bit(np.asarray(pixels))
    img = array_to_pil(px if px.ndim == 3 else px[:, :, None])
    if size is not None and img.size != tuple(size):
        img = img.resize(tuple(size), Image.NEAREST)
    return img


def unique_path(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem+suffix``, numbered when taken."""
    path = folder / f"{stem}{suffix}"
    n = 2
    while path.exists():
        path = folder / f"{stem}-{n}{suffix}"
        n += 1
    return path


def page_tile(model: "torch.nn.Module", value: Optional[float]) -> Tuple[Union[int, str], Optional[str]]:
    """The tile the page's slider ``value`` asks of ``model`` (0: ``"auto"``), at least the
    model's smallest tile, and a note for the status when it was raised to that."""
    from ..defaults import DEFAULT_TILE_OVERLAP
    from ..inference.api import smallest_tile

    if not value or value <= 0:
        return "auto", None
    smallest = smallest_tile(model)
    if int(value) >= smallest:
        return int(value), None
    return smallest, (f"tile {int(value)} raised to {smallest}, the smallest this model takes with "
                      f"its {DEFAULT_TILE_OVERLAP}-px tile overlap")


def restore_upload(model: "torch.nn.Module", image: ImageData, name: str, out_dir: Path,
                   options: Options) -> Restored:
    """Restores an uploaded image as ``mambairv2 restore --format png`` would, keeping 16 bits,
    alpha and the colour profile, and writes the PNG under ``out_dir``."""
    from ..inference.api import restore
    from ..utils.imageio import atomic_write_bytes

    out_px = restore(model, image.pixels, tile=options.tile, self_ensemble=options.self_ensemble,
                     progress=True)
    data = encode_image(with_pixels(image, out_px), "PNG")
    target = unique_path(out_dir, Path(name).stem or "image", ".png")
    atomic_write_bytes(target, data)
    h, w = out_px.shape[:2]
    depth = "16-bit" if out_px.dtype == np.uint16 else "8-bit"
    alpha = ", alpha kept" if out_px.shape[2] in (2, 4) else ""
    ih, iw = image.pixels.shape[:2]
    summary = f"**{name}**: {iw}×{ih} → {w}×{h}, {depth} PNG{alpha}"
    return Restored(name, preview(image.pixels, (w, h)), preview(out_px), target, summary)


def simulate_upload(model: "torch.nn.Module", path: Union[str, os.PathLike], name: str, out_dir: Path,
                    options: Options) -> Restored:
    """Treats the upload as a clean image: degrades it as the benchmark protocol does for the
    model's task (bicubic ×s downscale, Gaussian noise σ, or JPEG at a quality), restores it and
    measures PSNR/SSIM against the clean image, for the model and for the plain baseline
    (bicubic upscaling, or the degraded input itself)."""
    from ..utils.imageio import atomic_write_bytes
    from ..protocol import metrics
    from ..protocol.evaluate import (
        EvaluationError,
        TaskSpec,
        bicubic_restorer,
        identity_restorer,
        make_input,
        model_restorer,
        read_clean,
    )

    cfg = model.config
    task = cfg.task
    try:
        spec = TaskSpec(task, scale=int(cfg.upscale) if task == "sr" else 1,
                        sigma=float(options.sigma) if task == "denoise" else None,
                        quality=int(options.quality) if task == "jpeg" else None,
                        color=task == "jpeg" and int(cfg.in_chans) == 3)
        clean = read_clean(path, spec)
        x, target = make_input(clean, spec)
    except (EvaluationError, ValueError) as exc:
        raise UploadError(f"{name}: {' '.join(str(exc).split())}") from None
    baseline = bicubic_restorer(spec.scale) if task == "sr" else identity_restorer()
    base8 = metrics.to_uint8(baseline(x))
    # the protocol's own runner: degraded inputs may leave 0..1 (noise is not clipped)
    method = model_restorer(model, self_ensemble=options.self_ensemble, tile=options.tile)
    out8 = metrics.to_uint8(method(x))
    kw = dict(crop_border=spec.crop_border, channels=spec.channels)
    scores = [metrics.psnr(out8, target, **kw), metrics.ssim(out8, target, **kw),
              metrics.psnr(base8, target, **kw), metrics.ssim(base8, target, **kw)]
    target_path = unique_path(out_dir, (Path(name).stem or "image") + "_" + spec.describe().split(" (")[0]
                              .replace(" ", "_"), ".png")
    atomic_write_bytes(target_path, encode_image(ImageData(out8), "PNG"))
    h, w = out8.shape[:2]
    base_name = "bicubic" if task == "sr" else "degraded input"
    summary = (f"**{name}** ({spec.describe()}): PSNR **{scores[0]:.2f} dB**, SSIM **{scores[1]:.4f}** "
               f"(restored) vs {scores[2]:.2f} dB, {scores[3]:.4f} ({base_name}); "
               f"{spec.channels.upper()}, border {spec.crop_border}")
    return Restored(name, preview(metrics.to_uint8(x), (w, h)), preview(out8), target_path, summary,
                    *scores)
