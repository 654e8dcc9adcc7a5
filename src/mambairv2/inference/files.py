"""Restoring image files one by one: read, restore, encode, write atomically, and a
:class:`FileResult` per file (sizes, seconds, the tile used, or why it failed), never an
exception for a bad file.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..models import set_routing
from .plan import Job

#: How long a rank waits for the others at the final gather (big batches on slow ranks).


@dataclass
class RestoreOptions:
    """How to restore each file (the command line's options)."""

    tile: Any = None  # None, a size in input pixels, or "auto"
    tile_overlap: int = 32
    self_ensemble: bool = False
    routing: str = "argmax"
    seed: Optional[int] = None
    quality: int = 95
    overwrite: bool = False
    max_pixels: int = 1 << 27
    progress: bool = False
    dtype: Optional[str] = None  # autocast dtype of the forward (None: the weights')


@dataclass
class FileResult:
    """What happened to one input; ``status`` is ``restored``, ``skipped`` or ``failed``."""

    input: str
    status: str
    output: Optional[str] = None
    reason: Optional[str] = None
    size_in: Optional[Tuple[int, int]] = None  # (width, height)
    size_out: Optional[Tuple[int, int]] = None
    seconds: float = 0.0
    tile: Optional[int] = None  # the tile used, None for the whole image
    notes: List[str] = field(default_factory=list)
    rank: int = 0

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def failure_reason(exc: BaseException) -> str:
    """One line saying why restoring a file failed."""
    from ..utils.imageio import ImageReadError, ImageWriteError
    from .api import is_out_of_memory

    text = " ".join(str(exc).split())
    if isinstance(exc, (ImageReadError, ImageWriteError)):
        return text
    if is_out_of_memory(exc):
        return "out of memory; try --tile 256 (or --tile auto)"
    if isinstance(exc, OSError):
        return f"cannot write the output: {exc.strerror or text}"
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _format_notes(fmt: str, channels: int, bit_depth: int) -> List[str]:
    notes = []
    if fmt == "JPEG" and channels in (2, 4):
        notes.append("JPEG has no alpha channel: transparency dropped")
    if fmt in ("JPEG", "WEBP", "BMP") and bit_depth == 16:
        notes.append(f"{fmt} holds 8 bits per sample: stored as 8-bit")
    return notes


def restore_file(model, job: Job, options: RestoreOptions,
                 on_tile: Optional[Callable[[Optional[int], int, str], None]] = None) -> FileResult:
    """Reads ``job.src``, restores it and writes ``job.out`` atomically (never replacing an
    existing file unless ``options.overwrite``). Any failure is returned, not raised, except
    KeyboardInterrupt/SystemExit (and every exception under ``MAMBAIRV2_DEBUG``)."""
    start = time.monotonic()
    result = FileResult(str(job.src), "failed", output=str(job.out))
    if job.problem:
        result.reason = job.problem
        return result
    if job.skip:
        result.status, result.reason = "skipped", job.skip
        return result
    tiles: List[Optional[int]] = []

    def tile_seen(tile: Optional[int], overlap: int, why: str) -> None:
        tiles.append(tile)
        if on_tile is not None:
            on_tile(tile, overlap, why)

    try:
        _restore_and_write(model, job, options, result, tile_seen)
        result.status = "restored"
    except FileExistsError:
        result.status, result.reason = "skipped", f"{job.out} appeared meanwhile (--overwrite replaces it)"
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
        if os.environ.get("MAMBAIRV2_DEBUG"):
            raise
        result.reason = failure_reason(exc)
    result.tile = tiles[-1] if tiles else (options.tile if isinstance(options.tile, int) else None)
    result.seconds = round(time.monotonic() - start, 3)
    return result


def _restore_and_write(model, job: Job, options: RestoreOptions, result: FileResult, on_tile) -> None:
    import numpy as np
    import torch

    from ..utils.atomic import atomic_write_bytes
    from ..utils.imageio import encode_image, format_for_name, full_scale, read_image, with_pixels
    from .api import restore_tensor

    image = read_image(job.src, max_pixels=options.max_pixels)
    result.size_in = image.size
    px = image.pixels
    peak = full_scale(px)
    x = torch.from_numpy(px.astype(np.float32) / peak).permute(2, 0, 1)[None]
    if options.routing == "gumbel":
        set_routing(model, "gumbel", options.seed)  # the same noise for every image
    y = restore_tensor(model, x, tile=options.tile, tile_overlap=options.tile_overlap,
                       self_ensemble=options.self_ensemble, progress=options.progress, on_tile=on_tile,
                       dtype=options.dtype)
    out_px = np.rint(y[0].permute(1, 2, 0).numpy() * peak).astype(px.dtype)
    del x, y
    fmt = format_for_name(job.out.suffix) or "PNG"
    result.notes = _format_notes(fmt, image.channels, image.bit_depth)
    if format_for_name(job.src.suffix) is None and fmt == "PNG":  # GIF, PPM, TGA, no extension
        kind = job.src.suffix.lstrip(".").upper() or "a file without extension"
        result.notes.append(f"{kind} is read but not written: saved as PNG")
    data = encode_image(with_pixels(image, out_px), fmt, quality=options.quality)
    result.size_out = (int(out_px.shape[1]), int(out_px.shape[0]))
    atomic_write_bytes(job.out, data, overwrite=options.overwrite)


def summarize(results: Sequence[FileResult]) -> Dict[str, int]:
    counts = {"restored": 0, "skipped": 0, "failed": 0}
    for r in results:
        counts[r.status] += 1
    return counts
