"""The app's work without a browser or Gradio: upload limits, the model store (safe loading,
names instead of paths), downloads equal to ``mambairv2 restore``, and the simulated
degradation scored with the protocol."""
from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mambairv2
from mambairv2.app.jobs import Limits, Options, UploadError, read_upload, restore_upload, simulate_upload
from mambairv2.app.models import ModelStore, model_info
from mambairv2.models import CheckpointError
from mambairv2.utils.imageio import encode_image, ImageData

from conftest import REPO, shared_path

TINY = dict(embed_dim=12, depths=(1,), num_heads=(2,), d_state=4, inner_rank=4, num_tokens=6)


def tiny(scale: int = 2, name: str = "light", **kw) -> torch.nn.Module:
    return mambairv2.create_model(name, scale=scale, **{**TINY, **kw}).eval()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "mambairv2", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def png_file(path: Path, pixels: np.ndarray) -> Path:
    path.write_bytes(encode_image(ImageData(pixels), "PNG"))
    return path


def test_upload_limits_give_one_line_reasons(tmp_path):
    rng = np.random.default_rng(0)
    noise = png_file(tmp_path / "noise.png", rng.integers(0, 256, (100, 100, 3), dtype=np.uint8))
    size = noise.stat().st_size
    with pytest.raises(UploadError, match=r"noise\.png: the file is .* over this page's upload limit"):
        read_upload(noise, "noise.png", Limits(max_upload_bytes=size - 1))
    with pytest.raises(UploadError, match=r"100×100 is 10,000 pixels, over this page's limit of 9,999"):
        read_upload(noise, "noise.png", Limits(max_pixels=9999))
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(UploadError, match=r"notes\.txt: cannot be used: not an image"):
        read_upload(text, "notes.txt", Limits())
    image = read_upload(noise, "noise.png", Limits(max_upload_bytes=size, max_pixels=10_000))
    assert image.pixels.shape == (100, 100, 3)


def test_store_names_hide_paths_and_loads_folder_checkpoints(tmp_path):
    mambairv2.save_safetensors(tiny(3), tmp_path / "mine_x3.safetensors")
    (tmp_path / "readme.txt").write_text("ignored")
    store = ModelStore(tmp_path)
    names = store.names()
    assert "folder: mine_x3.safetensors" in names
    assert all(str(tmp_path) not in n for n in names)
    if "bundled: default" in names:
        assert names[0] == "bundled: default"
    info = model_info(store.get("folder: mine_x3.safetensors"))
    assert (info.task, info.scale, info.variant) == ("sr", 3, "custom")
    assert store.get("folder: mine_x3.safetensors") is store.get("folder: mine_x3.safetensors")
    with pytest.raises(KeyError):
        store.get("/etc/passwd")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo owned > /dev/null",))


def test_uploaded_checkpoint_is_validated_by_the_safe_loader(tmp_path):
    store = ModelStore(None)
    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps({"params": _Evil()}, protocol=2))
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        store.add_upload(bad, "evil.pth")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        store.add_upload(junk, "junk.safetensors")
    assert not any(n.startswith("upload:") for n in store.names())
    good = tmp_path / "dn.pth"
    torch.save({"params_ema": tiny(1, "denoise").state_dict()}, good)
    name = store.add_upload(good, "dn.pth")
    assert name.startswith("upload: dn.pth (") and name in store.names()
    assert model_info(store.get(name)).task == "denoise"


