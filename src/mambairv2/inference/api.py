"""Restoring whole images: ``restore(model, image)`` for NumPy arrays, Pillow images and tensors,
with optional overlapping tiles (smoothly blended), self-ensemble, alpha and gray handling.

Tiling: tiles of ``tile`` input pixels (rounded to the model's window) overlap by
``tile_overlap``. In each overlap the two tiles are blended with weights that are 0 over the
first quarter of the overlap from a tile's inner edge (where a tile lacks context), rise along a
raised cosine over the middle half and are 1 beyond; neighbouring weights sum to 1. So wherever
the tiles agree the result is exact: a model whose receptive field reaches at most
``tile_overlap / 4`` input pixels gives the whole-image result, and for MambaIRv2 (whose
receptive field is global) no seams show.
"""
from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..defaults import DEFAULT_TILE_OVERLAP
from ..models.layers.stem import mirror_pad
from .ensemble import self_ensemble as _self_ensemble

Tensor = torch.Tensor
TileArg = Union[None, int, str]
DtypeArg = Union[None, str, torch.dtype]

#: Measured peak working memory of MambaIRv2-light x2 in float32 (CPU): about 22.5 kB per input
#: pixel, i.e. ~470 bytes per pixel and embedding channel; used to choose ``tile="auto"``.
_BYTES_PER_PIXEL_PER_CHANNEL = 470
_AUTO_MEMORY_FRACTION = 0.5


# -- memory ---------------------------------------------------------------------------------------
def free_memory_bytes(device: Union[str, torch.device]) -> int:
    """Memory this process may still use on ``device``: see :func:`mambairv2.utils.memory.usable_memory_bytes`."""
    from ..utils.memory import usable_memory_bytes

    return usable_memory_bytes(device)


def _model_device_dtype(model: torch.nn.Module) -> Tuple[torch.device, torch.dtype]:
    p = next(iter(model.parameters()), None)
    if p is None:
        return torch.device("cpu"), torch.float32
    dtype = p.dtype if p.dtype.is_floating_point else torch.float32
    return p.device, dtype


def _config(model: torch.nn.Module, name: str, default: Any) -> Any:
    return getattr(getattr(model, "config", None), name, default)


def estimate_bytes_per_pixel(model: torch.nn.Module) -> float:
    """Rough peak working memory of one forward pass per input pixel."""
    _, dtype = _model_device_dtype(model)
    element = torch.finfo(dtype).bits / 8
    return _BYTES_PER_PIXEL_PER_CHANNEL * _config(model, "embed_dim", 48) * element / 4


def _fixed_bytes(model: torch.nn.Module, height: int, width: int) -> int:
    """Memory a restore needs whatever the tile: the input, the blended output and its weight,
    and the copies made while converting the result (float32)."""
    scale = int(_config(model, "upscale", 1))
    chans = int(_config(model, "in_chans", 3))
    return height * width * 4 * (chans + 3 * (chans + 1) * scale * scale)


def min_tile(window: int, overlap: int) -> int:
    """The smallest tile that still advances at least one window past ``overlap``."""
    return round_tile(overlap + max(window, 1), window, up=True)


def smallest_tile(model: torch.nn.Module, tile_overlap: int = DEFAULT_TILE_OVERLAP) -> int:
    """The smallest tile ``model`` accepts with ``tile_overlap`` (see :func:`min_tile`)."""
    return min_tile(int(_config(model, "window_size", 1)), tile_overlap)


