"""Training data. (Validation goes through the evaluation protocol: :mod:`mambairv2.protocol`.)

- A start-up scan reads every file's header (PNG chunk checksums included, no pixel decoding):
  empty, truncated or non-image files are left out and listed once; images smaller than the
  patch are left out apart.
- Training images: HR folders; LR made on the fly by MATLAB-style bicubic downscaling (once per
  image when cached), or read from a pre-made LR folder (DIV2K names, ``{name}x{scale}{ext}``).
- Random crops, flips and 90° rotations; the degradation of the task, from the same
  :mod:`mambairv2.protocol.task` the evaluation uses (Gaussian noise for colour denoising,
  JPEG of the gray image for JPEG artifact removal, MATLAB bicubic LR for SR).
- Reproducibility: every sample is drawn from its own RNG seeded with ``(seed, global sample
  number)``, and the order of images comes from a per-epoch permutation seeded with
  ``(seed, epoch)``. A batch is therefore a pure function of the step, whatever the number of
  workers or ranks, which makes resuming exact without saving any data-loader state.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from ..errors import MambaIRv2Error
from ..protocol.degrade import sr_input
from ..protocol.task import EvaluationError, TaskSpec, read_clean, training_input

Sample = Tuple[int, int]  # (image index, global sample number)


class DataError(MambaIRv2Error, ValueError):
    """Unusable training or validation data (message: one line)."""


def list_images(folders: Sequence[str], extensions: Sequence[str]) -> List[Path]:
    """Image files directly inside ``folders`` (sorted by name within each folder)."""
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    files: List[Path] = []
    for folder in folders:
        p = Path(folder)
        if not p.exists():
            where = "" if p.is_absolute() else f" (relative to the current folder {Path.cwd()})"
            raise DataError(f"{p}: no such dataset folder{where}")
        if not p.is_dir():
            raise DataError(f"{p}: not a folder")
        found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in exts)
        if not found:
            raise DataError(f"{p}: no images ({', '.join(sorted(exts))}) in this folder")
        files.extend(found)
    return files


def header_check(path: Path) -> Tuple[Tuple[int, int], str]:
    """``((width, height), "")`` from the file's header (EXIF rotation applied), or
    ``((0, 0), reason)`` for a file that is empty, not an image, or (PNG, via its chunk
    checksums, without decoding the pixels) truncated or corrupt."""
    from PIL import Image

    try:
        if path.stat().st_size == 0:
            return (0, 0), "empty file (0 bytes)"
        with Image.open(path) as im:
            im.verify()  # PNG: walks the chunks and their CRCs; no decoding
        with Image.open(path) as im:  # verify() leaves the file unusable: open again
            w, h = im.size
            try:
                if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    w, h = h, w
            except Exception:  # noqa: BLE001 - broken EXIF: keep the raw size
                pass
        return (w, h), ""
    except Exception as exc:  # noqa: BLE001 - any failure means "unusable"
        reason = " ".join(str(exc).split())[:80] or type(exc).__name__
        return (0, 0), f"not a readable image ({reason})"


@dataclass
class Scan:
    """The training files sorted out at start: usable, smaller than the patch, unreadable."""

    usable: List[Path]
    small: List[Path]
    bad: List[Tuple[Path, str]]


def scan_images(files: Sequence[Path], min_side: int) -> Scan:
    """Checks every file's header (see :func:`header_check`) and its size against ``min_side``."""
    scan = Scan([], [], [])
    for f in files:
        size, problem = header_check(f)
        if problem:
            scan.bad.append((f, problem))
        elif min(size) < min_side:
            scan.small.append(f)
        else:
            scan.usable.append(f)
    return scan


def lr_path_for(hr: Path, lr_root: str, template: str, scale: int) -> Path:
    """Pre-made LR file of an HR file: ``lr_root / template.format(name, scale, ext)``."""
    return Path(lr_root) / template.format(name=hr.stem, scale=scale, ext=hr.suffix)


