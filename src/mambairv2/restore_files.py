"""Restoring image files one by one: read, restore, encode, write atomically, and a
:class:`FileResult` per file (sizes, seconds, the tile used, or why it failed), never an
exception for a bad file. Also the ranks of a ``torchrun`` launch (:class:`Ranks`).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .restore_plan import Job

#: How long a rank waits for the others at the final gather (big batches on slow ranks).
GATHER_TIMEOUT = timedelta(days=7)


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
    from .imageio import ImageReadError, ImageWriteError
    from .restore import is_out_of_memory

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

    from .atomic import atomic_write_bytes
    from .imageio import encode_image, format_for_name, full_scale, read_image, with_pixels
    from .restore import restore_tensor

    image = read_image(job.src, max_pixels=options.max_pixels)
    result.size_in = image.size
    px = image.pixels
    peak = full_scale(px)
    x = torch.from_numpy(px.astype(np.float32) / peak).permute(2, 0, 1)[None]
    if options.routing == "gumbel" and hasattr(model, "set_routing"):
        model.set_routing("gumbel", options.seed)  # the same noise for every image
    y = restore_tensor(model, x, tile=options.tile, tile_overlap=options.tile_overlap,
                       self_ensemble=options.self_ensemble, progress=options.progress, on_tile=on_tile)
    out_px = np.rint(y[0].permute(1, 2, 0).numpy() * peak).astype(px.dtype)
    del x, y
    fmt = format_for_name(job.out.suffix) or "PNG"
    result.notes = _format_notes(fmt, image.channels, image.bit_depth)
    data = encode_image(with_pixels(image, out_px), fmt, quality=options.quality)
    result.size_out = (int(out_px.shape[1]), int(out_px.shape[0]))
    atomic_write_bytes(job.out, data, overwrite=options.overwrite)


def summarize(results: Sequence[FileResult]) -> Dict[str, int]:
    counts = {"restored": 0, "skipped": 0, "failed": 0}
    for r in results:
        counts[r.status] += 1
    return counts


# -- ranks of a torchrun launch --------------------------------------------------------------------
@dataclass
class Ranks:
    """This process's place in a ``torchrun`` launch (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``LOCAL_WORLD_SIZE``); one rank when not launched that way."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    _group: bool = False

    @classmethod
    def from_env(cls) -> "Ranks":
        def num(name: str, default: int) -> int:
            try:
                return int(os.environ.get(name, default))
            except ValueError:
                return default

        world = num("WORLD_SIZE", 1)
        if world <= 1:
            return cls()
        local_world = num("LOCAL_WORLD_SIZE", world)
        return cls(num("RANK", 0), world, num("LOCAL_RANK", 0), local_world)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def start(self) -> None:
        """Joins the gloo process group (collectives of small Python objects only)."""
        if not self.distributed or self._group:
            return
        import torch.distributed as dist

        dist.init_process_group("gloo", timeout=GATHER_TIMEOUT)
        self._group = True

    def stop(self) -> None:
        if self._group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._group = False

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self._group:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> List[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self._group:
            return [obj]
        import torch.distributed as dist

        out: List[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def device(self, name: str) -> str:
        """The device for this rank: ``auto`` and ``cuda`` → this rank's own GPU
        (``cuda:LOCAL_RANK``) when there are GPUs (``auto``: else the CPU); others unchanged."""
        if not self.distributed or name not in ("auto", "cuda"):
            return name
        import torch

        if torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return "cpu" if name == "auto" else name

    def share_cpu_threads(self) -> None:
        """Splits the CPU cores among the ranks of this machine. torchrun sets OMP_NUM_THREADS=1
        unless told otherwise; another value is the user's and is kept."""
        if not self.distributed or os.environ.get("OMP_NUM_THREADS", "1") != "1":
            return
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // max(1, self.local_world)))
