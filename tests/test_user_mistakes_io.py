"""User mistakes around files, caches and names, each answered in one line that names the file
or option and says what to do (issue 26): stored configurations of the wrong JSON type, cache
entries that are folders or garbage, a damaged cached download (replaced in one run), control
characters in file names, ``export --opset 999``, ``img_range`` kept by ``.pth`` files, the
analyses' memory at any size, and the numeric-option siblings."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import torch

import mambairv2
from conftest import REPO, shared_path
from mambairv2.cli.main import main
from mambairv2.models.checkpoint import CONFIG_METADATA_KEY, save_checkpoint
from mambairv2.utils.imageio import ImageData, encode_image

TINY = dict(embed_dim=12, depths=(1,), num_heads=(2,), d_state=4, inner_rank=4, num_tokens=6)


def tiny(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return mambairv2.create_model("light", scale=2, **{**TINY, **overrides}).eval()


def png(path: Path, size: int = 16) -> Path:
    px = np.random.default_rng(0).integers(0, 256, (size, size, 3), np.uint8)
    path.write_bytes(encode_image(ImageData(px), "PNG"))
    return path


def run(argv: List[str], capsys) -> Tuple[int, str, str]:
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "internal error" not in err and "Traceback" not in err, err
    return lines[0]


# -- 1. stored configurations of the wrong JSON type -----------------------------------------
_CONFIG = tiny().config.to_dict()
WRONG_CONFIGS = {
    "a list": ([1, 2], "is a JSON list, not an object"),
    "a number": (5, "is a JSON number, not an object"),
    "a string": ("light", "is a JSON string, not an object"),
    "null": (None, "is a JSON null, not an object"),
    "embed_dim text": ({**_CONFIG, "embed_dim": "12"}, "embed_dim is \"12\", not an integer"),
    "embed_dim boolean": ({**_CONFIG, "embed_dim": True}, "embed_dim is true, not an integer"),
    "embed_dim fraction": ({**_CONFIG, "embed_dim": 12.5}, "embed_dim is 12.5, not an integer"),
    "depths a number": ({**_CONFIG, "depths": 1}, "depths is 1, not a list of integers"),
    "depths a string": ({**_CONFIG, "depths": "1"}, "depths is \"1\", not a list of integers"),
    "upscale text": ({**_CONFIG, "upscale": "2"}, "upscale is \"2\", not an integer"),
    "window null": ({**_CONFIG, "window_size": None}, "window_size is null, not an integer"),
    "img_range text": ({**_CONFIG, "img_range": "x"}, "img_range is \"x\", not a number"),
    "hidden_dim text": ({**_CONFIG, "hidden_dim": "x"}, "hidden_dim is \"x\", not an integer or null"),
    "arch a list": ({**_CONFIG, "arch": [1]}, "arch is [1], not a name"),
}


@pytest.mark.parametrize("kind", [".safetensors", ".pth"])
@pytest.mark.parametrize("case", sorted(WRONG_CONFIGS))
def test_a_stored_configuration_of_the_wrong_type_is_one_line(tmp_path, capsys, case, kind):
    from safetensors.torch import save_file

    stored, needle = WRONG_CONFIGS[case]
    model = tiny()
    path = tmp_path / f"model{kind}"
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if kind == ".safetensors":
        save_file(sd, str(path), metadata={CONFIG_METADATA_KEY: json.dumps(stored), "format": "pt"})
    else:
        torch.save({"params": sd, CONFIG_METADATA_KEY: stored}, path)
    rc, _, err = run(["info", str(path)], capsys)
    line = one_line(err)
    assert rc == 2 and str(path) in line and needle in line and "mambairv2 convert" in line, line
    with pytest.raises(mambairv2.CheckpointError, match="stored configuration"):
        mambairv2.load_model(path)


# -- 6. img_range kept by .pth files -----------------------------------------------------------
def test_img_range_survives_convert_to_pth_and_back(tmp_path, capsys):
    """``convert`` to ``.pth`` stores the configuration beside ``params``: ``img_range`` (which no
    tensor holds) comes back, and the file still loads the authors' way (``params`` only)."""
    model = tiny(img_range=255.0)
    source = tmp_path / "m.safetensors"
    mambairv2.save_safetensors(model, source)
    out = tmp_path / "m.pth"
    rc, _, err = run(["convert", str(source), str(out)], capsys)
    assert rc == 0 and out.exists(), err
    loaded = mambairv2.load_model(out)
    assert loaded.config == model.config and loaded.config.img_range == 255.0
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # BasicSR's loader reads params (params_ema first) and ignores other entries
    raw = torch.load(out, map_location="cpu", weights_only=True)
    fresh = tiny(img_range=255.0)
    fresh.load_state_dict(raw["params"], strict=True)
    # without a stored configuration the tensors alone give the released value 1.0
    bare = tmp_path / "bare.pth"
    save_checkpoint(bare, model.state_dict())
    assert mambairv2.load_model(bare).config.img_range == 1.0
    save_checkpoint(bare, model.state_dict(), config=model.config)
    assert mambairv2.load_model(bare).config.img_range == 255.0