def load_clean(path: Path, task: TaskSpec) -> np.ndarray:
    """A training image as the protocol reads clean images (RGB, or gray for the JPEG task)."""
    try:
        return read_clean(path, task)
    except EvaluationError as exc:
        raise DataError(str(exc)) from None


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
class SampleSpec:
    """What a training sample is: the task (degradation, see :mod:`mambairv2.protocol.task`),
    the patch side (LR side for SR) and the augmentations."""

    task: TaskSpec
    patch: int = 64
    flip: bool = True
    rot90: bool = True
    hr_only: bool = False  # SR: the HR patch and its sample number only (LR made on the device)

    @property
    def hr_patch(self) -> int:
        """The side of the clean patch (``patch × scale`` for SR)."""
        return self.patch * self.task.scale


class TrainDataset(torch.utils.data.Dataset):
    """Random training patches. Indexed by ``(image index, global sample number)``; the sample
    number seeds the crop, the augmentation and the degradation.

    An image that fails to decode (its header looked fine at the start-up scan) is reported once
    and replaced by the next readable image, with the same sample number: training goes on, and
    a resumed run draws the same samples."""

    #: LR margin (pixels) kept around an uncached crop so that its bicubic LR equals the one of
    #: the whole image (the antialiased kernel reaches 2 LR pixels).
    MARGIN = 3

    def __init__(self, hr_files: Sequence[Path], spec: SampleSpec, seed: int = 0,
                 lr_files: Optional[Sequence[Path]] = None, cache: bool = True) -> None:
        self.hr_files = list(hr_files)
        self.lr_files = list(lr_files) if lr_files is not None else None
        self.spec = spec
        self.seed = int(seed)
        self.cache = cache
        self._cache: Dict[int, Tuple[np.ndarray, Optional[np.ndarray]]] = {}
        self._failed: Dict[int, str] = {}
        # images found not to decode, flagged in memory shared with the loader's worker processes:
        # workers only flag them, the main process reports each once (see report_failures)
        self._known_bad = torch.zeros(len(self.hr_files), dtype=torch.uint8).share_memory_()
        self._reported: Dict[int, str] = {}
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
        s, task = self.spec, self.spec.task
        hr = load_clean(self.hr_files[index], task)
        lr = None
        if task.task == "sr":
            sc = task.scale
            h, w = hr.shape[:2]
            hr = hr[: h - h % sc, : w - w % sc]
            if self.lr_files is not None:
                lr = load_clean(self.lr_files[index], task)
                if lr.shape[0] * sc != hr.shape[0] or lr.shape[1] * sc != hr.shape[1]:
                    raise DataError(f"{self.lr_files[index]}: {lr.shape[1]}×{lr.shape[0]} is not the "
                                    f"x{sc} LR of {self.hr_files[index].name} ({hr.shape[1]}×{hr.shape[0]})")
            elif need_lr and self.cache:
                lr = sr_input(hr, sc)
        if min(hr.shape[:2]) < s.hr_patch:
            raise DataError(f"{self.hr_files[index]}: smaller than the {s.hr_patch}px patch")
        if self.cache:
            self._cache[index] = (hr, lr)
        return hr, lr

    def _readable(self, index: int) -> Tuple[int, np.ndarray, Optional[np.ndarray]]:
        """The images of ``index``, or of the next image that decodes (failures reported once)."""
        for k in range(len(self.hr_files)):
            i = (index + k) % len(self.hr_files)
            if i in self._failed:
                continue
            try:
                hr, lr = self._images(i, need_lr=not self.spec.hr_only)
                return i, hr, lr
            except DataError as exc:
                self._failed[i] = str(exc)
                self._known_bad[i] = 1
                if torch.utils.data.get_worker_info() is None:  # the main process reports at once
                    self.report_failures()
        first = next(iter(self._failed.values()), "")
        raise DataError(f"no training image decodes ({len(self._failed)} file(s); e.g. {first}); check "
                        "data.train_root")

    def report_failures(self) -> None:
        """Prints one warning per image found not to decode (by this process or by a loader
        worker) that was not reported yet. Called in the main process: with loader workers, the
        training loop calls it after each batch, so a bad file is reported once, as without
        workers, and never once per worker."""
        for i in torch.nonzero(self._known_bad).flatten().tolist():
            if i in self._reported:
                continue
            why = self._failed.get(i)
            if why is None:  # found by a worker: the reason, as the worker met it
                try:
                    self._images(i, need_lr=not self.spec.hr_only)
                    why = f"{self.hr_files[i]}: does not decode"
                except DataError as exc:
                    why = str(exc)
            self._reported[i] = why
            print(f"warning: skipped a training image that does not decode: {why}", file=sys.stderr, flush=True)

    def __getitem__(self, key: Sample) -> Dict[str, torch.Tensor]:
        index, number = key
        rng = np.random.default_rng([self.seed, int(number)])
        s, task = self.spec, self.spec.task
        _, hr, lr = self._readable(index)
        if task.task == "sr":
            p, sc = s.patch, task.scale
            hl, wl = hr.shape[0] // sc, hr.shape[1] // sc
            top = int(rng.integers(0, hl - p + 1))
            left = int(rng.integers(0, wl - p + 1))
            gt = hr[top * sc:(top + p) * sc, left * sc:(left + p) * sc]
            if s.hr_only:
                (gt,) = augment([gt], rng, s.flip, s.rot90)
                return {"gt": to_tensor(gt), "number": torch.tensor(int(number), dtype=torch.int64)}
            if lr is not None:
                lq = lr[top:top + p, left:left + p]
            else:  # bicubic LR of a crop with margins: equal to the whole image's LR there
                m = self.MARGIN
                t0, t1 = max(0, top - m), min(hl, top + p + m)
                l0, l1 = max(0, left - m), min(wl, left + p + m)
                region = sr_input(hr[t0 * sc:t1 * sc, l0 * sc:l1 * sc], sc)
                lq = region[top - t0:top - t0 + p, left - l0:left - l0 + p]
            lq, gt = augment([lq, gt], rng, s.flip, s.rot90)
            return {"lq": to_tensor(lq), "gt": to_tensor(gt)}
        p = s.patch
        top = int(rng.integers(0, hr.shape[0] - p + 1))
        left = int(rng.integers(0, hr.shape[1] - p + 1))
        (gt,) = augment([hr[top:top + p, left:left + p]], rng, s.flip, s.rot90)
        lq = training_input(gt, task, rng)
        return {"lq": torch.from_numpy(np.ascontiguousarray(lq.transpose(2, 0, 1))), "gt": to_tensor(gt)}


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