def auto_tile_size(model: torch.nn.Module, height: int, width: int, self_ensemble: bool = False,
                   free_bytes: Optional[int] = None,
                   tile_overlap: int = DEFAULT_TILE_OVERLAP) -> Optional[int]:
    """Tile size (input pixels, a multiple of the window) whose working memory fits in half of
    what this process may still use on the model's device (free RAM or GPU memory, cgroup and
    ``ulimit -v`` limits; see :mod:`mambairv2.utils.memory`) after the whole-image buffers, or None
    when the whole image fits. Never below :func:`min_tile`."""
    device, _ = _model_device_dtype(model)
    free = free_memory_bytes(device) if free_bytes is None else free_bytes
    budget = max(0.0, (free - _fixed_bytes(model, height, width)) * _AUTO_MEMORY_FRACTION)
    per_pixel = estimate_bytes_per_pixel(model)
    if self_ensemble:  # the flipped copies and the running sum of one tile
        per_pixel *= 1.1
    max_pixels = budget / per_pixel
    if height * width <= max_pixels:
        return None
    window = int(_config(model, "window_size", 1))
    tile = max(window, int(math.sqrt(max_pixels)) // max(window, 1) * max(window, 1))
    return max(tile, min_tile(window, tile_overlap))


def round_tile(tile: int, window: int, up: bool = False) -> int:
    """``tile`` rounded to the nearest multiple of ``window`` (halves up; ``up``: the next
    multiple), at least one window."""
    if window <= 1:
        return max(1, int(tile))
    steps = math.ceil(tile / window) if up else math.floor(tile / window + 0.5)
    return max(window, int(steps) * window)


def check_tile(tile: int, tile_overlap: int, window: int) -> int:
    """The tile ``tile`` becomes (rounded to the window), after checking that ``tile_overlap``
    leaves neighbouring tiles at least ``min(window, tile / 2)`` apart.

    Raises:
        ValueError: a non-positive tile, a negative overlap, or an overlap that leaves a smaller
            stride once the tile is rounded (hundreds of tiles for one image, or none that fit).
    """
    if int(tile) < 1:
        raise ValueError(f"tile must be positive, got {tile}")
    if tile_overlap < 0:
        raise ValueError(f"tile overlap must be ≥ 0, got {tile_overlap}")
    rounded = round_tile(int(tile), window)
    step = max(1, min(max(window, 1), rounded // 2))
    if rounded - tile_overlap < step:
        what = f"tile {tile} (rounded to {rounded}, a multiple of the model's window {window})" \
            if rounded != tile else f"tile {tile}"
        fix = f"use a tile overlap of at most {rounded - step}" if rounded > step else "use a larger tile"
        raise ValueError(f"tile overlap {tile_overlap} leaves less than {step} px between tiles for {what}; "
                         f"{fix}, or a tile of at least {min_tile(window, tile_overlap)}")
    return rounded


# -- tiling --------------------------------------------------------------------------------------
def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> List[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with neighbours
    overlapping by at least ``overlap``; the last tile ends at ``length``. The stride is a
    multiple of ``align`` where possible (tiles then share the whole image's window grid)."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    if stride >= align > 1:
        stride = stride // align * align
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def edge_ramp(n: int, ramp: float, lead: bool, trail: bool) -> Tensor:
    """1-D blending weights of a tile of ``n`` output pixels whose overlap with a neighbour is
    ``ramp`` output pixels, on the leading and/or trailing side.

    A pixel at distance ``d`` (pixel centre) from an inner edge gets ``f(d)``: 0 for
    ``d < ramp/4``, raised cosine up to 1 at ``3·ramp/4``, 1 beyond; ``f(d) + f(ramp - d) = 1``.
    """
    w = torch.ones(n, dtype=torch.float64)
    if ramp <= 0:
        return w
    d = torch.arange(n, dtype=torch.float64) + 0.5
    margin = ramp / 4
    t = ((d - margin) / (ramp - 2 * margin)).clamp(0, 1)
    f = 0.5 - 0.5 * torch.cos(math.pi * t)
    if lead:
        w = w * f
    if trail:
        w = w * f.flip(0)
    return w


def _tiled(forward: Callable[[Tensor], Tensor], x: Tensor, tile: int, overlap: int,
           progress: bool = False, align: int = 1) -> Tensor:
    """Runs ``forward`` on overlapping tiles of ``x`` (``1×C×H×W``) and blends the outputs."""
    _, _, h, w = x.shape
    ys, xs = tile_starts(h, tile, overlap, align), tile_starts(w, tile, overlap, align)
    positions = [(y0, x0) for y0 in ys for x0 in xs]
    out: Optional[Tensor] = None
    weight: Optional[Tensor] = None
    scale = 0
    bar = None
    if progress and len(positions) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(positions), desc="tiles", unit="tile", leave=False, dynamic_ncols=True)
    try:
        for y0, x0 in positions:
            th, tw = min(tile, h), min(tile, w)
            y = forward(x[:, :, y0:y0 + th, x0:x0 + tw]).float().cpu()
            if out is None:
                scale = y.shape[-1] // tw
                if scale < 1 or y.shape[-1] != tw * scale or y.shape[-2] != th * scale:
                    raise RuntimeError(f"model output {tuple(y.shape)} is not an integer multiple "
                                       f"of its input {tuple(x[:, :, :th, :tw].shape)}")
                out = torch.zeros(1, y.shape[1], h * scale, w * scale, dtype=torch.float32)
                weight = torch.zeros(1, 1, h * scale, w * scale, dtype=torch.float32)
            ramp = overlap * scale
            wy = edge_ramp(th * scale, ramp, lead=y0 > 0, trail=y0 + th < h)
            wx = edge_ramp(tw * scale, ramp, lead=x0 > 0, trail=x0 + tw < w)
            wt = (wy[:, None] * wx[None, :]).float()[None, None]
            sy, sx = slice(y0 * scale, (y0 + th) * scale), slice(x0 * scale, (x0 + tw) * scale)
            out[:, :, sy, sx].addcmul_(y, wt)
            weight[:, :, sy, sx] += wt
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    assert out is not None and weight is not None
    return out.div_(weight)


class _Runner:
    """Calls the model on float32 CPU tiles: device/dtype transfer, inference mode, self-ensemble."""

    def __init__(self, model: torch.nn.Module, self_ensemble: bool, dtype: DtypeArg = None) -> None:
        from ..ops import compute_precision

        self.model = model
        self.device, self.dtype = _model_device_dtype(model)
        self.self_ensemble = self_ensemble
        self.precision = lambda: compute_precision(self.device, dtype)
        self.precision()  # refused here, before any tile, where the CPU lacks native bfloat16

    def __call__(self, x: Tensor) -> Tensor:
        x = x.to(device=self.device, dtype=self.dtype)
        with torch.inference_mode(), self.precision():
            y = _self_ensemble(self.model, x) if self.self_ensemble else self.model(x)
        y = y.float().cpu()
        # outside inference mode an inference tensor cannot be changed in place: hand back a
        # plain one (a copy of one tile, small beside the network's work)
        return y.clone() if y.is_inference() and not torch.is_inference_mode_enabled() else y


def _run(runner: _Runner, x: Tensor, tile: Optional[int], overlap: int, window: int,
         progress: bool) -> Tensor:
    """``x``: 1×c×H×W float32 CPU with c == the model's channels."""
    h, w = x.shape[-2:]
    if tile is None or (tile >= h and tile >= w):
        return runner(x)
    # Tile the image padded exactly as the model pads a whole image, so that tiles at the
    # borders see the same surroundings as the whole-image pass does.
    hp, wp = -(-h // window) * window, -(-w // window) * window
    y = _tiled(runner, mirror_pad(x, hp, wp), tile, overlap, progress, align=window)
    s = y.shape[-1] // wp
    return y[..., : h * s, : w * s].contiguous()


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (CPU or GPU) rather than a bug."""
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or "cannot allocate memory" in text)


def _release_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def restore_tensor(model: torch.nn.Module, x: Tensor, tile: TileArg = None,
                   tile_overlap: int = DEFAULT_TILE_OVERLAP, self_ensemble: bool = False,
                   progress: bool = False,
                   on_tile: Optional[Callable[[Optional[int], int, str], None]] = None,
                   dtype: DtypeArg = None) -> Tensor:
    """Restores ``x`` (see :func:`_restore_tensor`) with ``model`` in eval mode (a model in
    training mode, as ``create_model`` returns it, is switched for the call and back after:
    dropout and Gumbel routing would make the result random). ``dtype`` (None: the weights')
    runs the forward under autocast to ``bfloat16`` or ``float16`` (see
    :func:`mambairv2.ops.compute_precision`; CPUs without native bfloat16 are refused).

    Raises:
        NonFiniteOutputError: the model produced NaN or infinite values.
        ValueError: a bad shape, tile or overlap.
    """
    from ..errors import NonFiniteOutputError

    if not (tile is None or tile == "auto" or (isinstance(tile, int) and not isinstance(tile, bool))):
        raise ValueError(f"tile must be None, 'auto' or a whole number of pixels, got {tile!r}")
    if isinstance(tile_overlap, bool) or not isinstance(tile_overlap, int):
        raise ValueError(f"tile_overlap must be a whole number of pixels, got {tile_overlap!r}")
    was_training = model.training
    if was_training:
        model.eval()
    try:
        y = _restore_tensor(model, x, tile, tile_overlap, self_ensemble, progress, on_tile, dtype)
    finally:
        if was_training:
            model.train()
    bad = int((~torch.isfinite(y)).sum())
    if bad:
        raise NonFiniteOutputError(f"the model produced {bad:,} NaN or infinite values of {y.numel():,}; "
                                   "nothing written (a broken checkpoint, or float16 overflow: try float32)")
    return y


def _restore_tensor(model: torch.nn.Module, x: Tensor, tile: TileArg, tile_overlap: int,
                    self_ensemble: bool, progress: bool,
                    on_tile: Optional[Callable[[Optional[int], int, str], None]],
                    dtype: DtypeArg = None) -> Tensor:
    """Restores ``x``: ``1×C×H×W`` float in [0, 1] on the CPU, C = 1 (gray), 2 (gray + alpha),
    3 (RGB) or 4 (RGBA). Returns ``1×C×(H·s)×(W·s)`` float32 in [0, 1] on the CPU.

    Colour models restore gray as three equal channels and return their mean; gray models
    restore each colour channel separately. Alpha is resized bicubically (kept as is when
    the model does not upscale).

    ``tile="auto"`` chooses the tile from the memory this process may use
    (:func:`auto_tile_size`) and, on an out-of-memory error, halves it and tries again.
    ``on_tile(tile, overlap, why)`` is told each tile ``"auto"`` tries (None: whole image).
    """
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 2, 3, 4):
        raise ValueError(f"expected a 1×C×H×W tensor with C in 1..4, got {tuple(x.shape)}")
    if x.shape[-1] < 1 or x.shape[-2] < 1:
        raise ValueError(f"empty image ({x.shape[-1]}×{x.shape[-2]} pixels)")
    x = x.detach().to(device="cpu", dtype=torch.float32)
    window = int(_config(model, "window_size", 1))
    if tile != "auto":
        if tile is not None:
            tile = check_tile(int(tile), tile_overlap, window)
        elif tile_overlap < 0:
            raise ValueError(f"tile overlap must be ≥ 0, got {tile_overlap}")
        return _restore_channels(model, x, tile, tile_overlap, self_ensemble, progress, dtype)
    h, w = x.shape[-2:]
    chosen = auto_tile_size(model, h, w, self_ensemble, tile_overlap=tile_overlap)
    overlap = tile_overlap
    why = "chosen from the usable memory"
    device, _ = _model_device_dtype(model)
    while True:
        if on_tile is not None:
            on_tile(chosen, overlap, why)
        try:
            return _restore_channels(model, x, chosen, overlap, self_ensemble, progress, dtype)
        except Exception as exc:  # noqa: BLE001 - only allocation failures are retried
            current = chosen if chosen is not None else round_tile(max(h, w), window, up=True)
            if not is_out_of_memory(exc) or current < 2 * max(window, 1) or current <= 1:
                raise
        _release_memory(device)
        chosen = round_tile(current // 2, window)
        overlap = min(overlap, chosen // 2)
        why = f"out of memory with tile {current}: halved"


def _restore_channels(model: torch.nn.Module, x: Tensor, tile: Optional[int], tile_overlap: int,
                      self_ensemble: bool, progress: bool, dtype: DtypeArg = None) -> Tensor:
    """:func:`restore_tensor` with a checked tile: channel and alpha handling."""
    h, w = x.shape[-2:]
    c = x.shape[1]
    colour, alpha = (x[:, :c - 1], x[:, c - 1:]) if c in (2, 4) else (x, None)
    in_chans = int(_config(model, "in_chans", 3))
    window = int(_config(model, "window_size", 1))
    runner = _Runner(model, self_ensemble, dtype)

    def run(t: Tensor) -> Tensor:
        return _run(runner, t, tile, tile_overlap, window, progress)

    cc = colour.shape[1]
    if cc == in_chans:
        y = run(colour)
    elif in_chans == 3 and cc == 1:
        y = run(colour.expand(1, 3, h, w).contiguous()).mean(1, keepdim=True)
    elif in_chans == 1 and cc == 3:
        y = torch.cat([run(colour[:, i:i + 1].contiguous()) for i in range(3)], 1)
    else:
        raise ValueError(f"a model for {in_chans}-channel input cannot restore {cc}-channel images")
    y = y.clamp_(0, 1)
    if alpha is not None:
        sh, sw = y.shape[-2:]
        if (sh, sw) != (h, w):
            alpha = F.interpolate(alpha, size=(sh, sw), mode="bicubic", align_corners=False)
        y = torch.cat([y, alpha.clamp(0, 1)], 1)
    return y


# -- conversions for the public API --------------------------------------------------------------
ValueRange = Optional[Tuple[float, float]]
#: How far float input may stray outside its range (rounding of earlier processing) before it
#: is refused rather than clipped.
RANGE_TOLERANCE = 1e-3


def _range_of(kind: str, integer_peak: Optional[float], value_range: ValueRange) -> Tuple[float, float]:
    if value_range is not None:
        lo, hi = (float(v) for v in value_range)
        if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
            raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
        return lo, hi
    return (0.0, integer_peak) if integer_peak is not None else (0.0, 1.0)


def _check_values(x: Tensor, lo: float, hi: float, explicit: bool) -> None:
    """Refuses float input outside ``lo..hi`` (and NaN/inf) instead of clipping it silently."""
    if x.numel() == 0:
        raise ValueError("empty image (0 pixels)")
    found_lo, found_hi = float(x.min()), float(x.max())
    if not (math.isfinite(found_lo) and math.isfinite(found_hi)):
        raise ValueError("the image holds NaN or infinite values")
    slack = RANGE_TOLERANCE * (hi - lo)
    if found_lo < lo - slack or found_hi > hi + slack:
        hint = "" if explicit else (" (pass value_range=(0, 255) for 8-bit values held as floats)"
                                    if found_hi <= 255 + slack and found_lo >= -slack else
                                    "; pass value_range=(low, high) for other scales")
        raise ValueError(f"float image values span {found_lo:g}..{found_hi:g}, but the expected range "
                         f"is {lo:g}..{hi:g}{hint}")


def _array_to_float(arr: np.ndarray, value_range: ValueRange = None
                    ) -> Tuple[Tensor, Callable[[Tensor], np.ndarray]]:
    """H×W or H×W×C array → 1×C×H×W float32 tensor in 0..1, and the function that maps a
    result back to the array's dtype and range."""
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"expected an H×W or H×W×C array with C in 1..4, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"empty image ({arr.shape[1]}×{arr.shape[0]} pixels)")
    squeeze = arr.ndim == 2
    a = arr[:, :, None] if squeeze else arr
    dtype = arr.dtype
    if dtype in (np.uint8, np.uint16):
        lo, hi = _range_of("integer", float(np.iinfo(dtype).max), value_range)
    elif np.issubdtype(dtype, np.floating):
        lo, hi = _range_of("float", None, value_range)
    else:
        raise TypeError(f"unsupported array dtype {dtype}; use uint8, uint16 or float in [0, 1]")
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]
    if np.issubdtype(dtype, np.floating):
        _check_values(x, lo, hi, value_range is not None)
    x = ((x - lo) / (hi - lo)).clamp_(0, 1)

    def back(y: Tensor) -> np.ndarray:
        out = y[0].permute(1, 2, 0).numpy() * (hi - lo) + lo
        if np.issubdtype(dtype, np.integer):
            out = np.clip(np.rint(out), 0, np.iinfo(dtype).max)
        out = out.astype(dtype)
        return out[:, :, 0] if squeeze else out

    return x, back


def restore(model: torch.nn.Module, image: Any, tile: TileArg = None,
            tile_overlap: int = DEFAULT_TILE_OVERLAP, self_ensemble: bool = False,
            progress: bool = False, value_range: ValueRange = None, dtype: DtypeArg = None) -> Any:
    """Restores one image with ``model`` and returns the result as the same kind of object.

    Args:
        model: a MambaIRv2 (or any module mapping ``B×C×H×W`` in [0, 1] to ``B×C×(H·s)×(W·s)``,
            with ``config.in_chans``, ``config.window_size``); its device and dtype are used.
        image: a NumPy array (``H×W`` or ``H×W×C``; uint8, uint16 or float in [0, 1]), a Pillow
            image (any mode; palette/CMYK come back as RGB(A); EXIF orientation is applied, so
            the result is upright and its EXIF says so), or a tensor (``C×H×W`` or
            ``B×C×H×W``, float in [0, 1] or uint8). C = 1, 2 (gray + alpha), 3 or 4 (RGBA).
        tile: None (whole image), a tile size in input pixels (rounded to the model's window),
            or ``"auto"`` (from the memory this process may use; None if the image fits;
            halved and retried on an out-of-memory error).
        tile_overlap: overlap of neighbouring tiles in input pixels.
        self_ensemble: average over the 8 flips/transposes (8× slower, slightly better).
        progress: show a tqdm bar over the tiles.
        value_range: ``(low, high)`` of the input values when they are not the dtype's usual
            range (float 0..1, uint8 0..255, uint16 0..65535), e.g. ``(0, 255)`` for 8-bit
            values held in a float array; the result uses the same range.
        dtype: None (the weights' dtype), or ``"bfloat16"``/``"float16"`` for mixed precision
            under autocast (on a CPU: bfloat16 only where it has native bfloat16 products;
            see :func:`mambairv2.ops.compute_precision`).
    Returns:
        The restored image: same type, dtype, range and layout (and tensor device); size ×s.
    Raises:
        ValueError: float values outside the expected range (the message names it), an empty
            image, or an unsupported shape (and DeviceError, a ValueError: bfloat16 on a CPU
            without native support). TypeError: an unsupported type or dtype.
    """
    kwargs = dict(tile=tile, tile_overlap=tile_overlap, self_ensemble=self_ensemble, progress=progress,
                  dtype=dtype)
    if isinstance(image, np.ndarray):
        x, back = _array_to_float(image, value_range)
        return back(restore_tensor(model, x, **kwargs))
    if isinstance(image, torch.Tensor):
        return _restore_torch(model, image, kwargs, value_range)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return _restore_pil(model, image, kwargs)
    raise TypeError(f"restore() takes a NumPy array, a PIL image or a torch tensor, not {type(image).__name__}")


def _restore_pil(model: torch.nn.Module, image: Any, kwargs: dict) -> Any:
    """A Pillow image restored as the command line does: upright (EXIF orientation applied),
    ICC profile kept, EXIF kept with its orientation reset."""
    from ..utils.imageio import apply_orientation, array_to_pil, exif_orientation, pil_to_array

    arr, keep_icc = pil_to_array(image)
    exif, orientation = exif_orientation(image)
    arr = np.ascontiguousarray(apply_orientation(arr, orientation))
    x, back = _array_to_float(arr)
    out = array_to_pil(back(restore_tensor(model, x, **kwargs)))
    if keep_icc and image.info.get("icc_profile"):
        out.info["icc_profile"] = image.info["icc_profile"]
    if exif is not None and len(exif):
        try:
            exif[0x0112] = 1
            out.info["exif"] = exif.tobytes()
        except Exception:  # noqa: BLE001 - unserialisable EXIF is dropped, never fatal
            pass
    return out


def _restore_torch(model: torch.nn.Module, image: Tensor, kwargs: dict, value_range: ValueRange) -> Tensor:
    if image.dim() not in (3, 4):
        raise ValueError(f"expected a C×H×W or B×C×H×W tensor, got shape {tuple(image.shape)}")
    if image.shape[-1] < 1 or image.shape[-2] < 1 or (image.dim() == 4 and image.shape[0] < 1):
        raise ValueError(f"empty image (shape {tuple(image.shape)})")
    batch = image if image.dim() == 4 else image[None]
    if image.dtype == torch.uint8:
        lo, hi = _range_of("integer", 255.0, value_range)
    elif image.dtype.is_floating_point:
        lo, hi = _range_of("float", None, value_range)
        _check_values(batch.detach().float(), lo, hi, value_range is not None)
    else:
        raise TypeError(f"unsupported tensor dtype {image.dtype}; use float in [0, 1] or uint8")
    outs = [restore_tensor(model, ((batch[i:i + 1].float() - lo) / (hi - lo)).clamp(0, 1), **kwargs)
            for i in range(batch.shape[0])]
    y = torch.cat(outs, 0) * (hi - lo) + lo
    if not image.dtype.is_floating_point:
        y = y.round().clamp(0, 255)
    y = y.to(device=image.device, dtype=image.dtype)
    return y if image.dim() == 4 else y[0]
