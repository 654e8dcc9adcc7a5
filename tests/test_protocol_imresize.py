"""MATLAB-compatible imresize, against hand-computed kernel weights, a direct per-pixel loop
implementation, and the MATLAB-made LR files of Set5."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from mambairv2.protocol.imresize import contributions, cubic, imresize
from conftest import shared_path


# -- an independent, direct implementation: one output pixel at a time ---------------------------
def _keys(t: float) -> float:
    t = abs(t)
    if t <= 1:
        return 1.5 * t ** 3 - 2.5 * t ** 2 + 1
    if t <= 2:
        return -0.5 * t ** 3 + 2.5 * t ** 2 - 4 * t + 2
    return 0.0


def _reflect(i: int, n: int) -> int:
    """1-based index ``i`` folded into 1..n with the edge pixel repeated (…2 1 | 1 2 … n | n n-1…)."""
    while i < 1 or i > n:
        i = 1 - i if i < 1 else 2 * n + 1 - i
    return i


def _resize_1d_loop(line: list, out_len: int, scale: float) -> list:
    n = len(line)
    width = 4.0 / scale if scale < 1 else 4.0
    out = []
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        taps = range(math.floor(u - width / 2), math.floor(u - width / 2) + math.ceil(width) + 2)
        w = [(scale * _keys(scale * (u - j)) if scale < 1 else _keys(u - j)) for j in taps]
        total = sum(w)
        out.append(sum(wk / total * line[_reflect(j, n) - 1] for wk, j in zip(w, taps)))
    return out


def _matlab_round(v: float, lo: int = 0, hi: int = 255) -> float:
    return float(min(max(math.floor(v + 0.5), lo), hi))


def imresize_loop(img: np.ndarray, scale_h: float, scale_w: float, integer: bool) -> np.ndarray:
    """Reference: per-pixel loops, smaller scale first (rows on ties), optional rounding per pass."""
    h, w, c = img.shape
    out_h, out_w = math.ceil(h * scale_h), math.ceil(w * scale_w)
    cur = [[[float(img[i, j, k]) for j in range(w)] for i in range(h)] for k in range(c)]
    for axis in ((0, 1) if scale_h <= scale_w else (1, 0)):
        nxt = []
        for plane in cur:
            if axis == 0:
                cols = [_resize_1d_loop([row[j] for row in plane], out_h, scale_h) for j in range(len(plane[0]))]
                plane = [[cols[j][i] for j in range(len(cols))] for i in range(out_h)]
            else:
                plane = [_resize_1d_loop(row, out_w, scale_w) for row in plane]
            if integer:
                plane = [[_matlab_round(v) for v in row] for row in plane]
            nxt.append(plane)
        cur = nxt
    return np.array(cur, dtype=np.float64).transpose(1, 2, 0)


# -- kernel and weights ------------------------------------------------------------------------------
def test_kernel_values_by_hand():
    x = np.array([0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.5, -0.5])
    # Keys a = -0.5: 1.5|x|³ - 2.5|x|² + 1 on [0,1]; -0.5|x|³ + 2.5|x|² - 4|x| + 2 on (1,2]
    expected = [1, 0.8671875, 0.5625, 0.2265625, 0, -0.0703125, -0.0625, -0.0234375, 0, 0, 0.5625]
    np.testing.assert_allclose(cubic(x), expected, atol=1e-15)


def test_upscale_x2_weights_by_hand():
    # Output 1 of a x2 upscale samples u = 1/2 + 0.5·(1 - 1/2) = 0.75: taps at 0, 1, 2 and -1
    # (distances 0.75, -0.25, -1.25, 1.75); 0 mirrors to 1 and -1 to 2.
    w, idx = contributions(6, 12, 2.0)
    by_input = {}
    for wk, ik in zip(w[0], idx[0]):
        by_input[int(ik)] = by_input.get(int(ik), 0.0) + wk
    assert by_input == pytest.approx({0: 0.2265625 + 0.8671875, 1: -0.0703125 - 0.0234375})
    # An interior output (6, u = 3.25): inputs 2, 3, 4, 5 (1-based) at distances 1.25, 0.25, -0.75, -1.75
    row = {int(i): v for v, i in zip(w[5], idx[5]) if v != 0}
    assert row == pytest.approx({1: -0.0703125, 2: 0.8671875, 3: 0.2265625, 4: -0.0234375})


def test_downscale_x2_antialiased_weights_by_hand():
    # x1/2 with antialiasing: u = 2x - 0.5, kernel stretched to width 8: weights 0.5·k(0.5·d) at
    # d = ±0.5, ±1.5, ±2.5, ±3.5 → 0.43359375, 0.11328125, -0.03515625, -0.01171875 (sum 1).
    w, idx = contributions(20, 10, 0.5)
    row = {int(i): v for v, i in zip(w[4], idx[4]) if v != 0}  # output 5: u = 9.5, inputs 6..13
    half = [-0.01171875, -0.03515625, 0.11328125, 0.43359375]
    assert row == pytest.approx(dict(zip(range(5, 13), half + half[::-1])))


# -- against the per-pixel reference -----------------------------------------------------------------
CASES = [((9, 7), (2.0, 2.0)), ((12, 10), (0.5, 0.5)), ((13, 11), (1 / 3, 1 / 3)), ((8, 9), (3.0, 3.0)),
         ((10, 12), (0.7, 1.6)), ((11, 6), (1.6, 0.45)), ((5, 4), (4.0, 4.0)), ((16, 15), (0.25, 0.25))]


@pytest.mark.parametrize("shape,scales", CASES)
def test_float_matches_loop_reference(shape, scales):
    img = np.random.default_rng(1).random(shape + (2,))
    ref = imresize_loop(img, *scales, integer=False)
    out = imresize(img, scales)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize("shape,scales", CASES)
def test_uint8_matches_loop_reference_with_rounding_per_pass(shape, scales):
    img = np.random.default_rng(2).integers(0, 256, shape + (3,), dtype=np.uint8)
    ref = imresize_loop(img, *scales, integer=True)
    out = imresize(img, scales)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, ref)


def test_torch_and_numpy_agree_and_keep_leading_dims():
    rng = np.random.default_rng(3)
    img = rng.random((2, 3, 17, 13))
    t = imresize(torch.from_numpy(img), 0.5)
    assert t.shape == (2, 3, 9, 7) and t.dtype == torch.float64
    for b in range(2):
        np.testing.assert_allclose(t[b].permute(1, 2, 0).numpy(), imresize(img[b].transpose(1, 2, 0), 0.5), atol=1e-12)
    u8 = rng.integers(0, 256, (3, 17, 13), dtype=np.uint8)
    tu = imresize(torch.from_numpy(u8), 3)
    assert tu.dtype == torch.uint8
    np.testing.assert_array_equal(tu.permute(1, 2, 0).numpy(), imresize(u8.transpose(1, 2, 0), 3))
    f32 = imresize(torch.from_numpy(img[0]).float(), 2)
    assert f32.dtype == torch.float32
    np.testing.assert_allclose(f32.numpy(), imresize(torch.from_numpy(img[0]), 2).numpy(), atol=1e-5)


def test_output_size_gray_and_errors():
    assert imresize(np.zeros((7, 5), np.uint8), 0.5).shape == (4, 3)  # ceil(size · scale)
    assert imresize(np.zeros((7, 5), np.float32), output_shape=(3, 11)).shape == (3, 11)
    assert imresize(np.full((1, 1), 7, np.uint8), 3).tolist() == [[7] * 3] * 3
    const = np.full((9, 9, 3), 0.3)
    np.testing.assert_allclose(imresize(const, 1 / 3), 0.3, atol=1e-12)  # weights sum to 1
    with pytest.raises(ValueError):
        imresize(np.zeros((0, 4)), 2)
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4)), -1)


def test_1000px_images_round_trip():
    # speed is measured by benchmarks, not here; this pins shapes and the round trip at full size
    y, x = np.mgrid[0:1000, 0:1000]
    img = (127.5 + 100 * np.sin(x / 40.0)[..., None] * np.cos(y / 55.0)[..., None] * np.ones(3)).round().astype(np.uint8)
    small = imresize(img, 0.25)
    back = imresize(small, 4)
    assert small.shape == (250, 250, 3) and back.shape == (1000, 1000, 3)
    assert np.abs(back[8:-8, 8:-8].astype(int) - img[8:-8, 8:-8].astype(int)).max() <= 3


# -- MATLAB's own files ---------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_reproduces_matlab_lr_files_of_set5(scale):
    root = shared_path("data", "sr", "Set5")
    names = sorted(p.stem for p in (root / "HR").glob("*.png"))
    assert names
    for name in names:
        hr = np.asarray(Image.open(root / "HR" / f"{name}.png").convert("RGB"))
        hr = hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]
        matlab = np.asarray(Image.open(root / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png").convert("RGB"))
        ours = imresize(hr, 1 / scale)
        diff = np.abs(ours.astype(int) - matlab.astype(int))
        assert ours.shape == matlab.shape
        assert diff.max() <= 2, name
        mse = float(np.mean(diff.astype(float) ** 2))
        assert mse == 0 or 10 * math.log10(255 ** 2 / mse) >= 55, name
        # MATLAB rounds uint8 images after each pass; doing the same reproduces its files exactly.
        assert np.mean(diff == 0) >= 0.999, name
