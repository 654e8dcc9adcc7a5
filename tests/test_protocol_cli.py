"""``mambairv2 degrade`` and ``mambairv2 evaluate``: outputs, atomic writes, JSON, one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mambairv2.utils import imageio
from mambairv2.models import save_checkpoint
from mambairv2.cli import evaluate as evaluate_cli  # noqa: F401
from mambairv2.models import catalog
from mambairv2.cli.main import main
from mambairv2.models import create_model
from mambairv2.protocol import degrade, metrics


def _folder(path: Path, n: int = 3, shape=(26, 30, 3), gray_one: bool = True) -> dict:
    """A folder of smooth-ish random PNGs (one gray) plus a text file; returns name → pixels."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = {}
    for i in range(n):
        c = 1 if (gray_one and i == n - 1) else shape[2]
        px = rng.integers(30, 220, (shape[0], shape[1] + i, c)).astype(np.uint8)
        imageio.write_image(path / f"im{i}.png", imageio.ImageData(px), overwrite=True)
        out[f"im{i}"] = px
    (path / "notes.txt").write_text("not an image")
    return out


def _one_line_error(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


# -- degrade ---------------------------------------------------------------------------------------------
def test_degrade_and_evaluate_take_the_images_restore_takes(tmp_path, capsys):
    """GIF, PPM and a PNG without an extension are images for every command, not only restore."""
    from PIL import Image

    hr = tmp_path / "hr"
    hr.mkdir()
    px = np.random.default_rng(3).integers(0, 256, (24, 24, 3), np.uint8)
    Image.fromarray(px).save(hr / "g.gif")
    Image.fromarray(px).save(hr / "p.ppm")
    Image.fromarray(px).save(hr / "n", format="PNG")
    (hr / "notes.txt").write_text("not an image")
    out = tmp_path / "lr"
    assert main(["degrade", "--task", "sr", "--scale", "2", "--hr-dir", str(hr), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["gx2.png", "nx2.png", "px2.png"]
    assert "notes.txt" in err and "g.gif" not in err and "p.ppm" not in err
    assert main(["evaluate", "--baseline", "bicubic", "--task", "sr", "--scale", "2", "--hr-dir", str(hr)]) == 0
    out, err = capsys.readouterr()
    assert "evaluated 3 images" in err and out.split()[-3] == "3", (out, err)  # the row's image count


def test_degrade_sr_writes_lr_files_and_skips_non_images(tmp_path, capsys):
    clean = _folder(tmp_path / "hr")
    out = tmp_path / "lr"
    assert main(["degrade", "--task", "sr", "--scale", "2", "--hr-dir", str(tmp_path / "hr"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: ignored" in err and "notes.txt" in err
    assert sorted(p.name for p in out.iterdir()) == ["im0x2.png", "im1x2.png", "im2x2.png"]  # no temp files
    for name, px in clean.items():
        got = imageio.read_image(out / f"{name}x2.png").pixels
        rgb = px if px.shape[2] == 3 else np.repeat(px, 3, axis=2)  # gray HR is read as 3 channels
        np.testing.assert_array_equal(got, degrade.sr_input(degrade.mod_crop(rgb, 2), 2))
    # existing outputs are kept unless --overwrite
    before = (out / "im0x2.png").stat().st_mtime_ns
    assert main(["degrade", "--task", "sr", "--scale", "2", "--hr-dir", str(tmp_path / "hr"), "--out", str(out)]) == 0
    assert (out / "im0x2.png").stat().st_mtime_ns == before


@pytest.mark.parametrize("task", [["--task", "sr", "--scale", "2"], ["--task", "realsr", "--scale", "2"],
                                  ["--task", "jpeg", "--quality", "20"]])
def test_degrade_refuses_two_images_with_one_output_name(tmp_path, capsys, task):
    """``a.png`` and ``a.jpg`` would both be ``ax2.png``: refused before anything is written,
    with --overwrite too (it replaced the first in the same run and said "wrote 2")."""
    from PIL import Image

    hr = tmp_path / "hr"
    _folder(hr, n=1)
    px = np.random.default_rng(4).integers(0, 256, (24, 24, 3), np.uint8)
    Image.fromarray(px).save(hr / "im0.jpg")
    for extra in ([], ["--overwrite"]):
        code = main(["degrade", *task, "--hr-dir", str(hr), "--out", str(tmp_path / "lr"), *extra])
        _one_line_error(capsys, code, "im0.jpg and im0.png would both be written as", "rename one")
    assert not (tmp_path / "lr").exists() or not list((tmp_path / "lr").iterdir())


def test_degrade_corrupt_image_is_skipped_with_a_warning_and_exit_1(tmp_path, capsys):
    _folder(tmp_path / "hr", n=1)
    (tmp_path / "hr" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code = main(["degrade", "--task", "sr", "--scale", "2", "--hr-dir", str(tmp_path / "hr"),
                 "--out", str(tmp_path / "lr"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "bad.png" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "lr").iterdir()) == ["im0x2.png"]


def test_degrade_write_failure_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    _folder(tmp_path / "hr", n=2)
    out = tmp_path / "lr"

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    code = main(["degrade", "--task", "jpeg", "--quality", "20", "--hr-dir", str(tmp_path / "hr"), "--out", str(out)])
    assert code == 1
    assert "No space left" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # neither outputs nor temporary files


def test_degrade_denoise_npy_and_png16(tmp_path):
    clean = _folder(tmp_path / "hr", n=2, gray_one=False)
    assert main(["degrade", "--task", "denoise", "--sigma", "50", "--hr-dir", str(tmp_path / "hr"),
                 "--out", str(tmp_path / "npy"), "-q"]) == 0
    x = np.load(tmp_path / "npy" / "im0.npy")
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, degrade.noisy_input(clean["im0"], 50))
    assert x.min() < 0 or x.max() > 1  # unclipped
    assert main(["degrade", "--task", "denoise", "--sigma", "50", "--hr-dir", str(tmp_path / "hr"),
                 "--out", str(tmp_path / "png"), "--denoise-format", "png16", "-q"]) == 0
    px = imageio.read_image(tmp_path / "png" / "im0.png").pixels
    assert px.dtype == np.uint16
    np.testing.assert_allclose(px / 65535.0, np.clip(x, 0, 1), atol=1 / 65535)


def test_degrade_jpeg_is_gray_by_default(tmp_path):
    clean = _folder(tmp_path / "hr", n=1, gray_one=True)
    assert main(["degrade", "--task", "jpeg", "--quality", "10", "--hr-dir", str(tmp_path / "hr"),
                 "--out", str(tmp_path / "q10"), "-q"]) == 0
    got = imageio.read_image(tmp_path / "q10" / "im0.png").pixels
    np.testing.assert_array_equal(got, degrade.jpeg(clean["im0"], 10))


@pytest.mark.parametrize("argv,needle", [
    (["--task", "sr", "--scale", "2", "--hr-dir", "{missing}"], "no such file or folder"),
    (["--task", "sr", "--scale", "2", "--hr-dir", "{empty}"], "holds no images"),
    (["--task", "sr", "--hr-dir", "{empty}"], "needs --scale"),
    (["--task", "denoise", "--sigma", "15", "--scale", "2", "--hr-dir", "{empty}"], "--scale applies"),
    (["--task", "jpeg", "--quality", "101", "--hr-dir", "{empty}"], "quality"),
])
def test_degrade_bad_inputs_give_one_line_errors(tmp_path, capsys, argv, needle):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    argv = [a.format(missing=tmp_path / "missing", empty=tmp_path / "empty") for a in argv]
    _one_line_error(capsys, main(["degrade", *argv, "--out", str(tmp_path / "out")]), needle)


# -- evaluate --------------------------------------------------------------------------------------------
def test_evaluate_bicubic_json_shape_names_and_table(tmp_path, capsys):
    _folder(tmp_path / "SetA" / "HR")
    _folder(tmp_path / "other", n=2)
    js = tmp_path / "res" / "out.json"
    code = main(["evaluate", "--baseline", "bicubic", "--task", "sr", "--scale", "2",
                 "--hr-dir", str(tmp_path / "SetA" / "HR"), "--hr-dir", str(tmp_path / "other"),
                 "--json", str(js), "--save-dir", str(tmp_path / "saved")])
    cap = capsys.readouterr()
    assert code == 0
    assert "SetA" in cap.out and "other" in cap.out and "PSNR" in cap.out
    data = json.loads(js.read_text())
    assert data["task"] == "sr" and data["scale"] == 2 and data["model"] == "bicubic"
    assert list(data["datasets"]) == ["SetA", "other"]
    seta = data["datasets"]["SetA"]
    assert [im["name"] for im in seta["images"]] == ["im0.png", "im1.png", "im2.png"]
    assert set(seta) >= {"psnr", "ssim", "images"}
    assert seta["psnr"] == pytest.approx(np.mean([im["psnr"] for im in seta["images"]]))
    assert sorted(p.name for p in (tmp_path / "saved" / "SetA").iterdir()) == ["im0.png", "im1.png", "im2.png"]
    # the saved image gives back the reported score
    hr = imageio.read_image(tmp_path / "SetA" / "HR" / "im0.png").pixels
    sr = imageio.read_image(tmp_path / "saved" / "SetA" / "im0.png").pixels
    assert metrics.psnr(sr, degrade.mod_crop(hr, 2), 2) == pytest.approx(seta["images"][0]["psnr"])


def test_evaluate_lr_dir_from_degrade_gives_the_same_numbers(tmp_path, capsys):
    _folder(tmp_path / "hr", gray_one=False)
    for task, level in (("denoise", ["--sigma", "25"]), ("jpeg", ["--quality", "30"])):
        lr = tmp_path / f"lr_{task}"
        assert main(["degrade", "--task", task, *level, "--hr-dir", str(tmp_path / "hr"), "--out", str(lr), "-q"]) == 0
        runs = []
        for extra in ([], ["--lr-dir", str(lr)]):
            js = tmp_path / f"{task}{len(extra)}.json"
            assert main(["evaluate", "--baseline", "identity", "--task", task, *level, "--hr-dir",
                         str(tmp_path / "hr"), "--name", "X", "--json", str(js), "-q", *extra]) == 0
            runs.append(json.loads(js.read_text())["datasets"]["X"])
        assert runs[0] == runs[1]
        assert runs[0]["psnr"] < 40


@pytest.fixture
def small_x2(tmp_path):
    model = create_model("light", scale=2, embed_dim=16, depths=(1,), num_heads=(2,), inner_rank=8,
                         num_tokens=8, d_state=4)
    path = tmp_path / "small_x2.pth"
    save_checkpoint(path, model.state_dict())
    return path


def test_evaluate_weights_whole_and_official(tmp_path, capsys, small_x2):
    _folder(tmp_path / "imgs", n=2, shape=(24, 28, 3), gray_one=False)
    scores = {}
    for protocol in ("whole", "official"):
        js = tmp_path / f"{protocol}.json"
        assert main(["evaluate", "--weights", str(small_x2), "--task", "sr", "--hr-dir", str(tmp_path / "imgs"),
                     "--protocol", protocol, "--device", "cpu", "--json", str(js), "-q"]) == 0
        data = json.loads(js.read_text())
        assert data["scale"] == 2 and data["protocol"] == protocol  # scale taken from the model
        scores[protocol] = data["datasets"]["imgs"]["psnr"]
    assert scores["whole"] == pytest.approx(scores["official"], abs=1e-3)  # images < 200 px: one part
    js = tmp_path / "tiles.json"
    assert main(["evaluate", "--weights", str(small_x2), "--task", "sr", "--hr-dir", str(tmp_path / "imgs"),
                 "--tile", "16", "--tile-overlap", "4", "--device", "cpu", "--json", str(js), "-q"]) == 0
    assert len(json.loads(js.read_text())["datasets"]["imgs"]["images"]) == 2
    capsys.readouterr()
    code = main(["evaluate", "--weights", str(small_x2), "--task", "sr", "--scale", "3", "--hr-dir",
                 str(tmp_path / "imgs"), "--device", "cpu"])
    _one_line_error(capsys, code, "x2")


@pytest.mark.parametrize("argv,needle", [
    (["--baseline", "bicubic", "--task", "sr", "--scale", "2", "--hr-dir", "{missing}"], "no such folder"),
    (["--baseline", "bicubic", "--task", "sr", "--scale", "2", "--hr-dir", "{empty}"], "holds no images"),
    (["--model", "nosuch", "--task", "sr", "--scale", "2", "--hr-dir", "{hr}"], "unknown model 'nosuch'"),
    (["--baseline", "bicubic", "--task", "denoise", "--sigma", "15", "--hr-dir", "{hr}"], "baseline for --task sr"),
    (["--baseline", "identity", "--task", "jpeg", "--hr-dir", "{hr}"], "needs --quality"),
    (["--baseline", "bicubic", "--task", "sr", "--hr-dir", "{hr}"], "needs --scale"),
    (["--weights", "{missing}", "--task", "sr", "--hr-dir", "{hr}"], "missing"),
    (["--baseline", "bicubic", "--task", "sr", "--scale", "2", "--hr-dir", "{hr}", "--lr-dir", "{empty}"],
     "no input for"),
    (["--baseline", "bicubic", "--task", "sr", "--scale", "2", "--hr-dir", "{hr}", "--name", "a", "--name", "b"],
     "--name once per --hr-dir"),
])
def test_evaluate_bad_inputs_give_one_line_errors(tmp_path, capsys, argv, needle):
    _folder(tmp_path / "hr", n=1)
    (tmp_path / "empty").mkdir()
    fill = dict(missing=tmp_path / "missing", empty=tmp_path / "empty", hr=tmp_path / "hr")
    code = main(["evaluate", *[a.format(**fill) for a in argv]])
    _one_line_error(capsys, code, needle)


def test_evaluate_default_model_says_there_are_no_bundled_weights(tmp_path, capsys, monkeypatch):
    _folder(tmp_path / "hr", n=1)
    monkeypatch.setattr(catalog, "bundled_models", lambda: {})
    code = main(["evaluate", "--model", "default", "--task", "sr", "--scale", "2", "--hr-dir", str(tmp_path / "hr")])
    _one_line_error(capsys, code, "unknown model 'default'", "bundled model (none installed)")


def test_evaluate_bundled_name_resolves_through_the_catalogue(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(catalog, "bundled_models", lambda: {"default": tmp_path / "not_installed.safetensors"})
    _folder(tmp_path / "hr", n=1)
    code = main(["evaluate", "--model", "default", "--task", "sr", "--scale", "2", "--hr-dir", str(tmp_path / "hr")])
    _one_line_error(capsys, code, "not_installed.safetensors: no such file")


def test_evaluate_error_in_a_subprocess_has_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    proc = subprocess.run([sys.executable, "-m", "mambairv2", "evaluate", "--baseline", "bicubic", "--task", "sr",
                           "--scale", "2", "--hr-dir", str(tmp_path / "nope")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