# -- 4. control characters in file names --------------------------------------------------------
NASTY = "a\nrestored: forged.png"


@pytest.fixture()
def weights(tmp_path) -> Path:
    path = tmp_path / "tiny.safetensors"
    mambairv2.save_safetensors(tiny(), path)
    return path


def test_a_newline_in_a_file_name_never_splits_a_line(tmp_path, capsys, weights):
    from mambairv2.utils.text import printable

    assert printable("a\nb\rc\td\x1b[2Je\u2028f") == "a\\nb\\rc\\td\\x1b[2Je\\u2028f"
    hr = tmp_path / "hr"
    hr.mkdir()
    png(hr / f"{NASTY}.png")
    png(hr / "b.png")
    (hr / "c\rnot.png").write_bytes(b"no image")
    rc, out, err = run(["restore", str(hr), "-o", str(tmp_path / "out"), "--model", str(weights)], capsys)
    lines = out.splitlines()
    assert rc == 1 and len(lines) == 2 and all(ln.startswith("restored: ") for ln in lines), out
    assert "a\\nrestored: forged.png" in lines[0]
    failed = [ln for ln in err.splitlines() if ln.startswith("failed: ")]
    assert len(failed) == 1 and "c\\rnot.png" in failed[0] and "\r" not in err, err

    rc, out, err = run(["degrade", "--hr-dir", str(hr), "--task", "sr", "--scale", "2",
                        "--out", str(tmp_path / "deg")], capsys)
    assert rc == 1 and "\r" not in err and len([ln for ln in err.splitlines() if "c\\rnot.png" in ln]) == 1, err
    assert (tmp_path / "deg" / f"{NASTY}x2.png").exists()

    # evaluate: one table row per dataset, whatever its folder is called
    (hr / "c\rnot.png").unlink()
    sets = tmp_path / "sets"
    named = sets / "Set\nforged  9  99.99  1.0000"
    named.mkdir(parents=True)
    png(named / "a.png", size=48)
    rc, out, err = run(["evaluate", "--hr-dir", str(named), "--task", "sr", "--model", str(weights)], capsys)
    rows = out.splitlines()
    assert rc == 0 and len(rows) == 3 and rows[2].startswith("Set\\nforged"), out
    # an error naming such a file is one line too (an image too small for SSIM after the crop)
    small = tmp_path / "small"
    small.mkdir()
    png(small / f"{NASTY}.png", size=8)
    rc, _, err = run(["evaluate", "--hr-dir", str(small), "--task", "sr", "--model", str(weights)], capsys)
    assert rc == 2 and "a\\nrestored: forged.png" in one_line(err) and "evaluate larger images" in err, err


# -- 5. export --opset 999 ------------------------------------------------------------------------
def test_export_with_an_impossible_opset_is_one_line(tmp_path):
    pytest.importorskip("onnx", reason="onnx is needed for export (pip install 'mambairv2[onnx]')")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = tmp_path / "m.onnx"
    r = subprocess.run([sys.executable, "-m", "mambairv2", "export", "--model", "light_x4", "-o", str(out),
                        "--opset", "999"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and r.stdout == "" and not out.exists()
    line = one_line(r.stderr)
    assert "--opset must be between" in line and "999" in line, line


# -- 9. siblings ----------------------------------------------------------------------------------
def test_bench_json_into_a_folder_is_refused_before_the_benchmark(tmp_path, capsys, monkeypatch):
    import mambairv2.analysis.measure as measure

    folder = tmp_path / "report.json"
    folder.mkdir()
    monkeypatch.setattr(measure, "sgemm_gflops", lambda *a, **k: pytest.fail("the benchmark started"))
    rc, out, err = run(["bench", "--json", str(folder)], capsys)
    assert rc == 2 and out == "" and "is a folder" in one_line(err) and str(folder) in err


def test_load_model_device_and_dtype_through_the_cli(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    image = png(tmp_path / "a.png")
    rc, _, err = run(["restore", str(image), "-o", str(tmp_path / "o"), "--model", "light_x4",
                      "--device", "cuda"], capsys)
    assert rc == 2 and "CUDA" in one_line(err), err
