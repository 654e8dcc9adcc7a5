"""Training and validation data.

- Training images: HR folders; LR made on the fly by MATLAB-style bicubic downscaling (once per
  image when cached), or read from a pre-made LR folder (DIV2K names, ``{name}x{scale}{ext}``).
- Random crops, flips and 90° rotations; Gaussian noise (colour denoising) or JPEG compression
  (grayscale JPEG artifact removal) for the restoration tasks.
- Reproducibility: every sample is drawn from its own RNG seeded with ``(seed, global sample
  number)``, and the order of images comes from a per-epoch permutation seeded with
  ``(seed, epoch)``. A batch is therefore a pure function of the step, whatever the number of
  workers or ranks, which makes resuming exact without saving any data-loader state.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from ..imageio import ImageReadError, read_image, to_8bit
from ..protocol.degrade import add_gaussian_noise, jpeg, noisy_input
from ..protocol.imresize import imresize

Sample = Tuple[int, int]  # (image index, global sample number)


class DataError(ValueError):
    """Unusable training or validation data (message: one line)."""


def list_images(folders: Sequence[str], extensions: Sequence[str]) -> List[Path]:
    """Image files directly inside ``folders`` (sorted by name within each folder)."""
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    files: List[Path] = []
    for folder in folders:
        p = Path(folder)
        if not p.exists():
            raise DataError(f"{p}: no such dataset folder")
        if not p.is_dir():
            raise DataError(f"{p}: not a folder")
        found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in exts)
        if not found:
            raise DataError(f"{p}: no images ({', '.join(sorted(exts))}) in this folder")
        files.extend(found)
    return files


def image_size(path: Path) -> Tuple[int, int]:
    """``(width, height)`` from the file header (EXIF rotation ignored); (0, 0) if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            try:
                if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    w, h = h, w
            except Exception:  # noqa: BLE001 - broken EXIF: keep the raw size
                pass
            return w, h
    except Exception:  # noqa: BLE001 - reported by the caller
        return 0, 0


def drop_small(files: Sequence[Path], min_side: int) -> Tuple[List[Path], List[Path]]:
    """Splits ``files`` into those whose shorter side is at least ``min_side`` and the rest."""
    keep, small = [], []
    for f in files:
        (keep if min(image_size(f)) >= min_side else small).append(f)
    return keep, small


def lr_path_for(hr: Path, lr_root: str, template: str, scale: int) -> Path:
    """Pre-made LR file of an HR file: ``lr_root / template.format(name, scale, ext)``."""
    return Path(lr_root) / template.format(name=hr.stem, scale=scale, ext=hr.suffix)


