"""Models loaded and run under ``torch.inference_mode()``, as ComfyUI runs every node (the
loader included, so the parameters themselves are inference tensors): ``restore``, the benchmark
protocol's restorer and the app's upload path work and compute what a normally loaded model
computes (the spandrel descriptor of every golden case: tests/test_spandrel.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import shared_path

import mambairv2
from mambairv2 import load_model


def _load_under_inference_mode(folder: str, case: str) -> torch.nn.Module:
    with torch.inference_mode():
        model = load_model(shared_path(folder, f"{case}.pth"))
    assert all(p.is_inference() for p in model.parameters())
    return model


@pytest.mark.parametrize("folder,case", [("golden", "light_x2"), ("golden_v1", "light_x2")])
def test_restore_of_a_model_loaded_under_inference_mode(folder, case):
    """Whole image and tiles, inside and outside inference mode, with alpha; the result is a plain
    tensor that can be changed in place."""
    model = _load_under_inference_mode(folder, case)
    plain = load_model(shared_path(folder, f"{case}.pth"))
    rgba = torch.rand(1, 4, 30, 41)
    expected = mambairv2.restore(plain, rgba)
    for tile in (None, 16):
        ref = expected if tile is None else mambairv2.restore(plain, rgba, tile=tile, tile_overlap=8)
        got = mambairv2.restore(model, rgba, tile=tile, tile_overlap=8)
        assert not got.is_inference()
        got.mul_(1.0)  # in place outside inference mode: refused for inference tensors
        assert (got - ref).abs().max().item() <= 1e-6
        with torch.inference_mode():
            inside = mambairv2.restore(model, rgba, tile=tile, tile_overlap=8)
        assert (inside - ref).abs().max().item() <= 1e-6
    # and a normal model used under inference mode first still trains afterwards (no cached
    # inference tensor leaks into autograd)
    with torch.inference_mode():
        plain(rgba[:, :3])
    x = rgba[:, :3].clone().requires_grad_(True)
    plain(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_protocol_and_app_with_a_model_loaded_under_inference_mode(tmp_path):
    from mambairv2.app.jobs import Options, restore_upload
    from mambairv2.protocol.evaluate import model_restorer
    from mambairv2.utils.imageio import read_image

    model = _load_under_inference_mode("golden", "light_x2")
    plain = load_model(shared_path("golden", "light_x2.pth"))
    lr = np.random.default_rng(0).random((26, 31, 3), dtype=np.float32)
    for protocol in ("whole", "official"):
        got = model_restorer(model, protocol=protocol)(lr)
        expected = model_restorer(plain, protocol=protocol)(lr)
        assert np.abs(got - expected).max() <= 1e-6, protocol

    png = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray((lr * 255).round().astype(np.uint8)).save(png)
    image = read_image(png)
    options = Options()
    out = restore_upload(model, image, "in.png", tmp_path / "out", options)
    ref = restore_upload(plain, image, "in.png", tmp_path / "ref", options)
    assert np.array_equal(np.asarray(Image.open(out.download)), np.asarray(Image.open(ref.download)))
