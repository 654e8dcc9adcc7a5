"""Real-world degradations (Real-ESRGAN's second-order model): bytes per seed, the drawn
parameters against their configured ranges and proportions, output sizes, USM ground truth,
kernels and the torch JPEG.

Proportions: over N draws (fixed seeds 0..N-1, so the test is deterministic) every observed
frequency p̂ of an event of configured probability p must satisfy |p̂ − p| ≤ 4.5·sqrt(p(1−p)/N)
(a correct sampler fails one such check with probability below 1e-5)."""
from __future__ import annotations

import io
import math
from collections import Counter

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mambairv2.protocol import realworld_kernels as K
from mambairv2.protocol.realworld import degrade_batch, degrade_one, draw_sample
from mambairv2.train.config import build_config

N = 2000


def options(*overrides: str):
    return build_config({}, overrides)["realsr"]


def _hr(n: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(small, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def _close(count: int, p: float, what: str) -> None:
    p_hat = count / N
    bound = 4.5 * math.sqrt(p * (1 - p) / N) if 0 < p < 1 else 0.0
    assert abs(p_hat - p) <= bound, f"{what}: observed {p_hat:.4f}, configured {p} (bound ±{bound:.4f})"


@pytest.fixture(scope="module")
def draws():
    o = options()
    return o, [draw_sample(seed, o) for seed in range(N)]


def test_same_seed_same_bytes_whatever_the_batch():
    o = options()
    hr = _hr(4)
    lq, gt = degrade_batch(hr, [11, 12, 13, 14], 4, o)
    lq_again, _ = degrade_batch(hr[2:3].clone(), [13], 4, o)
    assert torch.equal(lq[2:3], lq_again)  # alone or inside a batch: the same bytes
    lq_swapped, _ = degrade_batch(hr[[1, 0]], [12, 11], 4, o)
    assert torch.equal(lq_swapped, lq[[1, 0]])
    other, _ = degrade_batch(hr[:1], [99], 4, o)
    assert not torch.equal(other, lq[:1])
    # on 8-bit levels
    assert torch.equal((lq * 255).round() / 255, lq) and lq.min() >= 0 and lq.max() <= 1


@pytest.mark.parametrize("scale, size", [(4, 64), (2, 48), (4, 40), (3, 45)])
def test_output_size_is_hr_over_scale(scale, size):
    lq, gt = degrade_batch(_hr(2, size), [1, 2], scale, options())
    assert lq.shape == (2, 3, size // scale, size // scale) and gt.shape == (2, 3, size, size)


def test_kernel_kinds_and_sinc_in_configured_proportions(draws):
    o, ds = draws
    for stage, suffix in (("first", ""), ("second", "2")):
        kernels = [getattr(d, stage).blur for d in ds]
        if stage == "second":
            _close(sum(k is not None for k in kernels), o["second_blur_prob"], "second_blur_prob")
            kernels = [k for k in kernels if k is not None]
        n = len(kernels)
        sinc_share = sum(k.kind == "sinc" for k in kernels) / n
        p = o["sinc_prob" + suffix]
        assert abs(sinc_share - p) <= 4.5 * math.sqrt(p * (1 - p) / n), f"{stage} sinc share {sinc_share}"
        counts = Counter(k.kind for k in kernels if k.kind != "sinc")
        m = sum(counts.values())
        for kind, prob in zip(o["kernel_list" + suffix], o["kernel_prob" + suffix]):
            share = counts[kind] / m
            assert abs(share - prob) <= 4.5 * math.sqrt(prob * (1 - prob) / m), f"{stage} {kind}: {share} vs {prob}"
        sizes = Counter(k.size for k in kernels)
        assert set(sizes) == set(range(7, 22, 2))  # the odd sizes 7..21, each about 1/8
        for size, c in sizes.items():
            assert abs(c / n - 1 / 8) <= 4.5 * math.sqrt((1 / 8) * (7 / 8) / n), f"size {size}"


def test_kernel_parameters_within_configured_ranges(draws):
    o, ds = draws
    for stage, suffix in (("first", ""), ("second", "2")):
        s_lo, s_hi = o["blur_sigma" + suffix]
        for k in (getattr(d, stage).blur for d in ds):
            if k is None:
                continue
            if k.kind == "sinc":
                lo = math.pi / 3 if k.size < 13 else math.pi / 5
                assert lo <= k.omega <= math.pi
                continue
            assert s_lo <= k.sigma_x <= s_hi and s_lo <= k.sigma_y <= s_hi
            if k.kind.endswith("iso") and not k.kind.endswith("aniso"):
                assert k.sigma_x == k.sigma_y and k.theta == 0
            else:
                assert -math.pi <= k.theta <= math.pi
            if k.kind.startswith("generalized"):
                assert o["betag_range" + suffix][0] <= k.beta <= o["betag_range" + suffix][1]
            elif k.kind.startswith("plateau"):
                assert o["betap_range" + suffix][0] <= k.beta <= o["betap_range" + suffix][1]
            else:
                assert k.beta == 1.0
    # anisotropic kernels really are anisotropic and rotated over the whole circle
    thetas = [d.first.blur.theta for d in ds if d.first.blur.kind == "aniso"]
    assert min(thetas) < -2.5 and max(thetas) > 2.5


def test_resize_noise_jpeg_in_configured_proportions_and_ranges(draws):
    o, ds = draws
    for stage, suffix in (("first", ""), ("second", "2")):
        st = [getattr(d, stage) for d in ds]
        for kind, p in zip(("up", "down", "keep"), o["resize_prob" + suffix]):
            _close(sum(s.resize == kind for s in st), p, f"{stage} resize {kind}")
        lo, hi = o["resize_range" + suffix]
        for s in st:
            assert {"up": 1 <= s.resize_scale <= hi, "down": lo <= s.resize_scale <= 1,
                    "keep": s.resize_scale == 1}[s.resize]
        for mode in o["resize_modes"]:
            _close(sum(s.resize_mode == mode for s in st), 1 / 3, f"{stage} resize mode {mode}")
        _close(sum(s.noise == "gaussian" for s in st), o["gaussian_noise_prob" + suffix], f"{stage} gaussian")
        _close(sum(s.gray_noise for s in st), o["gray_noise_prob" + suffix], f"{stage} gray noise")
        for s in st:
            r = o["noise_range" + suffix] if s.noise == "gaussian" else o["poisson_scale_range" + suffix]
            assert r[0] <= s.noise_level <= r[1]
            assert o["jpeg_range" + suffix][0] <= s.jpeg_quality <= o["jpeg_range" + suffix][1]
    _close(sum(d.final_sinc is not None for d in ds), o["final_sinc_prob"], "final_sinc_prob")
    _close(sum(d.final_resize_first for d in ds), o["final_resize_first_prob"], "final order")
    for d in ds:
        if d.final_sinc is not None:
            assert math.pi / 3 <= d.final_sinc.omega <= math.pi and d.final_sinc.size in range(7, 22, 2)


def test_changed_config_changes_the_proportions():
    o = options("realsr.sinc_prob=0.5", "realsr.resize_prob=[0.0, 1.0, 0.0]", "realsr.gaussian_noise_prob=1.0",
                "realsr.jpeg_range=[70, 72]", "realsr.kernel_list=[iso, plateau_aniso]", "realsr.kernel_prob=[0.5, 0.5]",
                "realsr.final_sinc_prob=0")
    ds = [draw_sample(seed, o) for seed in range(N)]
    _close(sum(d.first.blur.kind == "sinc" for d in ds), 0.5, "sinc_prob 0.5")
    assert all(d.first.resize == "down" and d.first.noise == "gaussian" and 70 <= d.first.jpeg_quality <= 72
               and d.final_sinc is None for d in ds)
    assert {d.first.blur.kind for d in ds} == {"sinc", "iso", "plateau_aniso"}


def test_sharpened_ground_truth_as_configured():
    hr = _hr(2, 64)
    _, gt = degrade_batch(hr, [1, 2], 4, options())
    _, plain = degrade_batch(hr, [1, 2], 4, options("realsr.gt_usm=false"))
    assert torch.equal(plain, hr)
    # against an independent OpenCV unsharp mask (BasicSR's numpy recipe: size 51, sigma from size)
    img = hr[0].permute(1, 2, 0).numpy().astype(np.float64)
    blur = cv2.GaussianBlur(img, (51, 51), 0)
    residual = img - blur
    mask = (np.abs(residual) * 255 > 10).astype(np.float64)
    soft = cv2.GaussianBlur(mask, (51, 51), 0)
    ref = soft * np.clip(img + 0.5 * residual, 0, 1) + (1 - soft) * img
    assert np.abs(gt[0].permute(1, 2, 0).numpy() - ref).max() < 1e-5
    assert (gt - hr).abs().max() > 0.01
    _, weaker = degrade_batch(hr, [1, 2], 4, options("realsr.usm_weight=0.1"))
    assert (weaker - hr).abs().mean() < (gt - hr).abs().mean()


def test_kernels_are_normalised_and_shaped():
    k = K.gaussian_kernel(21, 2.0, 2.0, 0.0)
    assert abs(float(k.sum()) - 1) < 1e-5 and torch.allclose(k, k.T) and k.argmax() == 10 * 21 + 10
    a = K.gaussian_kernel(21, 3.0, 0.5, 0.0)  # wide along x
    assert float(a[10, 10 + 5]) > float(a[10 + 5, 10])
    for kind, beta in (("generalized", 0.6), ("plateau", 1.5)):
        g = K.gaussian_kernel(15, 1.5, 1.5, 0.0, kind, beta)
        assert abs(float(g.sum()) - 1) < 1e-5 and torch.allclose(g, g.flip(0).flip(1))
    s = K.sinc_kernel(13, math.pi / 2)
    assert abs(float(s.sum()) - 1) < 1e-5 and torch.allclose(s, s.T)
    # a low-pass: a sinc at a lower cutoff removes more of a high-frequency pattern
    stripes = torch.tensor([[(i + j) % 2 for j in range(32)] for i in range(32)], dtype=torch.float32)[None, None]
    soft = K.filter2d(stripes, K.sinc_kernel(13, math.pi / 4)).std()
    sharp = K.filter2d(stripes, K.sinc_kernel(13, 0.9 * math.pi)).std()
    assert soft < sharp < stripes.std()


@pytest.mark.parametrize("quality", [10, 30, 60, 95])
def test_torch_jpeg_close_to_libjpeg(quality):
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((96, 88), Image.BICUBIC))
    x = torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    ref = torch.from_numpy(np.asarray(Image.open(buf)).copy()).permute(2, 0, 1).float() / 255
    ours = K.jpeg(x, quality)

    def psnr(a, b):
        return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))

    assert ours.shape == x.shape
    assert psnr(ours, ref) > 38, psnr(ours, ref)             # the same artifacts as libjpeg ...
    assert abs(psnr(ours, x) - psnr(ref, x)) < 0.5           # ... at the same strength