@pytest.mark.parametrize("channels,dtype", [(4, np.uint16), (2, np.uint8)])
def test_download_equals_cli_restore_bytes(tmp_path, channels, dtype):
    """16-bit RGBA and 8-bit gray+alpha: the page's PNG is byte for byte the CLI's."""
    weights = tmp_path / "w" / "m.safetensors"
    weights.parent.mkdir()
    mambairv2.save_safetensors(tiny(2), weights)
    rng = np.random.default_rng(1)
    peak = np.iinfo(dtype).max
    src = png_file(tmp_path / "in.png", rng.integers(0, peak + 1, (21, 18, channels), dtype=dtype))
    store = ModelStore(weights.parent)
    model = store.get("folder: m.safetensors")
    out_dir = tmp_path / "page"
    out_dir.mkdir()
    done = restore_upload(model, read_upload(src, "in.png", Limits()), "in.png", out_dir, Options(tile="auto"))
    result = cli("restore", str(src), "-o", str(tmp_path / "cli"), "--weights", str(weights),
                 "--format", "png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cli_bytes = (tmp_path / "cli" / "in.png").read_bytes()
    assert done.download.read_bytes() == cli_bytes
    with Image.open(io.BytesIO(cli_bytes)) as img:
        assert img.size == (36, 42)
    assert done.before.size == done.after.size == (36, 42)
    assert ("16-bit" if dtype == np.uint16 else "8-bit") in done.summary and "alpha kept" in done.summary


def test_tiles_report_progress_through_tqdm(tmp_path, capsys):
    """The page's progress bar follows restore's tqdm bar over the tiles."""
    model = tiny(2)
    rng = np.random.default_rng(2)
    src = png_file(tmp_path / "t.png", rng.integers(0, 256, (70, 90, 3), dtype=np.uint8))
    image = read_upload(src, "t.png", Limits())
    capsys.readouterr()
    done = restore_upload(model, image, "t.png", tmp_path, Options(tile=48))
    assert "tiles" in capsys.readouterr().err
    with Image.open(done.download) as img:
        assert img.size == (180, 140)
    with pytest.raises(ValueError, match="overlap"):
        restore_upload(model, image, "t.png", tmp_path, Options(tile=16))


@pytest.mark.parametrize("name", ["light", "mambair-light"])
def test_every_tile_the_slider_offers_is_one_the_model_takes(tmp_path, name):
    """The slider offered 16 and 32, which the default 32-px overlap then refused: a tile below
    the model's smallest is raised to it, and the status says so."""
    from mambairv2.app.jobs import page_tile
    from mambairv2.app.page import TILE_SLIDER
    from mambairv2.defaults import DEFAULT_TILE_OVERLAP
    from mambairv2.inference.api import check_tile

    model = tiny(2, name) if name == "light" else mambairv2.create_model(name, scale=2).eval()
    low, high, step = TILE_SLIDER
    assert page_tile(model, low) == ("auto", None)
    for value in range(low + step, high + 1, step):
        tile, note = page_tile(model, value)
        check_tile(tile, DEFAULT_TILE_OVERLAP, getattr(model.config, "window_size", 1))  # raises if refused
        assert (note is None) == (tile == value), (value, tile, note)
    tile, note = page_tile(model, 16)
    assert "raised to" in note and str(tile) in note
    if name == "light":  # and the restore itself takes it
        image = read_upload(png_file(tmp_path / "t.png", np.zeros((40, 40, 3), np.uint8)), "t.png", Limits())
        assert restore_upload(model, image, "t.png", tmp_path, Options(tile=tile)).after.size == (80, 80)


def test_simulated_sr_is_scored_with_the_protocol_and_beats_bicubic(tmp_path):
    from mambairv2.models.catalog import bundled_models
    from mambairv2.protocol import metrics
    from mambairv2.protocol.degrade import sr_input
    from mambairv2.protocol.evaluate import TaskSpec, read_clean
    from mambairv2.inference.api import restore

    if "default" not in bundled_models():
        pytest.skip("no bundled default model in this install")
    hr = shared_path("data", "sr", "Set5", "HR", "bird.png")
    model = ModelStore().get("bundled: default")
    done = simulate_upload(model, hr, "bird.png", tmp_path, Options(simulate=True))
    clean = read_clean(hr, TaskSpec("sr", scale=4))
    lr = sr_input(clean, 4)
    # independent of the page: the same model on the protocol's LR, scored by the metrics module
    out = metrics.to_uint8(restore(model, lr.astype(np.float32) / 255))
    target = clean[: 288 // 4 * 4, : 288 // 4 * 4]
    assert done.psnr == pytest.approx(metrics.psnr(out, target, crop_border=4), abs=1e-9)
    assert done.psnr > done.baseline_psnr + 0.5 and done.ssim > done.baseline_ssim
    assert "PSNR" in done.summary and done.download.suffix == ".png"


def test_simulated_denoise_uses_the_noise_level(tmp_path):
    model = tiny(1, "denoise")
    rng = np.random.default_rng(3)
    src = png_file(tmp_path / "c.png", rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    low = simulate_upload(model, src, "c.png", tmp_path, Options(simulate=True, sigma=5))
    high = simulate_upload(model, src, "c.png", tmp_path, Options(simulate=True, sigma=50))
    assert low.baseline_psnr > high.baseline_psnr + 10  # σ 5 vs 50: ~20 dB apart
    assert "sigma 5" in low.summary and "sigma 50" in high.summary


def test_loader_messages_name_models_not_paths(tmp_path):
    (tmp_path / "broken.pth").write_bytes(b"PK\x03\x04 truncated")
    store = ModelStore(tmp_path)
    with pytest.raises(CheckpointError) as err:
        store.get("folder: broken.pth")
    assert str(tmp_path) in str(err.value)
    shown = store.without_paths(str(err.value))
    assert str(tmp_path) not in shown and "folder: broken.pth" in shown
