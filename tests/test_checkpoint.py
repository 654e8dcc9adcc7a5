"""Checkpoint reading: formats, preference order, round trips, and clear refusals."""
import os
import pickle

import pytest
import torch

import mambairv2
from mambairv2.models import CheckpointError, load_model, save_checkpoint, save_safetensors
from mambairv2.cli.main import main

from conftest import shared_path

TINY = dict(embed_dim=12, depths=(2,), num_heads=(2,), d_state=4, inner_rank=4, num_tokens=6)


def tiny(**kw):
    return mambairv2.create_model("light", scale=2, **{**TINY, **kw}).eval()


def test_params_ema_preferred_over_params(tmp_path):
    a, b = tiny(), tiny()
    torch.manual_seed(1)
    b = tiny()
    save_checkpoint(tmp_path / "m.pth", params=a.state_dict(), params_ema=b.state_dict())
    loaded = load_model(tmp_path / "m.pth")
    torch.testing.assert_close(loaded.conv_first.weight, b.conv_first.weight)


@pytest.mark.parametrize("wrap", ["params", "bare", "module"])
def test_layouts_load(tmp_path, wrap):
    m = tiny()
    sd = m.state_dict()
    obj = {"params": sd} if wrap == "params" else sd
    if wrap == "module":
        obj = {f"module.{k}": v for k, v in sd.items()}
    torch.save(obj, tmp_path / "m.pth")
    x = torch.rand(1, 3, 10, 13)
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "m.pth")(x), m(x))


def test_safetensors_round_trip_keeps_config(tmp_path):
    m = tiny(img_range=255.0)  # not detectable from tensors: must come from the header
    save_safetensors(m, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.config == m.config
    x = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m(x))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def _bad_files(tmp_path):
    files = {}
    (tmp_path / "notes.pth").write_text("just some text\n")
    files["notes.pth"] = "neither a zip archive nor a pickle"
    data = shared_path("golden", "light_x2.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    files["truncated.pth"] = "truncated or corrupt"
    torch.save({"params": torch.nn.Conv2d(3, 8, 3).state_dict()}, tmp_path / "other.pth")
    files["other.pth"] = "not a MambaIRv2 state dict"
    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"params": _Payload()}, protocol=2))
    files["evil.pth"] = "refused to unpickle"
    (tmp_path / "empty.pth").write_bytes(b"")
    files["empty.pth"] = "empty file"
    m = tiny()
    sd = m.state_dict()
    sd["conv_first.weight"] = sd["conv_first.weight"][:, :, :2]
    torch.save({"params": sd}, tmp_path / "mismatch.pth")
    files["mismatch.pth"] = "conv_first.weight"
    return files


def test_bad_checkpoints_refused_with_one_line(tmp_path, capsys):
    for name, reason in _bad_files(tmp_path).items():
        with pytest.raises(CheckpointError, match=reason):
            load_model(tmp_path / name)
        code = main(["info", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert code != 0, name
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert reason in err and "Traceback" not in err


def test_info_cli_on_golden(capsys):
    assert main(["info", str(shared_path("golden", "light_x4.pth"))]) == 0
    out = capsys.readouterr().out
    assert "variant:  light" in out and "scale:    x4" in out and "789,680" in out and "task:     sr" in out
