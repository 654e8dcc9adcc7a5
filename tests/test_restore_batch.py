"""``mambairv2 restore`` on what users feed it: symlink loops, leftovers of killed runs,
unwritable folders, huge non-images, odd extensions, scripts without a terminal, --json,
--ext, tile options checked after rounding, memory limits, and one bad file among good ones."""
from __future__ import annotations

import importlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from mambairv2.utils import imageio, memory
from mambairv2.cli import restore as restore_cli
from mambairv2.cli.main import main
from mambairv2.models.mambairv2 import MambaIRv2Config

from conftest import needs_torchrun

restore_module = importlib.import_module("mambairv2.inference.api")  # the module (mambairv2.restore is the function)
from mambairv2.inference.api import check_tile, restore, restore_tensor

REPO = Path(__file__).resolve().parents[1]


class Counting(nn.Module):
    """Nearest-neighbour upscaling with a MambaIRv2-like ``config`` that counts its calls."""

    def __init__(self, scale: int = 2, in_chans: int = 3, oom_above: int = 0) -> None:
        super().__init__()
        # a real MambaIRv2 configuration (window 16, embed_dim 48): the doors ask its family
        self.config = MambaIRv2Config(upscale=scale, in_chans=in_chans,
                                      upsampler="pixelshuffledirect" if scale > 1 else "")
        self.p = nn.Parameter(torch.zeros(()))
        self.scale = scale
        self.calls = 0
        self.oom_above = oom_above  # raise an allocation failure for inputs wider than this

    def set_routing(self, mode, seed=None):
        return self

    def forward(self, x):
        self.calls += 1
        if self.oom_above and x.shape[-1] > self.oom_above:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB")
        return F.interpolate(x, scale_factor=self.scale, mode="nearest") + self.p


@pytest.fixture
def model(monkeypatch):
    from mambairv2.models.catalog import ModelRef

    holder = types.SimpleNamespace(model=Counting())

    def ref(args, variants=False):
        return ModelRef(args.model, "file", path=Path(args.model))

    monkeypatch.setattr(restore_cli, "resolve_model", ref)
    monkeypatch.setattr(restore_cli, "load_model_arg", lambda args, device, dtype: (ref(args), holder.model))
    return holder


def _png(path: Path, h: int = 4, w: int = 4, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)).save(path)


def _run(*argv: str) -> int:
    return main(["restore", *argv])


def _failures(err: str) -> list:
    return [line for line in err.splitlines() if line.startswith("failed:")]


# -- the Done-when folder ---------------------------------------------------------------------------
def test_symlink_loop_and_empty_file_among_good_images(tmp_path, model, capsys):
    src = tmp_path / "in"
    _png(src / "a.png")
    _png(src / "b.png", seed=1)
    (src / "empty.png").write_bytes(b"")
    os.symlink("loop.png", src / "loop.png")
    rc = _run(str(src), "-o", str(tmp_path / "out"), "--weights", "w")
    err = capsys.readouterr().err
    assert rc == 1
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.png"]
    bad = _failures(err)
    assert len(bad) == 2 and "Traceback" not in err
    assert any("empty.png" in line and "empty" in line for line in bad)
    assert any("loop.png" in line and "symbolic links" in line for line in bad)
    assert "restored 2, skipped 0, failed 2" in err


def test_symlink_loops_as_argument_glob_and_output(tmp_path, model, capsys):
    _png(tmp_path / "good.png")
    os.symlink("loop.png", tmp_path / "loop.png")
    assert _run(str(tmp_path / "loop.png"), str(tmp_path / "good.png"), "-o", str(tmp_path / "o1"),
                "--weights", "w") == 1
    err = capsys.readouterr().err
    assert len(_failures(err)) == 1 and "loop.png" in _failures(err)[0]
    assert os.listdir(tmp_path / "o1") == ["good.png"]
    assert _run(str(tmp_path / "*.png"), "-o", str(tmp_path / "o2"), "--weights", "w") == 1
    assert len(_failures(capsys.readouterr().err)) == 1 and os.listdir(tmp_path / "o2") == ["good.png"]
    os.symlink("o3", tmp_path / "o3")
    assert _run(str(tmp_path / "good.png"), "-o", str(tmp_path / "o3"), "--weights", "w") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: -o") and "symlink loop" in err and err.count("\n") == 1
    assert model.model.calls == 2  # nothing computed for the refused run


