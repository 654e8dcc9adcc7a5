"""Writes the stored outputs of the spandrel-style image tests (tests/data/spandrel/), once.

Inputs: the top-left 8×8, 16×16, 32×32, 64×64 and 96×80 crops of Set5 ``baby`` (the shared
data's LR_bicubic/X4). Models: the bundled ``default`` (MambaIRv2 light x4, trained) and the
authors' golden MambaIR v1 ``light_x2`` (random weights). Outputs are computed in float64 with
the reference operators (the path that reproduces the authors' float64 golden outputs to
~1e-12, tests/test_golden_models.py and tests/test_v1_golden.py), clamped and rounded to uint8
PNG. The tests compare spandrel's float32 descriptor with them at spandrel's own tolerance (max
single-pixel error 1).

    MAMBAIRV2_SHARED=../shared PYTHONPATH=src python3 tests/make_spandrel_outputs.py
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mambairv2 import load_model
from mambairv2.ops import implementation

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("MAMBAIRV2_SHARED", HERE.parents[1] / "shared"))
OUT = HERE / "data" / "spandrel"
#: crop name → (height, width)
CROPS = {"8x8": (8, 8), "16x16": (16, 16), "32x32": (32, 32), "64x64": (64, 64), "real": (80, 96)}


def model_files() -> dict:
    """Stored-output name → checkpoint file."""
    from mambairv2.models.catalog import bundled_path

    return {"v2_default": bundled_path("default"), "v1_light_x2": SHARED / "golden_v1" / "light_x2.pth"}


#: the source image, inside the shared folder
SOURCE = ("data", "sr", "Set5", "LR_bicubic", "X4", "babyx4.png")


def source_image(path: Path = SHARED.joinpath(*SOURCE)) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    image = source_image()
    for name, path in model_files().items():
        model = load_model(path, dtype=torch.float64)
        for crop, (h, w) in CROPS.items():
            x = torch.from_numpy(image[:h, :w].astype(np.float64) / 255).permute(2, 0, 1)[None]
            with torch.no_grad(), implementation("reference"):
                y = model(x).clamp(0, 1)
            arr = (y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(arr).save(OUT / f"{name}_{crop}.png")
            print(name, crop, arr.shape)


if __name__ == "__main__":
    main()
