"""``mambairv2.restore``: input kinds, channels, alpha, tiling exactness, self-ensemble, devices."""
from __future__ import annotations

import importlib
import types

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from mambairv2.utils.devices import resolve_device, resolve_dtype
from mambairv2.models.layers.stem import mirror_pad
from mambairv2.inference.api import (
    auto_tile_size,
    edge_ramp,
    restore,
    restore_tensor,
    round_tile,
    tile_starts,
)
from conftest import shared_path

restore_module = importlib.import_module("mambairv2.inference.api")  # the attribute is the function


class LocalNet(nn.Module):
    """Test double of MambaIRv2's interface made of convolutions only (receptive field: 3
    pixels each side). Like the real model it mirror-pads to a multiple of its window."""

    def __init__(self, scale: int = 2, in_chans: int = 3, window: int = 16) -> None:
        super().__init__()
        self.config = types.SimpleNamespace(upscale=scale, in_chans=in_chans, window_size=window)
        self.body = nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(8, 8, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(8, in_chans * scale * scale, 3, padding=1))
        self.scale = scale
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h, w = x.shape[-2:]
        ws = self.config.window_size
        x = mirror_pad(x, -(-h // ws) * ws, -(-w // ws) * ws)
        up = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        y = up + 0.1 * F.pixel_shuffle(self.body(x), self.scale)
        return y[..., : h * self.scale, : w * self.scale]


class Upsampler(nn.Module):
    """Nearest-neighbour upscaling: equivariant to flips, local, output = input values."""

    def __init__(self, scale: int = 2, in_chans: int = 3) -> None:
        super().__init__()
        self.config = types.SimpleNamespace(upscale=scale, in_chans=in_chans, window_size=8)
        self.dummy = nn.Parameter(torch.zeros(()))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="nearest") + self.dummy.to(x.dtype)


def _image(h: int, w: int, c: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, c, h, w, generator=g)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


# -- tiling --------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1, 2, 3])
@pytest.mark.parametrize("size", [(70, 53), (16, 100), (33, 33)])
def test_tiled_equals_whole_for_a_local_model(scale, size):
    model = LocalNet(scale).eval()
    x = _image(*size)
    whole = restore_tensor(model, x)
    tiled = restore_tensor(model, x, tile=32, tile_overlap=16)
    assert tiled.shape == whole.shape == (1, 3, size[0] * scale, size[1] * scale)
    assert (tiled - whole).abs().max() < 1e-6


def test_overlap_below_the_receptive_field_is_not_exact():
    """Guards the test above: with too little overlap the tiles really do differ."""
    model = LocalNet(2).eval()
    x = _image(70, 53)
    assert (restore_tensor(model, x, tile=32, tile_overlap=4) - restore_tensor(model, x)).abs().max() > 1e-4


def test_blend_weights_are_a_partition_of_unity():
    ramp = 24.0
    f = edge_ramp(24, ramp, lead=True, trail=False)
    g = edge_ramp(24, ramp, lead=False, trail=True)
    assert torch.allclose(f + g, torch.ones(24, dtype=torch.float64))
    assert f[: 24 // 4].abs().max() == 0 and (f[-24 // 4:] == 1).all()
    assert (torch.diff(f) >= 0).all()


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 8), (32, 32, 8), (10, 32, 8), (33, 32, 16), (1000, 256, 32)])
def test_tile_starts_cover_with_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap, align=16)
    assert starts[0] == 0 and starts == sorted(starts)
    assert min(tile, length) + starts[-1] == length
    for a, b in zip(starts, starts[1:]):
        assert a + tile - b >= overlap


def test_tile_size_rounds_to_the_window():
    assert round_tile(250, 16) == 256 and round_tile(3, 16) == 16 and round_tile(100, 1) == 100


