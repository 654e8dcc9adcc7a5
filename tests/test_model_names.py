"""A model name means the same thing in every folder: every command that takes a model (and
``load_model``) run from a folder holding entries named ``default``, ``light`` and ``light_x4``
(a valid x2 checkpoint, garbage, or a folder) takes the catalogue's model for the bare name (and
for no name at all), the file for ``./NAME``, and says so in one note line when both exist; the
names of ``downloads.json`` reach the terminal escaped and bounded."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from mambairv2.cli.main import main
from mambairv2.models import catalog, hub, load_model, resolve
from mambairv2.models.checkpoint import CheckpointError

from conftest import shared_path

NAMES = ("default", "light", "light_x4")
CONTENTS = ("checkpoint", "garbage", "folder")
#: what ./NAME gives, by content: the x2 file's lines, or the one-line error
FILE_ERROR = {"garbage": "not a PyTorch checkpoint", "folder": "is a folder, not a checkpoint file"}


@pytest.fixture(params=CONTENTS)
def here(request, tmp_path, monkeypatch):
    """A current folder holding ``default``, ``light`` and ``light_x4`` as ``request.param``
    (checkpoint: the authors' MambaIRv2-Light x2 layout), a 16×16 image ``img/a.png`` and a
    32×32 one ``hr/a.png`` (large enough for SSIM after the x4 border crop)."""
    golden = shared_path("golden", "light_x2.pth")
    for name in NAMES:
        if request.param == "checkpoint":
            shutil.copy(golden, tmp_path / name)
        elif request.param == "garbage":
            (tmp_path / name).write_bytes(b"not a checkpoint\n")
        else:
            (tmp_path / name).mkdir()
    rng = np.random.default_rng(0)
    for folder, size in (("img", 16), ("hr", 32)):
        (tmp_path / folder).mkdir()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(tmp_path / folder / "a.png")
    monkeypatch.chdir(tmp_path)
    return request.param


def _run(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return rc, out, err


def _notes(err: str) -> list:
    return [line for line in err.splitlines() if line.startswith("note: '")]


def _check_bare(rc, err, name: str, content: str) -> None:
    """The catalogue's model ran, and one note named the folder's entry and how to ask for it."""
    assert rc == 0, err
    (note,) = _notes(err)
    entry = "folder" if content == "folder" else "file"
    assert f"'{name}' is the " in note and f"not the {entry} ./{name} in this folder" in note, note
    assert ("give ./" in note) == (entry == "file"), note


def _check_file(rc, err, content: str) -> bool:
    """``./NAME``: the file ran (True), or a one-line refusal for garbage and folders (False)."""
    assert not _notes(err), err
    if content == "checkpoint":
        assert rc == 0, err
        return True
    (line,) = err.strip().splitlines()
    assert rc != 0 and FILE_ERROR[content] in line, err
    return False


def test_restore(here, capsys):
    rc, _, err = _run(["restore", "img/a.png", "-o", "none"], capsys)  # no --model: bundled
    assert rc == 0 and "from default (bundled)" in err and not _notes(err), err
    assert Image.open("none/a.png").size == (64, 64)
    rc, _, err = _run(["restore", "img/a.png", "-o", "bare", "--model", "default"], capsys)
    _check_bare(rc, err, "default", here)
    assert "from default (bundled)" in err and Image.open("bare/a.png").size == (64, 64)
    rc, _, err = _run(["restore", "img/a.png", "-o", "file", "--model", "./default"], capsys)
    if _check_file(rc, err, here):
        assert "from ./default (file)" in err and Image.open("file/a.png").size == (32, 32)
    rc, _, err = _run(["restore", "img/a.png", "-o", "v", "--model", "light"], capsys)  # no variants here
    assert rc == 2 and "is a variant name" in err and ("./light" in err) == (here != "folder"), err


def test_evaluate(here, capsys):
    rc, out, err = _run(["evaluate", "--model", "default", "--task", "sr", "--scale", "4", "--hr-dir", "hr",
                         "-q"], capsys)
    _check_bare(rc, err, "default", here)
    assert "model default (bundled)" in out, out
    rc, out, err = _run(["evaluate", "--model", "./default", "--task", "sr", "--scale", "2", "--hr-dir", "hr",
                         "-q"], capsys)
    if _check_file(rc, err, here):
        assert "model ./default (file)" in out, out


def test_bench(here, capsys, monkeypatch):
    from mambairv2.analysis import measure

    monkeypatch.setattr(measure, "roofs", lambda device, dtype=None: {"matmul": 1.0, "onednn": 1.0, "roof": 1.0})  # the roofs: seconds, beside the point
    common = ["--size", "8", "--repeats", "1", "--warmup", "0", "--scale", "2"]
    rc, out, err = _run(["bench", *common], capsys)  # no --model: the variant, whatever ./light is
    assert rc == 0 and "light (variant, random weights) x2" in out and not _notes(err), (out, err)
    rc, out, err = _run(["bench", "--model", "light", *common], capsys)
    _check_bare(rc, err, "light", here)
    assert "light (variant, random weights) x2" in out, out
    rc, out, err = _run(["bench", "--model", "./light", *common], capsys)
    if _check_file(rc, err, here):
        assert "./light (file) x2" in out, out


def test_analyze(here, capsys):
    rc, out, err = _run(["analyze", "complexity", "--input-size", "8x8"], capsys)  # no --model: light
    assert rc == 0 and out.startswith("light (variant, random weights) x") and not _notes(err), err
    rc, out, err = _run(["analyze", "complexity", "--input-size", "8x8", "--model", "default"], capsys)
    _check_bare(rc, err, "default", here)
    assert out.startswith("default (bundled) x4:"), out
    rc, out, err = _run(["analyze", "complexity", "--input-size", "8x8", "--model", "./light"], capsys)
    if _check_file(rc, err, here):
        assert out.startswith("./light (file) x2:"), out


def test_info(here, capsys):
    for name, kind in (("default", "bundled"), ("light_x4", "bundled"), ("light", "variant, random weights")):
        rc, out, err = _run(["info", name], capsys)
        _check_bare(rc, err, name, here)
        assert out.startswith(f"model:    {name} ({kind})\n"), out
    rc, out, err = _run(["info", "./light_x4"], capsys)
    if _check_file(rc, err, here):
        assert out.startswith("model:    ./light_x4 (file)\n") and "scale:    x2" in out, out


def test_convert(here, capsys):
    rc, _, err = _run(["convert", "default", "bare.safetensors"], capsys)
    _check_bare(rc, err, "default", here)
    assert "from default (bundled)" in err, err
    rc, _, err = _run(["convert", "--model", "./default", "file.safetensors"], capsys)
    if _check_file(rc, err, here):
        assert "from ./default (file)" in err, err


def test_export_resolves_by_the_same_rule(here, capsys):
    """Up to the model's resolution only (an ONNX export takes minutes here): a bare name is the
    catalogue's (noted), ``./NAME`` the folder's entry. ``--tolerance nan`` stops it just after."""
    rc, _, err = _run(["export", "light", "-o", "m.onnx", "--tolerance", "nan"], capsys)
    assert rc == 2 and "--tolerance" in err and len(_notes(err)) == 1, err
    rc, _, err = _run(["export", "./light", "-o", "m.onnx", "--tolerance", "nan"], capsys)
    assert rc == 2 and not _notes(err)
    assert (FILE_ERROR["folder"] if here == "folder" else "--tolerance") in err, err


def test_the_app_offers_the_bundled_models(here):
    """The app's names are its own (``bundled: NAME``, ``folder: FILE``): nothing in the current
    folder is offered or loaded under a bundled name."""
    from mambairv2.app.models import ModelStore

    store = ModelStore()
    files = store.files()
    assert store.default_name() == "bundled: default"
    assert all(path.parent == catalog.WEIGHTS_DIR for path in files.values()), files
    assert store.get("bundled: default").config.upscale == 4


def test_load_model(here):
    for name in ("default", "light_x4"):
        with pytest.warns(UserWarning, match=f"'{name}' is the bundled model"):
            assert load_model(name).config.upscale == 4
    if here == "checkpoint":
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert load_model("./default").config.upscale == 2
    else:
        with pytest.raises(CheckpointError, match=FILE_ERROR[here]):
            load_model("./default")
    with pytest.raises(CheckpointError, match="variant name"):
        load_model("light")


def test_the_rule(tmp_path, monkeypatch):
    """Paths, extensions and Path objects are files; a bare word is the catalogue's, else a file
    of this folder; labels carry the kind."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(shared_path("golden", "light_x2.pth"), tmp_path / "mine")
    (tmp_path / "default.pth").write_bytes(b"x")
    from pathlib import Path

    assert resolve("default").kind == "bundled" and resolve("default").note is None
    assert resolve("light").label == "light (variant, random weights)"
    assert resolve("mine").label == "mine (file)" and resolve("mine").path == tmp_path / "mine"
    assert resolve("default.pth").kind == "file"
    assert resolve(Path("mine")).kind == "file"
    (tmp_path / "default").write_bytes(b"x")
    assert resolve(Path("default")).kind == "file" and resolve(str(tmp_path / "default")).kind == "file"
    with pytest.raises(CheckpointError, match="no such file"):
        resolve("light_x4.pth")
    # a downloaded authors' name: the catalogue's too, with the same note
    monkeypatch.setattr(catalog, "_authors_checkpoint", lambda name: tmp_path / "mine" if name == "cached" else None)
    (tmp_path / "cached").write_bytes(b"x")
    ref = resolve("cached")
    assert ref.kind == "downloaded" and ref.label == "cached (downloaded)" and "./cached" in ref.note


@pytest.mark.parametrize("argv", [["info"], ["restore", "a.png", "-o", "out"]])
def test_a_name_too_long_for_the_file_system_is_one_line(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    long = "a" * 300
    for name, says in ((long, "unknown model"), (f"./{long}", "no such file"), (f"{long}.pth", "no such file")):
        rc, _, err = _run([*argv, "--model", name], capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and says in err, err


def _records(tmp_path, monkeypatch, names) -> None:
    path = tmp_path / "downloads.json"
    path.write_text(json.dumps({n: {"sha256": "0" * 64, "arch": "MambaIRv2", "task": "sr", "scale": 2}
                                for n in names}))
    monkeypatch.setattr(hub, "record_path", lambda: path)


def test_info_models_escapes_the_names_of_downloads_json(tmp_path, monkeypatch, capsys):
    forged = ["evil\nfake_row MambaIRv2 SR 4 bundled", "red\x1b[31mname", "x" * 5000]
    _records(tmp_path, monkeypatch, forged)
    rc, out, _ = _run(["info", "--models"], capsys)
    lines = out.splitlines()
    assert rc == 0 and "\x1b" not in out and not any(line.startswith("fake_row") for line in lines)
    assert len(lines) == 1 + len(catalog.list_models())  # the header and one line per model
    assert sum(line.endswith("downloaded") for line in lines) == 3
    assert max(len(line) for line in lines) < 200
    assert any(line.startswith("evil\\nfake_row") for line in lines), out

    # the same records as 'download --list' shows them when the hub cannot be asked
    def unreachable(*args, **kwargs):
        raise hub.HubError("offline")

    monkeypatch.setattr(hub, "list_remote", unreachable)
    rc, out, _ = _run(["download", "--list"], capsys)
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 3 and "\x1b" not in out and max(len(line) for line in lines) < 200, out


def test_the_unknown_name_error_is_bounded(tmp_path, monkeypatch, capsys):
    _records(tmp_path, monkeypatch, [f"name_{i:05d}\x1b[2J" for i in range(5000)])
    rc, _, err = _run(["info", "no_such_model"], capsys)
    (line,) = err.splitlines()
    assert rc == 2 and len(line) < 2000 and "and 4,990 more" in line and "\x1b" not in line, line[:300]
