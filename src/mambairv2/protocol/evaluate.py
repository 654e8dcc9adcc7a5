"""Benchmark evaluation as in the paper's tables: degrade the clean images, restore them, and
measure PSNR/SSIM with the field's conventions.

Per task (see :class:`TaskSpec`):

- ``sr``: HR read as RGB (gray as three equal channels), mod-cropped to the scale; input = the
  8-bit MATLAB-bicubic LR (:func:`~mambairv2.protocol.degrade.sr_input`) or a pre-made LR file;
  metrics on the Y channel with ``crop_border = scale``.
- ``denoise``: clean read as RGB; input = :func:`~mambairv2.protocol.degrade.noisy_input` (float32,
  unclipped, seeded with 0 per image) or a pre-made ``.npy``/image; metrics on RGB, no crop.
- ``jpeg``: clean read as gray (colour files converted with OpenCV's ``RGB2GRAY``), or RGB with
  ``color=True``; input = OpenCV JPEG at the quality; metrics on gray (or RGB), no crop.

The restored image — whatever the method, including the ``identity`` baseline whose output is
its (noisy, unclipped) input — is turned into 8 bits as BasicSR's ``tensor2img`` does before the
metrics: clamped to [0, 1], times 255, rounded (:func:`~mambairv2.protocol.metrics.to_uint8`).

A method is any ``Restorer``: a function from the input (``H×W×C`` float32, [0, 1] scale) to the
output (``H·s×W·s×C`` float, [0, 1] scale). :func:`bicubic_restorer`, :func:`identity_restorer`
and :func:`model_restorer` make the usual ones.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..utils.folders import folder_problem
from ..utils.text import printable
from . import degrade, metrics
from .task import TASKS, EvaluationError, TaskSpec, make_input, read_clean  # noqa: F401 - re-exported

PathLike = Union[str, os.PathLike]
Restorer = Callable[[np.ndarray], np.ndarray]
PROTOCOLS = ("whole", "official")
#: Size of the parts of the released test script's crop protocol.
OFFICIAL_CROP = 200
HIDDEN_PREFIX = "."


@dataclass
class ImageResult:
    name: str
    psnr: float
    ssim: float


@dataclass
class DatasetResult:
    """Per-image results of one folder; ``psnr``/``ssim`` are the means over its images."""

    name: str
    images: List[ImageResult] = field(default_factory=list)

    @property
    def psnr(self) -> float:
        return float(np.mean([r.psnr for r in self.images])) if self.images else float("nan")

    @property
    def ssim(self) -> float:
        return float(np.mean([r.ssim for r in self.images])) if self.images else float("nan")

    def to_dict(self) -> dict:
        """JSON-ready: ``{"psnr", "ssim", "images": [{"name", "psnr", "ssim"}]}`` (an infinite
        PSNR, identical images, is written as ``null``)."""
        return {"psnr": _finite(self.psnr), "ssim": self.ssim,
                "images": [{"name": r.name, "psnr": _finite(r.psnr), "ssim": r.ssim} for r in self.images]}


def _finite(x: float) -> Optional[float]:
    return float(x) if math.isfinite(x) else None


# -- folders and files -----------------------------------------------------------------------------
def list_images(folder: PathLike) -> Tuple[List[Path], List[Path]]:
    """Image files of ``folder`` (not recursive, sorted by name, hidden files left out; the files
    ``restore`` takes from a folder, :func:`~mambairv2.utils.imageio.is_image_file`) and the other
    files found there (to be reported as skipped).

    Raises:
        EvaluationError: the folder does not exist or is not a folder.
    """
    from ..utils.imageio import is_image_file

    folder = Path(folder)
    if folder_problem(folder):
        raise EvaluationError(f"{folder}: {folder_problem(folder)}")
    images, others = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(HIDDEN_PREFIX) or not path.is_file():
            continue
        (images if is_image_file(path) else others).append(path)
    return images, others


def dataset_name(folder: PathLike) -> str:
    """A dataset's name from its folder: the folder's name, or its parent's when the folder is
    called ``HR`` (``Set5/HR`` → ``Set5``)."""
    path = Path(os.path.abspath(folder))
    if path.name.lower() == "hr" and path.parent.name:
        return path.parent.name
    return path.name


def find_premade(lr_dir: Path, hr_path: Path, spec: TaskSpec) -> Path:
    """The pre-made input of ``hr_path`` in ``lr_dir``: ``<stem>x<scale>.*`` (the SR
    benchmarks' naming, also what ``mambairv2 degrade`` writes) or ``<stem>.*``; ``.npy`` first
    for denoising.

    Raises:
        EvaluationError: none or several candidates.
    """
    from ..utils.imageio import EXTENSIONS

    stems = ([f"{hr_path.stem}x{spec.scale}"] if spec.task == "sr" else []) + [hr_path.stem]
    exts = ([".npy"] if spec.task == "denoise" else []) + sorted(set(EXTENSIONS))
    for stem in stems:
        found = [lr_dir / f"{stem}{e}" for e in exts if (lr_dir / f"{stem}{e}").is_file()]
        if len(found) == 1 or (found and found[0].suffix == ".npy"):
            return found[0]
        if found:
            raise EvaluationError(f"{lr_dir}: several inputs for {hr_path.name}: "
                                  + ", ".join(p.name for p in found))
    looked = ", ".join(f"{s}.*" for s in stems)
    raise EvaluationError(f"{lr_dir}: no input for {hr_path.name} (looked for {looked})")


def read_premade(path: Path, spec: TaskSpec, target: np.ndarray) -> np.ndarray:
    """Reads a pre-made input (image, 8 or 16 bits, or ``.npy`` float ``H×W×C`` RGB on the
    [0, 1] scale) as float32 ``H×W×C`` with the target's channels; checks its size."""
    from ..utils.imageio import ImageReadError, full_scale, read_image

    if path.suffix.lower() == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise EvaluationError(f"{path}: cannot read ({' '.join(str(exc).split())[:120]})") from None
        if x.ndim == 2:
            x = x[:, :, None]
        if x.ndim != 3 or not np.issubdtype(x.dtype, np.floating):
            raise EvaluationError(f"{path}: expected an H×W×C float array, got {x.dtype} {x.shape}")
        x = x.astype(np.float32)
    else:
        try:
            px = read_image(path).pixels
        except ImageReadError as exc:
            raise EvaluationError(f"{path}: {exc}") from None
        peak = full_scale(px)
        px = px[:, :, :3] if px.shape[2] >= 3 else px[:, :, :1]
        x = px.astype(np.float32) / np.float32(peak)
    c = target.shape[2]
    if x.shape[2] != c:
        x = np.repeat(x[:, :, :1], 3, axis=2) if c == 3 and x.shape[2] == 1 else None
        if x is None:
            raise EvaluationError(f"{path}: channels do not match its clean image ({c})")
    s = spec.scale
    if (x.shape[0] * s, x.shape[1] * s) != target.shape[:2]:
        raise EvaluationError(f"{path}: size {x.shape[1]}×{x.shape[0]} does not match its clean image "
                              f"({target.shape[1]}×{target.shape[0]}{', mod-cropped, /' + str(s) if s > 1 else ''})")
    return x


# -- methods ---------------------------------------------------------------------------------------
def bicubic_restorer(scale: int) -> Restorer:
    """The SR baseline: MATLAB ``imresize(lr, scale, 'bicubic')`` of the 8-bit LR."""
    def run(x: np.ndarray) -> np.ndarray:
        lr = metrics.to_uint8(x)  # exact: the input holds 8-bit values
        return degrade.bicubic_upscale(lr, scale).astype(np.float32) / np.float32(255)
    return run


def identity_restorer() -> Restorer:
    """The denoising/JPEG baseline: the degraded input itself."""
    return lambda x: x


def official_crops(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                   scale: int, crop: int = OFFICIAL_CROP) -> torch.Tensor:
    """The released test script's crop protocol on ``x`` (``1×C×H×W``).

    The image is split into ``(H//crop + 1) × (W//crop + 1)`` parts after reflect-padding
    (bottom/right) to a multiple of those counts; each part is extended by ``part // 10`` pixels
    towards its inner neighbours, restored by ``forward`` (which multiplies the size by
    ``scale``), and its own part (without the extension) is pasted into the result, which is
    then cropped to ``H·scale × W·scale``.
    """
    import torch.nn.functional as F

    _, c, h, w = x.shape
    nh, nw = h // crop + 1, w // crop + 1
    pad_h, pad_w = (-h) % nh, (-w) % nw
    img = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if (pad_h or pad_w) else x
    H, W = img.shape[-2:]
    sh, sw = H // nh, W // nw
    eh, ew = sh // 10, sw // 10
    out: Optional[torch.Tensor] = None
    for i in range(nh):
        top = max(i * sh - eh, 0)
        bottom = min((i + 1) * sh + eh, H) if i < nh - 1 else H
        for j in range(nw):
            left = max(j * sw - ew, 0)
            right = min((j + 1) * sw + ew, W) if j < nw - 1 else W
            y = forward(img[:, :, top:bottom, left:right])
            if out is None:
                out = torch.zeros(1, y.shape[1], H * scale, W * scale, dtype=y.dtype)
            oy, ox = (i * sh - top) * scale, (j * sw - left) * scale
            out[:, :, i * sh * scale:(i + 1) * sh * scale, j * sw * scale:(j + 1) * sw * scale] = \
                y[:, :, oy:oy + sh * scale, ox:ox + sw * scale]
    assert out is not None
    return out[:, :, : h * scale, : w * scale]


def model_restorer(model: torch.nn.Module, protocol: str = "whole", self_ensemble: bool = False,
                   scale: Optional[int] = None, tile: Union[None, int, str] = None,
                   tile_overlap: Optional[int] = None, dtype: Optional[str] = None) -> Restorer:
    """A MambaIRv2 model as a method: the whole image at once (``protocol="whole"``; with
    ``tile``, in blended overlapping tiles to bound memory, see :func:`mambairv2.inference.restore_tensor`)
    or the released ~200-px crops (``"official"``), optionally with the x8 self-ensemble (per crop);
    ``dtype``: the forward's autocast dtype (see :func:`mambairv2.inference.restore_tensor`)."""
    from ..inference.api import DEFAULT_TILE_OVERLAP, restore_tensor

    if protocol not in PROTOCOLS:
        raise EvaluationError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    if protocol == "official" and tile is not None:
        raise EvaluationError("tiles apply to the whole-image protocol, not the official crops")
    s = int(scale if scale is not None else model.config.upscale)
    overlap = DEFAULT_TILE_OVERLAP if tile_overlap is None else int(tile_overlap)

    def forward(t: torch.Tensor) -> torch.Tensor:
        return restore_tensor(model, t, tile=tile, tile_overlap=overlap, self_ensemble=self_ensemble,
                              dtype=dtype)

    def run(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(2, 0, 1)[None]
        y = forward(t) if protocol == "whole" else official_crops(forward, t, s)
        return y[0].permute(1, 2, 0).numpy()
    return run


# -- the runner ------------------------------------------------------------------------------------
def evaluate_folder(method: Restorer, spec: TaskSpec, hr_dir: PathLike, lr_dir: Optional[PathLike] = None,
                    name: Optional[str] = None, save_dir: Optional[PathLike] = None,
                    images: Optional[Sequence[Path]] = None,
                    on_image: Optional[Callable[[ImageResult], None]] = None,
                    on_output: Optional[Callable[[Path, np.ndarray, np.ndarray], None]] = None) -> DatasetResult:
    """Evaluates ``method`` on the images of ``hr_dir``.

    Args:
        method: the restorer (see the module's docstring).
        spec: task and level.
        hr_dir: folder of clean images (non-image files are ignored; see :func:`list_images`).
        lr_dir: folder of pre-made inputs (see :func:`find_premade`) instead of degrading here.
        name: the dataset's name (default: :func:`dataset_name`).
        save_dir: if given, restored images are written there as 8-bit PNG (``<stem>.png``).
        images: the files to use (default: all images of ``hr_dir``).
        on_image: called with each image's result as soon as it is known.
        on_output: called with each file, its 8-bit output and target (further metrics).

    Raises:
        EvaluationError: missing folder, no images, unreadable image, unusable pre-made input,
            or a method output of the wrong size.
    """
    from ..utils.imageio import ImageData, atomic_write_bytes, encode_image

    hr_dir = Path(hr_dir)
    if images is None:
        images, _ = list_images(hr_dir)
    if not images:
        raise EvaluationError(f"{hr_dir}: holds no images")
    result = DatasetResult(name or dataset_name(hr_dir))
    if lr_dir is not None and folder_problem(lr_dir):
        raise EvaluationError(f"{lr_dir}: {folder_problem(lr_dir)}")
    for path in images:
        clean = read_clean(path, spec)
        x, target = make_input(clean, spec)
        if lr_dir is not None:
            x = read_premade(find_premade(Path(lr_dir), path, spec), spec, target)
        y = np.asarray(method(x))
        if y.ndim == 2:
            y = y[:, :, None]
        if y.shape != target.shape:
            raise EvaluationError(f"{path.name}: the method returned {y.shape[1]}×{y.shape[0]}×{y.shape[2]} "
                                  f"for a {target.shape[1]}×{target.shape[0]}×{target.shape[2]} target")
        out = metrics.to_uint8(y)  # BasicSR's tensor2img: clamp to [0, 1], ×255, round
        try:
            r = ImageResult(path.name, metrics.psnr(out, target, spec.crop_border, spec.channels),
                            metrics.ssim(out, target, spec.crop_border, spec.channels))
        except ValueError as exc:  # an image too small for the metric after cropping
            raise EvaluationError(f"{path}: {exc}; evaluate larger images") from None
        result.images.append(r)
        if on_output is not None:
            on_output(path, out, target)
        if save_dir is not None:
            atomic_write_bytes(Path(save_dir) / f"{path.stem}.png", encode_image(ImageData(out, "PNG"), "PNG"),
                               overwrite=True)
        if on_image is not None:
            on_image(r)
    return result


def report(spec: TaskSpec, model: str, results: Sequence[DatasetResult], protocol: str = "whole",
           self_ensemble: bool = False) -> dict:
    """The JSON report: ``{"task", "scale", "sigma", "quality", "model", "protocol",
    "self_ensemble", "metric", "datasets": {name: {"psnr", "ssim", "images": [...]}}}``."""
    return {"task": spec.task, "scale": spec.scale, "sigma": spec.sigma, "quality": spec.quality,
            "model": model, "protocol": protocol, "self_ensemble": bool(self_ensemble),
            "metric": {"channels": "gray" if spec.gray else spec.channels, "crop_border": spec.crop_border,
                       "bits": 8},
            "datasets": {r.name: r.to_dict() for r in results}}


def table(results: Sequence[DatasetResult]) -> str:
    """A plain-text table: dataset, images, mean PSNR (dB, 2 decimals), mean SSIM (4 decimals)."""
    names = [printable(r.name) for r in results]  # one row per dataset, whatever its folder's name
    width = max([7] + [len(n) for n in names])
    lines = [f"{'dataset':<{width}}  {'images':>6}  {'PSNR':>7}  {'SSIM':>6}"]
    for name, r in zip(names, results):
        lines.append(f"{name:<{width}}  {len(r.images):>6}  {r.psnr:>7.2f}  {r.ssim:>6.4f}")
    return "\n".join(lines)
