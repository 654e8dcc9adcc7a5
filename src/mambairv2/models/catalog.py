"""Every name a user can type for a model, resolved in one place.

A model is named by, in this order of precedence:

1. a checkpoint file (``.pth`` or ``.safetensors``; the configuration is read from the tensors);
2. a model bundled with the package (``default``: this project's MambaIRv2-Light x4; every file
   in ``mambairv2/weights/`` also by its stem);
3. a paper variant (``light``, ``base``, ``mambair-light``, …): a freshly initialised network,
   where random weights make sense (benchmarks, complexity, export tests);
4. an authors' checkpoint name already fetched with ``mambairv2 download NAME`` (read from the
   local cache only; nothing is downloaded here).

:func:`resolve` turns a name into a :class:`ModelRef`, :func:`load_model` loads it and
:func:`list_models` lists what exists. The module imports no torch until a model is loaded or
listed, so the command line's ``--help`` stays fast.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

from ..errors import CheckpointError

if TYPE_CHECKING:
    import torch

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
#: Aliases: name → file stem in ``weights/``. Every file is also usable by its own stem.
ALIASES: Dict[str, str] = {"default": "light_x4"}
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt", ".bin")
#: the kinds of :class:`ModelRef`, in order of precedence
KINDS = ("file", "bundled", "variant", "authors")


@dataclass(frozen=True)
class ModelRef:
    """A resolved model name: ``kind`` is ``file``, ``bundled``, ``variant`` or ``authors``."""

    spec: str
    kind: str
    path: Optional[Path] = None
    variant: Optional[str] = None

    @property
    def label(self) -> str:
        """How messages and reports name it: the file, ``default (bundled)``, ``light (random
        weights)`` or the authors' name."""
        if self.kind == "bundled":
            return f"{self.spec} (bundled)"
        if self.kind == "variant":
            return f"{self.spec} (random weights)"
        return str(self.path) if self.kind == "file" else self.spec

    def config(self, scale: int = 4) -> Any:
        """The network configuration, without building the network (a variant's at ``scale``)."""
        if self.kind == "variant":
            from .registry import family_of_variant

            return family_of_variant(self.variant).variant_config(self.variant, scale)
        from .checkpoint import read_config

        return read_config(self.path)

    def load(self, device: Union[str, "torch.device"] = "cpu", dtype: Optional["torch.dtype"] = None,
             scale: int = 4) -> "torch.nn.Module":
        """The model in eval mode (a variant's at ``scale``, seeded for reproducible weights)."""
        if self.kind == "variant":
            import torch

            from .registry import create_model

            torch.manual_seed(0)
            model = create_model(self.variant, scale=scale)
            return model.to(device=device, dtype=dtype or torch.float32).eval()
        from .checkpoint import load_file

        return load_file(self.path, device=device, dtype=dtype)


