"""PSNR/SSIM conventions (Y vs RGB, crop, 8-bit rounding) against hand-computed values, an
explicit-loop SSIM and BasicSR's OpenCV-based code (``protocol_port``)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mambairv2.protocol import metrics
import protocol_port as port


def _rand(shape, seed=0, lo=20, hi=230):
    return np.random.default_rng(seed).integers(lo, hi, shape).astype(np.uint8)


# -- PSNR ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [1, 3, 10])
def test_constant_offset_psnr_rgb_and_gray(offset):
    a = _rand((20, 24, 3))
    b = a + np.uint8(offset)  # values stay below 255: no clipping
    assert metrics.psnr(b, a, channels="rgb") == pytest.approx(20 * math.log10(255 / offset), abs=1e-9)
    assert metrics.psnr(b[:, :, 0], a[:, :, 0]) == pytest.approx(20 * math.log10(255 / offset), abs=1e-9)


def test_constant_offset_psnr_on_y():
    a = _rand((20, 24, 3))
    b = a + np.uint8(4)
    # The same offset d on R, G and B moves Y by d·(65.481 + 128.553 + 24.966)/255 = d·219/255.
    dy = 4 * 219 / 255
    assert metrics.psnr(b, a, channels="y") == pytest.approx(20 * math.log10(255 / dy), abs=1e-5)


def test_y_of_pure_colours_and_not_rounded():
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0], [255, 255, 255], [1, 2, 3]]], np.uint8)
    y = metrics.rgb_to_y(px)[0]
    expected = [16 + 65.481, 16 + 128.553, 16 + 24.966, 16, 235, 16 + (65.481 + 2 * 128.553 + 3 * 24.966) / 255]
    np.testing.assert_allclose(y, expected, atol=1e-4)
    assert y[5] != round(y[5])  # BasicSR keeps Y in floating point (MATLAB would round it)


def test_y_and_rgb_differ_and_gray_is_gray_in_both():
    a, b = _rand((16, 16, 3), 1), _rand((16, 16, 3), 2)
    assert metrics.psnr(a, b, channels="y") != pytest.approx(metrics.psnr(a, b, channels="rgb"))
    g1, g2 = a[:, :, :1], b[:, :, :1]
    assert metrics.psnr(g1, g2, channels="y") == metrics.psnr(g1, g2, channels="rgb") == metrics.psnr(g1[:, :, 0], g2[:, :, 0])


def test_crop_border_removes_exactly_the_border():
    a = _rand((30, 40, 3))
    b = a.copy()
    b[:3] = 0
    b[:, -3:] = 255
    assert metrics.psnr(a, b, crop_border=3) == float("inf")
    assert metrics.ssim(a, b, crop_border=3) == pytest.approx(1.0)
    assert metrics.psnr(a, b, crop_border=2) < 40
    c = a.copy()
    c[3, 3] = a[3, 3] + 5  # first kept pixel, all three channels: Y moves by 5·219/255
    mse = (5 * 219 / 255) ** 2 / (24 * 34)
    assert metrics.psnr(a, c, crop_border=3) == pytest.approx(10 * math.log10(255 ** 2 / mse), abs=1e-4)


def test_identical_images_psnr_inf_and_shape_mismatch():
    a = _rand((12, 12, 3))
    assert metrics.psnr(a, a) == float("inf")
    with pytest.raises(ValueError):
        metrics.psnr(a, a[:, :11])
    with pytest.raises(ValueError):
        metrics.psnr(a, a, crop_border=6)


def test_psnr_matches_basicsr_code():
    a, b = _rand((33, 41, 3), 3, 0, 256), _rand((33, 41, 3), 4, 0, 256)
    for crop, y in ((0, False), (4, True), (2, False)):
        ours = metrics.psnr(a, b, crop, "y" if y else "rgb")
        theirs = port.calculate_psnr(a[:, :, ::-1], b[:, :, ::-1], crop, y)  # BasicSR gets BGR
        assert ours == pytest.approx(theirs, abs=1e-9)


# -- SSIM ----------------------------------------------------------------------------------------------
def _ssim_loops(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two planes with explicit loops over window positions and window pixels."""
    g = [math.exp(-((i - 5) ** 2) / (2 * 1.5 ** 2)) for i in range(11)]
    s = sum(g)
    g = [v / s for v in g]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for y in range(a.shape[0] - 10):
        for x in range(a.shape[1] - 10):
            m1 = m2 = e11 = e22 = e12 = 0.0
            for i in range(11):
                for j in range(11):
                    w = g[i] * g[j]
                    p, q = float(a[y + i, x + j]), float(b[y + i, x + j])
                    m1 += w * p
                    m2 += w * q
                    e11 += w * p * p
                    e22 += w * q * q
                    e12 += w * p * q
            v1, v2, cov = e11 - m1 * m1, e22 - m2 * m2, e12 - m1 * m2
            values.append(((2 * m1 * m2 + c1) * (2 * cov + c2)) / ((m1 * m1 + m2 * m2 + c1) * (v1 + v2 + c2)))
    return sum(values) / len(values)


