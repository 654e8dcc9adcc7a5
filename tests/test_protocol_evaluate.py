"""The evaluation runner: published bicubic values, agreement with a BasicSR-style port, the
released crop protocol, names and pre-made inputs."""
from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mambairv2.utils import imageio
from mambairv2.protocol import evaluate as ev
from mambairv2.protocol import metrics
import protocol_port as port
from conftest import shared_path

#: Published bicubic Set5 PSNR/SSIM (computed in MATLAB by the SR literature).
PUBLISHED_SET5 = {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)}


@functools.lru_cache(maxsize=None)
def _set5_bicubic(scale: int) -> ev.DatasetResult:
    """Our bicubic baseline on Set5 (computed once per scale for the tests below)."""
    hr = shared_path("data", "sr", "Set5", "HR")
    return ev.evaluate_folder(ev.bicubic_restorer(scale), ev.TaskSpec("sr", scale=scale), hr)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_set5_matches_published_values(scale):
    result = _set5_bicubic(scale)
    assert result.name == "Set5" and len(result.images) == 5
    psnr, ssim = PUBLISHED_SET5[scale]
    assert abs(result.psnr - psnr) <= 0.03
    assert abs(result.ssim - ssim) <= 0.001


@pytest.mark.parametrize("scale", [2, 4])
def test_bicubic_set5_agrees_with_basicsr_port(scale):
    hr = shared_path("data", "sr", "Set5", "HR")
    ours = _set5_bicubic(scale)
    theirs = np.mean([port.sr_bicubic_scores(cv2.imread(str(p), cv2.IMREAD_COLOR), scale)
                      for p in sorted(hr.glob("*.png"))], axis=0)
    assert abs(ours.psnr - theirs[0]) <= 0.01
    assert abs(ours.ssim - theirs[1]) <= 0.0005


def test_pre_made_matlab_lr_gives_the_same_scores():
    root = shared_path("data", "sr", "Set5")
    spec = ev.TaskSpec("sr", scale=4)
    made = _set5_bicubic(4)
    given = ev.evaluate_folder(ev.bicubic_restorer(4), spec, root / "HR", lr_dir=root / "LR_bicubic" / "X4")
    assert given.psnr == pytest.approx(made.psnr, abs=1e-9)


# -- the released crop protocol ------------------------------------------------------------------------
def test_official_crops_geometry_by_hand():
    # 450×230: 3×2 parts (450//200+1, 230//200+1), no padding (450 % 3 == 0, 230 % 2 == 0),
    # parts 150×115, extended by 15 / 11 pixels towards inner neighbours.
    seen = []

    def forward(t):
        seen.append(tuple(t.shape[-2:]))
        return t

    x = torch.rand(1, 3, 450, 230)
    y = ev.official_crops(forward, x, 1)
    assert torch.equal(y, x)
    rows, cols = [165, 180, 165], [126, 126]
    assert seen == [(r, c) for r in rows for c in cols]


def test_official_crops_paste_each_part_from_its_own_crop():
    # forward returns, for each crop, its own top-left corner: the output says which crop wrote where.
    corners = []

    def forward(t):
        corners.append(len(corners))
        return torch.full_like(t, float(len(corners) - 1))

    x = torch.zeros(1, 1, 401, 199)  # 3×1 parts; 401 → reflect-padded to 402, parts of 134 rows
    y = ev.official_crops(forward, x, 1)
    assert y.shape == x.shape
    assert torch.equal(y[0, 0, :, 0], torch.tensor([0.0] * 134 + [1.0] * 134 + [2.0] * 133))


def test_official_crops_with_an_upscaling_pointwise_model_equal_the_whole_image():
    x = torch.rand(1, 3, 230, 410)
    up = lambda t: F.interpolate(t, scale_factor=3, mode="nearest")  # noqa: E731
    assert torch.equal(ev.official_crops(up, x, 3), up(x))