# -- tiles: options checked after rounding ----------------------------------------------------------
def test_tile_is_rounded_before_the_overlap_check():
    assert check_tile(40, 30, 16) == 48  # halves round up: 2.5 windows → 3
    with pytest.raises(ValueError, match="rounded to 16"):
        check_tile(20, 19, 16)
    with pytest.raises(ValueError, match="at most 16"):
        check_tile(32, 17, 16)  # a stride of 15 px: below one window
    m40, m48 = Counting(), Counting()
    x = torch.rand(1, 3, 64, 64)
    a = restore_tensor(m40, x, tile=40, tile_overlap=30)
    b = restore_tensor(m48, x, tile=48, tile_overlap=30)
    assert m40.calls == m48.calls == 4 and torch.equal(a, b)


def test_cli_tile_40_overlap_30_runs_like_48_and_20_19_is_refused(tmp_path, model, capsys):
    _png(tmp_path / "a.png", 64, 64)
    assert _run(str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--weights", "w",
                "--tile", "40", "--tile-overlap", "30") == 0
    assert model.model.calls == 4
    assert _run(str(tmp_path / "a.png"), "-o", str(tmp_path / "o2"), "--weights", "w",
                "--tile", "20", "--tile-overlap", "19") == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: --tile 20 --tile-overlap 19") and model.model.calls == 4
    assert not (tmp_path / "o2").exists()


# -- interrupted runs, unwritable folders, mistyped weights ------------------------------------------
def test_part_files_of_a_killed_run_are_removed_by_the_next_run(tmp_path, model, capsys):
    _png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import os, signal
        from mambairv2.utils.atomic import atomic_path
        with atomic_path({str(out / 'a.png')!r}) as tmp:
            open(tmp, "wb").write(b"half an image")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-c", script], env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    left = [p.name for p in out.iterdir()]
    assert len(left) == 1 and left[0].startswith(".a.png.") and left[0].endswith(".part")
    (out / ".unrelated.txt.part").write_bytes(b"not ours")
    assert _run(str(tmp_path / "in"), "-o", str(out), "--weights", "w") == 0
    assert sorted(os.listdir(out)) == [".unrelated.txt.part", "a.png"]
    assert "removed 1 temporary file" in capsys.readouterr().err


def test_unwritable_output_folder_is_found_before_computing(tmp_path, model, capsys):
    _png(tmp_path / "a.png")
    (tmp_path / "file").write_text("a file, not a folder")
    assert _run(str(tmp_path / "a.png"), "-o", str(tmp_path / "file" / "out"), "--weights", "w") == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("error: -o") and "cannot write" in last
    assert model.model.calls == 0
    # one subfolder that cannot be made: its files fail before computing, the others are restored
    _png(tmp_path / "in" / "top.png")
    _png(tmp_path / "in" / "sub" / "deep.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").write_text("in the way")
    assert _run(str(tmp_path / "in"), "-r", "-o", str(tmp_path / "out"), "--weights", "w") == 1
    bad = _failures(capsys.readouterr().err)
    assert len(bad) == 1 and "deep.png" in bad[0] and "cannot write to" in bad[0]
    assert model.model.calls == 1 and (tmp_path / "out" / "top.png").exists()


def test_mistyped_weights_is_an_error_even_when_outputs_exist(tmp_path, capsys):
    _png(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"an earlier output")
    assert _run(str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--weights",
                str(tmp_path / "modle.pth")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --model") and "modle.pth: no such file" in err


def test_huge_non_image_is_rejected_from_its_header(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    with open(path, "wb") as f:
        f.write(b"this is a log file, not an image\n")
        f.truncate(2 << 30)  # 2 GB, sparse
    read = [0]

    class CountingReader(io.BufferedReader):
        def read(self, n=-1):
            data = super().read(n)
            read[0] += len(data)
            return data

        def readinto(self, b):
            n = super().readinto(b)
            read[0] += n or 0
            return n

    monkeypatch.setattr(imageio, "open", lambda p, mode="rb": CountingReader(io.FileIO(p, "r")), raising=False)
    with pytest.raises(imageio.ImageReadError, match="not an image"):
        imageio.read_image(path)
    assert read[0] < 1 << 20


# -- folder scan, reporting, output formats ----------------------------------------------------------
def test_folder_scan_takes_gif_tiff_and_extensionless_images(tmp_path, model):
    src = tmp_path / "in"
    src.mkdir()
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (4, 4, 3), np.uint8))
    img.save(src / "a.gif")
    img.save(src / "b.tif")
    img.save(src / "c.TIFF")
    img.save(src / "noext", "PNG")
    (src / "README").write_text("text without an extension: not an image")
    assert _run(str(src), "-o", str(tmp_path / "out"), "--weights", "w") == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.tif", "c.TIFF", "noext.png"]


