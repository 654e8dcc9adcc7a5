"""Degradations: SR inputs, the released test's noise, training noise, OpenCV JPEG."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from mambairv2.protocol import degrade
from mambairv2.protocol.imresize import imresize


def _img(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_mod_crop_and_sr_input_sizes():
    hr = _img((23, 17, 3))
    assert degrade.mod_crop(hr, 4).shape == (20, 16, 3)
    assert degrade.mod_crop(hr, 1).shape == hr.shape
    lr = degrade.sr_input(hr, 3)
    assert lr.dtype == np.uint8 and lr.shape == (7, 5, 3)
    np.testing.assert_array_equal(lr, imresize(hr[:21, :15], 1 / 3))  # crop first, then resize
    with pytest.raises(ValueError):
        degrade.sr_input(hr.astype(np.float32), 2)
    with pytest.raises(ValueError):
        degrade.mod_crop(_img((3, 3)), 4)


def test_released_test_noise_conventions():
    clean = _img((9, 11, 3))
    noisy = degrade.noisy_input(clean, 25)
    # What the released test does, written out: BGR float32 in [0, 1], seed 0, noise added in place.
    bgr = clean[:, :, ::-1].astype(np.float32) / 255.0
    np.random.seed(0)
    noise = np.random.normal(0, 25 / 255.0, bgr.shape)
    expected = (bgr + noise).astype(np.float32)[:, :, ::-1]
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    np.testing.assert_allclose(noisy, expected, atol=1e-7)
    assert noisy.min() < 0 or noisy.max() > 1  # not clipped
    np.random.seed(123)
    np.testing.assert_array_equal(degrade.noisy_input(clean, 25), noisy)  # reseeded per image
    # The noise belongs to the BGR layout: drawing it for RGB would give another input.
    np.random.seed(0)
    rgb_order = clean.astype(np.float32) / 255.0 + np.random.normal(0, 25 / 255.0, clean.shape).astype(np.float32)
    assert not np.allclose(rgb_order, noisy)


def test_training_noise_numpy_and_torch():
    x = np.full((64, 64, 3), 0.5, np.float32)
    a = degrade.add_gaussian_noise(x, 25, np.random.default_rng(7))
    b = degrade.add_gaussian_noise(x, 25, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32
    assert np.std(a - x) == pytest.approx(25 / 255, rel=0.05)
    r = degrade.add_gaussian_noise(x, (0, 50), np.random.default_rng(1))
    assert 0 < np.std(r - x) < 55 / 255
    t = torch.full((1, 3, 64, 64), 0.5)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ta, tb = degrade.add_gaussian_noise(t, (10, 50), g1), degrade.add_gaussian_noise(t, (10, 50), g2)
    assert torch.equal(ta, tb)
    assert 9 / 255 < float((ta - t).std()) < 52 / 255
    assert float(degrade.add_gaussian_noise(t, 50, clip=True).min()) >= 0
    with pytest.raises(TypeError):
        degrade.add_gaussian_noise(t, 5, np.random.default_rng(0))


def test_jpeg_gray_is_opencv_and_lossy():
    img = cv2.GaussianBlur(_img((32, 40)), (5, 5), 2)
    out = degrade.jpeg(img, 10)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 10])
    np.testing.assert_array_equal(out, cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE))
    assert out.shape == img.shape and not np.array_equal(out, img)
    assert degrade.jpeg(img[:, :, None], 10).shape == (32, 40, 1)
    # higher quality is closer
    err = [np.abs(degrade.jpeg(img, q).astype(int) - img).mean() for q in (10, 40, 95)]
    assert err[0] > err[1] > err[2]


def test_jpeg_colour_goes_through_opencv_in_bgr():
    img = cv2.GaussianBlur(_img((24, 32, 3)), (5, 5), 2)
    out = degrade.jpeg(img, 30)
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 30])
    np.testing.assert_array_equal(out, cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    with pytest.raises(ValueError):
        degrade.jpeg(img, 0)
