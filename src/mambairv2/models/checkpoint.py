"""Reading and writing checkpoints: the authors' BasicSR ``.pth`` files (``params_ema``,
``params`` or a bare state dict) and ``.safetensors`` with the configuration in the header.

The configuration is inferred from the tensors, unless the file stores one: the header of our
``.safetensors``, or for our trainer's ``.pth`` files a ``mambairv2_config`` entry (a JSON
string) beside ``params``, written only when the configuration holds what the tensors cannot
tell (ablation switches, a real-world degradation). Loading never unpickles arbitrary
objects (``torch.load(weights_only=True)``), and every failure is a :class:`CheckpointError`
with a one-line message saying what is wrong.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from ..errors import CheckpointError
from ..utils.atomic import atomic_path
from .degradation import from_file_name
from .registry import REDO_STORED, check_state_size, config_from_stored, detect, family_of

PathLike = Union[str, os.PathLike]
StateDict = Dict[str, torch.Tensor]
CONFIG_METADATA_KEY = "mambairv2_config"


# -- reading -------------------------------------------------------------------------------
def read_state_dict(path: PathLike) -> Tuple[StateDict, Optional[Dict[str, Any]]]:
    """Tensors of a checkpoint file and the configuration our files store beside them (the
    ``.safetensors`` header's, or the ``.pth`` entry next to ``params``), None where there is none."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():  # a FIFO or device has size 0 but is no empty file; reading could block
        raise CheckpointError(f"{path}: not a regular file (a pipe, socket or device)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    with open(path, "rb") as f:
        head = f.read(16)
    if path.suffix == ".safetensors" or _looks_like_safetensors(head):
        return _read_safetensors(path)
    obj = _read_torch(path)
    return _unwrap(obj, path), _stored_config(obj, path) if isinstance(obj, Mapping) else None


def _stored_config(entries: Mapping[str, Any], path: Path) -> Optional[Any]:
    """The configuration stored under :data:`CONFIG_METADATA_KEY` (None when there is none);
    its type is checked by :func:`~mambairv2.models.registry.config_from_stored`."""
    if CONFIG_METADATA_KEY not in entries:
        return None
    config = entries[CONFIG_METADATA_KEY]
    if config is None:  # we write an object; null would read as "detect from the tensors"
        raise CheckpointError(f"{path}: the stored configuration is a JSON null, not an object; {REDO_STORED}")
    return config


def _looks_like_safetensors(head: bytes) -> bool:
    return len(head) >= 9 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> Tuple[StateDict, Optional[Dict[str, Any]]]:
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({_short(exc)})") from None
    if CONFIG_METADATA_KEY in meta:
        try:
            meta = {CONFIG_METADATA_KEY: json.loads(meta[CONFIG_METADATA_KEY])}
        except json.JSONDecodeError:
            raise CheckpointError(f"{path}: the stored configuration is not valid JSON; {REDO_STORED}") from None
    return _strip_prefix(tensors), _stored_config(meta, path)


#: A zip checkpoint may declare at most this many bytes per byte of file (plus the slack below):
#: torch.save stores tensors uncompressed, so a large ratio is a decompression bomb.
MAX_EXPANSION = 4
EXPANSION_SLACK = 16 * 2**20


def _check_declared_sizes(path: Path) -> None:
    """Refuses a zip checkpoint whose entries declare far more bytes than the file holds
    (checked before anything is decompressed)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            declared = sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # torch.load reports a corrupt archive in its own words
    size = path.stat().st_size
    if declared > MAX_EXPANSION * size + EXPANSION_SLACK:
        raise CheckpointError(f"{path}: declares {declared / 2**20:.0f} MiB of data in a {size / 2**20:.1f} MiB "
                              "file (a compressed archive; PyTorch checkpoints are stored uncompressed): refused")


def _read_torch(path: Path) -> Any:
    with open(path, "rb") as f:
        magic = f.read(2)
    is_zip = magic == b"PK"
    if not is_zip and magic[:1] != b"\x80":
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    if is_zip:
        _check_declared_sizes(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - classified below into one-line messages
        text = str(exc)
        if "Weights only load failed" in text:
            found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"(Unsupported operand \d+)", text)
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"{path}: refused to unpickle: the file holds Python objects other than tensors{what}") from None
        if is_zip or "zip archive" in text:
            raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({_short(exc, 80)})") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_short(exc)})") from None


def _unwrap(obj: Any, path: Path) -> StateDict:
    """The state dict inside a BasicSR checkpoint: ``params_ema``, then ``params``, else bare."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    for key in ("params_ema", "params", "state_dict", "model"):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        keys = ", ".join(list(map(str, obj.keys()))[:5])
        raise CheckpointError(f"{path}: no tensors found (top-level keys: {keys or 'none'})")
    return _strip_prefix(sd)


def _strip_prefix(sd: StateDict) -> StateDict:
    """Removes the ``module.`` prefix that DataParallel/DDP checkpoints carry."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- loading ---------------------------------------------------------------------------------
def build_and_load(sd: Mapping[str, torch.Tensor], config: Any, source: str = "state dict",
                   dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A ``dtype`` model of ``config`` with ``sd`` loaded strictly (cast once, from the file's
    dtype to ``dtype``); mismatches become a CheckpointError, a configuration that needs more
    than ``sd`` holds before anything is built."""
    check_state_size(sd, config, source)
    model = family_of(config).build(config).to(dtype)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)):
            if items:
                more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
                parts.append(f"{label}: {', '.join(items[:3])}{more}")
        raise CheckpointError(f"{source}: does not match the detected {config.arch} configuration; "
                              + "; ".join(parts))
    _check_values(sd, expected, source)
    model.load_state_dict(sd, strict=True)
    return model


