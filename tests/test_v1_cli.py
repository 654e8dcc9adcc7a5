"""MambaIR (v1) checkpoints through the commands: restore (a folder with bad inputs), convert
(round trip through .safetensors), info (detected variant; --variants lists the v1 names)."""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from PIL import Image

from mambairv2 import create_model, load_model
from mambairv2.utils import imageio
from mambairv2.cli.main import main
from mambairv2.models.mambair import V1_VARIANTS, MambaIR

from conftest import shared_path


def test_restore_folder_with_bad_inputs(tmp_path, capsys):
    weights = shared_path("golden_v1", "light_x2.pth")
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), np.uint8)).save(src / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (7, 9), np.uint8)).save(src / "gray.png")
    Image.new("RGB", (1, 1), (120, 30, 200)).save(src / "one.png")
    (src / "empty.png").write_bytes(b"")
    (src / "notes.jpg").write_text("not an image, just text\n")

    rc = main(["restore", str(src), "-o", str(out), "--weights", str(weights)])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    assert sorted(os.listdir(out)) == ["gray.png", "one.png", "rgb.png"]
    for name in ("rgb.png", "gray.png", "one.png"):
        a, b = imageio.read_image(src / name), imageio.read_image(out / name)
        assert b.pixels.shape == (2 * a.pixels.shape[0], 2 * a.pixels.shape[1], a.pixels.shape[2])
    failed = [line for line in err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 2 and any("empty.png" in f for f in failed) and any("notes.jpg" in f for f in failed)
    assert "restored 3, skipped 0, failed 2" in err
    assert "tile: 200 px, overlap 20" in err  # v1: the authors' test-time tiling by default

    # the written image is the model's output, rounded
    model = load_model(weights)
    x = torch.from_numpy(np.asarray(Image.open(src / "rgb.png"), np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = model(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    got = np.asarray(Image.open(out / "rgb.png"), np.float32) / 255
    assert np.abs(got - y).max() <= 1 / 255 + 1e-6


def test_convert_round_trip_and_info(tmp_path, capsys):
    src = shared_path("golden_v1", "jpeg_gray.pth")
    out = tmp_path / "jpeg.safetensors"
    assert main(["convert", str(src), str(out)]) == 0
    a, b = load_model(src), load_model(out)
    assert isinstance(b, MambaIR) and a.config == b.config
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["arch"], d["task"], d["scale"], d["in_chans"], d["params"]) == ("MambaIR", "jpeg", 1, 1, 968935)
    assert d["variant"] == "custom"  # one group instead of six: not the released configuration


def test_info_names_released_variant_and_lists_v1_names(tmp_path, capsys):
    model = create_model("mambair-light", scale=3, depths=(1,))
    path = tmp_path / "m.pth"
    torch.save({"params_ema": create_model("mambair-light", scale=3).state_dict()}, path)
    assert main(["info", str(path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["variant"], d["scale"], d["params"]) == ("mambair-light", 3, 913131)
    assert model.config.depths == (1,)
    assert main(["info", "--variants", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name in V1_VARIANTS:
        assert rows[name]["arch"] == "MambaIR"
    assert rows["mambair"]["params"] == 20569575 and rows["mambair-light"]["params"] == 924492