def test_per_file_lines_summary_and_json_report(tmp_path, model, capsys):
    _png(tmp_path / "in" / "a.png", 4, 6)
    (tmp_path / "in" / "bad.png").write_text("nope")
    report = tmp_path / "report.json"
    assert _run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", "w", "--json", str(report)) == 1
    cap = capsys.readouterr()
    lines = cap.out.splitlines()  # stdout is not a terminal under pytest
    assert len(lines) == 1 and lines[0].startswith("restored: ") and "6×4 → 12×8" in lines[0] and " s → " in lines[0]
    assert "failed: " in cap.err and "restored 1, skipped 0, failed 1" in cap.err
    data = json.loads(report.read_text())
    assert data["summary"]["restored"] == 1 and data["summary"]["failed"] == 1
    by_name = {Path(f["input"]).name: f for f in data["files"]}
    assert by_name["a.png"]["status"] == "restored" and by_name["a.png"]["size_out"] == [12, 8]
    assert by_name["a.png"]["seconds"] >= 0 and by_name["a.png"]["output"].endswith("a.png")
    assert by_name["bad.png"]["status"] == "failed" and "not an image" in by_name["bad.png"]["reason"]
    assert _run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", "w", "-q") == 1
    assert capsys.readouterr().out == ""


def test_models_that_do_not_upscale_write_lossless_png_unless_ext_says(tmp_path, model):
    model.model = Counting(scale=1)
    (tmp_path / "in").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8)).save(tmp_path / "in" / "p.jpg")
    assert _run(str(tmp_path / "in"), "-o", str(tmp_path / "o1"), "--weights", "w") == 0
    assert os.listdir(tmp_path / "o1") == ["p.png"] and Image.open(tmp_path / "o1" / "p.png").format == "PNG"
    for ext, name, fmt in (("same", "p.jpg", "JPEG"), ("webp", "p.webp", "WEBP"), ("jpg", "p.jpg", "JPEG")):
        assert _run(str(tmp_path / "in"), "-o", str(tmp_path / ext), "--weights", "w", "--ext", ext) == 0
        assert os.listdir(tmp_path / ext) == [name] and Image.open(tmp_path / ext / name).format == fmt
    model.model = Counting(scale=2)  # super-resolution keeps the input's format
    assert _run(str(tmp_path / "in"), "-o", str(tmp_path / "sr"), "--weights", "w") == 0
    assert os.listdir(tmp_path / "sr") == ["p.jpg"]


