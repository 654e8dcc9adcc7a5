"""Checkpoints of a training run, written atomically (temporary file + ``os.replace``).

Layout of the output folder (BasicSR's)::

    models/net_g_<step>.pth       {"params": ..., "params_ema": ...}  (loads with load_model)
    models/net_g_latest.pth       the same, for the newest step
    models/net_d_<step>.pth       GAN stage: the discriminator {"params": ...} (and net_d_latest.pth)
    training_states/<step>.state  everything needed to resume exactly: weights, EMA, optimizer,
                                  scheduler, grad scaler, step, every RNG state

The state file is written after its weights and before ``*_latest.pth``, so a state file always
has its weights file next to it, and a failed save (a full disk) leaves the earlier steps intact.
States hold only tensors and plain Python containers: they load with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from ..errors import ConfigError, MambaIRv2Error
from ..utils.atomic import atomic_path
from ..models.checkpoint import save_checkpoint

STATE_RE = re.compile(r"^(\d+)\.state$")


class SaveError(MambaIRv2Error):
    """A checkpoint or training state could not be written (disk full, quota, read-only…);
    the files of earlier steps are intact. Exit status 1. ``errno``: the system's reason, when
    known (``errno.ENOSPC``: no space left)."""

    code = 1

    def __init__(self, message: str, errno: Optional[int] = None) -> None:
        super().__init__(message)
        self.errno = errno


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to a temporary file in the target folder, flushed to disk, then renamed.
    (Written through a Python file object, so a failed write raises with its ``errno``.)"""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
    return Path(path)


class _ProbeDone(Exception):
    pass


def write_problem(folder: Path, exc: BaseException) -> Tuple[Optional[int], str]:
    """Why writing into ``folder`` failed: ``(errno, words)`` of the ``OSError`` behind ``exc``
    (``torch.save`` to a path hides it in a RuntimeError), else of writing a small probe there
    now (a full disk: ENOSPC, "No space left on device"), else ``(None, exc's message)``."""
    seen = set()
    e: Optional[BaseException] = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and (e.strerror or e.errno):
            return e.errno, e.strerror or str(e)
        e = e.__cause__ or e.__context__
    try:
        with atomic_path(Path(folder) / ".write-probe") as tmp:
            with open(tmp, "wb") as f:
                f.write(b"\0" * 65536)
                f.flush()
                os.fsync(f.fileno())
            raise _ProbeDone  # never published: atomic_path removes the probe
    except _ProbeDone:
        pass
    except OSError as probe:
        return probe.errno, probe.strerror or str(probe)
    return None, " ".join(str(exc).split())[:160] or type(exc).__name__


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
    """Writes ``net_g_<step>.pth`` (and with ``params_d`` the discriminator's ``net_d_<step>.pth``),
    then ``<step>.state``, then ``net_g_latest.pth`` (``net_d_latest.pth``); keeps the newest
    ``keep`` step checkpoints (0: all). ``config``: the generator's network configuration,
    stored in its files where the tensors cannot tell it (see ``save_checkpoint``).

    Every file is written atomically, and a step whose state could not be written leaves none of
    its files behind: the files of earlier steps (``*_latest`` included) stay as they were.

    Raises:
        SaveError: a file could not be written (one line: the file and why, e.g. no space left).
    """
    out_dir = Path(out_dir)
    written: List[Path] = []

    def write(path: Path, save: Any) -> Path:
        try:
            save()
        except (OSError, RuntimeError) as exc:
            code, why = write_problem(path.parent, exc)
            raise SaveError(f"cannot save step {step}: {path}: {why}", errno=code) from None
        written.append(path)
        return path

    st_path = state_path(out_dir, step)
    try:
        net = write(net_path(out_dir, step), lambda: save_checkpoint(net_path(out_dir, step), params, params_ema, config=config))
        if params_d is not None:
            write(net_d_path(out_dir, step), lambda: save_checkpoint(net_d_path(out_dir, step), params_d))
        st = write(st_path, lambda: atomic_torch_save(state, st_path))
    except BaseException:
        if not st_path.exists():  # this step's weights without its state: not a checkpoint
            for p in written:
                p.unlink(missing_ok=True)
        raise
    latest = out_dir / "models" / "net_g_latest.pth"
    write(latest, lambda: save_checkpoint(latest, params, params_ema, config=config))
    if params_d is not None:
        latest_d = out_dir / "models" / "net_d_latest.pth"
        write(latest_d, lambda: save_checkpoint(latest_d, params_d))
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


#: The files of a run that ``train --overwrite`` removes, by folder ("" the run folder itself):
#: name patterns, so that nothing else a user keeps there is touched (config.yaml is rewritten).
RUN_FILES = {
    "": re.compile(r"^(log\.csv|plot\.png)$"),
    "models": re.compile(r"^(net_[gd]_(\d+|latest)\.pth|\..+\.part)$"),
    "tb": re.compile(r"^events\.out\.tfevents\..+$"),
    "nr_sheets": re.compile(r"^\d+\.png$"),
    "degraded": re.compile(r"^\d+_\d+_(lq|gt)\.png$"),
}
TRASH_PREFIX = ".overwritten-"


