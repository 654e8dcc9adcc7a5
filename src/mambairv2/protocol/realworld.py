"""Real-world degradations for blind SR training: Real-ESRGAN's second-order model
(Wang et al. 2021; ``options/train_realesrnet_x4plus.yml`` and
``realesrgan/models/realesrnet_model.py`` give the probabilities and ranges), in torch on the
tensors' device.

One sample: (USM-sharpened) HR → [blur → random resize → Gaussian or Poisson noise (colour or
gray) → JPEG] → [blur with probability → random resize → noise] → in random order
{resize to HR/scale + sinc filter, JPEG} → 8-bit rounding. Kernels: isotropic / anisotropic
Gaussian, generalized Gaussian and plateau, or a sinc; sizes 7..21 (odd).

Differences from Real-ESRGAN, on purpose:

- Every random choice is drawn per sample from a generator seeded with the sample's own seed
  (Real-ESRGAN draws the resize scale and mode once per batch and mixes batches through a
  queue of 180 pairs; per-sample draws give that diversity without the queue). So the same seed
  gives the same LR bytes whatever the batch it is in, the number of ranks or workers.
- The HR patch itself is degraded (Real-ESRGAN degrades a 400-px crop, then crops): the blur's
  reflect padding touches the patch border.
- JPEG is the torch model of :func:`~.realworld_kernels.jpeg` (as DiffJPEG; not libjpeg).

Scalar parameters come from a NumPy generator, so they are identical on every device; noise is
drawn on the tensors' device (CPU: bit-exact for a seed; CUDA: the CUDA generator's own stream,
so GPU bytes differ from CPU bytes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import realworld_kernels as K

Tensor = torch.Tensor


@dataclass
class KernelDraw:
    """One blur kernel: its kind (iso, aniso, generalized_iso, generalized_aniso, plateau_iso,
    plateau_aniso or sinc) and parameters."""

    kind: str
    size: int
    sigma_x: float = 0.0
    sigma_y: float = 0.0
    theta: float = 0.0
    beta: float = 1.0
    omega: float = 0.0

    def kernel(self) -> Tensor:
        if self.kind == "sinc":
            return K.sinc_kernel(self.size, self.omega)
        shape = self.kind.split("_")[0]
        kind = {"iso": "gaussian", "aniso": "gaussian"}.get(shape, shape)
        return K.gaussian_kernel(self.size, self.sigma_x, self.sigma_y, self.theta, kind, self.beta)


@dataclass
class StageDraw:
    """The random choices of one degradation stage."""

    blur: Optional[KernelDraw]
    resize: str            # up | down | keep
    resize_scale: float
    resize_mode: str
    noise: str             # gaussian | poisson
    noise_level: float     # sigma (0-255 scale) or Poisson scale
    gray_noise: bool
    jpeg_quality: float


@dataclass
class SampleDraw:
    """Every random choice for one sample (drawn before any pixel is touched)."""

    first: StageDraw
    second: StageDraw
    final_sinc: Optional[KernelDraw]
    final_resize_first: bool   # True: resize + sinc, then JPEG; False: JPEG, then resize + sinc
    final_mode: str
    seed: int = 0


class _Draw:
    """Scalars from a generator seeded with the sample's seed (NumPy's PCG64: every bit of a
    64-bit seed counts, and its stream is the same on every platform)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(int(seed) & 0xFFFFFFFFFFFFFFFF)

    def uniform(self, lo: float, hi: float) -> float:
        return float(lo) + (float(hi) - float(lo)) * float(self.rng.random())

    def chance(self, p: float) -> bool:
        return float(self.rng.random()) < p

    def choice(self, items: Sequence[Any], probs: Optional[Sequence[float]] = None) -> Any:
        if probs is None:
            return items[int(self.rng.integers(len(items)))]
        u = float(self.rng.random()) * float(sum(probs))
        acc = 0.0
        for item, p in zip(items, probs):
            acc += p
            if u < acc:
                return item
        return items[-1]