def test_unwritable_kernel_cache_prints_at_most_one_line(tmp_path):
    from mambairv2.models import save_safetensors
    from mambairv2.models import create_model

    weights = save_safetensors(create_model("light", scale=2, embed_dim=16, depths=[1], num_heads=[2],
                                            inner_rank=8, num_tokens=8, d_state=4), tmp_path / "tiny.safetensors")
    _png(tmp_path / "a.png", 8, 8)
    (tmp_path / "file").write_text("the cache folder cannot be made under a file")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), MAMBAIRV2_CACHE_DIR=str(tmp_path / "file" / "cache"),
               OMP_NUM_THREADS="1")
    env.pop("MAMBAIRV2_NO_KERNEL", None)
    proc = subprocess.run([sys.executable, "-m", "mambairv2", "restore", str(tmp_path / "a.png"), "-o",
                           str(tmp_path / "out"), "--weights", str(weights), "-q"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    noise = [line for line in proc.stderr.splitlines() if not line.startswith("restored 1")]
    assert len(noise) <= 1, proc.stderr
    assert "Warning" not in proc.stderr and "warn(" not in proc.stderr


# -- --tile auto: memory limits, printing, halving on OOM -------------------------------------------
def test_auto_tile_follows_the_usable_memory_and_is_printed(tmp_path, model, capsys, monkeypatch):
    monkeypatch.setattr(memory, "memory_sources", lambda device="cpu": {"free RAM": 1 << 40, "ulimit -v": 200 << 20})
    _png(tmp_path / "a.png", 200, 200)
    assert _run(str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--weights", "w", "--tile", "auto") == 0
    err = capsys.readouterr().err
    assert "usable memory 0.2 GiB" in err and "ulimit -v" in err
    tile_lines = [line for line in err.splitlines() if line.startswith("tile: a.png")]
    assert len(tile_lines) == 1 and " px, overlap 32" in tile_lines[0]
    tile = int(tile_lines[0].split(": ")[2].split(" px")[0])
    assert tile % 16 == 0 and 48 <= tile < 200 and model.model.calls > 1


def test_auto_tile_halves_and_retries_on_out_of_memory():
    m = Counting(oom_above=64)  # whole image (128) and tiles wider than 64 px fail to allocate
    x = torch.rand(1, 3, 100, 128)
    seen = []
    y = restore_tensor(m, x, tile="auto", on_tile=lambda t, o, why: seen.append((t, o, why)))
    assert seen[0][0] is None and seen[-1][0] is not None and seen[-1][0] <= 64
    assert "out of memory" in seen[-1][2]
    assert torch.allclose(y, F.interpolate(x, scale_factor=2, mode="nearest"), atol=1e-6)
    with pytest.raises(RuntimeError, match="allocate"):  # an explicit tile is not changed behind the user
        restore_tensor(Counting(oom_above=64), x, tile=96, tile_overlap=16)


def test_memory_limits_are_read_from_rlimit_and_cgroups(tmp_path, monkeypatch):
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (3_500_000 * 1024, resource.RLIM_INFINITY)); "
            "from mambairv2.utils import memory; print(memory.address_space_available_bytes())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    left = int(out.stdout.strip())
    assert 0 < left < 3_500_000 * 1024  # the limit minus what is mapped already
    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    v2.mkdir()
    v1.mkdir()
    (v2 / "memory.max").write_text("1073741824\n")
    (v2 / "memory.current").write_text("73741824\n")
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    (v1 / "memory.usage_in_bytes").write_text("5\n")
    monkeypatch.setattr(memory, "_cgroup_dirs", lambda: [v1, v2])
    assert memory.cgroup_available_bytes() == 1_000_000_000
    monkeypatch.setattr(memory, "_cgroup_dirs", lambda: [v1])
    assert memory.cgroup_available_bytes() is None


# -- the Python API ---------------------------------------------------------------------------------
def test_api_refuses_floats_outside_0_1_unless_value_range_is_given():
    m = Counting()
    arr8 = np.random.default_rng(0).integers(0, 256, (5, 6, 3), np.uint8)
    with pytest.raises(ValueError, match=r"expected range is 0\.\.1.*value_range=\(0, 255\)"):
        restore(m, arr8.astype(np.float32))
    out = restore(m, arr8.astype(np.float32), value_range=(0, 255))
    np.testing.assert_allclose(out, restore(m, arr8).astype(np.float32), atol=1e-3)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        restore(m, torch.from_numpy(arr8.astype(np.float32)).permute(2, 0, 1))
    with pytest.raises(ValueError, match="NaN"):
        restore(m, np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="empty image"):
        restore(m, np.zeros((0, 0, 3), np.float32))
    with pytest.raises(ValueError, match="empty image"):
        restore(m, torch.zeros(3, 0, 0))


def test_api_applies_exif_orientation_to_pil_images_like_the_cli():
    m = Counting()
    px = np.random.default_rng(0).integers(0, 256, (4, 8, 3), np.uint8)
    img = Image.fromarray(px)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif)
    out = restore(m, Image.open(io.BytesIO(buf.getvalue())))
    upright = np.rot90(px, -1)
    assert out.size == (8, 16)  # (width, height) of the upright image ×2
    np.testing.assert_array_equal(np.asarray(out), np.asarray(restore(m, Image.fromarray(np.ascontiguousarray(upright)))))
    assert out.getexif().get(0x0112, 1) == 1


def test_restore_module_has_no_dead_tile_iterator():
    assert not hasattr(restore_module, "iter_tiles")


# -- many ranks: torchrun ---------------------------------------------------------------------------
@pytest.mark.slow
@needs_torchrun
def test_torchrun_two_ranks_write_what_one_process_writes(tmp_path):
    from mambairv2.models import save_safetensors
    from mambairv2.models import create_model

    weights = save_safetensors(create_model("light", scale=2, embed_dim=16, depths=[1], num_heads=[2],
                                            inner_rank=8, num_tokens=8, d_state=4), tmp_path / "tiny.safetensors")
    src = tmp_path / "in"
    for i in range(6):
        _png(src / f"im{i}.png", 24, 24, seed=i)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    common = ["-m", "mambairv2", "restore", str(src), "--weights", str(weights)]
    # --standalone: torchrun picks a free port itself
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    report = tmp_path / "report.json"
    proc = subprocess.run([*ddp, *common, "-o", str(tmp_path / "ddp"), "--json", str(report)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "restored 6, skipped 0, failed 0" in proc.stderr and "(2 ranks)" in proc.stderr
    proc = subprocess.run([sys.executable, *common, "-o", str(tmp_path / "one")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = sorted(os.listdir(tmp_path / "one"))
    assert len(names) == 6 and sorted(os.listdir(tmp_path / "ddp")) == names
    for name in names:
        assert (tmp_path / "ddp" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    files = json.loads(report.read_text())["files"]
    assert sorted(Path(f["input"]).name for f in files) == names  # each file exactly once
    assert {f["rank"] for f in files} == {0, 1}
    # resumable, and one rank's bad file stops nothing: the summary is merged on rank 0
    (src / "zz_bad.png").write_text("not an image")
    proc = subprocess.run([*ddp, *common, "-o", str(tmp_path / "ddp")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode != 0
    assert "restored 0, skipped 6, failed 1" in proc.stderr and "zz_bad.png: not an image" in proc.stderr