def test_mirror_pad_matches_the_network():
    from mambairv2.models.mambairv2 import network

    x = _image(5, 3)
    for h, w in [(16, 16), (5, 19), (40, 3)]:
        assert torch.equal(mirror_pad(x, h, w), network.mirror_pad(x, h, w))


def test_tile_progress_and_rounding_do_not_change_the_result():
    model = LocalNet(2).eval()
    x = _image(40, 40)
    a = restore_tensor(model, x, tile=30, tile_overlap=16)  # rounded to 32
    b = restore_tensor(model, x, tile=32, tile_overlap=16, progress=True)
    assert torch.equal(a, b)


def test_bad_tile_arguments():
    model = LocalNet(2).eval()
    with pytest.raises(ValueError, match="overlap"):
        restore_tensor(model, _image(40, 40), tile=32, tile_overlap=32)
    with pytest.raises(ValueError, match="positive"):
        restore_tensor(model, _image(40, 40), tile=0)


def test_auto_tile_from_free_memory():
    model = LocalNet(2).eval()
    assert auto_tile_size(model, 64, 64, free_bytes=1 << 40) is None
    tile = auto_tile_size(model, 4096, 4096, free_bytes=1 << 30)
    assert tile is not None and tile % 16 == 0 and 16 <= tile < 4096
    per_pixel = restore_module.estimate_bytes_per_pixel(model)
    assert tile * tile * per_pixel <= (1 << 30) * restore_module._AUTO_MEMORY_FRACTION
    x = _image(40, 40)
    assert torch.equal(restore_tensor(model, x, tile="auto"), restore_tensor(model, x))


# -- channels, alpha, kinds --------------------------------------------------------------------------
def test_one_pixel_image():
    model = LocalNet(2).eval()
    out = restore(model, np.full((1, 1, 3), 100, np.uint8))
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8


def test_gray_through_a_colour_model_is_the_channel_mean():
    model = LocalNet(2).eval()
    gray = _image(20, 24, c=1)
    out = restore_tensor(model, gray)
    with torch.no_grad():
        ref = model(gray.expand(1, 3, 20, 24)).mean(1, keepdim=True).clamp(0, 1)
    assert out.shape == (1, 1, 40, 48)
    assert torch.allclose(out, ref, atol=1e-6)


def test_colour_through_a_gray_model_is_restored_per_channel():
    model = LocalNet(1, in_chans=1).eval()
    rgb = _image(20, 24)
    out = restore_tensor(model, rgb)
    with torch.no_grad():
        ref = torch.cat([model(rgb[:, i:i + 1]) for i in range(3)], 1).clamp(0, 1)
    assert torch.allclose(out, ref, atol=1e-6)


def test_alpha_is_carried_and_upscaled():
    model = Upsampler(2)
    rgba = _image(10, 12, c=4)
    out = restore_tensor(model, rgba)
    assert out.shape == (1, 4, 20, 24)
    assert torch.allclose(out[:, :3], F.interpolate(rgba[:, :3], scale_factor=2, mode="nearest"))
    ref_alpha = F.interpolate(rgba[:, 3:], size=(20, 24), mode="bicubic", align_corners=False).clamp(0, 1)
    assert torch.allclose(out[:, 3:], ref_alpha)
    # a model that does not upscale leaves alpha untouched
    same = restore_tensor(Upsampler(1), rgba)
    assert torch.equal(same[:, 3:], rgba[:, 3:])


@pytest.mark.parametrize("shape,dtype", [((9, 7), np.uint8), ((9, 7, 1), np.uint8), ((9, 7, 2), np.uint8),
                                         ((9, 7, 3), np.uint16), ((9, 7, 4), np.uint8),
                                         ((9, 7, 3), np.float32), ((9, 7), np.float64)])
