"""Training configuration: nested YAML with defaults, ``--set key=value`` overrides (dotted
keys, values parsed as YAML) and validation that reports one-line errors.

Every key has a default in :data:`DEFAULTS`; a key that is not there is an error, so a typo
never silently does nothing. Paths are resolved against the current directory.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import yaml

from ..errors import MambaIRv2Error

PathLike = Union[str, os.PathLike]

#: Every configuration key, its default and (through the default's type) its type.
DEFAULTS: Dict[str, Any] = {
    "name": "mambairv2",            # experiment name
    "output_dir": None,             # default: runs/<name>
    "seed": 0,
    "device": "auto",               # auto | cpu | cuda | cuda:N
    "model": {
        "variant": "light",         # light | small | base | large | denoise | jpeg
        "scale": 2,                 # SR factor (1 for denoise / jpeg)
        "overrides": {},            # any MambaIRv2Config field, e.g. {embed_dim: 16, depths: [1]}
        "init_from": None,          # warm start: checkpoint (.pth / .safetensors) to load
        "init_strict": False,       # true: every tensor must match (BasicSR strict_load_g);
                                    # false: copy every tensor whose name and shape match
        "init_partial": False,      # true: allow init_from of another variant (tensors that fit)
    },
    "data": {
        "task": "auto",             # auto (from the model) | sr | denoise | jpeg
        "train_root": None,         # HR folder, or a list of folders
        "train_lr_root": None,      # optional folder of pre-made LR images (SR)
        "lr_template": "{name}x{scale}{ext}",  # LR file name for HR '{name}{ext}' (DIV2K)
        "patch_size": 64,           # LR patch side for SR, patch side for denoise / jpeg
        "batch_size": 32,           # global batch (all ranks and accumulation steps together)
        "batch_per_gpu": 0,         # the authors' per-GPU batch (train.accum_steps 0 derives the
                                    # accumulation from it); 0: batch_size / ranks
        "num_workers": 4,
        "cache": True,              # keep decoded images (and their bicubic LR) in memory
        "flip": True,
        "rot90": True,
        "noise_sigma": 15.0,        # denoise: Gaussian sigma on the 0-255 scale
        "jpeg_quality": 10,         # jpeg: OpenCV JPEG quality of the inputs
        "extensions": [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"],
    },
    "val": {
        "root": None,               # clean images (e.g. Set14/HR); null: no validation; a missing folder is an error
        "lr_root": None,            # optional pre-made inputs: <name>x<scale>.* or <name>.* (as evaluate --lr-dir)
        "every": 1000,              # steps; 0 disables
        "max_images": 0,            # 0: all
        "tile": 0,                  # 0: whole image; else tiled inference with this tile size
        "protocol": "whole",        # whole | official (the authors' overlapping ~200-px crops)
        "use_ema": True,
    },
    "train": {
        "iters": 500000,
        "lr": 2e-4,
        "betas": [0.9, 0.99],
        "weight_decay": 0.0,
        "scheduler": "multistep",   # multistep | cosine | constant
        "milestones": [250000, 400000, 450000, 475000],
        "gamma": 0.5,
        "eta_min": 1e-7,            # cosine: final learning rate
        "warmup_iters": 0,          # linear warm-up from 0
        "loss": "l1",               # l1 | charbonnier
        "charbonnier_eps": 1e-3,
        "grad_clip": 0.0,           # max gradient norm; 0 disables
        "ema_decay": 0.999,         # 0 disables EMA
        "ema_warmup": True,         # decay min(ema_decay, (1+n)/(10+n)): early averages do not
                                    # drag the random initialisation along
        "amp": "bf16",              # none | bf16 | fp16 (CUDA only; CPU always runs float32)
        "accum_steps": 1,           # gradient accumulation (micro-batches per step and rank);
                                    # 0: auto, batch_size / (ranks × data.batch_per_gpu)
        "max_minutes": 0.0,         # wall-clock limit: save and stop cleanly; 0: none
        "save_every": 5000,
        "keep_checkpoints": 3,      # keep the newest N step checkpoints (0: keep all)
        "log_every": 100,
        "find_unused_parameters": False,
        "compile": False,           # torch.compile the model (CUDA)
        "progress": "auto",         # auto (only on a terminal) | on | off
        "tensorboard": True,        # when torch.utils.tensorboard imports
        "plot": True,               # PNG of loss and validation PSNR
        "debug_kill_at_step": 0,    # tests: SIGKILL the process right after saving this step
        "debug_signal_in_validation": "",  # tests: "TERM@10" / "KILL@10": the process signals
                                           # itself during the validation of step 10
    },
}

#: Keys whose default is None, and the types they accept.
OPTIONAL_TYPES: Dict[str, Tuple[type, ...]] = {
    "output_dir": (str,),
    "model.init_from": (str,),
    "data.train_root": (str, list),
    "data.train_lr_root": (str,),
    "val.root": (str,),
    "val.lr_root": (str,),
}

CHOICES: Dict[str, Tuple[Any, ...]] = {
    "model.variant": ("light", "small", "base", "large", "denoise", "jpeg",
                      "mambair-light", "mambair", "mambair-denoise", "mambair-jpeg"),
    "val.protocol": ("whole", "official"),
    "data.task": ("auto", "sr", "denoise", "jpeg"),
    "train.scheduler": ("multistep", "cosine", "constant"),
    "train.loss": ("l1", "charbonnier"),
    "train.amp": ("none", "bf16", "fp16"),
    "train.progress": ("auto", "on", "off"),
}

#: Keys whose value must be > 0 / ≥ 0.
POSITIVE = ("data.patch_size", "data.batch_size", "train.iters", "train.lr",
            "train.save_every", "train.log_every", "model.scale")
NON_NEGATIVE = ("data.num_workers", "data.batch_per_gpu", "train.accum_steps", "train.warmup_iters", "train.grad_clip", "train.ema_decay",
                "train.max_minutes", "val.every", "val.max_images", "val.tile", "train.weight_decay",
                "train.keep_checkpoints", "data.noise_sigma", "train.debug_kill_at_step")


class ConfigError(MambaIRv2Error, ValueError):
    """An unusable configuration (message: one line)."""


class Config(dict):
    """A nested dict with dotted-key access: ``cfg.get_path("train.lr")``."""

    def get_path(self, key: str) -> Any:
        node: Any = self
        for part in key.split("."):
            node = node[part]
        return node

    def __getattr__(self, name: str) -> Any:  # cfg.train["lr"]
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _flatten(d: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and key != "model.overrides":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


FLAT_DEFAULTS = _flatten(DEFAULTS)


def parse_override(text: str) -> Tuple[str, Any]:
    """``"train.lr=1e-3"`` → ``("train.lr", 0.001)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE (e.g. train.lr=1e-3)")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def _set_path(d: Dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if parts[0] == "model" and len(parts) > 2 and parts[1] == "overrides":
        d.setdefault("model", {}).setdefault("overrides", {})[".".join(parts[2:])] = value
        return
    if key not in FLAT_DEFAULTS:
        raise ConfigError(f"unknown config key {key!r}{_suggest(key)}")
    node = d
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config key {part!r} is not a section")
    node[parts[-1]] = value


