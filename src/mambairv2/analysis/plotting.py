"""Figures with Pillow and OpenCV only (core dependencies): colour maps, colour bars, titled
panels, markers, grids and an atomic PNG writer. Images are ``H×W×3`` uint8 RGB arrays."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

RGB = Tuple[int, int, int]
WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)
RED: RGB = (230, 20, 20)
_CMAPS = {"viridis": cv2.COLORMAP_VIRIDIS, "inferno": cv2.COLORMAP_INFERNO, "jet": cv2.COLORMAP_JET,
          "coolwarm": cv2.COLORMAP_TWILIGHT_SHIFTED, "turbo": cv2.COLORMAP_TURBO}


@functools.lru_cache(maxsize=8)
def font(size: int = 14) -> ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` pixels (bitmap fallback on builds without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def colormap(values: np.ndarray, vmin: float, vmax: float, name: str = "viridis") -> np.ndarray:
    """``H×W`` floats → ``H×W×3`` RGB through an OpenCV colour map, ``vmin``..``vmax`` mapped to
    its ends (values outside are clipped)."""
    span = (vmax - vmin) or 1.0
    u8 = (np.clip((values - vmin) / span, 0, 1) * 255).round().astype(np.uint8)
    return cv2.applyColorMap(u8, _CMAPS[name])[..., ::-1].copy()


def diverging(values: np.ndarray, limit: float = 1.0) -> np.ndarray:
    """Blue (−limit) – white (0) – red (+limit) colour map for signed values."""
    t = np.clip(values / limit, -1, 1)[..., None]
    blue, red = np.array([40, 80, 220.0]), np.array([220, 40, 30.0])
    white = np.array([255.0, 255, 255])
    out = np.where(t < 0, white + (blue - white) * (-t), white + (red - white) * t)
    return out.round().astype(np.uint8)


def categorical(indices: np.ndarray, count: int) -> np.ndarray:
    """Integer labels in ``0..count-1`` → distinct colours (golden-angle hues)."""
    hues = (np.arange(count) * 137.508) % 360
    sat = np.where(np.arange(count) % 2 == 0, 200, 255)
    val = np.where(np.arange(count) % 3 == 0, 255, 200)
    hsv = np.stack([hues / 2, sat, val], -1).astype(np.uint8)[None]
    table = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]
    return table[np.asarray(indices) % count]


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """``C×H×W`` or ``H×W×C`` floats in [0, 1] (C = 1 or 3) → ``H×W×3`` uint8."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, -1)
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


