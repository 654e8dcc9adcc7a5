"""Local attribution map (LAM; Gu & Dong, "Interpreting Super-Resolution Networks with Local
Attribution Maps", CVPR 2021) and its diffusion index (the paper's Fig. A.2).

The attributed quantity is the sum of the gradient magnitude of the output image inside a box
(LAM's ``attr_grad``: sqrt of squared vertical plus horizontal differences). The path runs from
the input blurred by a Gaussian of ``sigma`` to the input itself (LAM's ``GaussianBlurPath``:
kernels with σ going linearly from ``sigma`` to 0); the attribution is the path-integrated
gradient: the mean over the path of (∂ objective / ∂ image) × (∂ image / ∂ α), summed over
colours, absolute value, divided by its maximum. The diffusion index is 1 − Gini of that map:
near 0 when a few pixels explain the box, larger when many do (LAM prints it ×100)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import plotting

Tensor = torch.Tensor
Box = Tuple[int, int, int, int]


@dataclass
class LAMResult:
    """``attribution``: H×W in [0, 1] (input-sized); ``diffusion_index`` in [0, 1];
    ``output``: the model's output for the input, ``C×sH×sW``."""

    attribution: np.ndarray
    diffusion_index: float
    output: np.ndarray


def gaussian_kernel(size: int, sigma: float) -> Tensor:
    """Normalised ``size×size`` isotropic Gaussian (a unit impulse for ``sigma`` = 0)."""
    if sigma <= 0:
        k = torch.zeros(size, size, dtype=torch.float64)
        k[size // 2, size // 2] = 1
        return k
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter(x: Tensor, kernel: Tensor) -> Tensor:
    """Per-channel 2-D correlation with reflect-101 borders (as OpenCV's ``filter2D``)."""
    c, p = x.shape[1], kernel.shape[-1] // 2
    w = kernel.to(x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), w, groups=c)


def blur_path(x: Tensor, sigma: float, steps: int, kernel_size: int) -> Tuple[Tensor, Tensor]:
    """Images on the path and their derivatives with respect to the path parameter, each
    ``steps×C×H×W``, for ``x`` ``1×C×H×W``."""
    sigmas = np.linspace(sigma, 0, steps + 1)
    kernels = [gaussian_kernel(kernel_size, float(s)) for s in sigmas]
    images = torch.cat([_filter(x, kernels[i + 1]) for i in range(steps)])
    derivs = torch.cat([_filter(x, (kernels[i + 1] - kernels[i]) * steps) for i in range(steps)])
    return images, derivs


def gradient_objective(y: Tensor, box: Box) -> Tensor:
    """Sum of the gradient magnitude of ``y`` (B×C×H×W) inside ``box`` = (top, left, height,
    width), per batch element."""
    top, left, hh, ww = box
    dv = (y[:, :, :-1, :-1] - y[:, :, 1:, :-1]) ** 2
    dh = (y[:, :, :-1, :-1] - y[:, :, :-1, 1:]) ** 2
    mag = torch.sqrt(dv + dh + 1e-12)
    return mag[:, :, top:top + hh, left:left + ww].sum((1, 2, 3))


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (LAM's definition, with its 1e-7 offset)."""
    a = np.sort(values.astype(np.float64).ravel() - min(0.0, float(values.min())) + 1e-7)
    n = a.size
    index = np.arange(1, n + 1)
    return float(np.sum((2 * index - n - 1) * a) / (n * np.sum(a)))


def lam(model: torch.nn.Module, x: Tensor, box: Box, steps: int = 10, sigma: float = 1.2,
        kernel_size: int = 9, batch: int = 4, progress: bool = False) -> LAMResult:
    """LAM of ``model`` for the input ``x`` (``1×C×H×W``) and a ``box`` in output pixels."""
    images, derivs = blur_path(x.double(), sigma, steps, kernel_size)
    images, derivs = images.to(x.dtype), derivs.to(x.dtype)
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    total = torch.zeros_like(x[0], dtype=torch.float64)
    chunks = range(0, steps, batch)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="LAM path", unit="batch")
    try:
        for start in chunks:
            part = images[start:start + batch].clone().requires_grad_(True)
            with torch.enable_grad():
                objective = gradient_objective(model(part), box).sum()
                (grad,) = torch.autograd.grad(objective, part)
            total += (grad * derivs[start:start + batch]).double().sum(0)
        with torch.no_grad():
            output = model(x)[0].clamp(0, 1).numpy()
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    attribution = (total / steps).sum(0).abs().numpy()
    attribution = attribution / max(float(attribution.max()), 1e-30)
    return LAMResult(attribution, 1.0 - gini(attribution), output)


def lam_figure(result: LAMResult, x: Tensor, box: Box, scale: int, decades: int = 3) -> np.ndarray:
    """Input with the box, output with the box, the attribution (log scale) and its overlay."""
    h, w = result.attribution.shape
    zoom = max(1, 256 // max(h, w))
    top, left, hh, ww = box
    img = plotting.enlarge(plotting.to_rgb8(x[0].numpy()), zoom)
    f = zoom / scale
    img_box = plotting.draw_box(img, round(top * f), round(left * f), max(2, round(hh * f)), max(2, round(ww * f)))
    out = plotting.to_rgb8(result.output)
    k = img.shape[0] / out.shape[0]  # the output shown at the input panel's size
    out = cv2.resize(out, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_NEAREST)
    out = plotting.draw_box(out, round(top * k), round(left * k), max(2, round(hh * k)), max(2, round(ww * k)))
    logm = np.log10(np.maximum(result.attribution, 10.0 ** -decades))
    heat = plotting.enlarge(plotting.colormap(logm, -decades, 0, "inferno"), zoom)
    alpha = np.clip((logm + decades) / decades, 0, 1) ** 2 * 0.85
    over = plotting.blend(img, heat, plotting.enlarge(alpha[..., None], zoom)[..., 0])
    bar = plotting.colorbar(heat.shape[0] - 20, -decades, 0, "log10 relative", "inferno", decades + 1, "{:.0f}")
    di = result.diffusion_index
    body = plotting.hstack([plotting.titled(img_box, "input, box (red)"),
                            plotting.titled(out, "output, attributed box"),
                            plotting.titled(heat, "local attribution map"),
                            plotting.titled(over, "attribution over the input"), bar])
    notes = [f"Diffusion index DI = {di:.3f} ({100 * di:.2f} on the LAM paper's 0-100 scale): 1 - Gini "
             f"coefficient of the attribution; higher = more input pixels contribute to the box.",
             "Colour: log10 of |path-integrated gradient| of the box's edge strength with respect to each "
             "input pixel, relative to the maximum (LAM, progressive-blur path)."]
    return plotting.figure("Local attribution map (LAM)", body, notes)