# -- bundled -------------------------------------------------------------------------------------
def bundled_models() -> Dict[str, Path]:
    """Name → weights file of every bundled model (aliases included, only installed files)."""
    files = {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.safetensors"))} if WEIGHTS_DIR.is_dir() else {}
    aliases = {alias: files[stem] for alias, stem in ALIASES.items() if stem in files}
    return {**aliases, **{k: v for k, v in files.items() if k not in aliases}}


def bundled_path(name: str) -> Path:
    """The weights file of a bundled model; ``KeyError`` with the known names if there is none."""
    models = bundled_models()
    if name not in models:
        known = ", ".join(models) or "none (this install has no bundled weights)"
        raise KeyError(f"no bundled model named {name!r}; bundled: {known}")
    return models[name]


def load_bundled(name: str = "default", device: Union[str, "torch.device"] = "cpu",
                 dtype: Optional["torch.dtype"] = None) -> "torch.nn.Module":
    """Loads a bundled model (eval mode), like :func:`load_model` on its file."""
    from .checkpoint import load_file

    return load_file(bundled_path(name), device=device, dtype=dtype)


# -- resolving -----------------------------------------------------------------------------------
def _variant_names() -> List[str]:
    from .registry import MODEL_NAMES

    return list(MODEL_NAMES)


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.lower().endswith(CHECKPOINT_SUFFIXES)


def resolve(spec: Union[str, "os.PathLike[str]"], variants: bool = True) -> ModelRef:
    """The model meant by ``spec`` (see the module's docstring for the precedence).

    Args:
        spec: a file, a bundled name, a variant name or a downloaded authors' checkpoint name.
        variants: whether variant names (random weights) are accepted here.
    Raises:
        CheckpointError: one line saying what ``spec`` is not and what exists.
    """
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if text and path.exists():
        if path.is_dir():
            raise CheckpointError(f"{text}: is a folder, not a checkpoint file")
        return ModelRef(text, "file", path=path)
    bundled = bundled_models()
    if text in bundled:
        return ModelRef(text, "bundled", path=bundled[text])
    if text in _variant_names():
        if not variants:
            raise CheckpointError(f"{text}: is a variant name (random weights), which this command cannot "
                                  "use; give a checkpoint file, a bundled model or a downloaded authors' name")
        return ModelRef(text, "variant", variant=text)
    if _looks_like_path(text):
        raise CheckpointError(f"{text}: no such file")
    cached = _authors_checkpoint(text)
    if cached is not None:
        return ModelRef(text, "authors", path=cached)
    raise CheckpointError(_unknown(text, bundled, variants))


def _authors_checkpoint(name: str) -> Optional[Path]:
    from .hub import HubError, cached_checkpoint

    try:
        return cached_checkpoint(name)
    except HubError:
        return None  # huggingface_hub absent, or not a checkpoint name: listed as unknown


def _unknown(text: str, bundled: Dict[str, Path], variants: bool) -> str:
    kinds = ["a file", f"a bundled model ({', '.join(bundled) or 'none installed'})"]
    if variants:
        kinds.append(f"a variant ({', '.join(_variant_names())})")
    kinds.append("an authors' checkpoint downloaded with 'mambairv2 download NAME' "
                 f"({', '.join(_downloaded()) or 'none yet'}; 'mambairv2 download --list' shows them)")
    return (f"unknown model {text!r}: not " + ", ".join(kinds[:-1]) + " nor " + kinds[-1]
            + "; the authors publish their checkpoints at github.com/csguoh/MambaIR")


def _downloaded() -> List[str]:
    from .hub import read_records

    try:
        return sorted(read_records())
    except Exception:  # noqa: BLE001 - an unreadable record lists nothing; download says why
        return []


def load_model(spec: Union[str, "os.PathLike[str]"], device: Union[str, "torch.device"] = "cpu",
               dtype: Optional["torch.dtype"] = None) -> "torch.nn.Module":
    """Loads the model a checkpoint file, bundled name or downloaded authors' name means,
    strictly, in eval mode (configuration read from the tensors). Variant names are refused:
    use :func:`~mambairv2.models.registry.create_model` for fresh networks.

    Raises:
        CheckpointError: unknown name, or a file that is not a loadable checkpoint (one line).
    """
    return resolve(spec, variants=False).load(device=device, dtype=dtype)


# -- listing -------------------------------------------------------------------------------------
def stored_config(path: Path) -> Optional[dict]:
    """The configuration a ``.safetensors`` file of ours stores in its header (no torch)."""
    from .checkpoint import CONFIG_METADATA_KEY

    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(min(n, 1 << 20)))
        return json.loads(header["__metadata__"][CONFIG_METADATA_KEY])
    except (OSError, KeyError, ValueError, struct.error):
        return None


def list_models() -> List[Dict[str, object]]:
    """Every model name this install knows: name, family, task (``sr``, ``realsr`` for real-world
    SR, ``denoise``, ``jpeg``), scales, source (``bundled``, ``variant`` or ``downloaded``)."""
    from .degradation import model_task
    from .hub import read_records
    from .registry import FAMILIES, family_of

    rows: List[Dict[str, object]] = []
    for name, path in bundled_models().items():
        stored = stored_config(path) or {}
        family = family_of(stored)
        config = family.config_from_dict(stored)
        rows.append(dict(name=name, family=family.display, task=model_task(config), scales=[config.upscale],
                         source="bundled"))
    for family in FAMILIES:
        for name in family.variants:
            sr = name in family.sr_variants
            config = family.variant_config(name, 4)
            rows.append(dict(name=name, family=family.display, task=config.task,
                             scales=[2, 3, 4] if sr else [1], source="variant"))
    try:
        records = read_records()
    except Exception:  # noqa: BLE001 - unreadable records: nothing downloaded to list
        records = {}
    for name, rec in sorted(records.items()):
        family = next((f.display for f in FAMILIES if rec.get("arch") in f.arch_names), rec.get("arch"))
        rows.append(dict(name=name, family=family, task=rec.get("task"), scales=[rec.get("scale")],
                         source="downloaded"))
    return rows