def noise_seed(seed: int) -> int:
    """The seed of a sample's noise generator on its device (torch's CPU generator keeps only 32
    bits of a seed: the sample seed is hashed first so that every bit of it counts)."""
    return int(np.random.SeedSequence(int(seed) & 0xFFFFFFFFFFFFFFFF).generate_state(1, np.uint64)[0]
               & 0x7FFFFFFFFFFFFFFF)


def _kernel_sizes(o: Mapping[str, Any]) -> List[int]:
    lo, hi = o["kernel_range"]
    return [k for k in range(int(lo), int(hi) + 1) if k % 2 == 1]


def _draw_kernel(d: _Draw, o: Mapping[str, Any], suffix: str) -> KernelDraw:
    """Real-ESRGAN's kernel of one stage: a sinc with ``sinc_prob``, else one of the kernel list."""
    size = d.choice(_kernel_sizes(o))
    if d.chance(o["sinc_prob" + suffix]):
        omega = d.uniform(math.pi / 3, math.pi) if size < 13 else d.uniform(math.pi / 5, math.pi)
        return KernelDraw("sinc", size, omega=omega)
    kind = d.choice(o["kernel_list" + suffix], o["kernel_prob" + suffix])
    s_lo, s_hi = o["blur_sigma" + suffix]
    sx = d.uniform(s_lo, s_hi)
    iso = kind.endswith("_iso") or kind == "iso"
    sy = sx if iso else d.uniform(s_lo, s_hi)
    theta = 0.0 if iso else d.uniform(-math.pi, math.pi)
    beta = 1.0
    if kind.startswith("generalized") or kind.startswith("plateau"):
        b_lo, b_hi = o[("betag_range" if kind.startswith("generalized") else "betap_range") + suffix]
        # half the draws below 1, half above (BasicSR's split of the shape parameter)
        beta = d.uniform(b_lo, 1.0) if d.chance(0.5) else d.uniform(1.0, b_hi)
    return KernelDraw(kind, size, sx, sy, theta, beta)


def _draw_stage(d: _Draw, o: Mapping[str, Any], suffix: str, blur: bool) -> StageDraw:
    kernel = _draw_kernel(d, o, suffix)
    updown = d.choice(("up", "down", "keep"), o["resize_prob" + suffix])
    lo, hi = o["resize_range" + suffix]
    scale = d.uniform(1.0, hi) if updown == "up" else d.uniform(lo, 1.0) if updown == "down" else 1.0
    mode = d.choice(o["resize_modes"])
    gaussian = d.chance(o["gaussian_noise_prob" + suffix])
    level = d.uniform(*o["noise_range" + suffix]) if gaussian else d.uniform(*o["poisson_scale_range" + suffix])
    gray = d.chance(o["gray_noise_prob" + suffix])
    quality = d.uniform(*o["jpeg_range" + suffix])
    return StageDraw(kernel if blur else None, updown, scale, mode, "gaussian" if gaussian else "poisson",
                     level, gray, quality)


def draw_sample(seed: int, options: Mapping[str, Any]) -> SampleDraw:
    """Every random choice of one sample, from its seed (the ``realsr`` config section as
    ``options``)."""
    d = _Draw(seed)
    first = _draw_stage(d, options, "", blur=True)
    second_blur = d.chance(options["second_blur_prob"])
    second = _draw_stage(d, options, "2", blur=second_blur)
    sinc = None
    if d.chance(options["final_sinc_prob"]):
        size = d.choice(_kernel_sizes(options))
        sinc = KernelDraw("sinc", size, omega=d.uniform(math.pi / 3, math.pi))
    final_first = d.chance(options["final_resize_first_prob"])
    mode = d.choice(options["resize_modes"])
    return SampleDraw(first, second, sinc, final_first, mode, seed=seed)


def _resize(x: Tensor, size: Tuple[int, int], mode: str) -> Tensor:
    size = (max(1, int(size[0])), max(1, int(size[1])))
    if mode in ("bilinear", "bicubic"):
        return F.interpolate(x, size=size, mode=mode, align_corners=False)
    return F.interpolate(x, size=size, mode=mode)


