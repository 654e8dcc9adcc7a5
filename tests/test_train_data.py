"""Training data: bicubic LR (the protocol's MATLAB imresize), crops, degradations, sampler sharding and
determinism; losses, learning-rate schedule, EMA, plot."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from _train_tiny import make_images
from mambairv2.protocol.task import TaskSpec
from mambairv2.train.data import InfiniteBatchSampler, SampleSpec, TrainDataset, list_images
from mambairv2.train.ema import EMA
from mambairv2.train.losses import CharbonnierLoss, build_loss
from mambairv2.train.plot import plot_curves
from mambairv2.train.schedule import LRSchedule


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_uncached_crop_lr_equals_whole_image_lr(tmp_path, scale):
    folder = make_images(tmp_path / "hr", count=2, size=96)
    files = list_images([str(folder)], [".png"])
    spec = SampleSpec(TaskSpec("sr", scale), patch=12, flip=False, rot90=False)
    cached, uncached = TrainDataset(files, spec, seed=3, cache=True), TrainDataset(files, spec, seed=3, cache=False)
    for number in range(12):
        a, b = cached[(number % 2, number)], uncached[(number % 2, number)]
        assert a["lq"].shape == (3, 12, 12) and a["gt"].shape == (3, 12 * scale, 12 * scale)
        assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
        # the LR patch is the bicubic LR of the HR patch's region
        assert (a["lq"] - torch.nn.functional.avg_pool2d(a["gt"][None], scale)[0]).abs().mean() < 0.05


def test_degradations_are_seeded_per_sample(tmp_path):
    files = list_images([str(make_images(tmp_path / "hr", count=2, size=40))], [".png"])
    dn = TrainDataset(files, SampleSpec(TaskSpec("denoise", sigma=25), patch=32), seed=1)
    a, b, c = dn[(0, 5)], dn[(0, 5)], dn[(0, 6)]
    assert torch.equal(a["lq"], b["lq"]) and not torch.equal(a["lq"], c["lq"])
    assert abs((a["lq"] - a["gt"]).std().item() * 255 - 25) < 2.5
    jp = TrainDataset(files, SampleSpec(TaskSpec("jpeg", quality=10), patch=32), seed=1)
    s = jp[(1, 3)]
    assert s["lq"].shape == s["gt"].shape == (1, 32, 32)
    assert 0 < (s["lq"] - s["gt"]).abs().mean() < 0.2


def test_sampler_shards_the_global_batch_and_covers_each_epoch():
    single = InfiniteBatchSampler(10, 4, seed=0)
    r0 = InfiniteBatchSampler(10, 4, seed=0, rank=0, world_size=2, start_step=3)
    r1 = InfiniteBatchSampler(10, 4, seed=0, rank=1, world_size=2, start_step=3)
    it = iter(single)
    batches = [next(it) for _ in range(5)]
    assert next(iter(r0)) + next(iter(r1)) == batches[3]
    first_epoch = [i for b in batches for i, _ in b][:10]
    assert sorted(first_epoch) == list(range(10))
    assert [n for b in batches for _, n in b] == list(range(20))
    assert InfiniteBatchSampler(10, 4, seed=1).batch_for_step(0) != batches[0]


def test_losses():
    a, b = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    assert build_loss("l1")(a, b).item() == pytest.approx(0.5)
    assert CharbonnierLoss(1e-3)(a, b).item() == pytest.approx(math.sqrt(0.25 + 1e-6))
    assert CharbonnierLoss(1e-3)(a, a).item() == pytest.approx(1e-3)


def test_schedules():
    ms = LRSchedule(2e-4, 500000, "multistep", [250000, 400000, 450000, 475000], 0.5)
    assert ms(0) == 2e-4 and ms(249999) == 2e-4 and ms(250000) == 1e-4 and ms(499999) == 2e-4 / 16
    cos = LRSchedule(1e-3, 100, "cosine", eta_min=1e-5, warmup=10)
    assert cos(0) == pytest.approx(1e-3 / 11) and cos(9) == pytest.approx(1e-3 * 10 / 11)
    assert cos(10) == pytest.approx(1e-3) and cos(100) == pytest.approx(1e-5)
    assert cos(55) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)


def test_ema_average_and_warmup():
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, decay=0.9)
    with torch.no_grad():
        net.weight.add_(1.0)
    before = ema.module.weight.clone()
    ema.update(net)
    assert torch.allclose(ema.module.weight, 0.9 * before + 0.1 * net.weight)
    warm = EMA(net, decay=0.999, warmup=True)
    assert warm.current_decay() == pytest.approx(0.1)


def test_plot_is_written(tmp_path):
    out = plot_curves([(1, 0.3), (2, 0.2), (3, 0.1)], [(2, 30.0), (3, 31.0)], tmp_path / "p.png")
    img = Image.open(out)
    assert img.size == (900, 560) and len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) > 2