def _suggest(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(FLAT_DEFAULTS), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_value(key: str, value: Any) -> Any:
    default = FLAT_DEFAULTS[key]
    if value is None:
        if key in OPTIONAL_TYPES:
            return None
        raise ConfigError(f"{key}: a value is required (default {default!r})")
    if key in OPTIONAL_TYPES:
        types = OPTIONAL_TYPES[key]
        if not isinstance(value, types):
            raise ConfigError(f"{key}: expected {' or '.join(t.__name__ for t in types)}, got {value!r}")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of paths, got {value!r}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise ConfigError(f"{key}: expected a number, got {value!r}") from None
            else:
                raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
    elif isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
    elif isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
    elif isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{key}: must be one of {', '.join(map(str, CHOICES[key]))}, got {value!r}")
    if key in POSITIVE and not value > 0:
        raise ConfigError(f"{key}: must be > 0, got {value!r}")
    if key in NON_NEGATIVE and value < 0:
        raise ConfigError(f"{key}: must be ≥ 0, got {value!r}")
    return value


def _merge(base: Dict[str, Any], new: Mapping[str, Any], prefix: str = "") -> None:
    """Merges a parsed YAML mapping into ``base`` (the defaults), rejecting unknown keys."""
    for k, v in new.items():
        key = f"{prefix}{k}"
        if key == "model.overrides":
            if not isinstance(v, Mapping):
                raise ConfigError(f"{key}: expected a mapping of MambaIRv2Config fields, got {v!r}")
            base["overrides"].update(v)
        elif key in FLAT_DEFAULTS:
            base[k] = v
        elif any(f.startswith(key + ".") for f in FLAT_DEFAULTS):
            if not isinstance(v, Mapping):
                raise ConfigError(f"{key}: expected a section (mapping), got {v!r}")
            _merge(base[k], v, key + ".")
        else:
            raise ConfigError(f"unknown config key {key!r}{_suggest(key)}")


def build_config(data: Optional[Mapping[str, Any]] = None, overrides: Iterable[str] = (),
                 source: str = "config") -> Config:
    """Defaults ← ``data`` (a parsed YAML mapping) ← ``overrides`` (``KEY=VALUE`` strings),
    validated. Raises :class:`ConfigError`."""
    cfg: Dict[str, Any] = copy.deepcopy(DEFAULTS)
    if data:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping at the top level")
        _merge(cfg, data)
    for text in overrides:
        key, value = parse_override(text)
        _set_path(cfg, key, value)
    for key in FLAT_DEFAULTS:
        if key == "model.overrides":
            continue
        parts = key.split(".")
        node = cfg
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = _check_value(key, node[parts[-1]])
    _check_model(cfg)
    t = cfg["train"]
    if len(t["betas"]) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in t["betas"]):
        raise ConfigError(f"train.betas: expected two numbers in [0, 1), got {t['betas']!r}")
    if not all(isinstance(m, int) and m > 0 for m in t["milestones"]):
        raise ConfigError(f"train.milestones: expected positive integers, got {t['milestones']!r}")
    if not t["ema_decay"] < 1:
        raise ConfigError(f"train.ema_decay: must be < 1, got {t['ema_decay']!r}")
    if not 1 <= cfg["data"]["jpeg_quality"] <= 100:
        raise ConfigError(f"data.jpeg_quality: must be in 1..100, got {cfg['data']['jpeg_quality']!r}")
    if cfg["val"]["protocol"] == "official" and cfg["val"]["tile"]:
        raise ConfigError("val.tile applies to val.protocol whole (the official protocol has its own crops)")
    if cfg["output_dir"] is None:
        cfg["output_dir"] = str(Path("runs") / cfg["name"])
    return Config(cfg)