def _noise(x: Tensor, st: StageDraw, gen: torch.Generator) -> Tensor:
    """Gaussian (``sigma``/255) or Poisson noise, colour or gray (the same for all channels)."""
    if st.noise == "gaussian":
        shape = (1, 1) + tuple(x.shape[2:]) if st.gray_noise else tuple(x.shape)
        noise = torch.randn(shape, generator=gen, device=x.device, dtype=x.dtype) * (st.noise_level / 255.0)
        return (x + noise).clamp(0, 1)
    src = x
    if st.gray_noise:
        src = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    q = (src * 255).round().clamp(0, 255) / 255
    levels = 2 ** math.ceil(math.log2(max(len(torch.unique(q)), 1)))
    counts = torch.poisson(q * levels, generator=gen)
    noise = (counts / levels - q) * st.noise_level
    return (x + noise).clamp(0, 1)


def _stage(x: Tensor, st: StageDraw, size: Tuple[int, int], gen: torch.Generator) -> Tensor:
    if st.blur is not None:
        x = K.filter2d(x, st.blur.kernel())
    x = _resize(x, size, st.resize_mode)
    return _noise(x, st, gen)


def degrade_one(hr: Tensor, scale: int, options: Mapping[str, Any], seed: int,
                draw: Optional[SampleDraw] = None) -> Tensor:
    """The LR of one HR image (1×3×H×W in [0, 1], already sharpened if wanted): 1×3×(H//scale)×
    (W//scale), on 8-bit levels."""
    draw = draw or draw_sample(seed, options)
    h, w = hr.shape[-2:]
    gen = torch.Generator(device=hr.device).manual_seed(noise_seed(seed))
    f = draw.first
    x = _stage(hr, f, (math.floor(h * f.resize_scale), math.floor(w * f.resize_scale)), gen)
    x = K.jpeg(x.clamp(0, 1)[0], f.jpeg_quality)[None]
    s = draw.second
    x = _stage(x, s, (int(h / scale * s.resize_scale), int(w / scale * s.resize_scale)), gen)
    out_size = (h // scale, w // scale)

    def resize_sinc(y: Tensor) -> Tensor:
        y = _resize(y, out_size, draw.final_mode)
        return K.filter2d(y, draw.final_sinc.kernel()) if draw.final_sinc is not None else y

    if draw.final_resize_first:
        x = K.jpeg(resize_sinc(x).clamp(0, 1)[0], s.jpeg_quality)[None]
    else:
        x = resize_sinc(K.jpeg(x.clamp(0, 1)[0], s.jpeg_quality)[None])
    return (x * 255).round().clamp(0, 255) / 255


def sharpen(hr: Tensor, options: Mapping[str, Any]) -> Tensor:
    """The ground truth as configured: USM-sharpened when ``gt_usm``, else unchanged."""
    if not options["gt_usm"]:
        return hr
    return K.usm_sharpen(hr, int(options["usm_radius"]), float(options["usm_weight"]), float(options["usm_threshold"]))


@torch.no_grad()
def degrade_batch(hr: Tensor, seeds: Sequence[int], scale: int, options: Mapping[str, Any]) -> Tuple[Tensor, Tensor]:
    """``(lq, gt)`` for a batch of HR patches (N×3×H×W in [0, 1], H and W multiples of ``scale``):
    ``gt`` is the sharpened HR when ``gt_usm`` (the degradation starts from it, as Real-ESRGAN's),
    ``lq`` its degraded LR, sample ``i`` drawn from ``seeds[i]`` alone."""
    if len(seeds) != hr.shape[0]:
        raise ValueError(f"{hr.shape[0]} images but {len(seeds)} seeds")
    hr = hr.float()
    gt = torch.cat([sharpen(hr[i:i + 1], options) for i in range(hr.shape[0])]) if hr.shape[0] else hr
    lq = [degrade_one(gt[i:i + 1], scale, options, int(seeds[i])) for i in range(hr.shape[0])]
    return torch.cat(lq), gt
