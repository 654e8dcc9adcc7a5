"""Every name a user can type for a model, resolved in one place.

A model is named by one of four kinds of name:

* ``file``: a checkpoint file (``.pth`` or ``.safetensors``; the configuration is read from the
  tensors);
* ``bundled``: a model bundled with the package (``default``: this project's MambaIRv2-Light x4;
  every file in ``mambairv2/weights/`` also by its stem);
* ``variant``: a paper variant (``light``, ``base``, ``mambair-light``, …): a freshly
  initialised network, where random weights make sense (benchmarks, complexity, export tests);
* ``downloaded``: an authors' checkpoint name already fetched with ``mambairv2 download NAME``
  (read from the local cache only; nothing is downloaded here).

One rule tells them apart, wherever the command runs: a name with a path separator
(``./default``, ``dir/x.pth``, an absolute path), a checkpoint extension (``x.pth``) or given as a
:class:`~pathlib.Path` is a file;
a bare word is a catalogue name (bundled, then variant, then downloaded) even when a file of that
name lies in the current folder (the :class:`ModelRef` then carries a one-line ``note`` saying how
to name the file); any other bare word is a file in the current folder.

:func:`resolve` turns a name into a :class:`ModelRef`, :func:`load_model` loads it and
:func:`list_models` lists what exists. The module imports no torch until a model is loaded or
listed, so the command line's ``--help`` stays fast.
"""
from __future__ import annotations

import json
import os
import stat
import struct
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

from ..errors import CheckpointError
from ..utils.text import brief, printable

if TYPE_CHECKING:
    import torch

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
#: Aliases: name → file stem in ``weights/``. Every file is also usable by its own stem.
ALIASES: Dict[str, str] = {"default": "light_x4"}
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt", ".bin")
#: the kinds of :class:`ModelRef`
KINDS = ("file", "bundled", "variant", "downloaded")
#: downloaded names an unknown-name error lists at most
LISTED_DOWNLOADS = 10


@dataclass(frozen=True)
class ModelRef:
    """A resolved model name: ``kind`` is ``file``, ``bundled``, ``variant`` or ``downloaded``;
    ``note`` (one line) says how to name a file of the same name in the current folder."""

    spec: str
    kind: str
    path: Optional[Path] = None
    variant: Optional[str] = None
    note: Optional[str] = None

    @property
    def label(self) -> str:
        """How messages and reports name it, with its kind: ``x.pth (file)``, ``default
        (bundled)``, ``light (variant, random weights)`` or ``NAME (downloaded)``."""
        name = printable(self.spec)
        return f"{name} ({'variant, random weights' if self.kind == 'variant' else self.kind})"

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


def _looks_like_path(text: str) -> bool:
    """A name that can only mean a file: a path separator, or a checkpoint extension."""
    return (os.sep in text or "/" in text or os.path.isabs(text)
            or text.lower().endswith(CHECKPOINT_SUFFIXES))


def _in_folder(text: str) -> Optional[str]:
    """``file`` or ``folder`` when the current folder holds an entry named ``text``, else None."""
    try:
        path = Path(text)
        return ("folder" if path.is_dir() else "file") if path.exists() else None
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte: no such entry
        return None


def _file(text: str, path: Path) -> ModelRef:
    """The checkpoint file ``path`` (as the user wrote it: ``text``); one-line error when there is none."""
    try:
        is_dir = stat.S_ISDIR(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        raise CheckpointError(f"{text}: no such file") from None
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise CheckpointError(f"{brief(text)}: no such file ({exc.strerror or exc})") from None
    except ValueError:
        raise CheckpointError(f"{text}: not a valid file name") from None
    if is_dir:
        raise CheckpointError(f"{text}: is a folder, not a checkpoint file")
    return ModelRef(text, "file", path=path.absolute())  # messages then never name a bare word


def _catalogued(text: str, variants: bool, bundled: Dict[str, Path]) -> Optional[ModelRef]:
    """The bundled model, variant or downloaded checkpoint named ``text``, or None."""
    if text in bundled:
        return ModelRef(text, "bundled", path=bundled[text])
    if text in _variant_names():
        if not variants:
            raise CheckpointError(f"{text}: is a variant name (random weights), which this command cannot "
                                  "use; give a checkpoint file, a bundled model or a downloaded authors' name"
                                  + (f" (for the file in this folder: ./{text})"
                                     if _in_folder(text) == "file" else ""))
        return ModelRef(text, "variant", variant=text)
    cached = _authors_checkpoint(text)
    return ModelRef(text, "downloaded", path=cached) if cached is not None else None


def resolve(spec: Union[str, "os.PathLike[str]"], variants: bool = True) -> ModelRef:
    """The model meant by ``spec`` (the rule is in the module's docstring).

    Args:
        spec: a file (any :class:`~pathlib.Path`), a bundled name, a variant name or a downloaded
            authors' checkpoint name.
        variants: whether variant names (random weights) are accepted here.
    Raises:
        CheckpointError: one line saying what ``spec`` is not and what exists.
    """
    text = os.fspath(spec)
    if not text:
        raise CheckpointError("no model given")
    if not isinstance(spec, str) or _looks_like_path(text):  # a Path object is a file too
        return _file(text, Path(text).expanduser())
    bundled = bundled_models()
    ref = _catalogued(text, variants, bundled)
    entry = _in_folder(text)
    if ref is not None:
        if entry is None:
            return ref
        what = {"bundled": "the bundled model", "variant": "the variant (random weights)",
                "downloaded": "the downloaded authors' checkpoint"}[ref.kind]
        return replace(ref, note=f"'{text}' is {what}, not the {entry} ./{text} in this folder"
                                 + ("; give ./" + text + " for the file" if entry == "file" else ""))
    if entry is not None:
        return _file(text, Path(text))
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
    downloaded = _downloaded()
    shown = ", ".join(brief(name, 40) for name in downloaded[:LISTED_DOWNLOADS])
    if len(downloaded) > LISTED_DOWNLOADS:
        shown += f" and {len(downloaded) - LISTED_DOWNLOADS:,} more ('mambairv2 info --models' lists them)"
    kinds.append("an authors' checkpoint downloaded with 'mambairv2 download NAME' "
                 f"({shown or 'none yet'}; 'mambairv2 download --list' shows them)")
    return (f"unknown model '{brief(text)}': not " + ", ".join(kinds[:-1]) + " nor " + kinds[-1]
            + "; the authors publish their checkpoints at github.com/csguoh/MambaIR")


def _downloaded() -> List[str]:
    from .hub import read_records

    try:
        return sorted(read_records())
    except Exception:  # noqa: BLE001 - an unreadable record lists nothing; download says why
        return []


def load_model(spec: Union[str, "os.PathLike[str]"], device: Union[str, "torch.device"] = "cpu",
               dtype: Optional["torch.dtype"] = None) -> "torch.nn.Module":
    """Loads the model a checkpoint file, bundled name or downloaded authors' name means
    (:func:`resolve`'s rule), strictly, in eval mode (configuration read from the tensors).
    Variant names are refused: use :func:`~mambairv2.models.registry.create_model` for fresh
    networks. A bare name that is also a file in the current folder loads the catalogue's model
    and warns (``UserWarning``) how to name the file.

    Raises:
        CheckpointError: unknown name, or a file that is not a loadable checkpoint (one line).
    """
    ref = resolve(spec, variants=False)
    if ref.note:
        warnings.warn(ref.note, stacklevel=2)
    return ref.load(device=device, dtype=dtype)


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
