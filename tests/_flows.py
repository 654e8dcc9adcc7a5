"""Helpers for the user-flow tests: the command line run as a user runs it (``python -m
mambairv2`` in a subprocess, this checkout's ``src`` first on the path), and a training run
killed with SIGKILL once its first training state is on disk."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from _train_tiny import TINY_MODEL, cli_env

#: ``--set`` options that shrink a packaged training config to seconds on a CPU: the tiny network,
#: 8-px LR patches, batches of 2 in one process, float32, a checkpoint every step
TINY_TRAIN: List[str] = [
    "--set", "model.overrides=" + "{" + ", ".join(f"{k}: {v}" for k, v in TINY_MODEL.items()) + "}",
    "--set", "data.patch_size=8", "--set", "data.batch_size=2", "--set", "data.batch_per_gpu=0",
    "--set", "data.num_workers=0", "--set", "train.amp=none", "--set", "train.progress=off",
    "--set", "train.save_every=1", "--set", "train.log_every=1", "--set", "train.keep_checkpoints=0",
    "--set", "train.tensorboard=false", "--set", "device=cpu",
]


def mambairv2(*args: str, cwd: Path, expect: int = 0, timeout: float = 300,
              env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Runs ``python -m mambairv2 ARGS`` in ``cwd`` (environment ``env``, default
    :func:`cli_env`); asserts its exit status."""
    proc = subprocess.run([sys.executable, "-m", "mambairv2", *args], cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == expect, (args, proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


def train_killed_then_resumed(args: Sequence[str], run: Path, cwd: Path, iters: int) -> Tuple[int, str]:
    """Starts ``train ARGS`` (``iters`` steps), kills it with SIGKILL as soon as a training state
    exists in ``run``, resumes it with ``--resume auto`` to the end and returns the step it was
    killed after (the newest state then) and what the killed run wrote to stderr. Asserts that the kill came before the end and that the
    resumed run says it continues from that step."""
    cmd = [sys.executable, "-m", "mambairv2", "train", *args, "--set", f"train.iters={iters}",
           "--set", f"train.milestones=[{iters}]"]
    proc = subprocess.Popen(cmd, cwd=cwd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    states = run / "training_states"
    deadline = time.monotonic() + 240
    while not any(states.glob("*.state")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    err = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode == -signal.SIGKILL, f"ended before the kill ({proc.returncode}): {err[-2000:]}"
    killed_at = max(int(p.stem) for p in states.glob("*.state"))
    assert killed_at < iters, "the kill came after the last step"
    resumed = mambairv2("train", *cmd[4:], "--resume", "auto", cwd=cwd)
    assert re.search(rf"resumed from \S+{killed_at}\.state at step {killed_at}\b", resumed.stderr), resumed.stderr
    assert (states / f"{iters}.state").exists()
    return killed_at, err
