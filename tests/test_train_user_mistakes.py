"""Training's user mistakes, each driven as a user would (``mambairv2 train`` through the CLI's
``main`` or a subprocess, or the Python API): every one is ONE line naming the file or option
and what to do, never a traceback or "internal error", and nothing a previous run saved is lost.

Model overrides of both families (every door: train, create_model), wrongly typed list entries
and a bad ``data.lr_template`` in the config table, YAML alias bombs, garbage or ``.pth`` resume
states, errors in DataLoader workers, a full disk while saving, a corrupt validation image, and
``--overwrite`` of a previous run that ``--resume auto`` must not pick up again."""
from __future__ import annotations

import os
import pickle
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch

from _train_tiny import cli_env, make_images, tiny_config, train_cmd
from mambairv2 import create_model
from mambairv2.cli.main import main
from mambairv2.errors import ConfigError
from mambairv2.train.config import build_config, load_config


def _one_line(capsys, argv, code=2) -> str:
    """Runs ``mambairv2 ARGV``; its stderr must be one ``error:`` line (returned)."""
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("note: TensorBoard")]
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "internal error" not in err and "Traceback" not in err
    return lines[0]


def _fast(tmp_path, **sections):
    """A tiny config that trains 2 steps, saving each 2 steps, without validation."""
    sections.setdefault("train", {}).update({"iters": 2, "save_every": 2, "log_every": 1})
    sections.setdefault("val", {}).setdefault("every", 0)
    return tiny_config(tmp_path, **sections)


def break_png_pixels(path: Path) -> None:
    """Rewrites a PNG's image data with bytes that do not inflate, with valid chunk CRCs: the
    start-up header check passes, decoding the pixels fails."""
    data = Path(path).read_bytes()
    out, pos = bytearray(data[:8]), 8
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IDAT":
            body = b"\x78\x9c" + b"\xff" * (len(body) - 2)
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        pos += 12 + n
    Path(path).write_bytes(bytes(out))


# -- 1. model overrides: one sentence at every door, both families -----------------------------
V2_CASES = [
    ("window_size", 0, "window_size must be a positive integer"),
    ("embed_dim", -8, "embed_dim must be a positive integer"),
    ("num_tokens", 0, "num_tokens must be a positive integer"),
    ("inner_rank", 0, "inner_rank must be a positive integer"),
    ("d_state", 0, "d_state must be a positive integer"),
    ("depths", [], "depths must be a non-empty list of positive integers"),
    ("depths", [0], "depths must be a non-empty list"),
    ("depths", 5, "depths must be a non-empty list"),
    ("num_heads", [3], "num_heads entries must each divide embed_dim (16)"),
    ("num_heads", [2, 2], "num_heads must have one entry per group of depths (1)"),
    ("mlp_ratio", -1.0, "mlp_ratio must be a positive number"),
    ("mlp_ratio", 0.01, "hidden width"),
    ("convffn_kernel_size", 4, "convffn_kernel_size must be an odd positive integer"),
    ("img_range", 0, "img_range must be a positive number"),
    ("hidden_dim", 0, "hidden_dim must be a positive integer"),
    ("embed_dim", "abc", "embed_dim must be a positive integer, got 'abc'"),
    ("embed_dim", True, "embed_dim must be a positive integer, got True"),
    ("upsampler", "bilinear", "upsampler must be one of"),
    ("ase", "yes", "ase must be true or false"),
    ("embde_dim", 16, "embde_dim is not a field of MambaIRv2Config (did you mean 'embed_dim'?)"),
]
V1_CASES = [
    ("embed_dim", -8, "embed_dim must be an integer ≥ 30"),
    ("d_state", 0, "d_state must be a positive integer"),
    ("depths", [], "depths must be a non-empty list"),
    ("mlp_ratio", -1.0, "mlp_ratio must be a positive number"),
    ("mlp_ratio", 0.001, "scan width"),
    ("scan_directions", 3, "scan_directions must be one of 1, 2, 4"),
    ("window_size", 8, "window_size is not a field of MambaIRConfig"),
]
V1_MODEL = {"variant": "mambair-light", "scale": 2, "overrides": {"embed_dim": 30, "depths": [1], "d_state": 4}}


