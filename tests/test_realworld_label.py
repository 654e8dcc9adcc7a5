"""A real-world SR model is named as such: checkpoints our trainer writes from a ``data.task:
realsr`` config store ``degradation: realsr``, the authors' real-world checkpoints are known by
their released file names, and ``restore``, ``info``, ``info --models`` and the app's model card
say "real-world SR"; bicubic models (and the released files' stored configurations) are unchanged."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from _train_tiny import TINY_MODEL, make_images, tiny_config
from conftest import shared_path
from mambairv2.app.models import model_info
from mambairv2.cli.main import main
from mambairv2.models import create_model, describe, load_model, read_state_dict, save_safetensors
from mambairv2.models.checkpoint import CONFIG_METADATA_KEY, read_config
from mambairv2.train.checkpointing import save_training_checkpoint
from mambairv2.train.config import load_config, model_config
from mambairv2.train.trainer import train


def _realsr_run(tmp):
    """A one-step stage-1 real-world run of a tiny x2 model; returns its generator file."""
    cfg = {
        "name": "tiny_realsr", "output_dir": str(tmp / "run"), "device": "cpu",
        "model": {"variant": "light", "scale": 2, "overrides": dict(TINY_MODEL)},
        "data": {"task": "realsr", "train_root": str(make_images(tmp / "train", count=2, size=48)),
                 "patch_size": 16, "batch_size": 2, "num_workers": 0, "rot90": False},
        "val": {"every": 0},
        "train": {"iters": 1, "save_every": 1, "log_every": 1, "ema_decay": 0.9, "progress": "off",
                  "plot": False, "tensorboard": False, "amp": "none"},
    }
    path = tmp / "realsr.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert train(load_config(path))["step"] == 1
    return tmp / "run" / "models" / "net_g_1.pth"


def _says(capsys, *argv):
    assert main(list(argv)) == 0
    captured = capsys.readouterr()
    return captured.out + captured.err


def _restore_says(tmp, capsys, weights):
    image = tmp / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(image)
    out = tmp / f"out_{weights.stem}"
    text = _says(capsys, "restore", str(image), "-o", str(out), "--weights", str(weights))
    return next(line for line in text.splitlines() if line.startswith("model: "))


@pytest.fixture(scope="module")
def realsr_checkpoint(tmp_path_factory):
    return _realsr_run(tmp_path_factory.mktemp("realsr_run"))


def test_realsr_training_stores_the_degradation(realsr_checkpoint):
    raw = torch.load(realsr_checkpoint, weights_only=True)
    assert set(raw) == {"params", "params_ema", CONFIG_METADATA_KEY}
    stored = raw[CONFIG_METADATA_KEY]  # a plain dict beside params
    assert stored["degradation"] == "realsr" and stored["upscale"] == 2
    model = load_model(realsr_checkpoint)  # strict, from the stored configuration
    assert model.config.degradation == "realsr"
    assert describe(model).task == "realsr"
    assert describe(model).label == "MambaIRv2 custom x2 (real-world SR)"


def test_restore_info_and_app_name_the_real_world_model(realsr_checkpoint, tmp_path, capsys):
    assert "(real-world SR)" in _restore_says(tmp_path, capsys, realsr_checkpoint)
    assert "task:     realsr (real-world SR)" in _says(capsys, "info", str(realsr_checkpoint))
    card = model_info(load_model(realsr_checkpoint)).describe()
    assert "task **realsr** (real-world super-resolution ×2)" in card
    # converting keeps the fact in the .safetensors header
    converted = tmp_path / "realsr.safetensors"
    _says(capsys, "convert", str(realsr_checkpoint), str(converted))
    assert read_state_dict(converted)[1]["degradation"] == "realsr"
    assert describe(load_model(converted)).task == "realsr"


def test_a_bicubic_checkpoint_is_not_real_world(realsr_checkpoint, tmp_path, capsys):
    cfg = load_config(tiny_config(tmp_path))
    config = model_config(cfg)
    assert config.degradation is None
    torch.manual_seed(0)
    model = create_model("light", 2, **TINY_MODEL)
    save_training_checkpoint(tmp_path / "run", 1, model.state_dict(), model.state_dict(), {"step": 1},
                             config=config)
    path = tmp_path / "run" / "models" / "net_g_1.pth"
    assert set(torch.load(path, weights_only=True)) == {"params", "params_ema"}  # exactly BasicSR's
    line = _restore_says(tmp_path, capsys, path)
    assert "(SR)" in line and "real-world" not in line
    assert "task:     sr (SR)" in _says(capsys, "info", str(path))
    assert "real-world" not in model_info(load_model(path)).describe()
    # the same tensors as the real-world run's: only the stored configuration tells them apart
    realsr = load_model(realsr_checkpoint)
    assert realsr.config == load_model(path).config
    assert realsr.config.to_dict() != load_model(path).config.to_dict()


@pytest.mark.parametrize("golden, released", [
    ("golden_v1/realsr_x4.pth", "MambaIR_realSR.pth"),
    ("golden_v1/realsr_x4.pth", "MambaIR-real.pth"),
    ("golden/full_real_x4.pth", "mambairv2_realSR_x4.pth"),
])
def test_authors_real_world_checkpoints_are_known_by_name(golden, released, tmp_path, capsys):
    source = shared_path(*golden.split("/"))
    assert read_config(source).degradation is None  # the stand-in under its own name: untouched
    path = tmp_path / released
    shutil.copyfile(source, path)
    config = read_config(path)
    assert config.degradation == "realsr" and config == read_config(source)
    assert "(real-world SR)" in _restore_says(tmp_path, capsys, path)
    assert "real-world SR" in _says(capsys, "info", str(path))


def test_authors_bicubic_names_are_not_real_world(tmp_path, capsys):
    path = tmp_path / "MambaIR_SR4.pth"
    shutil.copyfile(shared_path("golden_v1", "classic_x4.pth"), path)
    assert read_config(path).degradation is None
    assert "real-world" not in _restore_says(tmp_path, capsys, path)


def test_info_models_lists_the_task(realsr_checkpoint, tmp_path, monkeypatch, capsys):
    from mambairv2.models import catalog, hub

    weights = tmp_path / "weights"
    weights.mkdir()
    save_safetensors(load_model(realsr_checkpoint), weights / "real_x2.safetensors")
    save_safetensors(create_model("light", 2, **TINY_MODEL), weights / "bicubic_x2.safetensors")
    monkeypatch.setattr(catalog, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(hub, "read_records", lambda: {})
    rows = {r["name"]: r for r in catalog.list_models()}
    assert rows["real_x2"]["task"] == "realsr" and rows["bicubic_x2"]["task"] == "sr"
    lines = {line.split()[0]: line for line in _says(capsys, "info", "--models").splitlines()}
    assert "real-world SR" in lines["real_x2"] and "real-world" not in lines["bicubic_x2"]


def test_degradation_is_checked_and_not_part_of_the_network():
    light = create_model("light", 4).config
    real = light.replace(degradation="realsr")
    assert real == light and real.to_dict() == {**light.to_dict(), "degradation": "realsr"}
    assert "degradation" not in light.to_dict()
    for family_variant in ("light", "mambair"):
        config = create_model(family_variant, 4, embed_dim=60, depths=(1,),
                              **({"num_heads": (4,)} if family_variant == "light" else {})).config
        with pytest.raises(ValueError, match="degradation"):
            config.replace(degradation="bicubic-ish")
    with pytest.raises(ValueError, match="super-resolution"):
        create_model("denoise", 1, embed_dim=12, depths=(1,), num_heads=(2,)).config.replace(degradation="realsr")
