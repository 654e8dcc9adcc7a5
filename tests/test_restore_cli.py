"""``mambairv2 restore``: the acceptance run, naming, folders, safety, and error reporting."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from mambairv2.utils import imageio
from mambairv2.cli import restore as restore_cli
from mambairv2.cli.main import main
from mambairv2.models.mambairv2 import MambaIRv2Config
from conftest import shared_path


class Nearest(nn.Module):
    """Test double: nearest-neighbour upscaling with a MambaIRv2-like ``config``."""

    def __init__(self, scale: int = 2, in_chans: int = 3) -> None:
        super().__init__()
        # a real MambaIRv2 configuration (the doors ask its family), computed by nearest upscaling
        self.config = MambaIRv2Config(upscale=scale, in_chans=in_chans,
                                      upsampler="pixelshuffledirect" if scale > 1 else "")
        self.p = nn.Parameter(torch.zeros(()))
        self.scale = scale
        self.routing = None

    def set_routing(self, mode, seed=None):
        self.routing = (mode, seed)

    def forward(self, x):
        if x.shape[-1] == 13:  # lets a test make one particular image fail inside the model
            raise RuntimeError("synthetic failure")
        return F.interpolate(x, scale_factor=self.scale, mode="nearest") + self.p


@pytest.fixture
def double(monkeypatch):
    """Makes ``--weights`` load a Nearest double instead of a checkpoint."""
    from mambairv2.models.catalog import ModelRef

    holder = {"model": Nearest()}

    def ref(args, variants=False):
        return ModelRef(args.model, "file", path=Path(args.model))

    monkeypatch.setattr(restore_cli, "resolve_model", ref)
    monkeypatch.setattr(restore_cli, "load_model_arg",
                        lambda args, device, dtype: (ref(args), holder["model"]))
    return holder


def _png(path: Path, h: int, w: int, c: int = 3, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = 65536 if dtype == np.uint16 else 256
    px = rng.integers(0, top, (h, w, c)).astype(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.write_image(path, imageio.ImageData(px, "PNG"), overwrite=True)
    return px


def _hashes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(*argv: str) -> int:
    return main(["restore", *argv])


# -- acceptance ------------------------------------------------------------------------------------
def _acceptance_folder(folder: Path) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (10, 14), np.uint8)).save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 256, (9, 11, 4), np.uint8), "RGBA").save(folder / "rgba.png")
    (folder / "rgb16.png").write_bytes(imageio._encode_png16(rng.integers(0, 65536, (11, 9, 3), np.uint16)))
    smooth = np.kron(rng.integers(0, 256, (3, 3, 3), np.uint8), np.ones((8, 8, 1), np.uint8))
    Image.fromarray(smooth).save(folder / "photo.jpg", quality=90)
    Image.new("RGB", (1, 1), (120, 30, 200)).save(folder / "one.png")
    (folder / "empty.png").write_bytes(b"")
    jpeg = (folder / "photo.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) * 3 // 4])
    (folder / "notes.jpg").write_text("not an image, just text\n")


def test_acceptance_folder_with_good_and_bad_files(tmp_path, capsys):
    weights = shared_path("golden", "light_x2.pth")
    src, out = tmp_path / "in", tmp_path / "out"
    _acceptance_folder(src)
    before = _hashes(src)

    rc = _run(str(src), "-o", str(out), "--weights", str(weights))
    err = capsys.readouterr().err
    assert rc != 0
    assert "Traceback" not in err
    good = {"rgb.png": ("RGB", 8), "gray.png": ("L", 8), "rgba.png": ("RGBA", 8),
            "rgb16.png": ("RGB", 16), "photo.jpg": ("RGB", 8), "one.png": ("RGB", 8)}
    assert sorted(os.listdir(out)) == sorted(good)  # nothing else: no temporaries, no bad files
    for name, (mode, bits) in good.items():
        a, b = imageio.read_image(src / name), imageio.read_image(out / name)
        assert b.format == a.format
        assert b.pixels.shape == (2 * a.pixels.shape[0], 2 * a.pixels.shape[1], a.pixels.shape[2]), name
        assert b.bit_depth == bits and Image.open(out / name).mode in (mode, "I;16"), name
    bad_lines = [line for line in err.splitlines() if line.startswith("failed:")]
    assert len(bad_lines) == 3
    for name, reason in [("empty.png", "empty"), ("truncated.jpg", "truncated"), ("notes.jpg", "not an image")]:
        assert any(name in line and reason in line for line in bad_lines), (name, bad_lines)
    assert "restored 6, skipped 0, failed 3" in err
    assert _hashes(src) == before

    first = _hashes(out)
    assert _run(str(src), "-o", str(out), "--weights", str(weights), "--overwrite") != 0
    assert _hashes(out) == first  # deterministic, byte for byte
    capsys.readouterr()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert _run(str(src), "-o", str(out), "--weights", str(weights)) != 0
    assert "restored 0, skipped 6, failed 3" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    assert _hashes(src) == before


# -- naming, folders, globs ------------------------------------------------------------------------
def test_format_and_suffix(tmp_path, double):
    _png(tmp_path / "in" / "a.png", 5, 6)
    rc = _run(str(tmp_path / "in" / "a.png"), "-o", str(tmp_path / "out"), "--weights", "w",
              "--format", "jpg", "--suffix", "_x2", "-q")
    assert rc == 0
    assert os.listdir(tmp_path / "out") == ["a_x2.jpg"]
    assert Image.open(tmp_path / "out" / "a_x2.jpg").format == "JPEG"


def test_formats_without_alpha_or_16_bits_say_so(tmp_path, double, capsys):
    _png(tmp_path / "in" / "a.png", 4, 4, c=4, dtype=np.uint16)
    assert _run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", "w", "--format", "jpg") == 0
    err = capsys.readouterr().err
    assert "transparency dropped" in err and "stored as 8-bit" in err
    out = imageio.read_image(tmp_path / "out" / "a.jpg")
    assert out.pixels.shape == (8, 8, 3) and out.bit_depth == 8


def test_formats_read_but_not_written_become_png_with_a_note(tmp_path, double, capsys):
    px = np.random.default_rng(1).integers(0, 256, (4, 5, 3), np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(px).save(tmp_path / "in" / "g.gif")
    Image.fromarray(px).save(tmp_path / "in" / "p.ppm")
    Image.fromarray(px).save(tmp_path / "in" / "n", format="PNG")
    assert _run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", "w") == 0
    err = capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "out")) == ["g.png", "n.png", "p.png"]
    assert "GIF is read but not written: saved as PNG" in err and "PPM is read but not written" in err
    assert "a file without extension is read but not written" in err


def test_folders_recursive_and_globs(tmp_path, double):
    src = tmp_path / "in"
    _png(src / "top.png", 4, 4)
    _png(src / "sub" / "deep.png", 4, 4)
    (src / "readme.txt").write_text("ignored: not an image extension")
    _png(src / ".hidden.png", 4, 4)
    assert _run(str(src), "-o", str(tmp_path / "o1"), "--weights", "w", "-q") == 0
    assert _hashes(tmp_path / "o1").keys() == {"top.png"}
    assert _run(str(src), "-r", "-o", str(tmp_path / "o2"), "--weights", "w", "-q") == 0
    assert _hashes(tmp_path / "o2").keys() == {"top.png", "sub/deep.png"}
    assert _run(str(src / "*.png"), "-o", str(tmp_path / "o3"), "--weights", "w", "-q") == 0
    assert _hashes(tmp_path / "o3").keys() == {"top.png"}


def test_output_folder_inside_the_input_is_not_rescanned(tmp_path, double, capsys):
    src = tmp_path / "in"
    _png(src / "a.png", 4, 4)
    out = src / "restored"
    assert _run(str(src), "-r", "-o", str(out), "--weights", "w") == 0
    assert _run(str(src), "-r", "-o", str(out), "--weights", "w") == 0
    err = capsys.readouterr().err
    assert "restored 0, skipped 1, failed 0" in err
    assert sorted(p.name for p in out.rglob("*")) == ["a.png"]


def test_never_replaces_an_input(tmp_path, double, capsys):
    src = tmp_path / "in"
    px = _png(src / "a.png", 4, 4)
    before = _hashes(src)
    assert _run(str(src), "-o", str(src), "--weights", "w", "--overwrite") == 1
    assert "would replace an input" in capsys.readouterr().err
    assert _run(str(src), "-o", str(src), "--weights", "w") == 0
    assert "restored 0, skipped 1, failed 0" in capsys.readouterr().err
    assert _hashes(src) == before
    assert _run(str(src), "-o", str(src), "--weights", "w", "--suffix", "_x2") == 0
    np.testing.assert_array_equal(imageio.read_image(src / "a.png").pixels, px)
    assert imageio.read_image(src / "a_x2.png").pixels.shape == (8, 8, 3)
    capsys.readouterr()
    for extra in ([], ["--overwrite"]):  # a_x2.png, the earlier output, is not an input
        assert _run(str(src), "-o", str(src), "--weights", "w", "--suffix", "_x2", *extra) == 0
        assert "is the output of" in capsys.readouterr().out
        assert sorted(os.listdir(src)) == ["a.png", "a_x2.png"]


def test_colliding_outputs_are_reported(tmp_path, double, capsys):
    _png(tmp_path / "in" / "a.png", 4, 4)
    Image.new("RGB", (4, 4)).save(tmp_path / "in" / "a.bmp")
    assert _run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", "w", "--format", "png") == 1
    err = capsys.readouterr().err
    assert "already the output of" in err and "restored 1, skipped 0, failed 1" in err


def test_missing_inputs_are_failures_and_the_rest_continues(tmp_path, double, capsys):
    _png(tmp_path / "a.png", 4, 4)
    rc = _run(str(tmp_path / "nope.png"), str(tmp_path / "a.png"), str(tmp_path / "*.tif"),
              "-o", str(tmp_path / "out"), "--weights", "w")
    err = capsys.readouterr().err
    assert rc == 1
    assert "nope.png: no such file or folder" in err and "matches no files" in err
    assert (tmp_path / "out" / "a.png").exists()


def test_a_model_failure_is_one_line_and_the_run_continues(tmp_path, double, capsys):
    _png(tmp_path / "in" / "bad.png", 4, 13)  # the double raises on width 13
    _png(tmp_path / "in" / "good.png", 4, 4)
    assert _run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", "w") == 1
    err = capsys.readouterr().err
    assert "failed: " in err and "bad.png: RuntimeError: synthetic failure" in err
    assert "Traceback" not in err
    assert os.listdir(tmp_path / "out") == ["good.png"]


def test_interrupted_run_leaves_no_partial_file(tmp_path, double, monkeypatch):
    _png(tmp_path / "in" / "a.png", 4, 4)

    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(imageio.os, "fsync", interrupt)
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", "w"]) == 130
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


# -- channels and orientation ----------------------------------------------------------------------
def test_gray_model_on_colour_and_gray_inputs(tmp_path, double):
    double["model"] = Nearest(scale=1, in_chans=1)
    rgb = _png(tmp_path / "in" / "rgb.png", 5, 6, c=3)
    gray = _png(tmp_path / "in" / "gray.png", 5, 6, c=1)
    assert _run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", "w", "-q") == 0
    np.testing.assert_array_equal(imageio.read_image(tmp_path / "out" / "rgb.png").pixels, rgb)
    np.testing.assert_array_equal(imageio.read_image(tmp_path / "out" / "gray.png").pixels, gray)


def test_exif_orientation_is_honoured(tmp_path, double):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 4)).save(tmp_path / "in" / "r.jpg", exif=exif)
    assert _run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", "w", "-q") == 0
    out = Image.open(tmp_path / "out" / "r.jpg")
    assert out.size == (8, 16) and out.getexif().get(0x0112, 1) == 1


def test_routing_and_seed_reach_the_model(tmp_path, double):
    _png(tmp_path / "a.png", 4, 4)
    assert _run(str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--weights", "w",
                "--routing", "gumbel", "--seed", "7", "-q") == 0
    assert double["model"].routing == ("gumbel", 7)


# -- user errors -----------------------------------------------------------------------------------
def test_missing_weights_says_where_to_get_them(tmp_path, capsys, monkeypatch):
    from mambairv2.models import catalog

    monkeypatch.setattr(catalog, "bundled_models", lambda: {})  # an install without weights
    _png(tmp_path / "a.png", 4, 4)
    assert _run(str(tmp_path / "a.png"), "-o", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "github.com/csguoh/MambaIR" in err and "unknown model 'default'" in err
    assert _run(str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", "nope") == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_without_weights_the_bundled_default_model_restores(tmp_path):
    from mambairv2.models.catalog import bundled_models

    if "default" not in bundled_models():
        pytest.skip("this install has no bundled default model")
    _png(tmp_path / "a.png", 12, 10)
    assert _run(str(tmp_path / "a.png"), "-o", str(tmp_path / "out")) == 0
    assert imageio.read_image(tmp_path / "out" / "a.png").pixels.shape[:2] == (48, 40)


@pytest.mark.parametrize("argv,needle", [
    (["--tile", "32", "--tile-overlap", "32"], "--tile-overlap"),
    (["--tile", "20", "--tile-overlap", "19"], "rounded to 16"),  # checked after rounding
    (["--quality", "0"], "--quality"),
    (["--device", "tpu"], "device"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, double, argv, needle):
    _png(tmp_path / "a.png", 4, 4)
    assert _run(str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--weights", "w", *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1


def test_unusable_weights_end_without_traceback(tmp_path):
    _png(tmp_path / "a.png", 4, 4)
    (tmp_path / "w.pth").write_text("not a checkpoint")
    proc = subprocess.run([sys.executable, "-m", "mambairv2", "restore", str(tmp_path / "a.png"),
                           "-o", str(tmp_path / "out"), "--weights", str(tmp_path / "w.pth")],
                          capture_output=True, text=True, env=dict(os.environ, MAMBAIRV2_DEBUG=""))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")
    assert "w.pth" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_seed_without_gumbel_routing_is_warned_about(tmp_path, double, capsys):
    _png(tmp_path / "in" / "a.png", 4, 4)
    assert _run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", "w", "--seed", "3") == 0
    assert "warning: --seed has no effect without --routing gumbel" in capsys.readouterr().err
    assert _run(str(tmp_path / "in"), "-o", str(tmp_path / "o2"), "--weights", "w", "--seed", "3",
                "--routing", "gumbel") == 0
    assert "warning" not in capsys.readouterr().err
