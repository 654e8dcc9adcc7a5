"""``mambairv2 convert CKPT OUT.safetensors``."""
from __future__ import annotations

import os

import pytest
import torch

from mambairv2.models import load_model, save_checkpoint
from mambairv2.cli.main import main
from mambairv2.models import create_model
from conftest import shared_path


@pytest.fixture
def small_pth(tmp_path):
    """A released-format (BasicSR) checkpoint of a small network."""
    model = create_model("light", scale=3, embed_dim=16, depths=(1,), num_heads=(2,), inner_rank=8,
                         num_tokens=8, d_state=4)
    path = tmp_path / "small.pth"
    save_checkpoint(path, model.state_dict())
    return path, model


def test_convert_round_trips_weights_and_configuration(tmp_path, small_pth, capsys):
    path, model = small_pth
    out = tmp_path / "small.safetensors"
    assert main(["convert", str(path), str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    loaded = load_model(out)
    assert loaded.config == model.config
    reference = load_model(path).state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, reference[key]), key
    x = torch.rand(1, 3, 5, 7)
    with torch.no_grad():
        assert torch.equal(loaded(x), load_model(path)(x))


def test_convert_golden_checkpoint(tmp_path):
    src = shared_path("golden", "light_x2.pth")
    out = tmp_path / "light_x2.safetensors"
    assert main(["convert", str(src), str(out), "--dtype", "float16"]) == 0
    loaded = load_model(out)
    assert loaded.config.upscale == 2 and loaded.config.arch == "MambaIRv2Light"
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:
        assert f.get_tensor("conv_first.weight").dtype == torch.float16
        assert "mambairv2_config" in (f.metadata() or {})


def test_existing_output_is_kept_without_overwrite(tmp_path, small_pth, capsys):
    path, _ = small_pth
    out = tmp_path / "o.safetensors"
    out.write_bytes(b"keep me")
    assert main(["convert", str(path), str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main(["convert", str(path), str(out), "--overwrite"]) == 0
    assert load_model(out).config.upscale == 3


@pytest.mark.parametrize("content,needle", [(b"", "empty"), (b"hello", "not a PyTorch checkpoint")])
def test_bad_checkpoints_are_one_line_errors(tmp_path, capsys, content, needle):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(content)
    out = tmp_path / "o.safetensors"
    assert main(["convert", str(bad), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1
    assert not out.exists() and os.listdir(tmp_path) == ["bad.pth"]


def test_output_name_must_be_safetensors_or_pth(tmp_path, small_pth, capsys):
    path, _ = small_pth
    assert main(["convert", str(path), str(tmp_path / "o.bin")]) == 2
    assert ".safetensors or .pth" in capsys.readouterr().err and not (tmp_path / "o.bin").exists()