def test_official_crops_reflect_pad_content():
    # 205 rows → 2 parts, padded by 1 row reflecting row 203 (0-based); the padded row never shows.
    x = torch.arange(205 * 3, dtype=torch.float32).reshape(1, 1, 205, 3)
    inputs = []
    ev.official_crops(lambda t: inputs.append(t) or t, x, 1)
    assert inputs[-1].shape[-2] == 103 + 10  # second part: rows 93..205 of the padded 206
    assert torch.equal(inputs[-1][0, 0, -1], x[0, 0, 203])


# -- names, folders and pre-made inputs -------------------------------------------------------------------
def test_dataset_names(tmp_path):
    assert ev.dataset_name(tmp_path / "Set5" / "HR") == "Set5"
    assert ev.dataset_name(tmp_path / "Set5" / "hr") == "Set5"
    assert ev.dataset_name(tmp_path / "CBSD68") == "CBSD68"
    assert ev.dataset_name(str(tmp_path / "Kodak24") + "/") == "Kodak24"


def test_list_images_separates_other_files(tmp_path):
    imageio.write_image(tmp_path / "b.png", imageio.ImageData(np.zeros((4, 4, 3), np.uint8)))
    imageio.write_image(tmp_path / "a.bmp", imageio.ImageData(np.zeros((4, 4, 1), np.uint8)), "BMP")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    images, others = ev.list_images(tmp_path)
    assert [p.name for p in images] == ["a.bmp", "b.png"]
    assert [p.name for p in others] == ["notes.txt"]
    with pytest.raises(ev.EvaluationError, match="no such folder"):
        ev.list_images(tmp_path / "missing")


def test_find_premade_names(tmp_path):
    (tmp_path / "babyx2.png").write_bytes(b"x")
    (tmp_path / "kodim01.npy").write_bytes(b"x")
    (tmp_path / "kodim01.png").write_bytes(b"x")
    sr, dn = ev.TaskSpec("sr", scale=2), ev.TaskSpec("denoise", sigma=15)
    assert ev.find_premade(tmp_path, Path("baby.png"), sr).name == "babyx2.png"
    assert ev.find_premade(tmp_path, Path("kodim01.png"), dn).name == "kodim01.npy"
    with pytest.raises(ev.EvaluationError, match="no input for"):
        ev.find_premade(tmp_path, Path("bird.png"), sr)


def test_identity_denoise_quantises_the_unclipped_input(tmp_path):
    clean = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    imageio.write_image(tmp_path / "x.png", imageio.ImageData(clean))
    spec = ev.TaskSpec("denoise", sigma=50)
    r = ev.evaluate_folder(ev.identity_restorer(), spec, tmp_path)
    from mambairv2.protocol.degrade import noisy_input

    out = np.round(np.clip(noisy_input(clean, 50), 0, 1) * 255)  # clamp, ×255, round
    mse = np.mean((out.astype(np.float64) - clean) ** 2)
    assert r.images[0].psnr == pytest.approx(10 * np.log10(255 ** 2 / mse), abs=1e-9)


def test_task_spec_checks():
    assert ev.TaskSpec("sr", scale=3).crop_border == 3
    assert ev.TaskSpec("denoise", sigma=25).channels == "rgb"
    assert ev.TaskSpec("jpeg", quality=10).gray
    for bad in (dict(task="sr", scale=0), dict(task="denoise"), dict(task="jpeg", quality=0), dict(task="x")):
        with pytest.raises(ev.EvaluationError):
            ev.TaskSpec(**bad)


def test_json_report_shape():
    spec = ev.TaskSpec("sr", scale=2)
    res = ev.DatasetResult("Set5", [ev.ImageResult("a.png", 30.0, 0.9), ev.ImageResult("b.png", float("inf"), 1.0)])
    rep = ev.report(spec, "bicubic", [res])
    assert rep["task"] == "sr" and rep["scale"] == 2 and rep["model"] == "bicubic"
    assert rep["datasets"]["Set5"]["images"][1] == {"name": "b.png", "psnr": None, "ssim": 1.0}
    assert rep["datasets"]["Set5"]["ssim"] == pytest.approx(0.95)
    assert "Set5" in ev.table([res])
    assert metrics.psnr(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)) == float("inf")
