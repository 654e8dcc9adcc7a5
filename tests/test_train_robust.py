"""Training that bad files, crashes and user mistakes do not derail: the start-up scan lists
unusable files in one notice and trains on; an image that fails to decode later is skipped;
a crash saves the last completed step; mistakes are one-line errors or listed warnings."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from _train_tiny import make_images, tiny_config
from mambairv2.cli.main import main
from mambairv2.protocol.task import TaskSpec
from mambairv2.train import trainer as trainer_module
from mambairv2.train.config import load_config
from mambairv2.train.data import SampleSpec, TrainDataset, list_images, scan_images


def _bad_files(folder):
    good = (folder / "img00.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("this is not an image\n")
    return ["truncated.png", "empty.png", "notes.png"]


def test_scan_lists_unusable_files_and_small_images_apart(tmp_path):
    folder = make_images(tmp_path / "hr", count=2, size=64)
    make_images(tmp_path / "small", count=1, size=16)
    shutil.copy(tmp_path / "small" / "img00.png", folder / "tiny.png")
    bad = _bad_files(folder)
    scan = scan_images(list_images([str(folder)], [".png"]), 32)
    assert sorted(p.name for p, _ in scan.bad) == sorted(bad)
    assert [p.name for p in scan.small] == ["tiny.png"]  # only a real image is "too small"
    assert [p.name for p in scan.usable] == ["img00.png", "img01.png"]


def test_training_folder_with_bad_files_trains_to_the_end(tmp_path, capsys):
    cfg = tiny_config(tmp_path, train={"iters": 4, "save_every": 4, "log_every": 2}, val={"every": 0})
    bad = _bad_files(tmp_path / "data" / "train")
    assert main(["train", str(cfg)]) == 0
    err = capsys.readouterr().err
    notices = [line for line in err.splitlines() if line.startswith("notice:")]
    assert len(notices) == 1 and all(name in notices[0] for name in bad), err
    assert "smaller than" not in err
    assert (tmp_path / "run" / "training_states" / "4.state").exists()


def test_image_that_fails_to_decode_mid_run_is_skipped(tmp_path, capsys):
    folder = make_images(tmp_path / "hr", count=3, size=40)
    files = list_images([str(folder)], [".png"])
    ds = TrainDataset(files, SampleSpec(TaskSpec("denoise", sigma=15), patch=32), seed=0, cache=False)
    files[1].write_bytes(b"\x89PNG\r\n\x1a\n broken later")
    a = ds[(1, 7)]
    assert "img01.png" in capsys.readouterr().err
    expected = ds[(2, 7)]  # the next image, same sample number
    assert torch.equal(a["gt"], expected["gt"]) and torch.equal(a["lq"], expected["lq"])
    ds[(1, 8)]
    assert capsys.readouterr().err == ""  # reported once


def test_a_crash_saves_the_last_completed_step_first(tmp_path, monkeypatch):
    cfg = load_config(tiny_config(tmp_path, train={"iters": 6, "save_every": 100}, val={"every": 0}))
    real = trainer_module.Trainer.train_step

    def failing(self, batch):
        if self.step == 3:
            raise RuntimeError("simulated failure")
        return real(self, batch)

    monkeypatch.setattr(trainer_module.Trainer, "train_step", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        trainer_module.train(cfg)
    state = torch.load(tmp_path / "run" / "training_states" / "3.state", weights_only=True)
    assert state["step"] == 3


def _error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "internal error" not in err
    return err


def test_user_mistakes_are_one_line_errors(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert "output folder" in _error(capsys, ["train", str(cfg), "--set", f"output_dir={blocker / 'run'}"])
    err = _error(capsys, ["train", str(cfg), "--set", f"val.root={tmp_path / 'no_val'}"])
    assert "val.root" in err and "no_val" in err
    assert "val.tile" in _error(capsys, ["train", str(cfg), "--set", "val.protocol=official", "--set", "val.tile=32"])


def test_resume_with_other_data_root_or_model_warns_with_the_differences(tmp_path, capsys):
    cfg = tiny_config(tmp_path, train={"iters": 2, "save_every": 2}, val={"every": 0})
    assert main(["train", str(cfg)]) == 0
    other = make_images(tmp_path / "other", count=2, size=64, seed=5)
    capsys.readouterr()
    assert main(["train", str(cfg), "--resume", "--set", f"data.train_root={other}",
                 "--set", "train.iters=3"]) == 0
    err = capsys.readouterr().err
    assert "warning: resuming" in err and "data.train_root" in err and str(other) in err
    assert main(["train", str(cfg), "--resume", "--set", "model.overrides.embed_dim=8",
                 "--set", "model.overrides.num_heads=[1]"]) == 2
    warning, err = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith("warning: resuming") and "model.overrides" in warning
    assert err.startswith("error: ") and "do not fit" in err and "embed_dim': 8" in err


def test_validation_can_use_the_official_protocol(tmp_path):
    cfg = load_config(tiny_config(tmp_path, train={"iters": 2, "save_every": 2}, val={"every": 2, "protocol": "official"}))
    summary = trainer_module.train(cfg)
    assert summary["step"] == 2 and np.isfinite(summary["val_psnr"])


def test_sigterm_during_a_step_saves_that_step_and_exits_143(tmp_path, monkeypatch, capsys):
    import os
    import signal

    cfg = tiny_config(tmp_path, train={"iters": 50, "save_every": 100}, val={"every": 0})
    real = trainer_module.Trainer.train_step

    def signalled(self, batch):
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of step 3
        return real(self, batch)

    monkeypatch.setattr(trainer_module.Trainer, "train_step", signalled)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["train", str(cfg)]) == 128 + signal.SIGTERM
    assert "--resume" in capsys.readouterr().err
    states = sorted(p.name for p in (tmp_path / "run" / "training_states").iterdir())
    assert states == ["3.state"]  # step 3 finished and saved, no further step
    assert signal.getsignal(signal.SIGTERM) == before  # handler restored
