"""Exact resume: a run killed with SIGKILL right after its step-10 checkpoint, or with SIGKILL or
SIGTERM during the validation of step 10, and resumed to step 20 ends with bitwise the same
weights, EMA and optimizer state as an uninterrupted 20-step run."""
from __future__ import annotations

import subprocess

import pytest
import torch

from _train_tiny import cli_env, tiny_config, train_cmd
from mambairv2.train.logs import read_log


def _run(args, expect=0):
    proc = subprocess.run(args, env=cli_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == expect, proc.stderr[-2000:]
    return proc


def _final_state(run_dir):
    return torch.load(run_dir / "training_states" / "20.state", weights_only=True)


def _assert_same(a, b, tol=0.0):
    for key in ("params", "ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            diff = (a[key][name].float() - b[key][name].float()).abs().max().item()
            assert diff <= tol, f"{key}.{name} differs by {diff}"
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    for i in sa:
        for k in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(sa[i][k], sb[i][k], atol=tol, rtol=0)
    assert a["step"] == b["step"] == 20 and a["ema_updates"] == b["ema_updates"] == 20


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("straight")
    cfg = tiny_config(tmp)
    _run(train_cmd(cfg))
    return tmp / "run"


@pytest.mark.parametrize("workers", [0, 2])
def test_kill9_then_resume_matches_uninterrupted_run(tmp_path, straight, workers):
    cfg = tiny_config(tmp_path, data={"num_workers": workers})
    run = tmp_path / "run"
    killed = _run(train_cmd(cfg, "--set", "train.debug_kill_at_step=10"), expect=-9)
    assert (run / "training_states" / "10.state").exists()
    assert not (run / "training_states" / "20.state").exists(), killed.stderr
    _run(train_cmd(cfg, "--resume", "auto"))
    _assert_same(_final_state(straight), _final_state(run))
    # the log continues where the checkpoint was: one loss row per logged step, no duplicates
    steps = [int(r["step"]) for r in read_log(run / "log.csv") if r["loss"]]
    assert steps == [5, 10, 15, 20]
    assert (run / "plot.png").stat().st_size > 0


@pytest.mark.parametrize("sig, code", [("TERM", 128 + 15), ("KILL", -9)])
def test_signal_during_validation_then_resume_matches_uninterrupted_run(tmp_path, straight, sig, code):
    cfg = tiny_config(tmp_path)
    run = tmp_path / "run"
    stopped = _run(train_cmd(cfg, "--set", f"train.debug_signal_in_validation={sig}@10"), expect=code)
    # the step-10 state is saved before validation starts; no further step was trained
    assert sorted(p.name for p in (run / "training_states").iterdir()) == ["10.state"], stopped.stderr
    if sig == "TERM":
        assert "validation of step 10 interrupted" in stopped.stderr and "--resume" in stopped.stderr
        assert "Traceback" not in stopped.stderr
    _run(train_cmd(cfg, "--resume", "auto"))
    _assert_same(_final_state(straight), _final_state(run))


def test_new_run_refuses_to_overwrite_and_resume_of_finished_run_is_a_no_op(tmp_path, straight):
    cfg = tiny_config(tmp_path, train={"iters": 2, "save_every": 2, "log_every": 1})
    _run(train_cmd(cfg))
    again = _run(train_cmd(cfg), expect=2)
    assert "--resume auto" in again.stderr and "Traceback" not in again.stderr
    done = _run(train_cmd(cfg, "--resume"))
    assert "stopped at step 2" in done.stderr


def test_time_limit_stops_cleanly_with_a_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, train={"iters": 100000, "max_minutes": 0.0001, "save_every": 1000},
                      val={"every": 1000})
    proc = _run(train_cmd(cfg))
    assert "time limit" in proc.stderr
    rows = read_log(tmp_path / "run" / "log.csv")
    assert rows and rows[-1]["val_psnr"], "a time-limited run validates its last step"
    states = list((tmp_path / "run" / "training_states").glob("*.state"))
    assert len(states) == 1 and int(states[0].stem) < 1000
    assert (tmp_path / "run" / "models" / "net_g_latest.pth").exists()
