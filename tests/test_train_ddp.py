"""torchrun with two CPU ranks (gloo): both ranks end with identical weights, equal to a
single process that sees the same global batch (as two accumulated micro-batches).

Measured difference: about 1e-7 (float32 reduction order); the test allows 1e-5."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch

from conftest import needs_torchrun
from _train_tiny import cli_env, tiny_config, train_cmd

TOLERANCE = 1e-5


@pytest.mark.slow
@needs_torchrun
def test_two_ranks_match_single_process_with_same_global_batch(tmp_path):
    common = ["--set", "train.iters=3", "--set", "train.save_every=3", "--set", "data.batch_size=4",
              "--set", "val.every=0", "--set", "train.grad_clip=0.5"]
    cfg = tiny_config(tmp_path)
    # --standalone: torchrun picks a free port itself (no race between choosing and binding one)
    ddp_cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "mambairv2", "train", str(cfg), *common, "--set", f"output_dir={tmp_path / 'ddp'}"]
    proc = subprocess.run(ddp_cmd, env=cli_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "weights differ" not in proc.stderr
    assert "bucket view strides" not in proc.stderr, proc.stderr[-3000:]
    single = train_cmd(cfg, *common, "--set", "train.accum_steps=2", "--set", f"output_dir={tmp_path / 'one'}")
    proc = subprocess.run(single, env=cli_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]

    a = torch.load(tmp_path / "ddp" / "training_states" / "3.state", weights_only=True)
    b = torch.load(tmp_path / "one" / "training_states" / "3.state", weights_only=True)
    assert a["world_size"] == 2 and b["world_size"] == 1
    sums = a["replica_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1], f"ranks differ: {sums}"
    assert len(a["rng"]) == 2 and not torch.equal(a["rng"][0]["torch"], a["rng"][1]["torch"])
    worst = max((a["params"][k] - b["params"][k]).abs().max().item() for k in a["params"])
    assert worst <= TOLERANCE, f"DDP vs single process: max difference {worst}"
    moved = max((a["params"][k] - torch.load(tmp_path / "ddp" / "models" / "net_g_3.pth",
                                             weights_only=True)["params"][k]).abs().max().item()
                for k in a["params"])
    assert moved == 0.0
    shutil.rmtree(tmp_path / "ddp", ignore_errors=True)