def _check_values(sd: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], source: str) -> None:
    """Weights of a real floating dtype and finite; index buffers (integer tensors the network
    computes from its configuration) equal to the computed ones, so that no index read from a
    file can point outside its table."""
    for key, want in expected.items():
        got = sd[key]
        if want.is_floating_point():
            if not got.is_floating_point():
                raise CheckpointError(f"{source}: {key} is {str(got.dtype).replace('torch.', '')}, not floating "
                                      "point: not a weights file of this network")
            bad = int((~torch.isfinite(got)).sum())
            if bad:
                raise CheckpointError(f"{source}: {key} holds {bad:,} NaN or infinite values "
                                      "(a diverged or corrupt checkpoint)")
        elif got.is_floating_point() or got.is_complex() or not torch.equal(got.long(), want.long()):
            raise CheckpointError(f"{source}: {key} (an index table) does not match the one the configuration "
                                  "gives (out of range or altered): refused")


def load_file(path: PathLike, device: Union[str, torch.device] = "cpu",
              dtype: Union[None, str, torch.dtype] = None) -> torch.nn.Module:
    """Loads a checkpoint file (configuration inferred) strictly; returns the model in eval mode.
    Names (bundled, authors' checkpoints) are resolved by :func:`mambairv2.models.load_model`.

    Args:
        path: ``.pth`` (BasicSR: ``params_ema`` preferred, then ``params``, or a bare state dict)
            or ``.safetensors``.
        device: where to put the model (a name or a ``torch.device``).
        dtype: parameter dtype (default float32): a ``torch.dtype`` or its name.
    Raises:
        CheckpointError: the file is missing, unreadable, not a checkpoint, refused (arbitrary
            pickled objects) or of another architecture.
        DeviceError: a device not available here (e.g. CUDA on a CPU build), an unknown dtype.
    """
    from ..utils.devices import DeviceError, resolve_device, resolve_dtype

    if isinstance(dtype, str):
        dtype = resolve_dtype(dtype)
    elif dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise DeviceError(f"dtype must be float32, bfloat16 or float16 (a name or a torch.dtype), got {dtype!r}")
    device = resolve_device(str(device))  # checked before the file is read
    sd, stored = read_state_dict(path)
    config = _config_of(sd, stored, path)
    model = build_and_load(sd, config, source=str(path), dtype=dtype or torch.float32)
    return model.to(device=device).eval()


def read_config(path: PathLike) -> Any:
    """The configuration of a checkpoint file (stored, or detected from its tensors; the
    authors' real-world SR checkpoints marked ``realsr`` by their file names)."""
    sd, stored = read_state_dict(path)
    return _config_of(sd, stored, path)


def _config_of(sd: StateDict, stored: Optional[Mapping[str, Any]], path: PathLike) -> Any:
    """The stored or detected configuration, refused where it needs more than the file holds."""
    if stored is not None:
        config = config_from_stored(stored, str(path))
    else:
        config = from_file_name(detect(sd, str(path)), path)
    check_state_size(sd, config, str(path))
    return config


# -- writing ---------------------------------------------------------------------------------
def save_safetensors(model: torch.nn.Module, path: PathLike) -> Path:
    """Writes the weights and the configuration (header metadata) atomically."""
    from safetensors.torch import save_file

    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata={CONFIG_METADATA_KEY: json.dumps(model.config.to_dict()),
                                          "format": "pt"})
    return Path(path)


def _tensors_tell(params: Mapping[str, torch.Tensor], config: Any) -> bool:
    """Whether detection from ``params`` alone gives ``config`` back (the degradation included)."""
    if config.degradation is not None:
        return False
    try:
        return detect(params) == config
    except CheckpointError:
        return False


def save_checkpoint(path: PathLike, params: Mapping[str, torch.Tensor],
                    params_ema: Optional[Mapping[str, torch.Tensor]] = None, config: Any = None) -> Path:
    """Writes a BasicSR-format ``.pth`` (``params`` and optionally ``params_ema``) atomically.

    ``config`` (the network's configuration) is stored as a plain dict under
    :data:`CONFIG_METADATA_KEY` beside ``params`` when the tensors alone would not give it back
    (``img_range``, ablation switches that add no tensors, a real-world degradation):
    :func:`load_file` reads it; BasicSR's loader, which reads only ``params``/``params_ema``,
    ignores it. Otherwise the file is exactly BasicSR's."""
    obj: Dict[str, Any] = {"params": {k: v.detach().cpu() for k, v in params.items()}}
    if params_ema is not None:
        obj["params_ema"] = {k: v.detach().cpu() for k, v in params_ema.items()}
    if config is not None and not _tensors_tell(params, config):
        obj[CONFIG_METADATA_KEY] = config.to_dict()
    with atomic_path(path) as tmp:
        torch.save(obj, str(tmp))
    return Path(path)
