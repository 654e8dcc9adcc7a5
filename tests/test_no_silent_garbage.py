"""No silent garbage: a model that produces NaN writes nothing and exits 1; weights that are
NaN/Inf, integer or complex, an altered index table and a decompression bomb are refused when
loading; restore() of a train-mode model is the eval-mode result; numeric options are checked."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import mambairv2
from mambairv2.cli.main import main
from mambairv2.errors import CheckpointError, NonFiniteOutputError
from mambairv2.models.checkpoint import save_checkpoint
from mambairv2.utils.imageio import ImageData, encode_image

TINY = dict(embed_dim=12, depths=(1,), num_heads=(2,), d_state=4, inner_rank=4, num_tokens=6)


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return mambairv2.create_model("light", scale=2, **TINY).eval()


def png(path: Path) -> Path:
    px = np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)
    path.write_bytes(encode_image(ImageData(px), "PNG"))
    return path


def test_a_model_producing_nan_writes_nothing_and_exits_1(tmp_path, capsys):
    model = tiny()
    with torch.no_grad():  # finite weights whose output overflows to inf, then inf - inf = NaN
        for p in model.parameters():
            p.fill_(3e38)
    weights = mambairv2.save_safetensors(model, tmp_path / "overflow.safetensors")
    out = tmp_path / "out"
    rc = main(["restore", str(png(tmp_path / "a.png")), "-o", str(out), "--model", str(weights)])
    err = capsys.readouterr().err
    assert rc == 1 and "NaN or infinite" in err
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(NonFiniteOutputError):
        mambairv2.restore(mambairv2.load_model(weights), np.zeros((16, 16, 3), np.uint8))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, value, capsys):
    model = tiny()
    sd = model.state_dict()
    sd["conv_first.weight"][0, 0, 0, 0] = value
    path = save_checkpoint(tmp_path / "bad.pth", sd)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        mambairv2.load_model(path)
    rc = main(["convert", str(path), str(tmp_path / "bad.safetensors")])
    err = capsys.readouterr().err
    assert rc == 2 and "NaN or infinite" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.safetensors").exists()


@pytest.mark.parametrize("dtype", [torch.int32, torch.complex64])
def test_integer_or_complex_weights_are_refused(tmp_path, dtype):
    sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tiny().state_dict().items()}
    path = save_checkpoint(tmp_path / "bad.pth", sd)
    with pytest.raises(CheckpointError, match="not floating point"):
        mambairv2.load_model(path)


def test_an_index_table_out_of_range_is_refused(tmp_path):
    sd = tiny().state_dict()
    key = next(k for k, v in sd.items() if not v.is_floating_point())
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = 10**6
    path = save_checkpoint(tmp_path / "bad.pth", sd)
    with pytest.raises(CheckpointError, match="index table"):
        mambairv2.load_model(path)


def test_a_deflated_checkpoint_declaring_huge_tensors_is_refused_before_decompressing(tmp_path):
    big = torch.zeros(64 * 2**20 // 4)  # 64 MiB of zeros deflate to a few hundred KB
    buffer = io.BytesIO()
    torch.save({"params": {"conv_first.weight": big}}, buffer)
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    assert path.stat().st_size < 2 * 2**20
    with pytest.raises(CheckpointError, match="declares"):
        mambairv2.load_model(path)


def test_restore_of_a_train_mode_model_is_the_eval_result_and_keeps_its_mode():
    model = tiny()
    image = np.random.default_rng(1).integers(0, 256, (16, 16, 3), np.uint8)
    expected = mambairv2.restore(model, image)
    model.train()  # create_model's models are in training mode (Gumbel routing)
    got = [mambairv2.restore(model, image) for _ in range(2)]
    assert all(np.array_equal(g, expected) for g in got)
    assert model.training


@pytest.mark.parametrize("argv, needle", [
    (["degrade", "--task", "sr", "--scale", "0", "--hr-dir", "{hr}", "--out", "{out}"], "--scale must be"),
    (["degrade", "--task", "sr", "--scale", "-2", "--hr-dir", "{hr}", "--out", "{out}"], "--scale must be"),
    (["bench", "--threads", "-1"], "--threads must be"),
    (["export", "--model", "light_x4", "-o", "{out}.onnx", "--tolerance", "nan"], "--tolerance must be"),
])
def test_numeric_options_are_checked(tmp_path, capsys, argv, needle):
    hr = tmp_path / "hr"
    hr.mkdir()
    png(hr / "a.png")
    argv = [a.format(hr=hr, out=tmp_path / "out") for a in argv]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("kw, needle", [
    (dict(device="cuda"), "no CUDA GPU"),
    (dict(dtype="int8"), "unknown dtype"),
])
def test_load_model_device_and_dtype_mistakes_are_sentences(kw, needle):
    if kw.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    from mambairv2.errors import MambaIRv2Error

    with pytest.raises(MambaIRv2Error, match=needle):
        mambairv2.load_model("light_x4", **kw)


def test_load_model_takes_a_dtype_name():
    assert next(mambairv2.load_model("light_x4", dtype="float16").parameters()).dtype == torch.float16


@pytest.mark.parametrize("kw", [dict(tile=True), dict(tile=64.5), dict(tile_overlap=False), dict(tile_overlap=2.5)])
def test_tile_values_of_the_wrong_type_are_refused(kw):
    with pytest.raises(ValueError, match="whole number"):
        mambairv2.restore(tiny(), np.zeros((16, 16, 3), np.uint8), **kw)
