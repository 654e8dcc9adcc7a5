"""Semantic-guided neighbouring (the paper's Fig. A.1): the route (prompt index) of every token
per ASSM layer, and the features before and after the SGN unfold."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np
import torch

from . import plotting
from .attentive_map import _short
from .capture import ASSMRecord, capture_assm

Tensor = torch.Tensor


@dataclass
class SGNLayer:
    """One layer on the padded ``Hp×Wp`` grid: ``groups`` (Hp×Wp route per pixel), ``order``
    (scan position → raster token index, a permutation), ``features`` (L×c tokens in raster
    order), ``num_tokens`` (T), ``name``."""

    name: str
    groups: np.ndarray
    order: np.ndarray
    features: np.ndarray
    num_tokens: int

    def unfolded(self, values: np.ndarray) -> np.ndarray:
        """Per-token ``values`` (L×…, raster order) in SGN scan order, laid out row by row on
        the same Hp×Wp grid."""
        hp, wp = self.groups.shape
        return values[self.order].reshape(hp, wp, *values.shape[1:])


def sgn_routes(model: torch.nn.Module, x: Tensor) -> List[SGNLayer]:
    """Routes and SGN order of every ASSM layer for ``x`` (``1×C×H×W``)."""
    _, records = capture_assm(model, x)
    return [_layer(r) for r in records]


def busiest_layer(layers: List[SGNLayer]) -> int:
    """Index of the layer whose tokens use the most distinct routes."""
    return max(range(len(layers)), key=lambda i: len(np.unique(layers[i].groups)))


def _layer(r: ASSMRecord) -> SGNLayer:
    hp, wp = r.size
    return SGNLayer(r.name, r.groups.view(hp, wp).numpy(), r.order.numpy(), r.features.float().numpy(),
                    int(r.pool.shape[0]))


def pca_rgb(features: np.ndarray) -> np.ndarray:
    """L×c features → L×3 colours: the 3 principal components, each stretched to its 1–99th
    percentiles."""
    f = features - features.mean(0)
    _, _, vt = np.linalg.svd(f, full_matrices=False)
    comps = f @ vt[:3].T
    lo, hi = np.percentile(comps, 1, 0), np.percentile(comps, 99, 0)
    return np.clip((comps - lo) / np.maximum(hi - lo, 1e-12), 0, 1)


def sgn_figure(layers: List[SGNLayer], x: Tensor, layer: int) -> np.ndarray:
    """Route maps of all layers, and for ``layer`` the routes and features before/after SGN."""
    h, w = x.shape[-2:]
    sel = layers[layer]
    zoom = max(1, 192 // max(h, w))
    cut = (slice(0, h), slice(0, w))

    def routes_img(g: np.ndarray) -> np.ndarray:
        return plotting.categorical(g, sel.num_tokens)

    feats = pca_rgb(sel.features)
    hp, wp = sel.groups.shape
    before_f = (feats.reshape(hp, wp, 3) * 255).astype(np.uint8)
    after_f = (sel.unfolded(feats) * 255).astype(np.uint8)
    after_g = sel.unfolded(sel.groups.reshape(-1))
    used = len(np.unique(sel.groups))
    detail = [
        plotting.titled(plotting.enlarge(plotting.to_rgb8(x[0].numpy()), zoom), "input"),
        plotting.titled(plotting.enlarge(routes_img(sel.groups)[cut], zoom), "routes (raster order)"),
        plotting.titled(plotting.enlarge(routes_img(after_g), zoom), "routes after SGN unfold"),
        plotting.titled(plotting.enlarge(before_f[cut], zoom), "features before SGN"),
        plotting.titled(plotting.enlarge(after_f, zoom), "features after SGN unfold"),
    ]
    tiles = [plotting.titled(plotting.fit(routes_img(l.groups)[cut], 96),
                             f"{_short(l.name)}: {len(np.unique(l.groups))} routes", 10) for l in layers]
    row = plotting.hstack(detail)
    cols = max(1, row.shape[1] // (tiles[0].shape[1] + 6))
    body = plotting.vstack([plotting.text_image([f"Layer {layer} ({_short(sel.name)}), {used} of "
                                                 f"{sel.num_tokens} prompts used"], row.shape[1], 13),
                            row, plotting.text_image(["Routes of every ASSM layer"], row.shape[1], 13),
                            plotting.grid(tiles, cols)], pad=4)
    notes = ["Colours in route maps: the prompt (route) each pixel is assigned to, one colour per prompt. "
             "SGN unfold sorts the pixels by route (ties keep raster order) into the 1-D sequence the "
             "scan reads; 'after' panels lay that sequence out row by row on the padded grid, so pixels "
             "of one route become neighbours. Feature colours: first 3 principal components of the "
             "ASSM's input features as RGB."]
    return plotting.figure("Semantic-guided neighbouring (SGN): routes and the unfolded sequence", body, notes)
