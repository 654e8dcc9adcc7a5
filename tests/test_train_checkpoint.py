"""Trainer checkpoints load with ``mambairv2.load_model``; a released-format file warm-starts
training (x2 → x4: body loaded, head re-initialised)."""
from __future__ import annotations

import pytest
import torch

import mambairv2
from _train_tiny import tiny_config
from conftest import shared_path
from mambairv2.models import CheckpointError, read_state_dict
from mambairv2.cli.main import main
from mambairv2.models.mambairv2 import variant_config
from mambairv2.models.mambairv2 import MambaIRv2
from mambairv2.train.config import load_config
from mambairv2.train.trainer import train
from mambairv2.train.warmstart import warm_start


def test_trainer_checkpoint_loads_with_load_model(tmp_path):
    cfg = load_config(tiny_config(tmp_path, train={"iters": 3, "save_every": 3}, val={"every": 0}))
    summary = train(cfg)
    assert summary["step"] == 3
    path = tmp_path / "run" / "models" / "net_g_3.pth"
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"params", "params_ema"}
    model = mambairv2.load_model(path)
    assert model.config.embed_dim == 16 and model.config.upscale == 2
    for k, v in model.state_dict().items():  # params_ema is the one loaded
        assert torch.equal(v, raw["params_ema"][k])
    assert any(not torch.equal(raw["params"][k], raw["params_ema"][k]) for k in raw["params"])
    assert model(torch.rand(1, 3, 12, 10)).shape == (1, 3, 24, 20)


def test_golden_light_x2_warm_starts_x4_training(tmp_path):
    golden = shared_path("golden", "light_x2.pth")
    sd, _ = read_state_dict(golden)
    model = mambairv2.create_model("light", 4)
    report = warm_start(model, str(golden), verbose=False)
    loaded, left = report.loaded, len(report.not_loaded)
    own = model.state_dict()
    assert left == 2  # upsample.0 weight and bias: x4 head, re-initialised
    assert report.not_loaded == ["upsample.0.weight", "upsample.0.bias"]
    assert torch.equal(own["layers.3.residual_group.layers.4.assm.selectiveScan.A_logs"],
                       sd["layers.3.residual_group.layers.4.assm.selectiveScan.A_logs"].float())
    assert loaded == len(own) - 2

    cfg = tiny_config(tmp_path, model={"scale": 4, "overrides": {}, "init_from": str(golden)},
                      train={"iters": 1, "save_every": 1, "lr": 1e-5}, val={"every": 0},
                      data={"patch_size": 16})
    summary = train(load_config(cfg))
    assert summary["step"] == 1
    params = torch.load(tmp_path / "run" / "models" / "net_g_1.pth", weights_only=True)["params"]
    key = "layers.0.residual_group.layers.0.wqkv.weight"
    assert (params[key] - sd[key].float()).abs().max().item() < 1e-4  # started from the x2 body
    assert params["upsample.0.weight"].shape[0] == 48


def test_warm_start_strictness_and_wrong_variant(tmp_path, capsys):
    golden = str(shared_path("golden", "light_x2.pth"))
    same = mambairv2.create_model("light", 2)
    report = warm_start(same, golden, strict=True)
    assert report.loaded == report.total == len(same.state_dict()) and not report.not_loaded
    assert f"{report.total}/{report.total} tensors loaded" in capsys.readouterr().err
    # strict from another scale: the head differs, so it is an error naming the tensors
    with pytest.raises(CheckpointError, match="strict warm start.*upsample.0.weight"):
        warm_start(mambairv2.create_model("light", 3), golden, strict=True, verbose=False)
    # another variant: an error naming both, unless a partial load is asked for
    other = MambaIRv2(variant_config("light", 2, depths=(5, 5, 5), num_heads=(4, 4, 4)))  # 3 groups, not 4
    with pytest.raises(CheckpointError, match=r"holds a light x2 model.*trains a custom \(embed_dim 48, "
                                              r"depths \[5, 5, 5\]\) x2 model.*init_partial"):
        warm_start(other, golden, verbose=False)
    partial = warm_start(other, golden, partial=True, verbose=False)
    assert partial.loaded == partial.total and partial.unused  # all 3 groups loaded; the 4th unused
    # the trainer reports the same error as one line
    cfg = tiny_config(tmp_path, model={"init_from": golden}, val={"every": 0})
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "holds a light x2 model" in err and "\n" not in err