def clear_run(out_dir: Path) -> List[str]:
    """Removes a previous run from ``out_dir`` (``train --overwrite``): its training states first,
    in one rename of ``training_states`` (so that no ``--resume`` can ever pick one up, even if
    this is interrupted), then its weights, log, plot and TensorBoard files. Everything is moved
    into a hidden folder by renames, which is then deleted. Returns what was removed, in words."""
    import shutil
    import time

    out_dir = Path(out_dir)
    for old in out_dir.glob(TRASH_PREFIX + "*"):  # left by an interrupted --overwrite
        shutil.rmtree(old, ignore_errors=True)
    trash = out_dir / f"{TRASH_PREFIX}{os.getpid()}-{time.time_ns()}"
    removed: List[str] = []
    states = out_dir / "training_states"
    if states.is_dir() and not states.is_symlink():
        trash.mkdir()
        n = len(list_steps(out_dir))
        os.rename(states, trash / "training_states")
        removed.append(f"{n} training state(s)")
    moved = 0
    for folder, pattern in RUN_FILES.items():
        src = out_dir / folder
        if not src.is_dir() or src.is_symlink():
            continue
        for f in sorted(src.iterdir()):
            if pattern.match(f.name) and (f.is_file() or f.is_symlink()):
                (trash / folder).mkdir(parents=True, exist_ok=True)
                os.rename(f, trash / folder / f.name)
                moved += 1
        if folder and src.is_dir() and not any(src.iterdir()):
            src.rmdir()
    if moved:
        removed.append(f"{moved} other file(s) (weights, log, plot, TensorBoard)")
    shutil.rmtree(trash, ignore_errors=True)
    return removed


def find_resume_state(target: Path) -> Optional[Path]:
    """The state file to resume from: ``target`` itself if it is a file, else the newest state
    in the run folder ``target`` (or its ``training_states`` folder); None when there is none."""
    target = Path(target)
    if target.is_file():
        return target
    steps = list_steps(target)
    if not steps and target.name == "training_states":  # the states' own folder
        return find_resume_state(target.parent)
    return state_path(target, steps[-1]) if steps else None


RESUME_HINT = "--resume takes a run folder or one of its training_states/<step>.state files"


def load_state(path: Path) -> Dict[str, Any]:
    """Reads a training state (tensors and plain containers only) and checks its layout.

    Raises:
        ConfigError: one line naming ``path``: not a file, empty, damaged, not a PyTorch file,
            a weights file (``.pth`` / ``.safetensors``) rather than a state, or a state that
            lacks what resuming needs.
    """
    import pickle
    import warnings
    import zipfile

    path = Path(path)
    weights = (f"{path}: a weights file, not a training state: {RESUME_HINT}; to start a new run from these "
               f"weights set model.init_from={path}")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc}); {RESUME_HINT}") from None
    if size == 0:
        raise ConfigError(f"{path}: empty file, not a training state; {RESUME_HINT}")
    if path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        raise ConfigError(weights)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            st = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, UnicodeDecodeError, zipfile.BadZipFile, OSError):
        raise ConfigError(f"{path}: not a training state (damaged, or not a PyTorch file of tensors and plain "
                          f"containers); {RESUME_HINT}") from None
    if not isinstance(st, dict):
        raise ConfigError(f"{path}: not a training state (it holds a {type(st).__name__}); {RESUME_HINT}")
    if "optimizer" not in st and "step" not in st and (
            "params" in st or "params_ema" in st or (st and all(isinstance(v, torch.Tensor) for v in st.values()))):
        raise ConfigError(weights)
    problem = _state_problem(st)
    if problem:
        raise ConfigError(f"{path}: not a complete training state ({problem}); {RESUME_HINT}")
    return st


def _state_problem(st: Mapping[str, Any]) -> Optional[str]:
    """What a loaded state lacks for resuming (None: nothing)."""
    def tensors(d: Any) -> bool:
        return isinstance(d, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())

    step = st.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return "no step number"
    if not tensors(st.get("params")) or not st["params"]:
        return "no weights"
    if st.get("ema") is not None and not tensors(st["ema"]):
        return "unreadable EMA weights"
    opt = st.get("optimizer")
    if not (isinstance(opt, dict) and isinstance(opt.get("state"), dict)
            and isinstance(opt.get("param_groups"), list)):
        return "no optimizer state"
    if not isinstance(st.get("ema_updates", 0), int) or not isinstance(st.get("rng", []), list) \
            or not isinstance(st.get("scaler", {}), dict) or not isinstance(st.get("elapsed_s", 0.0), (int, float)):
        return "unreadable counters"
    return None