def _yaml(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


@pytest.mark.parametrize("field, value, message", V2_CASES)
def test_mambairv2_override_is_one_line_in_train(tmp_path, capsys, field, value, message):
    cfg = _fast(tmp_path)
    err = _one_line(capsys, ["train", str(cfg), "--set", f"model.overrides.{field}={_yaml(value)}"])
    assert f"model.overrides.{field}" in err and message in err, err
    assert not (tmp_path / "run" / "models").exists()


@pytest.mark.parametrize("field, value, message", V1_CASES)
def test_mambair_v1_override_is_one_line_in_train(tmp_path, capsys, field, value, message):
    cfg = _fast(tmp_path, model=V1_MODEL)
    err = _one_line(capsys, ["train", str(cfg), "--set", f"model.overrides.{field}={_yaml(value)}"])
    assert f"model.overrides.{field}" in err and message in err, err


@pytest.mark.parametrize("variant, field, value, message",
                         [("light", *c) for c in V2_CASES] + [("mambair-light", *c) for c in V1_CASES])
def test_create_model_gives_the_same_sentence(variant, field, value, message):
    base = {"embed_dim": 16, "depths": [1], "num_heads": [2]} if variant == "light" else {"embed_dim": 30, "depths": [1]}
    base[field] = value
    with pytest.raises(ConfigError) as info:  # a ValueError too, as before
        create_model(variant, 2, **base)
    text = str(info.value)
    assert message in text and "\n" not in text and info.value.field == field
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("field, value", [("window_size", 0), ("d_state", 0), ("depths", "[]")])
def test_ablate_gives_the_same_sentence(tmp_path, capsys, field, value):
    cfg = _fast(tmp_path)
    err = _one_line(capsys, ["ablate", "table1", "--config", str(cfg), "--steps", "1", "--output-dir",
                             str(tmp_path / "ablation"), "--set", f"model.overrides.{field}={value}"])
    assert err.startswith(f"error: model.overrides.{field} must be"), err
    assert not (tmp_path / "ablation").exists()


def test_model_overrides_that_train_data_cannot_feed(tmp_path, capsys):
    cfg = _fast(tmp_path)
    err = _one_line(capsys, ["train", str(cfg), "--set", "model.overrides.in_chans=1"])
    assert "in_chans=3" in err and "RGB" in err
    err = _one_line(capsys, ["train", str(cfg), "--set", "model.scale=5"])
    assert err.startswith("error: model") and "scale" in err
    (tmp_path / "keys.yaml").write_text("model:\n  overrides:\n    5: 1\n")
    assert "field names are strings" in _one_line(capsys, ["train", str(tmp_path / "keys.yaml")])


# -- 2, 3. wrongly typed list entries and a bad lr_template ---------------------------------------
@pytest.mark.parametrize("override, key", [
    ("data.extensions=[5]", "data.extensions"),
    ("data.extensions=[.png, 5]", "data.extensions"),
    ("data.extensions=[]", "data.extensions"),
    ("data.extensions=[[.png]]", "data.extensions"),
    ("data.train_root=[1, 2]", "data.train_root"),
    ("train.betas=[true, 0.5]", "train.betas"),
    ("train.milestones=[1.5]", "train.milestones"),
    ("realsr.kernel_list=[5]", "realsr.kernel_list"),
    ("realsr.kernel_range=[7, x]", "realsr.kernel_range"),
    ("realsr.resize_modes=[{a: 1}]", "realsr.resize_modes"),
    ("train.gamma=.nan", "train.gamma"),
    ("train.weight_decay=.inf", "train.weight_decay"),
])
def test_wrongly_typed_entries_are_one_line(tmp_path, capsys, override, key):
    err = _one_line(capsys, ["train", str(_fast(tmp_path)), "--set", override])
    assert err.startswith(f"error: {key}:"), err


@pytest.mark.parametrize("template, words", [
    ("{nam}x{scale}{ext}", "unknown placeholder {nam}"),
    ("lr{scale}{ext}", "has no {name}"),
    ("{name", "not a file name template"),
    ("{}x{scale}{ext}", "unknown placeholder {}"),
    ("{0}{ext}", "unknown placeholder {0}"),
    ("{name.__class__}", "unknown placeholder {name.__class__}"),
    ("{name:d}{ext}", "does not format"),
    ("{name}/", "folder separator"),
])
def test_bad_lr_template_is_one_line(tmp_path, capsys, template, words):
    cfg = _fast(tmp_path)
    text = Path(cfg).read_text()
    Path(cfg).write_text(text.replace("data:\n", f"data:\n  lr_template: '{template}'\n", 1))
    err = _one_line(capsys, ["train", str(cfg)])
    assert err.startswith("error: data.lr_template:") and words in err and "{name}x{scale}{ext}" in err, err


def test_valid_lr_templates_are_accepted():
    for template in ("{name}x{scale}{ext}", "{name}{ext}", "X{scale}/{name}x{scale}.png", "{name}_{scale:02d}{ext}"):
        assert build_config({"data": {"lr_template": template}})["data"]["lr_template"] == template


# -- 4. YAML alias bombs ----------------------------------------------------------------------------
def _bomb(value_key: str = "name") -> str:
    levels = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        levels.append(f"&{cur} [{','.join(['*' + prev] * 9)}]")
    return f"{value_key}: [{', '.join(levels)}]\n"


def test_alias_bomb_is_refused_quickly_by_print_config(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb())
    start = time.monotonic()
    proc = subprocess.run(train_cmd(bomb, "--print-config"), env=cli_env(), capture_output=True, text=True,
                          timeout=120)
    assert time.monotonic() - start < 60
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bomb}:") and "aliases" in lines[0], proc.stderr


