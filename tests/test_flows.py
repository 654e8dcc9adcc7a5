"""The user flows the docs promise, each end to end through the command line only (subprocesses
of ``python -m mambairv2``, as a user runs them) on tiny budgets; one tiny training run is shared.

- train (killed with SIGKILL after its first checkpoint) → ``--resume`` → evaluate → convert →
  export (ONNX, verified by the command) → the converted file through spandrel (ComfyUI's loader);
- degrade → restore the degraded images → evaluate with those inputs: the same pixels;
- degrade → train on the degraded set (``data.train_lr_root``);
- download (a stand-in hub on 127.0.0.1) → restore by the downloaded name.

The real-world SR flow is tests/test_flow_realsr.py; ablate → report is
tests/test_ablation.py::test_a_tiny_run_writes_one_row_per_table_row."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from _flows import mambairv2, train_killed_then_resumed
from _train_tiny import cli_env, make_images, tiny_config

ITERS = 8


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A user's folder with a tiny x2 run trained, killed after its first checkpoint and resumed
    (``run/``), its config ``tiny.yaml`` and the images ``data/train``, ``data/val``."""
    home = tmp_path_factory.mktemp("flows")
    cfg = tiny_config(home, train={"save_every": 1, "log_every": 1}, val={"every": ITERS})
    train_killed_then_resumed([str(cfg)], home / "run", home, ITERS)
    return home


def test_train_resume_evaluate_convert_export_and_load_in_spandrel(home):
    net = "run/models/net_g_latest.pth"
    mambairv2("evaluate", "--model", net, "--task", "sr", "--hr-dir", "data/val", "--json", "eval.json", "-q",
              cwd=home)
    (dataset,) = json.loads((home / "eval.json").read_text())["datasets"].values()
    assert [r["name"] for r in dataset["images"]] == ["img00.png", "img01.png"]
    assert all(np.isfinite(r["psnr"]) and r["psnr"] > 0 for r in dataset["images"])
    mambairv2("convert", net, "model.safetensors", cwd=home)
    info = mambairv2("info", "model.safetensors", cwd=home).stdout
    assert "scale:    x2" in info and "embed_dim=16" in info
    done = mambairv2("export", "--model", "model.safetensors", "-o", "model.onnx", "--size", "16x16", cwd=home)
    assert (home / "model.onnx").stat().st_size > 0 and "error" in (done.stdout + done.stderr).lower()
    from spandrel_support import import_spandrel  # in-process: ComfyUI and chaiNNer load files so

    spandrel = import_spandrel()
    from mambairv2.integrations import spandrel as ours

    ours.install(ignore_duplicates=True)
    desc = spandrel.ModelLoader().load_from_file(str(home / "model.safetensors"))
    assert desc.architecture.id == "MambaIRv2" and desc.scale == 2


def test_degrade_restore_evaluate_give_the_same_pixels(home):
    """``restore`` of ``degrade``'s LR files writes what ``evaluate --lr-dir --save-dir`` scores."""
    net = "run/models/net_g_latest.pth"
    mambairv2("degrade", "--task", "sr", "--scale", "2", "--hr-dir", "data/val", "--out", "val_lr", cwd=home)
    mambairv2("restore", "val_lr", "-o", "restored", "--model", net, "--format", "png", cwd=home)
    mambairv2("evaluate", "--model", net, "--task", "sr", "--hr-dir", "data/val", "--lr-dir", "val_lr",
              "--name", "val", "--save-dir", "scored", "-q", cwd=home)
    for name in ("img00", "img01"):
        restored = np.asarray(Image.open(home / "restored" / f"{name}x2.png"))
        scored = np.asarray(Image.open(home / "scored" / "val" / f"{name}.png"))
        assert restored.shape == scored.shape == (40, 40, 3)
        assert np.array_equal(restored, scored), name


def test_degrade_then_train_on_the_degraded_set(home):
    mambairv2("degrade", "--task", "sr", "--scale", "2", "--hr-dir", "data/train", "--out", "train_lr", cwd=home)
    # the LR files as the trainer reads them: <name>x2.png beside the HR <name>.png
    assert sorted(p.name for p in (home / "train_lr").iterdir()) == [f"img{i:02d}x2.png" for i in range(4)]
    done = mambairv2("train", "tiny.yaml", "--set", "output_dir=run_lr", "--set", "data.train_lr_root=train_lr",
                     "--set", "train.iters=2", "--set", "train.milestones=[2]", "--set", "val.every=0", cwd=home)
    assert "stopped at step 2 (done)" in done.stderr
    assert (home / "run_lr" / "models" / "net_g_2.pth").exists()
    (home / "train_lr" / "img00x2.png").unlink()  # the set is really read: a missing LR file is named
    failed = mambairv2("train", "tiny.yaml", "--set", "output_dir=run_lr2", "--set", "data.train_lr_root=train_lr",
                       "--set", "train.iters=2", cwd=home, expect=2)
    assert "img00" in failed.stderr and len(failed.stderr.strip().splitlines()) == 1, failed.stderr


def test_download_then_restore_by_name(tmp_path):
    from conftest import shared_path
    from hub_standin import HubStandIn

    pytest.importorskip("huggingface_hub", reason="huggingface_hub is needed")
    weights = shared_path("golden", "light_x2.pth").read_bytes()
    make_images(tmp_path / "in", count=1, size=16)
    env = {k: v for k, v in cli_env().items()  # the stand-in is local: no hub settings, no proxy
           if not k.startswith(("HF_", "HUGGINGFACE")) and not k.lower().endswith("_proxy")}
    # a fresh cache folder holds no compiled CPU kernels (a minute to build): PyTorch's operators
    env.update(HF_HOME=str(tmp_path / "hf"), MAMBAIRV2_CACHE_DIR=str(tmp_path / "mc"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1", MAMBAIRV2_IMPLEMENTATION="pytorch")
    with HubStandIn("cguoh/MambaIR", {"MambaIRv2_ckpt/mambairv2_lightSR_x2.pth": weights}) as hub:
        mambairv2("download", "mambairv2_lightSR_x2", cwd=tmp_path, env={**env, "HF_ENDPOINT": hub.endpoint})
        served = len(hub.requests)
        # restoring by the name reads the cache, never the hub
        done = mambairv2("restore", "in/img00.png", "-o", "out", "--model", "mambairv2_lightSR_x2", cwd=tmp_path,
                         env={**env, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "1"})
        assert len(hub.requests) == served
    assert "MambaIRv2 light x2" in done.stderr + done.stdout
    assert Image.open(tmp_path / "out" / "img00.png").size == (32, 32)
