"""A PNG of the training loss and the validation PSNR over the steps, drawn with Pillow."""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Sequence, Tuple

from PIL import Image, ImageDraw, ImageFont

from ..utils.atomic import atomic_path
from .logs import read_log

Series = List[Tuple[float, float]]


def _panel(draw: ImageDraw.ImageDraw, box: Tuple[int, int, int, int], points: Series, title: str,
           colour: Tuple[int, int, int], log_y: bool = False) -> None:
    x0, y0, x1, y1 = box
    font = ImageFont.load_default()
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0 + 4, y0 - 14), title, fill=(0, 0, 0), font=font)
    if not points:
        draw.text((x0 + 10, (y0 + y1) // 2), "no data yet", fill=(120, 120, 120), font=font)
        return
    xs = [p[0] for p in points]
    ys = [math.log10(p[1]) if log_y else p[1] for p in points if not log_y or p[1] > 0]
    if log_y:
        xs = [p[0] for p in points if p[1] > 0]
    if not ys:
        return
    xmin, xmax = min(xs), max(xs)
    ymin, ymax = min(ys), max(ys)
    if xmax == xmin:
        xmax = xmin + 1
    if ymax == ymin:
        ymax, ymin = ymax + 0.5, ymin - 0.5
    pad = 8

    def map_xy(x: float, y: float) -> Tuple[float, float]:
        px = x0 + pad + (x - xmin) / (xmax - xmin) * (x1 - x0 - 2 * pad)
        py = y1 - pad - (y - ymin) / (ymax - ymin) * (y1 - y0 - 2 * pad)
        return px, py

    pts = [map_xy(x, y) for x, y in zip(xs, ys)]
    if len(pts) > 1:
        draw.line(pts, fill=colour, width=2)
    for px, py in pts if len(pts) < 60 else pts[-1:]:
        draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)
    fmt = (lambda v: f"{10 ** v:.3g}") if log_y else (lambda v: f"{v:.4g}")
    draw.text((x1 + 4, y0), fmt(ymax), fill=(0, 0, 0), font=font)
    draw.text((x1 + 4, y1 - 12), fmt(ymin), fill=(0, 0, 0), font=font)
    draw.text((x0, y1 + 4), f"{int(xmin)}", fill=(0, 0, 0), font=font)
    draw.text((x1 - 40, y1 + 4), f"{int(xmax)}", fill=(0, 0, 0), font=font)


def plot_curves(loss: Sequence[Tuple[float, float]], psnr: Sequence[Tuple[float, float]], path: Path,
                size: Tuple[int, int] = (900, 560)) -> Path:
    """Draws loss (log scale) and validation PSNR against the step into ``path`` (atomic)."""
    w, h = size
    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    _panel(draw, (50, 30, w - 70, h // 2 - 30), list(loss), "training loss (log scale)", (200, 60, 40), True)
    _panel(draw, (50, h // 2 + 30, w - 70, h - 30), list(psnr), "validation PSNR (dB)", (40, 90, 200))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


def plot_log(csv_path: Path, png_path: Path) -> Path:
    """Plot of a run's ``log.csv``."""
    loss, psnr = [], []
    for r in read_log(csv_path):
        step = float(r["step"])
        if r.get("loss"):
            loss.append((step, float(r["loss"])))
        if r.get("val_psnr"):
            psnr.append((step, float(r["val_psnr"])))
    return plot_curves(loss, psnr, png_path)