def test_degrade_one_follows_its_draw():
    """Near-identity blur, no resize, no noise, JPEG at 100, area resize: the LR is about the
    4×4 mean of the HR."""
    o = options("realsr.sinc_prob=0", "realsr.sinc_prob2=0", "realsr.final_sinc_prob=0",
                "realsr.resize_prob=[0, 0, 1]", "realsr.resize_prob2=[0, 0, 1]", "realsr.noise_range=[0, 0]",
                "realsr.noise_range2=[0, 0]", "realsr.gaussian_noise_prob=1", "realsr.gaussian_noise_prob2=1",
                "realsr.jpeg_range=[100, 100]", "realsr.jpeg_range2=[100, 100]", "realsr.blur_sigma=[0.2, 0.2]",
                "realsr.blur_sigma2=[0.2, 0.2]", "realsr.kernel_list=[iso]", "realsr.kernel_prob=[1]",
                "realsr.kernel_list2=[iso]", "realsr.kernel_prob2=[1]", "realsr.resize_modes=[area]")
    hr = _hr(1, 64)[:, :1].expand(1, 3, 64, 64)  # gray: 4:2:0 chroma loses nothing
    lq = degrade_one(hr, 4, o, seed=5)
    ref = torch.nn.functional.avg_pool2d(hr, 4)
    assert (lq - ref).abs().max() < 0.03