def test_numpy_in_numpy_out(shape, dtype):
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.floating):
        arr = rng.random(shape).astype(dtype)
    else:
        arr = rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    out = restore(Upsampler(2), arr)
    assert out.dtype == arr.dtype
    assert out.shape == (18, 14) + tuple(shape[2:])
    colour = out if out.ndim == 2 else out[..., : (1 if shape[-1] in (1, 2) or len(shape) == 2 else 3)]
    src = arr if arr.ndim == 2 else arr[..., : colour.shape[-1]]
    np.testing.assert_allclose(colour, np.repeat(np.repeat(src, 2, 0), 2, 1), atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "I;16", "CMYK"])
def test_pil_in_pil_out(mode):
    rng = np.random.default_rng(1)
    base = Image.fromarray(rng.integers(0, 256, (6, 5, 3), np.uint8))
    img = Image.fromarray(rng.integers(0, 65536, (6, 5), np.uint16)) if mode == "I;16" else base.convert(mode)
    out = restore(Upsampler(2), img)
    assert isinstance(out, Image.Image) and out.size == (10, 12)
    expected_mode = {"P": "RGB", "CMYK": "RGB"}.get(mode, mode)
    assert out.mode == expected_mode
    src = img.convert(expected_mode) if mode in ("P", "CMYK") else img
    ref = src.resize((10, 12), Image.NEAREST)
    if "A" not in mode:
        np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_tensor_in_tensor_out(dtype):
    x = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    x = (x * 255).round().to(dtype) if dtype == torch.uint8 else x.to(dtype)
    out = restore(Upsampler(2), x)
    assert out.dtype == dtype and out.shape == (2, 3, 12, 10)
    assert torch.equal(out, F.interpolate(x.double(), scale_factor=2, mode="nearest").to(dtype))
    single = restore(Upsampler(2), x[0])
    assert single.shape == (3, 12, 10) and torch.equal(single, out[0])


def test_wrong_inputs():
    with pytest.raises(TypeError):
        restore(Upsampler(2), [[1, 2], [3, 4]])
    with pytest.raises(ValueError):
        restore(Upsampler(2), np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(TypeError):
        restore(Upsampler(2), np.zeros((4, 4, 3), np.int32))


# -- self-ensemble, dtypes, devices ----------------------------------------------------------------
def test_self_ensemble_runs_eight_passes_per_tile():
    model = LocalNet(2).eval()
    x = _image(24, 24)
    plain = restore_tensor(model, x)
    model.calls = 0
    ens = restore_tensor(model, x, self_ensemble=True)
    assert model.calls == 8
    assert ens.shape == plain.shape and not torch.equal(ens, plain)
    model.calls = 0
    restore_tensor(model, _image(40, 40), tile=32, tile_overlap=16, self_ensemble=True)
    assert model.calls == 8 * 4
    up = Upsampler(2)  # equivariant: the ensemble changes nothing
    assert torch.allclose(restore_tensor(up, x, self_ensemble=True), restore_tensor(up, x), atol=1e-6)


def test_low_precision_models_run_and_stay_close():
    model = LocalNet(2).eval()
    x = _image(20, 20)
    ref = restore_tensor(model, x)
    half = LocalNet(2).eval()
    half.load_state_dict(model.state_dict())
    half.to(torch.bfloat16)
    out = restore_tensor(half, x)
    assert out.dtype == torch.float32 and (out - ref).abs().max() < 0.05


def test_device_and_dtype_names():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
    assert resolve_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ValueError):
        resolve_dtype("int8")


# -- the real network -------------------------------------------------------------------------------
def test_real_light_model_tiles_without_visible_seams():
    from mambairv2.models import load_model

    model = load_model(shared_path("golden", "light_x2.pth"))
    g = torch.Generator().manual_seed(0)
    x = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(48, 40), mode="bicubic").clamp(0, 1)
    whole = restore_tensor(model, x)
    tiled = restore_tensor(model, x, tile=32, tile_overlap=16)
    assert tiled.shape == whole.shape == (1, 3, 96, 80)
    assert _psnr(tiled, whole) > 45