def worker_exception(exc: BaseException) -> Optional[BaseException]:
    """The error a DataLoader worker raised, as the main process would have raised it: the
    loader re-raises it in the main process with a message of many lines ("Caught DataError in
    DataLoader worker process 0. Original Traceback …"); this gives back the same type with the
    original one-line message. None when ``exc`` is not such a re-raised worker error."""
    text = str(exc)
    first, _, rest = text.partition("\n")
    if not (first.startswith("Caught ") and "DataLoader worker process" in first and "Traceback" in rest):
        return None
    lines = [line for line in rest.splitlines() if line.strip()]
    last = lines[-1] if lines else first
    kind = type(exc)
    for prefix in (f"{kind.__module__}.{kind.__qualname__}: ", f"{kind.__qualname__}: "):
        if last.startswith(prefix):
            last = last[len(prefix):]
            break
    try:
        return kind(last)
    except Exception:  # noqa: BLE001 - a type that cannot be built from a message
        return RuntimeError(last)


def single_threaded_opencv() -> None:
    """Stops OpenCV's thread pool in this process (before DataLoader workers are forked)."""
    cv2.setNumThreads(1)


def worker_init(worker_id: int) -> None:
    """Keeps each worker single-threaded (OpenCV and torch) so workers do not oversubscribe."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