def test_degrade_cli_writes_the_training_lr(tmp_path, capsys):
    from _train_tiny import make_images
    from mambairv2.cli.main import main

    hr = make_images(tmp_path / "hr", count=2, size=64)
    argv = ["degrade", "--task", "realsr", "--scale", "4", "--hr-dir", str(hr)]
    assert main(argv + ["--seed", "7", "--out", str(tmp_path / "a")]) == 0
    assert main(argv + ["--seed", "7", "--out", str(tmp_path / "b")]) == 0
    assert main(argv + ["--seed", "8", "--out", str(tmp_path / "c")]) == 0
    a = sorted((tmp_path / "a").iterdir())
    assert [p.name for p in a] == ["img00x4.png", "img01x4.png"]
    for p in a:
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes()
        assert p.read_bytes() != (tmp_path / "c" / p.name).read_bytes()
        assert Image.open(p).size == (16, 16)
    capsys.readouterr()
    assert main(["degrade", "--task", "realsr", "--hr-dir", str(hr), "--out", str(tmp_path / "d")]) == 2
    assert "needs --scale" in capsys.readouterr().err
    assert main(argv + ["--out", str(tmp_path / "e"), "--set", "train.lr=1"]) == 2
    assert "only realsr.*" in capsys.readouterr().err
