"""The task of a restoration: what the clean images are, how they are degraded into the
model's input, and how the result is measured. One place for this knowledge, used by the
benchmark evaluation (:mod:`.evaluate`), ``mambairv2 degrade`` and training
(:mod:`mambairv2.train.data`), so a model is trained on the degradation it is evaluated on.

- ``sr``: clean read as RGB, mod-cropped to the scale; input = MATLAB-bicubic LR (8-bit);
  metrics on Y with ``crop_border = scale``.
- ``denoise``: clean read as RGB; input = clean + Gaussian noise of ``sigma``/255, unclipped;
  metrics on RGB.
- ``jpeg``: clean read as gray (or RGB with ``color``); input = OpenCV JPEG at ``quality``;
  metrics on gray.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np

from ..errors import MambaIRv2Error
from . import degrade

PathLike = Union[str, os.PathLike]
TASKS = ("sr", "denoise", "jpeg")


class EvaluationError(MambaIRv2Error, ValueError):
    """A problem with the evaluation's inputs (folders, files, settings); one-line message."""


@dataclass(frozen=True)
class TaskSpec:
    """What is evaluated: ``task`` and its level (``scale`` for sr, ``sigma`` for denoise,
    ``quality`` for jpeg); ``color`` makes JPEG colour instead of the tables' grayscale."""

    task: str
    scale: int = 1
    sigma: Optional[float] = None
    quality: Optional[int] = None
    color: bool = False

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise EvaluationError(f"unknown task {self.task!r}; use one of {', '.join(TASKS)}")
        if self.task == "sr" and (int(self.scale) != self.scale or self.scale < 1):
            raise EvaluationError(f"the SR scale must be a positive integer, got {self.scale}")
        if self.task == "denoise" and (self.sigma is None or not self.sigma >= 0 or not math.isfinite(self.sigma)):
            raise EvaluationError(f"denoising needs a noise level sigma ≥ 0, got {self.sigma}")
        if self.task == "jpeg" and (self.quality is None or not 1 <= self.quality <= 100):
            raise EvaluationError(f"JPEG needs a quality in 1..100, got {self.quality}")
        if self.task != "sr" and self.scale != 1:
            raise EvaluationError(f"the scale applies to SR only (task {self.task})")

    @property
    def crop_border(self) -> int:
        """Pixels removed from each side before the metrics (the scale for SR, else 0)."""
        return self.scale if self.task == "sr" else 0

    @property
    def channels(self) -> str:
        """``"y"`` for SR, ``"rgb"`` otherwise (gray images are measured as gray)."""
        return "y" if self.task == "sr" else "rgb"

    @property
    def gray(self) -> bool:
        """Whether the clean images are read as gray (the JPEG tables)."""
        return self.task == "jpeg" and not self.color

    def describe(self) -> str:
        """E.g. ``sr x4``, ``denoise sigma 25``, ``jpeg q10 (gray)``."""
        if self.task == "sr":
            return f"sr x{self.scale}"
        if self.task == "denoise":
            return f"denoise sigma {self.sigma:g}"
        return f"jpeg q{self.quality} ({'colour' if self.color else 'gray'})"


def read_clean(path: PathLike, spec: TaskSpec) -> np.ndarray:
    """A clean image as the protocol reads it: uint8 ``H×W×3`` RGB (gray files as three equal
    channels), or ``H×W×1`` gray for the gray JPEG task. 16-bit files are reduced to 8 bits and
    alpha is dropped.

    Raises:
        EvaluationError: unreadable file (the reason in one line).
    """
    from ..utils.imageio import ImageReadError, read_image, to_8bit

    try:
        px = to_8bit(read_image(path).pixels)
    except ImageReadError as exc:
        raise EvaluationError(f"{path}: {exc}") from None
    c = px.shape[2]
    colour = px[:, :, :3] if c >= 3 else px[:, :, [0, 0, 0]]
    if spec.gray:
        if c >= 3:
            import cv2

            return cv2.cvtColor(np.ascontiguousarray(colour), cv2.COLOR_RGB2GRAY)[:, :, None]
        return np.ascontiguousarray(px[:, :, :1])
    return np.ascontiguousarray(colour)


def make_input(clean: np.ndarray, spec: TaskSpec) -> Tuple[np.ndarray, np.ndarray]:
    """``(input, target)`` for a clean image from :func:`read_clean`: the degraded input as
    ``H×W×C`` float32 on the [0, 1] scale (unclipped for denoising) and the uint8 target
    (mod-cropped for SR)."""
    if spec.task == "sr":
        target = degrade.mod_crop(clean, spec.scale)
        return degrade.sr_input(target, spec.scale).astype(np.float32) / np.float32(255), target
    if spec.task == "denoise":
        return degrade.noisy_input(clean, float(spec.sigma)), clean
    return degrade.jpeg(clean, int(spec.quality)).astype(np.float32) / np.float32(255), clean


def training_input(clean: np.ndarray, spec: TaskSpec, rng: np.random.Generator) -> np.ndarray:
    """The degraded input of a clean denoise/JPEG training patch (uint8 ``H×W×C``) as float32
    on the [0, 1] scale: Gaussian noise drawn from ``rng`` (unclipped), or the JPEG of the patch.
    (SR training inputs are the bicubic LR of the image, cut in step with the HR crop: see
    :class:`mambairv2.train.data.TrainDataset`.)"""
    if spec.task == "denoise":
        return degrade.add_gaussian_noise(clean.astype(np.float32) / np.float32(255), float(spec.sigma),
                                          generator=rng)
    if spec.task == "jpeg":
        return degrade.jpeg(clean, int(spec.quality)).astype(np.float32) / np.float32(255)
    raise ValueError(f"training_input is for denoise and jpeg, not {spec.task}")
