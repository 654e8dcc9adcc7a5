"""Every packaged paper config reproduces the authors' option file field by field (facts in
``../shared/spec/authors_training_recipes.json``, extracted from csguoh/MambaIR's
options/train/mambairv2/*.yml); ``--dry-run`` prints the resolved recipe."""
from __future__ import annotations

import json
import re

import pytest

from conftest import shared_path
from mambairv2.cli.main import main
from mambairv2.protocol.task import TaskSpec
from mambairv2.train.config import accumulation, load_config, model_config, packaged_configs
from mambairv2.train.trainer import task_spec

#: The authors' option-file names → the packaged config names.
NAME_RE = [(r"MambaIRv2_lightSR_x(\d)$", "light_x{}"), (r"MambaIRv2_SRSmall_x(\d)$", "small_x{}"),
           (r"MambaIRv2_SR_x(\d)$", "base_x{}"), (r"MambaIRv2_SRLarge_x(\d)$", "large_x{}"),
           (r"MambaIRv2_ColorDN_level(\d+)$", "denoise_sigma{}"), (r"MambaIRv2_CAR_q(\d+)$", "jpeg_q{}")]
VAL_FOLDER = {"Set14": "Set14", "CBSD68": "CBSD68", "Classic5": "classic5"}
TRAIN_SET = {"DF2K": "DF2K", "DIV2K": "DIV2K", "DFWB": "DFWB", "DFWB_RGB": "DFWB"}


def _ours(key: str) -> str:
    for pattern, name in NAME_RE:
        m = re.match(pattern, key)
        if m:
            return name.format(m.group(1))
    raise AssertionError(f"no packaged config for the authors' {key}")


def _recipes():
    path = shared_path("spec", "authors_training_recipes.json")
    return json.loads(path.read_text())["recipes"]


def test_there_are_18_recipes_and_a_config_for_each():
    recipes = _recipes()
    assert len(recipes) == 18
    assert {_ours(k) for k in recipes} <= set(packaged_configs())


@pytest.mark.parametrize("index", range(18))
def test_config_reproduces_the_authors_recipe(index):
    key, r = sorted(_recipes().items())[index]
    name = _ours(key)
    cfg = load_config(name)
    d, t, m, v = cfg["data"], cfg["train"], cfg["model"], cfg["val"]
    assert cfg["name"] == name and cfg["seed"] == r["manual_seed"]
    # network: every network_g field of the option file
    mc = model_config(cfg)
    for field, value in r["network_g"].items():
        if field in ("type", "img_size"):
            continue
        ours = getattr(mc, "upscale" if field == "upscale" else field)
        assert (list(ours) if isinstance(ours, tuple) else ours) == value, f"{name}: network_g.{field}"
    # data: global batch = GPUs × per-GPU batch; HR patch gt_size; augmentation; degradation
    assert r["global_batch"] == r["num_gpu"] * r["batch_size_per_gpu"]
    assert d["batch_size"] == r["global_batch"] and d["batch_per_gpu"] == r["batch_size_per_gpu"], name
    assert accumulation(cfg, r["num_gpu"]) == (1, r["batch_size_per_gpu"]), "the authors' GPUs: no accumulation"
    assert accumulation(cfg, 1) == (r["num_gpu"], r["batch_size_per_gpu"]), "one GPU: accumulate"
    assert d["patch_size"] * r["scale"] == r["gt_size"], f"{name}: gt_size"
    assert d["flip"] == r["use_hflip"] and d["rot90"] == r["use_rot"]
    assert TRAIN_SET[r["train_set"]] in str(d["train_root"]), f"{name}: placeholder for {r['train_set']}"
    spec = task_spec(cfg)
    if r["task"] == "denoising_color":
        assert spec == TaskSpec("denoise", sigma=float(r["noise"]))
    elif r["task"] == "CAR":
        assert spec == TaskSpec("jpeg", quality=int(key.rsplit("q", 1)[1]))
    else:
        assert spec == TaskSpec("sr", scale=r["scale"])
    # optimiser, schedule, length
    o, s = r["optim"], r["scheduler"]
    assert o["type"] == "Adam" and t["lr"] == o["lr"] and t["betas"] == o["betas"]
    assert t["weight_decay"] == o["weight_decay"]
    assert s["type"] == "MultiStepLR" and t["scheduler"] == "multistep"
    assert t["milestones"] == s["milestones"] and t["gamma"] == s["gamma"]
    assert t["iters"] == r["total_iter"]
    assert t["warmup_iters"] == max(r["warmup_iter"], 0)
    # warm start and its strictness
    assert bool(m["init_from"]) == bool(r["pretrain_network_g"]), f"{name}: warm start"
    if r["pretrain_network_g"]:
        assert m["init_strict"] == r["strict_load_g"], f"{name}: strict_load_g"
    # loss, EMA
    loss = r["loss"]
    if loss["type"] == "L1Loss":
        assert t["loss"] == "l1"
    else:
        assert loss["type"] == "CharbonnierLoss" and t["loss"] == "charbonnier"
        assert t["charbonnier_eps"] == loss["eps"]
    assert r["ema_decay"] is None and t["ema_decay"] == 0
    # validation set and metric
    assert v["every"] > 0 and VAL_FOLDER[r["val_set"]] in v["root"], f"{name}: validation on {r['val_set']}"
    psnr = r["val_metrics"]["psnr"]
    assert spec.crop_border == psnr["crop_border"]
    assert (spec.channels == "y" or spec.gray) == psnr["test_y_channel"]


def test_dry_run_prints_the_recipe(capsys):
    assert main(["train", "base_x4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "global batch: 32 patches per step (authors: 8 GPUs × 4)" in out
    assert "1 process(es): 4 patches per micro-batch × 8 accumulation step(s)" in out
    assert "0.0001 for steps 0–125k, 5e-05 for steps 125k–200k" in out
    assert "warm start: runs/base_x2/models/net_g_latest.pth, non-strict" in out
    assert "patches 48px LR (192px HR)" in out
