"""Effective receptive field (Luo et al., NeurIPS 2016; the paper's Fig. A.3): how much each
input pixel moves the centre pixel of the output."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import numpy as np
import torch

from . import plotting

Tensor = torch.Tensor


@dataclass
class ERF:
    """``map``: ``H×W`` sum over images and colours of |∂ centre output / ∂ input pixel|;
    ``total``: the sum of all those magnitudes (= ``map.sum()``); ``images``: how many."""

    map: np.ndarray
    total: float
    images: int


def centre_gradient(model: torch.nn.Module, x: Tensor) -> Tensor:
    """Gradient of the centre output pixel (its colours summed) with respect to ``x``
    (``1×C×H×W``); the model's weights get no gradient."""
    x = x.detach().clone().requires_grad_(True)
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            y = model(x)
            h, w = y.shape[-2:]
            (grad,) = torch.autograd.grad(y[:, :, h // 2, w // 2].sum(), x)
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    return grad


def effective_receptive_field(model: torch.nn.Module, images: Sequence[Tensor], progress: bool = False) -> ERF:
    """The ERF aggregated over ``images`` (all of one size, ``1×C×H×W`` each)."""
    sizes = {tuple(x.shape[-2:]) for x in images}
    if len(sizes) != 1:
        raise ValueError(f"all images must have the same size for the ERF (crop them): {sorted(sizes)}")
    acc = None
    it = images
    if progress:
        from tqdm import tqdm

        it = tqdm(images, desc="ERF", unit="image")
    for x in it:
        g = centre_gradient(model, x).abs().sum((0, 1)).double().numpy()
        acc = g if acc is None else acc + g
    return ERF(map=acc, total=float(acc.sum()), images=len(images))


def erf_figure(erf: ERF, images: Sequence[Tensor], model_name: str = "", decades: int = 4) -> np.ndarray:
    """The first image and the ERF on a log scale (``decades`` below the maximum), with a
    colour bar."""
    h, w = erf.map.shape
    zoom = max(1, 256 // max(h, w))
    rel = erf.map / max(erf.map.max(), 1e-30)
    logm = np.log10(np.maximum(rel, 10.0 ** -decades))
    heat = plotting.enlarge(plotting.colormap(logm, -decades, 0, "inferno"), zoom)
    img = plotting.enlarge(plotting.to_rgb8(images[0][0].numpy()), zoom)
    img = plotting.draw_marker(img, (h // 2) * zoom, (w // 2) * zoom)
    bar = plotting.colorbar(heat.shape[0] - 20, -decades, 0, "log10 relative", "inferno", decades + 1, "{:.0f}")
    reach = {f"{t:g}": float((rel >= t).mean()) for t in (1e-2, 1e-3)}
    body = plotting.hstack([plotting.titled(img, "input (centre pixel marked)"),
                            plotting.titled(heat, "|gradient of the centre output pixel|"), bar])
    notes = [f"Colour: log10 of the gradient magnitude of the centre output pixel with respect to each "
             f"input pixel (colours summed), relative to its maximum, summed over {erf.images} image(s). "
             f"Bright = strong influence; a wide bright area = a large effective receptive field.",
             f"Share of input pixels within 1/100 of the maximum: {100 * reach['0.01']:.1f}%, within "
             f"1/1000: {100 * reach['0.001']:.1f}%."]
    title = "Effective receptive field" + (f" - {model_name}" if model_name else "")
    return plotting.figure(title, body, notes)


def reach(erf: ERF, threshold: float) -> float:
    """Fraction of input pixels whose influence is at least ``threshold`` times the maximum."""
    return float((erf.map >= threshold * erf.map.max()).mean())


__all__: List[str] = ["ERF", "centre_gradient", "effective_receptive_field", "erf_figure", "reach"]