def load_rgb(path: Path) -> np.ndarray:
    """``H×W×3`` uint8 RGB (gray expanded, alpha dropped, 16-bit rounded to 8)."""
    try:
        px = to_8bit(read_image(path).pixels)
    except ImageReadError as exc:
        raise DataError(f"{path}: {exc}") from None
    c = px.shape[2]
    if c in (2, 4):
        px = px[:, :, : c - 1]
    if px.shape[2] == 1:
        px = np.repeat(px, 3, axis=2)
    return np.ascontiguousarray(px)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """``H×W×1`` uint8 luma (OpenCV's RGB→gray, as ``cv2.imread(..., IMREAD_GRAYSCALE)``)."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None]


def augment(arrays: Sequence[np.ndarray], rng: np.random.Generator, flip: bool, rot90: bool) -> List[np.ndarray]:
    """The same random horizontal flip, vertical flip and transpose for all ``arrays`` (H×W×C)."""
    hflip = flip and rng.random() < 0.5
    vflip = rot90 and rng.random() < 0.5
    transpose = rot90 and rng.random() < 0.5
    out = []
    for a in arrays:
        if hflip:
            a = a[:, ::-1]
        if vflip:
            a = a[::-1]
        if transpose:
            a = a.transpose(1, 0, 2)
        out.append(np.ascontiguousarray(a))
    return out


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """``H×W×C`` uint8 or float → ``C×H×W`` float32 in [0, 1] (float input is taken as 0-255)."""
    t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
    return t.float().div_(255.0)


@dataclass
class TaskSpec:
    """What a sample is: task, scale, patch side (LR for SR), degradation parameters."""

    task: str = "sr"
    scale: int = 2
    patch: int = 64
    noise_sigma: float = 15.0
    jpeg_quality: int = 10
    flip: bool = True
    rot90: bool = True


class TrainDataset(torch.utils.data.Dataset):
    """Random training patches. Indexed by ``(image index, global sample number)``; the sample
    number seeds the crop, the augmentation and the degradation."""

    #: LR margin (pixels) kept around an uncached crop so that its bicubic LR equals the one of
    #: the whole image (the antialiased kernel reaches 2 LR pixels).
    MARGIN = 3

    def __init__(self, hr_files: Sequence[Path], spec: TaskSpec, seed: int = 0,
                 lr_files: Optional[Sequence[Path]] = None, cache: bool = True) -> None:
        self.hr_files = list(hr_files)
        self.lr_files = list(lr_files) if lr_files is not None else None
        self.spec = spec
        self.seed = int(seed)
        self.cache = cache
        self._cache: Dict[int, Tuple[np.ndarray, Optional[np.ndarray]]] = {}
        if self.lr_files is not None:
            missing = [p for p in self.lr_files if not p.exists()]
            if missing:
                raise DataError(f"{missing[0]}: LR image missing ({len(missing)} missing in all; "
                                "check data.train_lr_root and data.lr_template)")

    def __len__(self) -> int:
        return len(self.hr_files)

    # -- images --------------------------------------------------------------------------
    def _images(self, index: int, need_lr: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        if index in self._cache:
            return self._cache[index]
        s = self.spec
        hr = load_rgb(self.hr_files[index])
        if s.task == "jpeg":
            hr = to_gray(hr)
        lr = None
        if s.task == "sr":
            h, w = hr.shape[:2]
            hr = hr[: h - h % s.scale, : w - w % s.scale]
            if self.lr_files is not None:
                lr = load_rgb(self.lr_files[index])
                if lr.shape[0] * s.scale != hr.shape[0] or lr.shape[1] * s.scale != hr.shape[1]:
                    raise DataError(f"{self.lr_files[index]}: {lr.shape[1]}×{lr.shape[0]} is not the "
                                    f"x{s.scale} LR of {self.hr_files[index].name} ({hr.shape[1]}×{hr.shape[0]})")
            elif need_lr and self.cache:
                lr = imresize(hr, 1.0 / s.scale)
            small = min(hr.shape[:2]) // s.scale
            if small < s.patch:
                raise DataError(f"{self.hr_files[index]}: too small for {s.patch}px LR patches at x{s.scale}")
        elif min(hr.shape[:2]) < s.patch:
            raise DataError(f"{self.hr_files[index]}: smaller than the {s.patch}px patch")
        if self.cache:
            self._cache[index] = (hr, lr)
        return hr, lr

    def __getitem__(self, key: Sample) -> Dict[str, torch.Tensor]:
        index, number = key
        rng = np.random.default_rng([self.seed, int(number)])
        s = self.spec
        hr, lr = self._images(index, need_lr=True)
        if s.task == "sr":
            p, sc = s.patch, s.scale
            hl, wl = hr.shape[0] // sc, hr.shape[1] // sc
            top = int(rng.integers(0, hl - p + 1))
            left = int(rng.integers(0, wl - p + 1))
            gt = hr[top * sc:(top + p) * sc, left * sc:(left + p) * sc]
            if lr is not None:
                lq = lr[top:top + p, left:left + p]
            else:  # bicubic LR of a crop with margins: equal to the whole image's LR there
                m = self.MARGIN
                t0, t1 = max(0, top - m), min(hl, top + p + m)
                l0, l1 = max(0, left - m), min(wl, left + p + m)
                region = imresize(hr[t0 * sc:t1 * sc, l0 * sc:l1 * sc], 1.0 / sc)
                lq = region[top - t0:top - t0 + p, left - l0:left - l0 + p]
            lq, gt = augment([lq, gt], rng, s.flip, s.rot90)
            return {"lq": to_tensor(lq), "gt": to_tensor(gt)}
        p = s.patch
        top = int(rng.integers(0, hr.shape[0] - p + 1))
        left = int(rng.integers(0, hr.shape[1] - p + 1))
        (gt,) = augment([hr[top:top + p, left:left + p]], rng, s.flip, s.rot90)
        if s.task == "denoise":
            clean = gt.astype(np.float32) / np.float32(255.0)
            noisy = add_gaussian_noise(clean, s.noise_sigma, generator=rng)
            return {"lq": to_tensor(noisy * np.float32(255.0)), "gt": to_tensor(gt)}
        return {"lq": to_tensor(jpeg(gt, s.jpeg_quality)), "gt": to_tensor(gt)}


class InfiniteBatchSampler(torch.utils.data.Sampler):
    """Endless batches for iteration-based training, sharded across ranks.

    The global batch of step ``t`` holds the samples ``t·B … t·B+B−1`` of an endless stream
    made of one seeded permutation of the images per epoch; rank ``r`` of ``W`` gets the
    ``r``-th contiguous slice of ``B/W`` samples. Each sample is ``(image index, sample number)``.
    Iteration starts at ``start_step`` (resuming needs no other state)."""

    def __init__(self, num_images: int, global_batch: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, start_step: int = 0) -> None:
        if num_images < 1:
            raise DataError("no training images")
        if global_batch % world_size:
            raise DataError(f"batch size {global_batch} is not divisible by the {world_size} ranks")
        self.n = num_images
        self.batch = global_batch
        self.seed = int(seed)
        self.rank = rank
        self.world = world_size
        self.start_step = start_step
        self._perm: Tuple[int, Optional[np.ndarray]] = (-1, None)

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, 7919, epoch]).permutation(self.n))
        return self._perm[1]

    def batch_for_step(self, step: int) -> List[Sample]:
        local = self.batch // self.world
        first = step * self.batch + self.rank * local
        out = []
        for g in range(first, first + local):
            epoch, pos = divmod(g, self.n)
            out.append((int(self._permutation(epoch)[pos]), g))
        return out

    def __iter__(self) -> Iterator[List[Sample]]:
        step = self.start_step
        while True:
            yield self.batch_for_step(step)
            step += 1

    def __len__(self) -> int:  # "infinite": a large number keeps DataLoader happy
        return 2 ** 62


# -- validation ------------------------------------------------------------------------------
@dataclass
class ValImage:
    """One validation pair: the degraded input and the target, as uint8 ``H×W×C`` (the
    denoising input is float32 0-255, unclipped)."""

    name: str
    lq: np.ndarray
    gt: np.ndarray


def load_validation(root: str, spec: TaskSpec, extensions: Sequence[str], max_images: int = 0,
                    lr_root: Optional[str] = None, template: str = "{name}x{scale}{ext}") -> List[ValImage]:
    """Validation pairs made as in the evaluation protocol: SR — HR cropped to a multiple of
    the scale and its bicubic LR (8-bit); denoise — ``N(0, σ/255)`` noise seeded with 0 per
    image (drawn in OpenCV's BGR layout); JPEG — the gray image through OpenCV JPEG."""
    files = list_images([root], extensions)
    if max_images:
        files = files[:max_images]
    out = []
    for f in files:
        hr = load_rgb(f)
        if spec.task == "sr":
            h, w = hr.shape[:2]
            hr = hr[: h - h % spec.scale, : w - w % spec.scale]
            if lr_root:
                lq = load_rgb(lr_path_for(f, lr_root, template, spec.scale))
            else:
                lq = imresize(hr, 1.0 / spec.scale)
        elif spec.task == "denoise":
            lq = noisy_input(hr, spec.noise_sigma, seed=0) * np.float32(255.0)
        else:
            hr = to_gray(hr)
            lq = jpeg(hr, spec.jpeg_quality)
        out.append(ValImage(f.stem, lq, hr))
    return out


def worker_init(worker_id: int) -> None:
    """Keeps each worker single-threaded (OpenCV and torch) so workers do not oversubscribe."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

