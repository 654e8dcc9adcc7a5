"""Real-world SR training: the GAN stage (U-Net discriminator with spectral norm, VGG19
perceptual loss, GAN loss) on the on-the-fly degradations; discriminator checkpoints beside the
generator's; exact resume (a 3-step run resumed to 5 steps, or killed with SIGKILL at step 3 and
resumed, equals an uninterrupted 5-step run bitwise); the VGG file checked before training; the
four packaged real-world configs' --dry-run."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml

from conftest import needs_torchrun
from _train_tiny import TINY_MODEL, cli_env, make_images, train_cmd
from mambairv2.cli.main import main
from mambairv2.train.discriminator import SNConv2d, UNetDiscriminatorSN
from mambairv2.train.perceptual import LAYERS, PerceptualLoss, VGG19Features, VGGWeightsError, random_vgg19_state_dict

REAL_CONFIGS = ("realsr_light_x4_net", "realsr_light_x4_gan", "realsr_base_x4_net", "realsr_base_x4_gan")


def gan_config(tmp, **sections):
    """A tiny x2 GAN-stage config on synthetic images: HR patches 32 px, an 8-feature
    discriminator, a random-weight VGG19 file in torchvision's layout."""
    train_root = make_images(tmp / "data" / "train", count=3, size=48)
    vgg = tmp / "vgg19.pth"
    if not vgg.exists():
        torch.save(random_vgg19_state_dict(1), vgg)
    cfg = {
        "name": "tiny_gan", "output_dir": str(tmp / "run"), "device": "cpu",
        "model": {"variant": "light", "scale": 2, "overrides": dict(TINY_MODEL)},
        "data": {"task": "realsr", "train_root": str(train_root), "patch_size": 16, "batch_size": 2,
                 "num_workers": 0, "rot90": False},
        "val": {"every": 0},
        "train": {"iters": 5, "lr": 1e-3, "save_every": 1, "log_every": 1, "ema_decay": 0.9, "progress": "off",
                  "plot": False, "tensorboard": False, "keep_checkpoints": 0, "vgg19_weights": str(vgg),
                  "amp": "none"},
        "gan": {"enabled": True, "d_num_feat": 8, "d_lr": 1e-3},
    }
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value)
    path = tmp / "gan.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def _run(args, expect=0):
    proc = subprocess.run(args, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == expect, proc.stderr[-3000:]
    return proc


def _state(run, step):
    return torch.load(run / "training_states" / f"{step}.state", weights_only=True)


def _assert_same(a, b, tol=0.0):
    for key in ("params", "ema", "params_d"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            diff = (a[key][name].float() - b[key][name].float()).abs().max().item()
            assert diff <= tol, f"{key}.{name} differs by {diff}"
    for opt in ("optimizer", "optimizer_d"):
        sa, sb = a[opt]["state"], b[opt]["state"]
        assert sa.keys() == sb.keys()
        for i in sa:
            for k in ("exp_avg", "exp_avg_sq"):
                assert torch.allclose(sa[i][k], sb[i][k], atol=tol, rtol=0), f"{opt} {i} {k}"
    assert a["step"] == b["step"] and a["ema_updates"] == b["ema_updates"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gan_straight")
    _run(train_cmd(gan_config(tmp)))
    return tmp / "run"


def test_gan_run_saves_generator_and_discriminator(straight):
    names = {p.name for p in (straight / "models").iterdir()}
    assert {"net_g_5.pth", "net_d_5.pth", "net_g_latest.pth", "net_d_latest.pth"} <= names
    d = torch.load(straight / "models" / "net_d_5.pth", weights_only=True)["params"]
    assert "conv1.weight_orig" in d and "conv1.weight_u" in d  # torch's spectral_norm layout
    st = _state(straight, 5)
    assert set(st["optimizer_d"]["state"]) and torch.equal(st["params_d"]["conv9.weight"], d["conv9.weight"])
    assert not torch.equal(_state(straight, 1)["params_d"]["conv9.weight"], d["conv9.weight"])  # D trains


def test_resume_to_more_steps_equals_uninterrupted_run(tmp_path, straight):
    cfg = gan_config(tmp_path)
    _run(train_cmd(cfg, "--set", "train.iters=3"))
    assert (tmp_path / "run" / "models" / "net_d_3.pth").exists()
    _run(train_cmd(cfg, "--resume", "auto", "--set", "train.iters=5"))
    _assert_same(_state(straight, 5), _state(tmp_path / "run", 5))


def test_kill9_then_resume_equals_uninterrupted_run(tmp_path, straight):
    cfg = gan_config(tmp_path)
    _run(train_cmd(cfg, "--set", "train.debug_kill_at_step=3"), expect=-9)
    assert not (tmp_path / "run" / "training_states" / "4.state").exists()
    _run(train_cmd(cfg, "--resume", "auto"))
    _assert_same(_state(straight, 5), _state(tmp_path / "run", 5))


def test_missing_vgg_file_is_one_line_before_training(tmp_path, capsys):
    cfg = gan_config(tmp_path)
    for value in (str(tmp_path / "absent.pth"), "null"):
        code = main(["train", str(cfg), "--set", f"train.vgg19_weights={value}"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: ") and "\n" not in err, err
        assert "train.vgg19_weights" in err and "never downloaded" in err
    assert not (tmp_path / "run").exists()  # nothing was built or written
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    assert main(["train", str(cfg), "--set", f"train.vgg19_weights={bad}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no VGG19 features" in err and "\n" not in err


def test_degradation_dump_during_training(tmp_path):
    cfg = gan_config(tmp_path, train={"iters": 2}, realsr={"dump_every": 2}, gan={"enabled": False})
    _run(train_cmd(cfg))
    dumped = sorted(p.name for p in (tmp_path / "run" / "degraded").iterdir())
    assert dumped == ["00000002_00_gt.png", "00000002_00_lq.png", "00000002_01_gt.png", "00000002_01_lq.png"]
    from PIL import Image

    assert Image.open(tmp_path / "run" / "degraded" / dumped[1]).size == (16, 16)
    assert not list((tmp_path / "run" / "models").glob("net_d_*"))  # stage 1 has no discriminator


@pytest.mark.parametrize("name", REAL_CONFIGS)
def test_real_world_configs_dry_run(name, capsys):
    assert main(["train", name, "--dry-run"]) == 0
    out = capsys.readouterr().out
    variant = name.split("_")[1]
    assert f"model: {variant} x4 (realsr x4, real-world degradations)" in out
    assert "global batch: 48 patches per step" in out
    assert "1 process(es):" in out and "8 process(es):" in out
    assert "lr: MultiStepLR" in out and "degradations (Real-ESRGAN" in out
    if name.endswith("_gan"):
        assert f"warm start: runs/realsr_{variant}_x4_net/models/net_g_latest.pth, strict" in out
        assert "VGG19 weights: /path/to/vgg19-dcbb9e9d.pth  [file not found yet]" in out
        assert "conv5_4 1" in out and "0.1 × vanilla GAN" in out and "net_d_*.pth" in out
    else:
        assert f"warm start: /path/to/MambaIRv2_ckpt/mambairv2_{variant}SR_x4.pth" in out
        assert "GAN stage" not in out


def test_spectral_norm_matches_torch_layout_and_value():
    torch.manual_seed(0)
    ours = SNConv2d(4, 6, 3, 1, 1, bias=False)
    for _ in range(30):
        ours.power_iteration()
    ref = torch.nn.utils.spectral_norm(torch.nn.Conv2d(4, 6, 3, 1, 1, bias=False))
    assert set(ref.state_dict()) == set(ours.state_dict())
    ref.load_state_dict(ours.state_dict())
    ref.eval()  # eval: torch uses the stored u, v without another power iteration
    x = torch.rand(1, 4, 8, 8)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)
    # after the power iterations the normalised weight's largest singular value is 1
    w = (ours.weight_orig / torch.dot(ours.weight_u, ours.weight_orig.flatten(1) @ ours.weight_v)).detach()
    assert abs(float(torch.linalg.matrix_norm(w.flatten(1), ord=2)) - 1) < 1e-3


def test_discriminator_shapes():
    d = UNetDiscriminatorSN(3, 64)
    assert 4.3e6 < sum(p.numel() for p in d.parameters()) < 4.5e6  # Real-ESRGAN's: 4.38M
    assert d(torch.rand(2, 3, 32, 40)).shape == (2, 1, 32, 40)


def test_vgg_layout_and_perceptual_loss(tmp_path):
    assert LAYERS["conv1_2"] == 2 and LAYERS["conv3_4"] == 16 and LAYERS["conv5_4"] == 34  # torchvision's
    f = tmp_path / "vgg.pth"
    torch.save(random_vgg19_state_dict(3), f)
    loss = PerceptualLoss({"conv1_2": 0.1, "conv5_4": 1.0})
    loss.vgg.load_file(str(f))
    assert len(loss.vgg.features) == 35
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert float(loss(a, a)) == 0.0 and float(loss(a, b)) > 0
    with pytest.raises(VGGWeightsError, match="no such file"):
        VGG19Features(["conv1_2"]).load_file(str(tmp_path / "missing.pth"))


@pytest.mark.slow
@needs_torchrun
def test_two_ranks_equal_one_process_with_accumulation(tmp_path):
    """torchrun with two CPU ranks (gloo) against one process with 2 accumulation steps, the same
    global batch of 4: generator, EMA and discriminator agree to float32 reduction order
    (measured: at most 6e-8; the test allows 1e-5 as test_train_ddp)."""
    common = ["--set", "train.iters=2", "--set", "data.batch_size=4", "--set", "train.save_every=2"]
    cfg = gan_config(tmp_path)
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mambairv2", "train", str(cfg), *common, "--set", f"output_dir={tmp_path / 'ddp'}"]
    proc = _run(ddp)
    assert "weights differ" not in proc.stderr
    _run(train_cmd(cfg, *common, "--set", "train.accum_steps=2", "--set", f"output_dir={tmp_path / 'one'}"))
    a, b = _state(tmp_path / "ddp", 2), _state(tmp_path / "one", 2)
    assert a["world_size"] == 2 and b["world_size"] == 1
    _assert_same(a, b, tol=1e-5)


def test_lpips_properties_with_random_weights(tmp_path):
    """Random weights (the real ones are the user's files): 0 for identical images, symmetric,
    positive otherwise, larger for a larger change; missing or unfit files are one line."""
    from mambairv2.protocol.lpips import LPIPS, random_lpips_files
    from mambairv2.protocol.task import EvaluationError

    vgg16, lin = random_lpips_files(tmp_path)
    m = LPIPS.from_files(str(vgg16), str(lin))
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 32, 32, generator=g)
    b = (a + 0.05 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1)
    c = (a + 0.3 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1)
    assert torch.equal(m(a, a), torch.zeros(2))
    assert torch.allclose(m(a, b), m(b, a)) and (m(a, b) > 0).all()
    assert (m(a, c) > m(a, b)).all()
    for args, text in (((str(tmp_path / "none.pth"), str(lin)), "no such file"),
                       ((str(lin), str(lin)), "vgg16 layout"), ((str(vgg16), str(vgg16)), "lin0")):
        with pytest.raises(EvaluationError, match=text) as info:
            LPIPS.from_files(*args)
        assert "\n" not in str(info.value)


def test_validation_with_lpips_and_no_reference_sheet(tmp_path):
    from mambairv2.protocol.lpips import random_lpips_files
    from mambairv2.train.logs import read_log
    from PIL import Image

    vgg16, lin = random_lpips_files(tmp_path / "lpips")
    val = make_images(tmp_path / "data" / "val", count=2, size=32, seed=4)
    photos = make_images(tmp_path / "data" / "photos", count=2, size=24, seed=5)
    cfg = gan_config(tmp_path, train={"iters": 2}, val={
        "root": str(val), "every": 2, "lpips_vgg16": str(vgg16), "lpips_weights": str(lin), "nr_root": str(photos)})
    proc = _run(train_cmd(cfg))
    assert "LPIPS" in proc.stdout + proc.stderr
    rows = [r for r in read_log(tmp_path / "run" / "log.csv") if r["val_psnr"]]
    assert len(rows) == 1 and float(rows[0]["val_lpips"]) > 0 and 0 < float(rows[0]["val_ssim"]) <= 1
    sheet = Image.open(tmp_path / "run" / "nr_sheets" / "00000002.png")
    # two rows of [input ×2 (48 px) | 8 px gap | output (48 px)], 8 px apart
    assert sheet.size == (48 + 8 + 48, 2 * (48 + 8))
