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
    monkeypatch.setattr(measure, "roofs", lambda *a, **k: pytest.fail("the benchmark started"))
    rc, out, err = run(["bench", "--json", str(folder)], capsys)
    assert rc == 2 and out == "" and "is a folder" in one_line(err) and str(folder) in err


def test_load_model_device_and_dtype_through_the_cli(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    image = png(tmp_path / "a.png")
    rc, _, err = run(["restore", str(image), "-o", str(tmp_path / "o"), "--model", "light_x4",
                      "--device", "cuda"], capsys)
    assert rc == 2 and "CUDA" in one_line(err), err


# -- 2, 3. the caches ---------------------------------------------------------------------------
hub_standin = pytest.importorskip("hub_standin")
REPO_ID = "cguoh/MambaIR"
NAME = "mambairv2_lightSR_x2"
REPO_FILE = f"MambaIRv2_ckpt/{NAME}.pth"


def cli(tmp: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess:
    """The command line with its own caches under ``tmp`` (no hub settings, no proxy)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE")) and not k.lower().endswith("_proxy")}
    env.update({"PYTHONPATH": str(REPO / "src"), "HF_HOME": str(tmp / "hf"), "MAMBAIRV2_CACHE_DIR": str(tmp / "mc"),
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", "OMP_NUM_THREADS": "1", **env_extra})
    return subprocess.run([sys.executable, "-m", "mambairv2", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture()
def served():
    pytest.importorskip("huggingface_hub", reason="huggingface_hub is needed (pip install 'mambairv2[hub]')")
    data = shared_path("golden", "light_x2.pth").read_bytes()
    with hub_standin.HubStandIn(REPO_ID, {REPO_FILE: data}, max_requests=60) as hub:
        yield hub, data


def _blob(tmp: Path) -> Path:
    (snapshot,) = (tmp / "hf").rglob(f"snapshots/*/{REPO_FILE}")
    return snapshot.resolve()


@pytest.mark.parametrize("damage", ["truncated", "altered"])
def test_a_damaged_cached_download_is_replaced_in_one_run(tmp_path, served, damage):
    hub, data = served
    online = {"HF_ENDPOINT": hub.endpoint}
    assert cli(tmp_path, "download", NAME, **online).returncode == 0
    blob = _blob(tmp_path)
    blob.chmod(0o644)
    if damage == "truncated":
        blob.write_bytes(data[: len(data) // 3])
    else:
        blob.write_bytes(bytes(b ^ 0xFF for b in data[:64]) + data[64:])
    # using it by name: one line saying what to do, nothing fetched
    before = len(hub.requests)
    r = cli(tmp_path, "info", NAME, HF_HUB_OFFLINE="1", **online)
    assert r.returncode == 2 and f"'mambairv2 download {NAME}' replaces it" in one_line(r.stderr), r.stderr
    assert len(hub.requests) == before
    # one download run detects it (SHA-256), discards it and fetches it again
    r = cli(tmp_path, "download", NAME, **online)
    assert r.returncode == 0, r.stderr
    assert _blob(tmp_path).read_bytes() == data and hashlib.sha256(data).hexdigest() in r.stdout
    assert cli(tmp_path, "info", NAME, HF_HUB_OFFLINE="1", **online).returncode == 0
    assert sum(req.startswith("GET /cguoh/MambaIR/resolve") for req in hub.requests[before:]) == 1


def test_cache_entries_that_are_folders_or_garbage(tmp_path, served):
    hub, data = served
    online = {"HF_ENDPOINT": hub.endpoint}
    offline = {**online, "HF_HUB_OFFLINE": "1"}
    record = tmp_path / "mc" / "downloads.json"
    # the record of verified downloads as binary garbage: read as empty, rewritten by a download
    record.parent.mkdir(parents=True)
    record.write_bytes(b"\x00\xff\xfe garbage \x80")
    r = cli(tmp_path, "info", NAME, **offline)
    assert r.returncode == 2 and "unknown model" in one_line(r.stderr)
    assert cli(tmp_path, "download", NAME, **online).returncode == 0
    assert NAME in json.loads(record.read_text())
    # ... as a folder: one line naming it, before anything is fetched
    record.unlink()
    record.mkdir()
    (record / "keep").write_text("x")
    before = len(hub.requests)
    for args, env in ((("download", NAME), online), (("download", "--list"), offline), (("info", NAME), offline)):
        r = cli(tmp_path, *args, **env)
        line = one_line(r.stderr)
        assert r.returncode != 0 and str(record) in line and ("remove it" in line or "name a file" in line), line
    assert len(hub.requests) == before and (record / "keep").exists()
    (record / "keep").unlink()
    record.rmdir()
    # the cached checkpoint is a folder: an empty one is replaced by the download, a full one named
    assert cli(tmp_path, "download", NAME, **online).returncode == 0
    (snapshot,) = (tmp_path / "hf").rglob(f"snapshots/*/{REPO_FILE}")
    snapshot.unlink()
    snapshot.mkdir()
    r = cli(tmp_path, "info", NAME, **offline)
    assert r.returncode == 2 and "is not a file; remove it" in one_line(r.stderr), r.stderr
    assert cli(tmp_path, "download", NAME, **online).returncode == 0 and snapshot.is_file()
    snapshot.unlink()
    snapshot.mkdir()
    (snapshot / "x").write_text("x")
    r = cli(tmp_path, "download", NAME, **online)
    assert r.returncode == 1 and "remove it" in one_line(r.stderr) and (snapshot / "x").exists()
    # the mambairv2 cache folder is a file: one line naming the variable, nothing fetched
    before = len(hub.requests)
    (tmp_path / "afile").write_text("x")
    r = cli(tmp_path, "download", NAME, MAMBAIRV2_CACHE_DIR=str(tmp_path / "afile"), **online)
    assert r.returncode == 2 and "MAMBAIRV2_CACHE_DIR" in one_line(r.stderr) and len(hub.requests) == before


def test_compiled_kernels_in_the_cache_that_are_garbage_or_folders(tmp_path):
    """A damaged library is rebuilt; an empty folder in its place too; a folder with contents
    is the user's: the kernel is reported unavailable (pure-PyTorch path) with a line saying why.
    Each step is a new process, as a cache damaged between runs is met."""
    from mambairv2.ops import native

    if native._compiler() is None:
        pytest.skip("no C compiler here")
    code = ("from mambairv2.ops.native import NativeKernel\n"
            "k = NativeKernel('layer_norm_kernel.c', 'layer-norm kernel', 'mambairv2_layer_norm_f32', [])\n"
            "print(k.available(), k.error())\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "MAMBAIRV2_CACHE_DIR": str(tmp_path)}

    def load() -> str:
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    assert load() == "True None"
    (built,) = tmp_path.glob("layer_norm_kernel-*.so")
    good = built.read_bytes()
    built.write_bytes(b"\x7fELF not really a library")
    assert load() == "True None" and built.read_bytes() == good
    built.unlink()
    built.mkdir()
    assert load() == "True None" and built.is_file()
    built.unlink()
    built.mkdir()
    (built / "x").write_text("x")
    answer = load()
    assert answer.startswith("False ") and "is a folder where the compiled kernel belongs; remove it" in answer


# -- 8. analyses count any size without allocating activations ------------------------------------
@pytest.mark.parametrize("variant", ["light", "mambair-light"])
def test_a_40000_square_count_allocates_nothing_image_sized(variant):
    """Every tensor with data (not on ``meta``) made while counting a 40000×40000 input stays
    tiny: the count is a function of shapes only, for both families."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    from mambairv2.analysis.complexity import variant_complexity

    class Largest(TorchDispatchMode):
        numel = seen = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            Largest.seen += 1
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and t.device.type != "meta":
                    Largest.numel = max(Largest.numel, t.numel())
            return out

    with Largest():
        big = variant_complexity(variant, 2, (40000, 40000))
    small = variant_complexity(variant, 2, (64, 64))
    assert Largest.seen > 100  # the forward's operators passed through the watch
    assert Largest.numel < 2**20, Largest.numel  # a weight-sized tensor at most, never 40000²-sized
    assert big.macs_paper > 1e5 * small.macs_paper  # and it did count the large input