def test_ssim_matches_explicit_loops_per_channel_average():
    a, b = _rand((15, 17, 3), 5, 0, 256), _rand((15, 17, 3), 6, 0, 256)
    b = ((a.astype(int) + b) // 2).astype(np.uint8)  # correlated
    expected = np.mean([_ssim_loops(a[:, :, i], b[:, :, i]) for i in range(3)])
    assert metrics.ssim(a, b, channels="rgb") == pytest.approx(expected, abs=1e-12)
    ya, yb = metrics.rgb_to_y(a), metrics.rgb_to_y(b)
    assert metrics.ssim(a, b, channels="y") == pytest.approx(_ssim_loops(ya, yb), abs=1e-12)


def test_ssim_identical_and_constant_images_by_hand():
    a = _rand((20, 20, 3), 7, 0, 256)
    assert metrics.ssim(a, a, channels="rgb") == pytest.approx(1.0, abs=1e-12)
    p, q = np.full((16, 16), 100, np.uint8), np.full((16, 16), 120, np.uint8)
    c1 = (0.01 * 255) ** 2
    # constant planes: no variance, SSIM = (2·μ1·μ2 + C1) / (μ1² + μ2² + C1)
    assert metrics.ssim(p, q) == pytest.approx((2 * 100 * 120 + c1) / (100 ** 2 + 120 ** 2 + c1), abs=1e-12)


def test_ssim_matches_basicsr_opencv_code():
    a, b = _rand((40, 52, 3), 8, 0, 256), _rand((40, 52, 3), 9, 0, 256)
    b = ((a.astype(int) * 3 + b) // 4).astype(np.uint8)
    for crop, y in ((0, False), (4, True), (3, True)):
        ours = metrics.ssim(a, b, crop, "y" if y else "rgb")
        theirs = port.calculate_ssim(a[:, :, ::-1], b[:, :, ::-1], crop, y)
        assert ours == pytest.approx(theirs, abs=1e-9)


def test_ssim_needs_an_11px_image():
    with pytest.raises(ValueError):
        metrics.ssim(np.zeros((10, 30), np.uint8), np.zeros((10, 30), np.uint8))


# -- 8-bit rounding ------------------------------------------------------------------------------------
def test_to_uint8_clamps_and_rounds_like_tensor2img():
    x = np.array([-0.3, 0.0, 0.4 / 255, 0.6 / 255, 100.4 / 255, 100.6 / 255, 1.0, 1.7], np.float32)
    assert metrics.to_uint8(x).tolist() == [0, 0, 0, 1, 100, 101, 255, 255]
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    assert metrics.to_uint8(levels).tolist() == list(range(256))  # 8-bit values survive exactly
