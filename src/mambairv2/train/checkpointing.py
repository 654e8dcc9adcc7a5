"""Checkpoints of a training run, written atomically (temporary file + ``os.replace``).

Layout of the output folder (BasicSR's)::

    models/net_g_<step>.pth       {"params": ..., "params_ema": ...}  (loads with load_model)
    models/net_g_latest.pth       the same, for the newest step
    models/net_d_<step>.pth       GAN stage: the discriminator {"params": ...} (and net_d_latest.pth)
    training_states/<step>.state  everything needed to resume exactly: weights, EMA, optimizer,
                                  scheduler, grad scaler, step, every RNG state

The state file is written last, so a state file always has its weights file next to it. States
hold only tensors and plain Python containers: they load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from ..utils.atomic import atomic_path
from ..models.checkpoint import save_checkpoint

STATE_RE = re.compile(r"^(\d+)\.state$")


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to a temporary file in the target folder, flushed to disk, then renamed."""
    with atomic_path(path) as tmp:
        torch.save(obj, str(tmp))
    return Path(path)


# -- RNG states as plain containers -----------------------------------------------------------
def rng_state() -> Dict[str, Any]:
    """Python, NumPy, torch CPU and (if initialised) CUDA RNG states."""
    py = random.getstate()
    np_state = np.random.get_state()
    state: Dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restores what :func:`rng_state` saved."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


# -- files ------------------------------------------------------------------------------------
def net_path(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / "models" / f"net_g_{step}.pth"


def net_d_path(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / "models" / f"net_d_{step}.pth"


def state_path(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / "training_states" / f"{step}.state"


def save_training_checkpoint(out_dir: Path, step: int, params: Mapping[str, torch.Tensor],
                             params_ema: Optional[Mapping[str, torch.Tensor]],
                             state: Dict[str, Any], keep: int = 0,
                             params_d: Optional[Mapping[str, torch.Tensor]] = None,
                             config: Any = None) -> Tuple[Path, Path]:
    """Writes ``net_g_<step>.pth``, ``net_g_latest.pth`` (and with ``params_d`` the
    discriminator's ``net_d_<step>.pth``, ``net_d_latest.pth``), then ``<step>.state``; keeps the
    newest ``keep`` step checkpoints (0: all). ``config``: the generator's network configuration,
    stored in its files where the tensors cannot tell it (see ``save_checkpoint``)."""
    out_dir = Path(out_dir)
    net = save_checkpoint(net_path(out_dir, step), params, params_ema, config=config)
    save_checkpoint(out_dir / "models" / "net_g_latest.pth", params, params_ema, config=config)
    if params_d is not None:
        save_checkpoint(net_d_path(out_dir, step), params_d)
        save_checkpoint(out_dir / "models" / "net_d_latest.pth", params_d)
    st = atomic_torch_save(state, state_path(out_dir, step))
    if keep:
        prune(out_dir, keep)
    return net, st


def list_steps(out_dir: Path) -> List[int]:
    """Steps that have a training state, ascending."""
    folder = Path(out_dir) / "training_states"
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for m in (STATE_RE.match(f.name) for f in folder.iterdir()) if m)


def prune(out_dir: Path, keep: int) -> None:
    """Deletes all but the newest ``keep`` step checkpoints (states and their weights)."""
    steps = list_steps(out_dir)
    for step in steps[:-keep] if keep else []:
        for p in (state_path(out_dir, step), net_path(out_dir, step), net_d_path(out_dir, step)):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def find_resume_state(target: Path) -> Optional[Path]:
    """The state file to resume from: ``target`` itself if it is a ``.state`` file, else the
    newest state in the run folder ``target``; None when there is none."""
    target = Path(target)
    if target.is_file():
        return target
    steps = list_steps(target)
    return state_path(target, steps[-1]) if steps else None


def load_state(path: Path) -> Dict[str, Any]:
    """Reads a training state (tensors and plain containers only)."""
    return torch.load(str(path), map_location="cpu", weights_only=True)
