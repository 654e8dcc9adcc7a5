"""The models the page offers: bundled ones, checkpoints in a folder, and uploaded checkpoints,
each loaded with the package's safe loader (:func:`mambairv2.load_model`) and kept in memory.

Nothing here imports Gradio: the page (:mod:`mambairv2.app.page`) only shows names, so no server
path ever reaches the browser.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

#: Checkpoint file endings the page accepts (from a folder or an upload).
CHECKPOINT_SUFFIXES = (".pth", ".safetensors")
#: Loaded models kept in memory (least recently used ones are dropped beyond this).
CACHE_SIZE = 2


@dataclass(frozen=True)
class ModelInfo:
    """What the page shows about a checkpoint once it is loaded."""

    variant: str  # light, small, base, large, denoise, jpeg or custom
    task: str  # sr, realsr (real-world SR), denoise or jpeg
    scale: int
    in_chans: int
    parameters: int
    family: str = "MambaIRv2"

    def describe(self) -> str:
        what = {"sr": f"super-resolution ×{self.scale}", "realsr": f"real-world super-resolution ×{self.scale}",
                "denoise": "colour denoising", "jpeg": "JPEG artifact removal"}.get(self.task, self.task)
        return (f"{self.family} **{self.variant}**, task **{self.task}** ({what}), scale **×{self.scale}**, "
                f"{'gray' if self.in_chans == 1 else 'RGB'} input, {self.parameters / 1e6:.2f} M parameters")


def model_info(model: torch.nn.Module) -> ModelInfo:
    """Family, variant, task and scale of a loaded model."""
    from ..models import describe

    info = describe(model)
    return ModelInfo(variant=info.variant, task=info.task, scale=info.scale, in_chans=info.in_chans,
                     parameters=info.params, family=info.family)


def folder_checkpoints(folder: Optional[Path]) -> Dict[str, Path]:
    """File name → path of the checkpoints directly inside ``folder`` (hidden files left out)."""
    if folder is None or not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES and not p.name.startswith(".")}


class ModelStore:
    """Names the page may choose → checkpoint files, and the loaded models.

    A name is ``bundled: NAME``, ``folder: FILE`` (``--weights-dir``) or ``upload: FILE (hash)``.
    Uploaded checkpoints belong to the client that uploaded them (``owner``): other clients
    neither see nor load them. ``lock(name)`` serialises the jobs of one model.
    """

    def __init__(self, weights_dir: Optional[Path] = None, cache_size: int = CACHE_SIZE) -> None:
        self.weights_dir = weights_dir
        self.cache_size = cache_size
        self._uploads: Dict[Tuple[Optional[str], str], Path] = {}
        self._models: "OrderedDict[Tuple[str, str, str, str], torch.nn.Module]" = OrderedDict()
        self._locks: Dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- names ---------------------------------------------------------------------------------
    def files(self, owner: Optional[str] = None) -> Dict[str, Path]:
        """Every name ``owner`` may choose → its file, bundled first (``default`` leading)."""
        from ..models.catalog import bundled_models

        bundled = bundled_models()
        order = sorted(bundled, key=lambda n: (n != "default", n))
        files = {f"bundled: {n}": bundled[n] for n in order}
        files.update({f"folder: {n}": p for n, p in folder_checkpoints(self.weights_dir).items()})
        with self._guard:
            files.update({name: path for (who, name), path in self._uploads.items() if who == owner})
        return files

    def names(self, owner: Optional[str] = None) -> List[str]:
        return list(self.files(owner))

    def default_name(self, owner: Optional[str] = None) -> Optional[str]:
        names = self.names(owner)
        return names[0] if names else None

    def add_upload(self, path: Path, original_name: str, owner: Optional[str] = None) -> str:
        """Validates an uploaded checkpoint (loads it on the CPU) and registers it; returns its name.

        Raises:
            CheckpointError: not a usable MambaIRv2 checkpoint (refused pickles included).
        """
        from ..models import load_file

        model = load_file(path)  # raises CheckpointError with a one-line reason
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:8]
        name = f"upload: {Path(original_name).name} ({digest})"
        with self._guard:
            self._uploads[(owner, name)] = Path(path)
            self._remember((owner or "", name, "cpu", "float32"), model)
        return name

    def without_paths(self, text: str, owner: Optional[str] = None) -> str:
        """``text`` (e.g. a loader's message) with every checkpoint path replaced by its name."""
        for name, path in sorted(self.files(owner).items(), key=lambda item: -len(str(item[1]))):
            text = text.replace(str(path), name)
        return text

    # -- models --------------------------------------------------------------------------------
    def lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def get(self, name: str, device: str = "cpu", dtype: str = "float32",
            owner: Optional[str] = None) -> torch.nn.Module:
        """The model called ``name`` (as ``owner`` may name it) on ``device`` in ``dtype``, loaded once.

        Raises:
            KeyError: an unknown name.
            CheckpointError: the file is not a usable checkpoint.
        """
        from ..models import load_file
        from ..utils.devices import resolve_device, resolve_dtype

        files = self.files(owner)
        if name not in files:
            raise KeyError(f"no model named {name!r}")
        dev = resolve_device(device)
        key = (owner or "" if name.startswith("upload: ") else "", name, str(dev), dtype)
        with self._guard:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        model = load_file(files[name], device=dev, dtype=resolve_dtype(dtype))
        with self._guard:
            self._remember(key, model)
        return model

    def _remember(self, key: Tuple[str, str, str, str], model: torch.nn.Module) -> None:
        self._models[key] = model
        self._models.move_to_end(key)
        while len(self._models) > self.cache_size:
            self._models.popitem(last=False)


def devices() -> List[str]:
    """Devices this machine can run on, the best first."""
    found = []
    if torch.cuda.is_available():
        found += ["cuda"] + [f"cuda:{i}" for i in range(1, torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def dtypes(device: str) -> List[str]:
    """Precisions worth offering on ``device`` (half precision only on accelerators)."""
    return ["float32", "bfloat16"] if device == "cpu" else ["float32", "bfloat16", "float16"]
