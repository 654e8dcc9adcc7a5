"""The attentive state space map (the paper's Fig. 5): cosine similarity between the prompt
that ASE gives a query pixel and the scan's C of every pixel, per ASSM layer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import plotting
from .capture import capture_assm

Tensor = torch.Tensor


@dataclass
class AttentiveMaps:
    """``maps``: layers×H×W cosine similarities in [−1, 1] (input-sized: padding cut off);
    ``names``: layer module paths; ``groups``: the query pixel's prompt index per layer."""

    maps: np.ndarray
    names: List[str]
    groups: List[int]

    @property
    def mean(self) -> np.ndarray:
        return self.maps.mean(0)


def attentive_maps(model: torch.nn.Module, x: Tensor, pixel: Tuple[int, int]) -> AttentiveMaps:
    """Maps for the query ``pixel`` (row, column of ``x``, ``1×C×H×W``)."""
    h, w = x.shape[-2:]
    y0, x0 = pixel
    if not (0 <= y0 < h and 0 <= x0 < w):
        raise ValueError(f"pixel {pixel} is outside the {h}×{w} image")
    _, records = capture_assm(model, x)
    maps, groups = [], []
    for r in records:
        hp, wp = r.size
        q = y0 * wp + x0
        sim = F.cosine_similarity(r.prompt[q][None].float(), r.C.float(), dim=-1)
        maps.append(sim.view(hp, wp)[:h, :w].numpy())
        groups.append(int(r.groups[q]))
    return AttentiveMaps(np.stack(maps).astype(np.float64), [r.name for r in records], groups)


def _short(name: str) -> str:
    """``layers.2.residual_group.layers.3.assm`` → ``group 2, layer 3``."""
    parts = name.split(".")
    try:
        return f"group {parts[1]}, layer {parts[4]}"
    except IndexError:
        return name


def attention_figure(maps: AttentiveMaps, x: Tensor, pixel: Tuple[int, int], threshold: float = 0.5) -> np.ndarray:
    """Image with the query marked, the layer-averaged map overlaid where it exceeds
    ``threshold``, and every layer's map."""
    h, w = maps.maps.shape[1:]
    zoom = max(1, 256 // max(h, w))
    img = plotting.to_rgb8(x[0].numpy())
    mean = maps.mean
    colour = plotting.diverging(mean)
    best = int(np.argmax(maps.maps.reshape(len(maps.maps), -1).std(1)))  # the most selective layer
    sel = maps.maps[best]
    over = plotting.enlarge(plotting.blend(img, plotting.diverging(sel), np.where(sel > threshold, 0.8, 0.0)), zoom)
    py, px = pixel[0] * zoom + zoom // 2, pixel[1] * zoom + zoom // 2
    big = plotting.enlarge(img, zoom)
    panels = [plotting.titled(plotting.draw_marker(big, py, px), "input, query pixel marked"),
              plotting.titled(plotting.draw_marker(plotting.enlarge(colour, zoom), py, px, (0, 0, 0)),
                              f"mean over {len(maps.names)} layers"),
              plotting.titled(plotting.draw_marker(over, py, px),
                              f"{_short(maps.names[best])} (most selective), > {threshold:g}"),
              plotting.colorbar(big.shape[0] - 20, -1, 1, "cosine", "diverging")]
    tiles = [plotting.titled(plotting.fit(plotting.diverging(m), 96), f"{_short(n)}: prompt {g}", 10)
             for m, n, g in zip(maps.maps, maps.names, maps.groups)]
    cols = max(1, min(len(tiles), plotting.hstack(panels).shape[1] // (tiles[0].shape[1] + 6)))
    body = plotting.vstack([plotting.hstack(panels), plotting.grid(tiles, cols)])
    notes = [f"Query pixel (row {pixel[0]}, column {pixel[1]}). Colour: cosine similarity between the "
             f"prompt that the attentive state-space equation adds to this pixel's C and the C of every "
             f"pixel (red = similar, blue = opposite, white = unrelated). Red areas are the pixels the "
             f"query can 'attend' to beyond the scan order. Third panel: the layer whose map varies most, "
             f"overlaid where the similarity exceeds {threshold:g}. Small maps: each ASSM layer; the prompt "
             f"index is the pixel's route in that layer."]
    return plotting.figure("Attentive state space (ASE): prompt of the query vs. C of all pixels", body, notes)
