"""The real-world SR flow as docs/realworld_sr.md gives it, through the command line only, on a
tiny budget: stage 1 (``train realsr_light_x4_net``, killed with SIGKILL after its first
checkpoint and resumed), stage 2 (``train realsr_light_x4_gan`` warm-started from stage 1's
``runs/realsr_light_x4_net/models/net_g_latest.pth``, the packaged default; killed and resumed;
its no-reference sheet of real photos), ``restore`` with the result (labelled real-world SR),
``info``, and ``evaluate`` on a fixed synthetic set made by ``degrade --task realsr``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from _flows import TINY_TRAIN, mambairv2, train_killed_then_resumed
from _train_tiny import make_images
from mambairv2.train.logs import read_log
from mambairv2.train.perceptual import random_vgg19_state_dict

NET_ITERS, GAN_ITERS = 10, 6


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """A user's folder after both stages: ``hr/`` (training photos), ``photos/`` (real photos
    without ground truth), ``vgg19.pth`` (random weights in torchvision's layout), ``runs/``."""
    home = tmp_path_factory.mktemp("realsr_flow")
    make_images(home / "hr", count=3, size=48)
    make_images(home / "photos", count=1, size=24, seed=2)
    torch.save(random_vgg19_state_dict(1), home / "vgg19.pth")
    data = ["--set", "data.train_root=hr"]
    killed = {}
    killed["net"] = train_killed_then_resumed(
        ["realsr_light_x4_net", *TINY_TRAIN, *data, "--set", "model.init_from=null"],
        home / "runs" / "realsr_light_x4_net", home, NET_ITERS)
    killed["gan"] = train_killed_then_resumed(
        ["realsr_light_x4_gan", *TINY_TRAIN, *data, "--set", "train.vgg19_weights=vgg19.pth",
         "--set", "gan.d_num_feat=8", "--set", "val.nr_root=photos", "--set", f"val.every={GAN_ITERS}"],
        home / "runs" / "realsr_light_x4_gan", home, GAN_ITERS)
    return home, killed


def _logged_steps(run):
    return [int(r["step"]) for r in read_log(run / "log.csv") if r["loss"]]


def test_both_stages_resume_after_sigkill_and_stage_2_starts_from_stage_1(flow):
    home, killed = flow
    for name, iters in (("realsr_light_x4_net", NET_ITERS), ("realsr_light_x4_gan", GAN_ITERS)):
        run = home / "runs" / name
        assert _logged_steps(run) == list(range(1, iters + 1)), name  # no step lost or repeated
        assert (run / "models" / f"net_g_{iters}.pth").exists()
    assert (home / "runs" / "realsr_light_x4_gan" / "models" / f"net_d_{GAN_ITERS}.pth").exists()
    stage_2 = killed["gan"][1]
    assert "warm start from runs/realsr_light_x4_net/models/net_g_latest.pth (strict): 63/63 tensors" in stage_2


def test_stage_2_writes_the_no_reference_sheet_of_real_photos(flow):
    home, _ = flow
    sheet = Image.open(home / "runs" / "realsr_light_x4_gan" / "nr_sheets" / f"{GAN_ITERS:08d}.png")
    assert sheet.height >= 24 * 4 and sheet.width >= 2 * 24 * 4  # the enlarged input beside the x4 output


def test_restore_with_the_result_says_real_world_sr(flow):
    home, _ = flow
    model = "runs/realsr_light_x4_gan/models/net_g_latest.pth"
    done = mambairv2("restore", "photos/img00.png", "-o", "out", "--model", model, cwd=home)
    assert "(real-world SR)" in done.stderr + done.stdout
    assert Image.open(home / "out" / "img00.png").size == (96, 96)
    assert "task:     realsr (real-world SR)" in mambairv2("info", model, cwd=home).stdout


def test_evaluate_the_result_on_a_fixed_synthetic_real_world_set(flow):
    home, _ = flow
    mambairv2("degrade", "--task", "realsr", "--scale", "4", "--seed", "0", "--hr-dir", "hr", "--out", "val_lr",
              cwd=home)
    model = "runs/realsr_light_x4_gan/models/net_g_latest.pth"
    mambairv2("evaluate", "--model", model, "--task", "sr", "--hr-dir", "hr", "--lr-dir", "val_lr",
              "--json", "eval.json", "-q", cwd=home)
    result = json.loads((home / "eval.json").read_text())
    text = json.dumps(result)
    assert "img00" in text and "img02" in text
    psnrs = [v for v in _numbers(result, "psnr")]
    assert psnrs and all(np.isfinite(p) and 0 < p < 60 for p in psnrs)


def _numbers(node, key):
    """Every number stored under ``key`` (any case) anywhere in a JSON tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k.lower() == key and isinstance(v, (int, float)):
                yield v
            else:
                yield from _numbers(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from _numbers(v, key)