def _check_model(cfg: Dict[str, Any]) -> None:
    try:
        mc = model_config(cfg)
    except TypeError as exc:
        raise ConfigError(f"model.overrides: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None
    task = cfg["data"]["task"]
    if task != "auto" and task != mc.task and not (task in ("denoise", "jpeg") and mc.upscale == 1):
        raise ConfigError(f"data.task {task!r} does not fit the model (a {mc.task} model)")


def model_config(cfg: Mapping[str, Any]):
    """The network configuration a training config describes (any family's variant, see
    ``mambairv2 info --variants``)."""
    from ..models.registry import family_of_variant

    m = cfg["model"]
    return family_of_variant(m["variant"]).variant_config(m["variant"], m["scale"], **dict(m["overrides"]))


def task_of(cfg: Mapping[str, Any]) -> str:
    """``sr``, ``denoise`` or ``jpeg``."""
    task = cfg["data"]["task"]
    return model_config(cfg).task if task == "auto" else task


def accumulation(cfg: Mapping[str, Any], world_size: int) -> Tuple[int, int]:
    """``(accumulation steps, micro-batch)`` per rank for ``world_size`` ranks:
    ``batch_size = world_size × accumulation × micro-batch``. ``train.accum_steps`` 0 (auto)
    picks the accumulation that gives micro-batches of ``data.batch_per_gpu`` (the authors'
    per-GPU batch), or 1 without it. Raises :class:`ConfigError` when it does not divide."""
    batch, per_gpu = cfg["data"]["batch_size"], cfg["data"]["batch_per_gpu"]
    accum = cfg["train"]["accum_steps"]
    if accum == 0:
        if per_gpu and batch % (world_size * per_gpu) == 0:
            accum = batch // (world_size * per_gpu)
        elif per_gpu and batch % world_size == 0 and world_size * per_gpu > batch:
            accum = 1  # more ranks than the authors: smaller micro-batches, same global batch
        elif per_gpu:
            raise ConfigError(f"data.batch_size {batch} cannot be split into {world_size} rank(s) × "
                              f"micro-batches of data.batch_per_gpu {per_gpu}; set train.accum_steps")
        else:
            accum = 1
    if batch % (accum * world_size):
        raise ConfigError(f"data.batch_size {batch} is not divisible by {world_size} rank(s) × "
                          f"{accum} accumulation step(s)")
    return accum, batch // (accum * world_size)


PACKAGED_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def packaged_configs() -> Dict[str, Path]:
    """The configs shipped in the package, by name (``light_x2`` → ``.../configs/light_x2.yaml``)."""
    return {p.stem: p for p in sorted(PACKAGED_CONFIG_DIR.glob("*.yaml"))}


def resolve_config(path_or_name: PathLike) -> Path:
    """A config file path, or the packaged config of that name when no such file exists."""
    p = Path(path_or_name)
    if p.exists():
        return p
    packaged = packaged_configs()
    name = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if str(path_or_name) in (name, p.name) and name in packaged:
        return packaged[name]
    raise ConfigError(f"{p}: no such config file, and no packaged config of that name "
                      f"(`mambairv2 configs` lists them)")


def load_config(path: Optional[PathLike], overrides: Iterable[str] = ()) -> Config:
    """Reads a YAML config file or packaged config by name (or only defaults when ``path`` is
    None) and applies overrides."""
    data: Any = None
    if path is not None:
        p = resolve_config(path)
        if p.is_dir():
            raise ConfigError(f"{p}: is a folder, not a config file")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise ConfigError(f"{p}: not valid YAML{where}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: cannot read ({exc})") from None
    return build_config(data or {}, overrides, source=str(path))


def dump_config(cfg: Mapping[str, Any]) -> str:
    """The config as YAML text (saved next to the checkpoints)."""
    return yaml.safe_dump(_plain(cfg), sort_keys=False)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def as_list(value: Union[None, str, List[str]]) -> List[str]:
    """A path option that may be one path or a list → list."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