@pytest.mark.parametrize("text, words", [
    (_bomb("name"), "aliases (*name) expand to more than"),
    ("model:\n  overrides:\n    " + _bomb("depths"), "aliases (*name) expand to more than"),
    ("name: &a [*a]\n", "refers to a value that contains it"),
    ("name: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
], ids=["bomb", "bomb-in-overrides", "recursive", "deep"])
def test_alias_bombs_are_refused_by_plain_loading(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.monotonic() - start < 10
    assert str(info.value).startswith(f"{path}:") and words in str(info.value) and "\n" not in str(info.value)


def test_alias_bomb_in_set_and_devices_are_refused(tmp_path, capsys):
    cfg = _fast(tmp_path)
    bomb = _bomb("x")[len("x: "):].strip()
    err = _one_line(capsys, ["train", str(cfg), "--set", f"model.overrides.depths={bomb}"])
    assert "--set model.overrides.depths" in err and "aliases" in err
    if Path("/dev/zero").exists():
        assert "not a regular file" in _one_line(capsys, ["train", "/dev/zero", "--print-config"])
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    assert "larger than 1 MiB" in _one_line(capsys, ["train", str(big), "--print-config"])


def test_plain_anchors_still_work(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("train:\n  lr: &lr 0.001\n  eta_min: *lr\n")
    cfg = load_config(path)
    assert cfg["train"]["lr"] == cfg["train"]["eta_min"] == 0.001


# -- 5. resume states that are not states ------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 4-step run with states at steps 2 and 4 (and its config)."""
    tmp = tmp_path_factory.mktemp("finished")
    cfg = tiny_config(tmp, train={"iters": 4, "save_every": 2, "log_every": 2}, val={"every": 0})
    assert main(["train", str(cfg)]) == 0
    return tmp, cfg


def _copy_run(finished_run, tmp_path):
    src, cfg = finished_run
    shutil.copytree(src / "run", tmp_path / "run")
    text = Path(cfg).read_text().replace(str(src / "run"), str(tmp_path / "run"))
    (tmp_path / "tiny.yaml").write_text(text)
    return tmp_path / "tiny.yaml", tmp_path / "run"


def test_resume_from_garbage_pth_or_pickle_is_one_line(finished_run, tmp_path, capsys):
    cfg, run = _copy_run(finished_run, tmp_path)
    garbage = tmp_path / "garbage.state"
    garbage.write_bytes(os.urandom(5000))
    err = _one_line(capsys, ["train", str(cfg), "--resume", str(garbage), "--set", "train.iters=6"])
    assert str(garbage) in err and "not a training state" in err and "--resume takes" in err

    weights = run / "models" / "net_g_2.pth"
    err = _one_line(capsys, ["train", str(cfg), "--resume", str(weights), "--set", "train.iters=6"])
    assert str(weights) in err and "a weights file, not a training state" in err and "model.init_from" in err

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(Evil()))
    err = _one_line(capsys, ["train", str(cfg), "--resume", str(evil), "--set", "train.iters=6"])
    assert str(evil) in err and "not a training state" in err and not marker.exists()

    for name, obj in (("list.state", [1, 2]), ("nostep.state", {"params": {}, "step": "x"})):
        torch.save(obj, tmp_path / name)
        err = _one_line(capsys, ["train", str(cfg), "--resume", str(tmp_path / name), "--set", "train.iters=6"])
        assert str(tmp_path / name) in err and "training state" in err
    (tmp_path / "empty.state").write_bytes(b"")
    assert "empty file" in _one_line(capsys, ["train", str(cfg), "--resume", str(tmp_path / "empty.state")])


def test_corrupt_newest_state_names_the_previous_one(finished_run, tmp_path, capsys):
    cfg, run = _copy_run(finished_run, tmp_path)
    newest = run / "training_states" / "4.state"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # truncated
    err = _one_line(capsys, ["train", str(cfg), "--resume", "auto", "--set", "train.iters=6"])
    assert str(newest) in err and str(run / "training_states" / "2.state") in err
    state = torch.load(run / "training_states" / "2.state", weights_only=True)
    state["optimizer"]["param_groups"] = []  # loads, but does not fit the optimizer
    torch.save(state, newest)
    err = _one_line(capsys, ["train", str(cfg), "--resume", "auto", "--set", "train.iters=6"])
    assert str(newest) in err and "damaged training state" in err
    # the states' own folder stands for its run folder: the same (newest) state is read
    err = _one_line(capsys, ["train", str(cfg), "--resume", str(run / "training_states"), "--set", "train.iters=6"])
    assert str(newest) in err


# -- 6. errors in DataLoader workers, as the main process reports them ---------------------------
def test_worker_errors_read_as_the_main_process_reports_them(tmp_path, capsys):
    cfg = _fast(tmp_path)
    for f in (tmp_path / "data" / "train").glob("*.png"):
        break_png_pixels(f)  # every header is fine, no image decodes
    runs = {}
    for workers in (0, 2):
        rc = main(["train", str(cfg), "--set", f"data.num_workers={workers}",
                   "--set", f"output_dir={tmp_path / f'run{workers}'}"])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("note: TensorBoard")]
        runs[workers] = lines
        assert rc == 2, err
        assert "Traceback" not in err and "worker process" not in err and "internal error" not in err
        assert lines[-1].startswith("error: no training image decodes (4 file(s); e.g. ") and "img0" in lines[-1]
        assert "data.train_root" in lines[-1]
        warnings = [line for line in lines if line.startswith("warning: skipped a training image")]
        assert len(warnings) == len(set(warnings)) == 4, err  # each file once, not once per worker
        assert len(lines) == 5, err
    assert sorted(runs[0][:-1]) == sorted(runs[2][:-1])


class _Failing(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        raise ValueError(f"sample {i} cannot be made")


def test_worker_exception_gives_back_the_original_error():
    from mambairv2.train.data import worker_exception

    loader = torch.utils.data.DataLoader(_Failing(), batch_size=2, num_workers=1)
    with pytest.raises(ValueError) as info:
        next(iter(loader))
    assert "\n" in str(info.value)  # the loader's many-line wrapper
    original = worker_exception(info.value)
    assert type(original) is ValueError and str(original) == "sample 0 cannot be made"
    assert worker_exception(ValueError("plain")) is None


# -- 7. a full disk while saving -----------------------------------------------------------------
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device whose writes fail with ENOSPC)")
def test_disk_full_while_saving_is_one_line_and_keeps_earlier_checkpoints(tmp_path, capsys, monkeypatch):
    """Once step 2 is saved, every new file in the run's models/ and training_states/ is a link
    to /dev/full: the kernel's real ENOSPC, through torch.save's own error path."""
    from mambairv2.train import trainer as trainer_module
    from mambairv2.utils import atomic

    cfg = tiny_config(tmp_path, train={"iters": 4, "save_every": 2, "log_every": 2}, val={"every": 0})
    run = tmp_path / "run"
    full = {"on": False}
    real_temporary, real_save = atomic._temporary, trainer_module.save_training_checkpoint

    def temporary(path):
        tmp = real_temporary(path)
        if full["on"] and Path(path).parent.name in ("models", "training_states"):
            os.unlink(tmp)
            os.symlink("/dev/full", tmp)
        return tmp

    def save_then_fill(*args, **kwargs):
        result = real_save(*args, **kwargs)
        full["on"] = True  # the disk fills up after this save
        return result

    monkeypatch.setattr(atomic, "_temporary", temporary)
    monkeypatch.setattr(trainer_module, "save_training_checkpoint", save_then_fill)
    err = _one_line(capsys, ["train", str(cfg)], code=1)
    assert f"cannot save step 4: {run / 'models' / 'net_g_4.pth'}: No space left on device" in err, err
    assert "--resume continues from step 2" in err
    assert sorted(p.name for p in (run / "models").iterdir()) == ["net_g_2.pth", "net_g_latest.pth"]
    assert sorted(p.name for p in (run / "training_states").iterdir()) == ["2.state"]
    latest = torch.load(run / "models" / "net_g_latest.pth", weights_only=True)
    step2 = torch.load(run / "models" / "net_g_2.pth", weights_only=True)
    assert all(torch.equal(latest["params"][k], step2["params"][k]) for k in step2["params"])
    assert torch.load(run / "training_states" / "2.state", weights_only=True)["step"] == 2

    full["on"] = False  # space freed: the run continues where it was saved
    monkeypatch.setattr(trainer_module, "save_training_checkpoint", real_save)
    assert main(["train", str(cfg), "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().err
    assert sorted(p.name for p in (run / "training_states").iterdir()) == ["2.state", "4.state"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_at_the_state_file_removes_that_steps_weights(tmp_path, capsys, monkeypatch):
    from mambairv2.utils import atomic

    cfg = tiny_config(tmp_path, train={"iters": 2, "save_every": 2}, val={"every": 0})
    real_temporary = atomic._temporary

    def temporary(path):
        tmp = real_temporary(path)
        if Path(path).parent.name == "training_states":
            os.unlink(tmp)
            os.symlink("/dev/full", tmp)
        return tmp

    monkeypatch.setattr(atomic, "_temporary", temporary)
    err = _one_line(capsys, ["train", str(cfg)], code=1)
    assert "cannot save step 2:" in err and "2.state: No space left on device" in err
    assert "no step of this run was saved yet" in err
    run = tmp_path / "run"
    assert list((run / "models").iterdir()) == [] and list((run / "training_states").iterdir()) == []


# -- 8. a corrupt validation image is found before step 1 ----------------------------------------
def test_corrupt_validation_image_is_one_line_before_any_step(tmp_path, capsys):
    cfg = tiny_config(tmp_path, train={"iters": 4, "save_every": 2}, val={"every": 2})
    bad = tmp_path / "data" / "val" / "img01.png"
    break_png_pixels(bad)
    err = _one_line(capsys, ["train", str(cfg)])
    assert str(bad) in err and "val.every=0" in err and "val.root" in err
    run = tmp_path / "run"
    assert not (run / "log.csv").exists() and not (run / "training_states").exists()


def test_unusable_validation_inputs_are_one_line_before_any_step(tmp_path, capsys):
    cfg = tiny_config(tmp_path, train={"iters": 4, "save_every": 2}, val={"every": 2})
    lr = tmp_path / "val_lr"
    lr.mkdir()
    err = _one_line(capsys, ["train", str(cfg), "--set", f"val.lr_root={lr}"])
    assert "no input for img00.png" in err and "val.lr_root" in err
    make_images(tmp_path / "dot", count=1, size=8)
    from PIL import Image

    Image.new("RGB", (1, 1)).save(tmp_path / "data" / "val" / "dot.png")
    err = _one_line(capsys, ["train", str(cfg)])
    assert "dot.png" in err and "smaller than the scale 2" in err
    assert not (tmp_path / "run" / "log.csv").exists()


# -- 9. --overwrite removes the previous run, so --resume auto cannot pick it up --------------------
def test_overwrite_removes_the_previous_runs_states(finished_run, tmp_path, capsys):
    cfg, run = _copy_run(finished_run, tmp_path)
    (run / "models" / "notes.txt").write_text("mine")  # not the run's: stays
    (run / "my_data.csv").write_text("mine")
    assert main(["train", str(cfg), "--overwrite", "--set", "train.iters=2"]) == 0
    err = capsys.readouterr().err
    assert "--overwrite: removed the previous run's 2 training state(s)" in err
    assert sorted(p.name for p in (run / "training_states").iterdir()) == ["2.state"]
    assert sorted(p.name for p in (run / "models").iterdir()) == ["net_g_2.pth", "net_g_latest.pth", "notes.txt"]
    assert (run / "my_data.csv").read_text() == "mine"
    assert not list(run.glob(".overwritten-*"))
    # --resume auto continues the new run (step 2), never the old one's step 4
    assert main(["train", str(cfg), "--resume", "auto", "--set", "train.iters=3"]) == 0
    err = capsys.readouterr().err
    assert f"resumed from {run / 'training_states' / '2.state'} at step 2" in err
    assert sorted(p.name for p in (run / "training_states").iterdir()) == ["2.state", "3.state"]


def test_overwrite_that_fails_a_check_keeps_the_previous_run(finished_run, tmp_path, capsys):
    cfg, run = _copy_run(finished_run, tmp_path)
    before = sorted(p.name for p in (run / "training_states").iterdir())
    err = _one_line(capsys, ["train", str(cfg), "--overwrite", "--set", f"val.root={tmp_path / 'missing'}",
                             "--set", "val.every=1"])
    assert "val.root" in err
    assert sorted(p.name for p in (run / "training_states").iterdir()) == before == ["2.state", "4.state"]


def test_workers_start_after_opencv_ran_threaded_in_the_parent(tmp_path):
    """OpenCV's thread pool, running in the trainer's process before the workers are forked
    (validation, earlier work in the same process), must not leave the workers waiting forever.
    Run in a subprocess so that a hang is a bounded failure, not a stuck suite."""
    cfg = _fast(tmp_path)
    script = (
        "import sys, numpy as np, cv2\n"
        "for _ in range(3):\n"
        "    cv2.resize(np.random.rand(1500, 1500, 3).astype(np.float32), (2500, 2500))\n"
        "from mambairv2.cli.main import main\n"
        f"sys.exit(main(['train', {str(cfg)!r}, '--set', 'data.num_workers=2', "
        f"'--set', 'output_dir={tmp_path / 'run'}']))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    try:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("training with 2 DataLoader workers hung after OpenCV ran threaded in the parent")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "models" / "net_g_latest.pth").is_file()


# -- a refused start leaves no run folder behind ----------------------------------------------------
def test_a_refused_start_removes_the_folders_it_made_and_keeps_existing_ones(tmp_path, capsys):
    cfg = tiny_config(tmp_path, train={"iters": 4, "save_every": 2}, val={"every": 2})
    bad = tmp_path / "data" / "val" / "img01.png"
    break_png_pixels(bad)
    made = tmp_path / "runs" / "deep" / "run"
    err = _one_line(capsys, ["train", str(cfg), "--set", f"output_dir={made}"])
    assert str(bad) in err
    assert not (tmp_path / "runs").exists()  # nothing of it left, the parents it made included
    kept = tmp_path / "mine"
    kept.mkdir()
    _one_line(capsys, ["train", str(cfg), "--set", f"output_dir={kept}"])
    assert kept.is_dir()  # the user's own folder stays (with the lock file, as after any run)


def test_a_missing_relative_dataset_folder_names_the_current_folder(tmp_path, capsys, monkeypatch):
    cfg = tiny_config(tmp_path, train={"iters": 2, "save_every": 2}, val={"every": 0})
    monkeypatch.chdir(tmp_path)
    err = _one_line(capsys, ["train", str(cfg), "--set", "data.train_root=nowhere/T91"])
    assert err == f"error: nowhere/T91: no such dataset folder (relative to the current folder {tmp_path})"


def test_devices_and_fifos_are_not_called_empty_files(tmp_path, capsys):
    """A FIFO or /dev/zero (size 0) as a checkpoint, a state to resume, a warm start or a config
    to show: "not a regular file", never "empty file" (and never read: a FIFO would block)."""
    cfg = _fast(tmp_path)
    fifo = tmp_path / "pipe.pth"
    os.mkfifo(fifo)
    for special in [fifo] + [Path("/dev/zero")] * Path("/dev/zero").exists():
        for argv in (["info", str(special)], ["train", str(cfg), "--resume", str(special)],
                     ["train", str(cfg), "--set", f"model.init_from={special}"],
                     ["configs", "--show", str(special)]):
            err = _one_line(capsys, argv)
            assert "not a regular file" in err and "empty file" not in err, (argv, err)


def test_configs_show_of_a_binary_file_is_one_line(tmp_path, capsys):
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"\x80\x03PK\xff\xfe" * 10)
    assert "not a text file" in _one_line(capsys, ["configs", "--show", str(binary)])
    assert "not a text file" in _one_line(capsys, ["train", str(binary), "--print-config"])