def enlarge(img: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement (pixels stay visible as squares)."""
    return img if factor <= 1 else np.repeat(np.repeat(img, factor, 0), factor, 1)


def fit(img: np.ndarray, side: int) -> np.ndarray:
    """Scaled to about ``side`` pixels on its longer side: enlarged by whole pixels (nearest)
    when smaller, reduced by area averaging when larger."""
    longer = max(img.shape[:2])
    if longer <= side:
        return enlarge(img, max(1, side // longer))
    k = side / longer
    size = (max(1, round(img.shape[1] * k)), max(1, round(img.shape[0] * k)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def blend(base: np.ndarray, over: np.ndarray, alpha: Union[float, np.ndarray]) -> np.ndarray:
    """``base·(1−alpha) + over·alpha``; ``alpha`` a number or an ``H×W`` map in [0, 1]."""
    a = np.asarray(alpha, dtype=np.float64)
    if a.ndim == 2:
        a = a[..., None]
    return (base * (1 - a) + over * a).round().clip(0, 255).astype(np.uint8)


def text_image(lines: Sequence[str], width: int, size: int = 14, colour: RGB = BLACK,
               background: RGB = WHITE) -> np.ndarray:
    """Lines of text on a ``width``-wide strip (long lines are wrapped at spaces)."""
    f = font(size)
    wrapped: List[str] = []
    for line in lines:
        words, cur = line.split(" "), ""
        for word in words:
            trial = f"{cur} {word}".strip()
            if cur and f.getlength(trial) > width - 8:
                wrapped.append(cur)
                cur = word
            else:
                cur = trial
        wrapped.append(cur)
    step = size + 4
    img = Image.new("RGB", (width, step * len(wrapped) + 6), background)
    d = ImageDraw.Draw(img)
    for i, line in enumerate(wrapped):
        d.text((4, 3 + i * step), line, fill=colour, font=f)
    return np.asarray(img)


def titled(img: np.ndarray, title: str, size: int = 13) -> np.ndarray:
    """``img`` with ``title`` written above it."""
    return vstack([text_image([title], img.shape[1], size), img], pad=0)


def colorbar(height: int, vmin: float, vmax: float, label: str, cmap: str = "viridis",
             ticks: int = 5, fmt: str = "{:.2g}", width: int = 18) -> np.ndarray:
    """A vertical colour bar (top = ``vmax``) with tick values and a label above."""
    ramp = np.linspace(vmax, vmin, height)[:, None].repeat(width, 1)
    bar = diverging(ramp, max(abs(vmin), abs(vmax))) if cmap == "diverging" else colormap(ramp, vmin, vmax, cmap)
    canvas = Image.new("RGB", (width + 52, height + 10), WHITE)
    canvas.paste(Image.fromarray(bar), (2, 5))
    d = ImageDraw.Draw(canvas)
    d.rectangle([2, 5, 2 + width - 1, 5 + height - 1], outline=BLACK)
    f = font(11)
    for i in range(ticks):
        t = i / (ticks - 1)
        y = 5 + round(t * (height - 1))
        d.line([2 + width, y, 6 + width, y], fill=BLACK)
        d.text((8 + width, y - 6), fmt.format(vmax + (vmin - vmax) * t), fill=BLACK, font=f)
    return titled(np.asarray(canvas), label, 11) if label else np.asarray(canvas)


def draw_marker(img: np.ndarray, y: int, x: int, colour: RGB = RED, radius: int = 5) -> np.ndarray:
    """A cross-hair circle at pixel (y, x)."""
    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    d.ellipse([x - radius, y - radius, x + radius, y + radius], outline=colour, width=2)
    d.line([x - radius - 3, y, x + radius + 3, y], fill=colour)
    d.line([x, y - radius - 3, x, y + radius + 3], fill=colour)
    return np.asarray(im)


def draw_box(img: np.ndarray, top: int, left: int, height: int, width: int, colour: RGB = RED) -> np.ndarray:
    im = Image.fromarray(img)
    ImageDraw.Draw(im).rectangle([left, top, left + width - 1, top + height - 1], outline=colour, width=2)
    return np.asarray(im)


def _pad_to(img: np.ndarray, h: int, w: int) -> np.ndarray:
    out = np.full((h, w, 3), 255, np.uint8)
    out[: img.shape[0], : img.shape[1]] = img
    return out


def hstack(imgs: Sequence[np.ndarray], pad: int = 10) -> np.ndarray:
    """Side by side, top-aligned, on white."""
    h = max(i.shape[0] for i in imgs)
    parts: List[np.ndarray] = []
    for i, img in enumerate(imgs):
        if i:
            parts.append(np.full((h, pad, 3), 255, np.uint8))
        parts.append(_pad_to(img, h, img.shape[1]))
    return np.concatenate(parts, 1)


def vstack(imgs: Sequence[np.ndarray], pad: int = 10) -> np.ndarray:
    """One above the other, left-aligned, on white."""
    w = max(i.shape[1] for i in imgs)
    parts: List[np.ndarray] = []
    for i, img in enumerate(imgs):
        if i and pad:
            parts.append(np.full((pad, w, 3), 255, np.uint8))
        parts.append(_pad_to(img, img.shape[0], w))
    return np.concatenate(parts, 0)


def grid(imgs: Sequence[np.ndarray], cols: int, pad: int = 6) -> np.ndarray:
    rows = [hstack(imgs[i:i + cols], pad) for i in range(0, len(imgs), cols)]
    return vstack(rows, pad)


def figure(title: str, body: np.ndarray, notes: Optional[Sequence[str]] = None) -> np.ndarray:
    """A whole figure: a bold-ish title line, the body, notes (legend text) below, a margin."""
    w = body.shape[1]
    parts = [text_image([title], w, 16), body]
    if notes:
        parts.append(text_image(list(notes), w, 12, colour=(60, 60, 60)))
    fig = vstack(parts, pad=6)
    return np.pad(fig, ((8, 8), (8, 8), (0, 0)), constant_values=255)


def save_png(img: np.ndarray, path: Union[str, Path], palette: bool = True) -> Path:
    """Writes ``img`` as a PNG atomically (never a half-written file); with ``palette``, as 256
    adaptive colours (several times smaller, no visible change for these figures)."""
    from ..utils.atomic import atomic_path

    path = Path(path)
    im = Image.fromarray(np.ascontiguousarray(img))
    if palette:
        im = im.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG", optimize=True)
    return path
