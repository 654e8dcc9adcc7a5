"""Helpers for the training tests: a tiny model config and a synthetic image folder."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"embed_dim": 16, "depths": [1], "num_heads": [2], "inner_rank": 8, "num_tokens": 8, "d_state": 4}


def make_images(folder: Path, count: int = 4, size: int = 64, seed: int = 0) -> Path:
    """``count`` smooth random RGB PNGs of ``size``×``size`` (deterministic)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size, size), Image.BICUBIC)
        img.save(folder / f"img{i:02d}.png")
    return folder


def tiny_config(tmp: Path, **sections: Dict) -> Path:
    """Writes a tiny SR x2 training config (synthetic data under ``tmp``) and returns its path;
    ``sections`` update the config's sections (e.g. ``train={"iters": 5}``)."""
    train_root = make_images(tmp / "data" / "train")
    val_root = make_images(tmp / "data" / "val", count=2, size=40, seed=1)
    cfg = {
        "name": "tiny",
        "output_dir": str(tmp / "run"),
        "device": "cpu",
        "model": {"variant": "light", "scale": 2, "overrides": dict(TINY_MODEL)},
        "data": {"train_root": str(train_root), "patch_size": 16, "batch_size": 2, "num_workers": 0},
        "val": {"root": str(val_root), "every": 10},
        "train": {"iters": 20, "lr": 1e-3, "save_every": 10, "log_every": 5, "ema_decay": 0.9,
                  "progress": "off", "plot": True},
    }
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value)
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def cli_env() -> Dict[str, str]:
    """Environment for subprocesses: this checkout's ``src`` first on the path, one thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def train_cmd(config: Path, *args: str) -> List[str]:
    return [sys.executable, "-m", "mambairv2", "train", str(config), *args]
