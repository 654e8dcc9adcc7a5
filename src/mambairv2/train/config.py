"""Training configuration: nested YAML with defaults, ``--set key=value`` overrides (dotted
keys, values parsed as YAML) and validation that reports one-line errors.

Every key is declared once in :data:`FIELDS` (default, type, choices or bounds, doc); the
checks, ``train --help``'s key list and ``--print-config``'s comments come from there. A key
that is not there is an error, so a typo never silently does nothing. Paths are resolved
against the current directory.
"""
from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import yaml

from ..defaults import MAX_FILTER_SIZE, MAX_WORKERS_PER_CPU, MIN_WORKERS_BOUND, TRAIN_BYTES_PER_PARAM
from ..errors import ConfigError
from ..models.checks import show as _show

PathLike = Union[str, os.PathLike]

@dataclass(frozen=True)
class Field:
    """One configuration key: its default, what it accepts and a one-line doc.

    The type is the default's (bool, int, float, str, list, dict) unless ``optional`` names the
    types a key whose default is None accepts. Bounds: ``gt`` / ``ge`` / ``lt`` / ``le``;
    ``check`` validates what a type cannot say (list items) and returns an error text or None."""

    default: Any
    doc: str
    optional: Tuple[type, ...] = ()
    choices: Tuple[Any, ...] = ()
    gt: Optional[float] = None
    ge: Optional[float] = None
    lt: Optional[float] = None
    le: Optional[float] = None
    check: Optional[Callable[[Any], Optional[str]]] = None

    def accepts(self) -> str:
        """What the key accepts, in words (for ``--help``)."""
        if self.choices:
            return " | ".join(map(str, self.choices))
        if self.optional:
            return " or ".join(t.__name__ for t in self.optional) + " or null"
        kind = type(self.default).__name__
        bounds = [f"> {_num(self.gt)}" if self.gt is not None else "", f"≥ {_num(self.ge)}" if self.ge is not None else "",
                  f"< {_num(self.lt)}" if self.lt is not None else "", f"≤ {_num(self.le)}" if self.le is not None else ""]
        bound = ", ".join(b for b in bounds if b)
        return f"{kind} {bound}" if bound else kind


def _num(x: float) -> str:
    return f"{x:g}"


def _betas(v: List[Any]) -> Optional[str]:
    if len(v) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in v):
        return f"expected two numbers in [0, 1), got {_show(v)}"
    return None


def _positive_ints(v: List[Any]) -> Optional[str]:
    if not all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in v):
        return f"expected positive integers, got {_show(v)}"
    return None


def _extensions(v: List[Any]) -> Optional[str]:
    if not v or not all(isinstance(e, str) and e.strip(".") and "/" not in e and "\\" not in e for e in v):
        return f"expected a non-empty list of file suffixes such as [.png, .jpg], got {_show(v)}"
    return None


LR_TEMPLATE_FIELDS = ("name", "scale", "ext")


def _lr_template(v: str) -> Optional[str]:
    """A ``str.format`` template of the LR file name: ``{name}`` (the HR file's stem) and at most
    ``{scale}`` and ``{ext}`` besides (format specs such as ``{scale:02d}`` allowed)."""
    import string

    hint = "e.g. '{name}x{scale}{ext}' ({name}: HR file name without suffix, {ext}: its suffix with the dot)"
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
    except ValueError as exc:  # an unmatched brace
        return f"{_show(v)} is not a file name template ({exc}); {hint}"
    unknown = sorted({"{" + f + "}" for f in fields if f not in LR_TEMPLATE_FIELDS})
    if unknown:
        return f"unknown placeholder {', '.join(unknown)} in {_show(v)}; {hint}"
    if "name" not in fields:
        return f"{_show(v)} has no {{name}}, so every HR image would get the same LR file; {hint}"
    try:
        sample = v.format(name="0001", scale=2, ext=".png")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return f"{_show(v)} does not format ({exc}); {hint}"
    if sample.endswith(("/", "\\")):
        return f"{_show(v)} ends with a folder separator, not a file name; {hint}"
    return None


def _paths(v: Any) -> Optional[str]:
    if isinstance(v, list) and not all(isinstance(x, str) for x in v):
        return f"expected a list of paths, got {_show(v)}"
    return None


def _range(lo: float, hi: float) -> Callable[[Any], Optional[str]]:
    def check(v: List[Any]) -> Optional[str]:
        if (len(v) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                or not lo <= v[0] <= v[1] <= hi):
            return f"expected [low, high] with {_num(lo)} ≤ low ≤ high ≤ {_num(hi)}, got {_show(v)}"
        return None
    return check


def _probs(n: int) -> Callable[[Any], Optional[str]]:
    def check(v: List[Any]) -> Optional[str]:
        if ((n and len(v) != n) or not v or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in v)
                or abs(sum(v) - 1) > 1e-6):
            return f"expected {n or 'some'} probabilities that sum to 1, got {_show(v)}"
        return None
    return check


KERNEL_KINDS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")


def _subset(allowed: Tuple[str, ...]) -> Callable[[Any], Optional[str]]:
    def check(v: List[Any]) -> Optional[str]:
        if not v or any(x not in allowed for x in v):
            return f"expected a list drawn from {', '.join(allowed)}, got {_show(v)}"
        return None
    return check


def _kernel_range(v: List[Any]) -> Optional[str]:
    if len(v) != 2 or not all(isinstance(x, int) and x % 2 == 1 and 3 <= x <= MAX_FILTER_SIZE for x in v) \
            or v[0] > v[1]:
        return f"expected [smallest, largest] odd kernel sizes from 3 to {MAX_FILTER_SIZE}, got {_show(v)}"
    return None


def max_workers() -> int:
    """The most data loader processes per rank this machine takes (``data.num_workers``)."""
    return max(MIN_WORKERS_BOUND, MAX_WORKERS_PER_CPU * (os.cpu_count() or 1))


def _workers(v: int) -> Optional[str]:
    most = max_workers()
    if v > most:
        return f"at most {most} on this machine ({MAX_WORKERS_PER_CPU} per CPU core, at least {MIN_WORKERS_BOUND}), got {v}"
    return None


def _realsr_fields() -> Dict[str, "Field"]:
    """Real-ESRGAN's second-order degradation model (its train_realesrnet_x4plus.yml values)."""
    out: Dict[str, Field] = {}
    for n, stage in (("", "first"), ("2", "second")):
        kernel_default = [0.2, 3.0] if not n else [0.2, 1.5]
        out.update({
            f"realsr.kernel_list{n}": Field(list(KERNEL_KINDS), f"{stage} blur: kernel kinds", check=_subset(KERNEL_KINDS)),
            f"realsr.kernel_prob{n}": Field([0.45, 0.25, 0.12, 0.03, 0.12, 0.03], f"{stage} blur: probability of "
                                            "each kernel kind", check=_probs(0)),
            f"realsr.sinc_prob{n}": Field(0.1, f"{stage} blur: probability of a sinc kernel instead", ge=0, le=1),
            f"realsr.blur_sigma{n}": Field(kernel_default, f"{stage} blur: Gaussian sigma range (pixels)",
                                           check=_range(0.01, 100)),
            f"realsr.betag_range{n}": Field([0.5, 4.0], f"{stage} blur: generalized-Gaussian shape range",
                                            check=_range(0.01, 100)),
            f"realsr.betap_range{n}": Field([1.0, 2.0], f"{stage} blur: plateau shape range", check=_range(0.01, 100)),
            f"realsr.resize_prob{n}": Field([0.2, 0.7, 0.1] if not n else [0.3, 0.4, 0.3],
                                            f"{stage} resize: probabilities of up, down, keep", check=_probs(3)),
            f"realsr.resize_range{n}": Field([0.15, 1.5] if not n else [0.3, 1.2], f"{stage} resize: scale range",
                                             check=_range(0.01, 100)),
            f"realsr.gaussian_noise_prob{n}": Field(0.5, f"{stage} noise: probability of Gaussian (else Poisson)",
                                                    ge=0, le=1),
            f"realsr.noise_range{n}": Field([1.0, 30.0] if not n else [1.0, 25.0],
                                            f"{stage} noise: Gaussian sigma range (0-255 scale)", check=_range(0, 255)),
            f"realsr.poisson_scale_range{n}": Field([0.05, 3.0] if not n else [0.05, 2.5],
                                                    f"{stage} noise: Poisson scale range", check=_range(0, 100)),
            f"realsr.gray_noise_prob{n}": Field(0.4, f"{stage} noise: probability of gray noise", ge=0, le=1),
            f"realsr.jpeg_range{n}": Field([30.0, 95.0], f"{stage} JPEG: quality range", check=_range(1, 100)),
        })
        if not n:
            out["realsr.second_blur_prob"] = Field(0.8, "second stage: probability of its blur", ge=0, le=1)
    out.update({
        "realsr.kernel_range": Field([7, 21], "blur and sinc kernel sizes: the odd sizes in [smallest, largest]",
                                     check=_kernel_range),
        "realsr.final_sinc_prob": Field(0.8, "probability of the final sinc filter", ge=0, le=1),
        "realsr.final_resize_first_prob": Field(0.5, "probability of resize + sinc before the last JPEG (else after)",
                                                ge=0, le=1),
        "realsr.resize_modes": Field(list(RESIZE_MODES), "interpolation modes (equally likely)",
                                     check=_subset(RESIZE_MODES)),
        "realsr.gt_usm": Field(True, "sharpen the ground truth (USM): the degradation's input and the pixel / "
                                     "perceptual target"),
        "realsr.usm_radius": Field(50, "USM: Gaussian size (BasicSR's radius; made odd: 50 → 51)", gt=0,
                                   le=MAX_FILTER_SIZE),
        "realsr.usm_weight": Field(0.5, "USM: weight of the residual", ge=0),
        "realsr.usm_threshold": Field(10.0, "USM: residual threshold (0-255 scale)", ge=0),
        "realsr.dump_every": Field(0, "write the LR/GT of the first batch every N steps to <output>/degraded "
                                      "(0: never)", ge=0),
    })
    return out


_VGG_BLOCKS = (2, 2, 4, 4, 4)  # convolutions per VGG19 block
VGG_LAYERS = tuple(f"{kind}{b + 1}_{i + 1}" for b, n in enumerate(_VGG_BLOCKS) for i in range(n)
                   for kind in ("conv", "relu"))


def _layer_weights(v: Mapping[str, Any]) -> Optional[str]:
    bad = [k for k in v if k not in VGG_LAYERS]
    if not v or bad or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in v.values()):
        return (f"expected {{VGG19 layer: weight ≥ 0}} with layers among conv1_1 … conv5_4 / relu1_1 … relu5_4, "
                f"got {_show(dict(v))}")
    return None


def _gan_fields() -> Dict[str, "Field"]:
    """Stage 2 of real-world SR (Real-ESRGAN's train_realesrgan_x4plus.yml values)."""
    return {
        "gan.enabled": Field(False, "GAN stage: U-Net discriminator (spectral norm), perceptual and GAN losses"),
        "gan.pixel_weight": Field(1.0, "weight of the pixel loss (train.loss)", ge=0),
        "gan.perceptual_weight": Field(1.0, "weight of the VGG19 perceptual loss", ge=0),
        "gan.perceptual_layers": Field({"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0},
                                       "VGG19 layers (before ReLU) and their weights", check=_layer_weights),
        "gan.vgg_input_norm": Field(True, "normalise the VGG input with the ImageNet mean and std"),
        "gan.gan_weight": Field(0.1, "weight of the generator's GAN loss (vanilla: BCE with logits)", ge=0),
        "gan.gan_gt_usm": Field(False, "show the discriminator the sharpened ground truth (else the plain one)"),
        "gan.d_lr": Field(1e-4, "discriminator Adam learning rate (follows train.scheduler's factors)", gt=0),
        "gan.d_betas": Field([0.9, 0.99], "discriminator Adam betas", check=_betas),
        "gan.d_weight_decay": Field(0.0, "discriminator Adam weight decay", ge=0),
        "gan.d_num_feat": Field(64, "discriminator base width", gt=0),
        "gan.d_skip_connection": Field(True, "discriminator U-Net skip connections"),
    }


F = Field
#: Every configuration key (dotted), declared once: default, type, choices or bounds, doc.
FIELDS: Dict[str, Field] = {
    "name": F("mambairv2", "experiment name (default output folder runs/<name>)"),
    "output_dir": F(None, "output folder; null: runs/<name>", optional=(str,)),
    "seed": F(0, "seed of the initialisation, the patches and the routing noise"),
    "device": F("auto", "auto | cpu | cuda | cuda:N"),
    # model
    "model.variant": F("light", "a variant of either family, checked against the model catalogue "
                       "('mambairv2 info --variants': light, base, mambair-light, ...)"),
    "model.scale": F(2, "SR factor (1 for denoise / jpeg)", gt=0),
    "model.overrides": F({}, "any field of the family's config, e.g. {embed_dim: 16, depths: [1]}"),
    "model.init_from": F(None, "warm start: checkpoint (.pth / .safetensors) to load", optional=(str,)),
    "model.init_strict": F(False, "true: every tensor must match (BasicSR strict_load_g); false: copy every "
                                  "tensor whose name and shape match"),
    "model.init_partial": F(False, "true: allow init_from of another variant (the tensors that fit)"),
    # data
    "data.task": F("auto", "auto (from the model) | sr | realsr (real-world SR: the realsr.* degradations) | "
                           "denoise | jpeg", choices=("auto", "sr", "realsr", "denoise", "jpeg")),
    "data.train_root": F(None, "HR folder, or a list of folders", optional=(str, list), check=_paths),
    "data.train_lr_root": F(None, "optional folder of pre-made LR images (SR)", optional=(str,)),
    "data.lr_template": F("{name}x{scale}{ext}", "LR file name for HR '{name}{ext}' (DIV2K): placeholders "
                                                 "{name}, {scale}, {ext}", check=_lr_template),
    "data.patch_size": F(64, "LR patch side for SR, patch side for denoise / jpeg", gt=0),
    "data.batch_size": F(32, "global batch (all ranks and accumulation steps together)", gt=0),
    "data.batch_per_gpu": F(0, "the authors' per-GPU batch (train.accum_steps 0 derives the accumulation "
                               "from it); 0: batch_size / ranks", ge=0),
    "data.num_workers": F(4, "data loader processes per rank", ge=0, check=_workers),
    "data.cache": F(True, "keep decoded images (and their bicubic LR) in memory"),
    "data.flip": F(True, "random horizontal flips"),
    "data.rot90": F(True, "random 90° rotations"),
    "data.noise_sigma": F(15.0, "denoise: Gaussian sigma on the 0-255 scale", ge=0),
    "data.jpeg_quality": F(10, "jpeg: OpenCV JPEG quality of the inputs", ge=1, le=100),
    "data.extensions": F([".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"], "image file suffixes",
                           check=_extensions),
    # validation
    "val.root": F(None, "clean images (e.g. Set14/HR); null: no validation; a missing folder is an error",
                  optional=(str,)),
    "val.lr_root": F(None, "optional pre-made inputs: <name>x<scale>.* or <name>.* (as evaluate --lr-dir)",
                     optional=(str,)),
    "val.every": F(1000, "validation every N steps; 0 disables", ge=0),
    "val.max_images": F(0, "validate on the first N images; 0: all", ge=0),
    "val.tile": F(0, "0: whole image; else tiled inference with this tile size", ge=0),
    "val.protocol": F("whole", "whole | official (the authors' overlapping ~200-px crops)",
                      choices=("whole", "official")),
    "val.use_ema": F(True, "validate the EMA weights (when EMA is on)"),
    "val.lpips_vgg16": F(None, "LPIPS at validation: torchvision's vgg16 state dict (with val.lpips_weights)",
                         optional=(str,)),
    "val.lpips_weights": F(None, "LPIPS at validation: the lpips package's weights/v0.1/vgg.pth (linear layers)",
                           optional=(str,)),
    "val.nr_root": F(None, "real photos without ground truth: restored at each validation into a side-by-side "
                           "sheet <output>/nr_sheets/<step>.png", optional=(str,)),
    "val.nr_max_images": F(8, "at most this many images of val.nr_root (0: all)", ge=0),
    # optimisation
    "train.iters": F(500000, "optimizer steps", gt=0),
    "train.lr": F(2e-4, "peak learning rate (Adam)", gt=0),
    "train.betas": F([0.9, 0.99], "Adam betas", check=_betas),
    "train.weight_decay": F(0.0, "Adam weight decay", ge=0),
    "train.scheduler": F("multistep", "learning-rate schedule", choices=("multistep", "cosine", "constant")),
    "train.milestones": F([250000, 400000, 450000, 475000], "multistep: steps where the lr is multiplied by gamma",
                          check=_positive_ints),
    "train.gamma": F(0.5, "multistep: factor at each milestone"),
    "train.eta_min": F(1e-7, "cosine: final learning rate"),
    "train.warmup_iters": F(0, "linear warm-up from 0 over N steps", ge=0),
    "train.loss": F("l1", "pixel loss", choices=("l1", "charbonnier")),
    "train.charbonnier_eps": F(1e-3, "charbonnier: epsilon"),
    "train.grad_clip": F(0.0, "max gradient norm; 0 disables", ge=0),
    "train.ema_decay": F(0.999, "EMA decay; 0 disables EMA", ge=0, lt=1),
    "train.ema_warmup": F(True, "decay min(ema_decay, (1+n)/(10+n)): early averages do not drag the random "
                                "initialisation along"),
    "train.amp": F("bf16", "mixed precision (CUDA only; CPU always runs float32)", choices=("none", "bf16", "fp16")),
    "train.accum_steps": F(1, "gradient accumulation (micro-batches per step and rank); 0: auto, "
                              "batch_size / (ranks × data.batch_per_gpu)", ge=0),
    "train.max_minutes": F(0.0, "wall-clock limit: save and stop cleanly; 0: none", ge=0),
    "train.save_every": F(5000, "checkpoint every N steps", gt=0),
    "train.keep_checkpoints": F(3, "keep the newest N step checkpoints (0: keep all)", ge=0),
    "train.log_every": F(100, "log line every N steps", gt=0),
    "train.find_unused_parameters": F(False, "DDP find_unused_parameters"),
    "train.compile": F(False, "torch.compile the model (CUDA)"),
    "train.progress": F("auto", "progress bar: auto (only on a terminal) | on | off", choices=("auto", "on", "off")),
    "train.tensorboard": F(True, "TensorBoard logs when torch.utils.tensorboard imports"),
    "train.plot": F(True, "PNG of loss and validation PSNR"),
    "train.vgg19_weights": F(None, "VGG19 weights for the perceptual loss (gan.enabled): torchvision's vgg19 "
                                   "state dict (.pth / .safetensors); never downloaded", optional=(str,)),
    "train.debug_kill_at_step": F(0, "tests: SIGKILL the process right after saving this step", ge=0),
    "train.debug_signal_in_validation": F("", "tests: \"TERM@10\" / \"KILL@10\": the process signals itself "
                                              "during the validation of step 10"),
}
FIELDS.update(_realsr_fields())
FIELDS.update(_gan_fields())
del F


def _nest(flat: Mapping[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in flat.items():
        *sections, name = key.split(".")
        node = out
        for s in sections:
            node = node.setdefault(s, {})
        node[name] = value
    return out


FLAT_DEFAULTS: Dict[str, Any] = {k: f.default for k, f in FIELDS.items()}
#: The defaults as the nested mapping a YAML config file has.
DEFAULTS: Dict[str, Any] = _nest(FLAT_DEFAULTS)
SECTIONS = tuple(dict.fromkeys(k.split(".")[0] for k in FIELDS if "." in k))


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


#: A config file larger than this is not a training config (and is not read).
MAX_CONFIG_BYTES = 1 << 20
#: The most values (scalars, lists, mappings) a YAML document may stand for once its aliases
#: (``*name``) are expanded: an "alias bomb" of a few lines can stand for billions.
MAX_YAML_VALUES = 100_000


class YAMLTooLarge(yaml.YAMLError):
    """A YAML document whose aliases stand for too many values, or refer to themselves."""


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a document whose aliases expand to more than
    :data:`MAX_YAML_VALUES` values, or that contains itself, before anything is built from it."""

    def compose_document(self):  # noqa: D102 - PyYAML's hook
        node = super().compose_document()
        _check_expansion(node)
        return node


def _check_expansion(root: Any) -> None:
    """Counts the values ``root`` stands for with every alias expanded (each node once: linear
    in the document's size); raises :class:`YAMLTooLarge` past :data:`MAX_YAML_VALUES` or on a cycle."""
    size: Dict[int, int] = {}
    visiting = set()
    stack: List[Tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        if done:
            visiting.discard(key)
            size[key] = min(MAX_YAML_VALUES + 1, 1 + sum(size[id(c)] for c in children))
            continue
        if key in size:
            continue
        if key in visiting:
            raise YAMLTooLarge("an alias (*name) refers to a value that contains it")
        visiting.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    if root is not None and size[id(root)] > MAX_YAML_VALUES:
        raise YAMLTooLarge(f"its aliases (*name) expand to more than {MAX_YAML_VALUES} values")


def load_yaml(text: str, source: str) -> Any:
    """``text`` parsed as YAML with :class:`_Loader`; :class:`ConfigError` naming ``source``
    (a file, ``--set KEY``) for an alias bomb or a document nested too deeply."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
    except YAMLTooLarge as exc:
        raise ConfigError(f"{source}: {exc}; write the values out instead") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply") from None


def parse_override(text: str) -> Tuple[str, Any]:
    """``"train.lr=1e-3"`` → ``("train.lr", 0.001)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {_show(text)}: expected KEY=VALUE (e.g. train.lr=1e-3)")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = load_yaml(raw, f"--set {key}") if raw.strip() else None
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
    """The value of ``key`` converted to its field's type (ints as floats) and checked."""
    f = FIELDS[key]
    default = f.default
    if value is None:
        if f.optional:
            return None
        raise ConfigError(f"{key}: a value is required (default {_show(default)})")
    if f.optional:
        if not isinstance(value, f.optional):
            raise ConfigError(f"{key}: expected {' or '.join(t.__name__ for t in f.optional)}, got {_show(value)}")
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_show(value)}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise ConfigError(f"{key}: expected a number, got {_show(value)}") from None
            else:
                raise ConfigError(f"{key}: expected a number, got {_show(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value}")
    elif isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_show(value)}")
    elif isinstance(default, str):
        if isinstance(value, bool) and {"on", "off"} <= set(f.choices):
            value = "on" if value else "off"  # YAML 1.1 reads a bare on / off (and yes / no) as a boolean
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_show(value)}")
    elif isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_show(value)}")
    elif isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_show(value)}")
    if f.choices and value not in f.choices:
        raise ConfigError(f"{key}: must be one of {', '.join(map(str, f.choices))}, got {_show(value)}")
    if f.ge is not None and f.le is not None and not f.ge <= value <= f.le:
        raise ConfigError(f"{key}: must be in {_num(f.ge)}..{_num(f.le)}, got {_show(value)}")
    if f.gt is not None and not value > f.gt:
        raise ConfigError(f"{key}: must be > {_num(f.gt)}, got {_show(value)}")
    if f.ge is not None and value < f.ge:
        raise ConfigError(f"{key}: must be ≥ {_num(f.ge)}, got {_show(value)}")
    if f.lt is not None and not value < f.lt:
        raise ConfigError(f"{key}: must be < {_num(f.lt)}, got {_show(value)}")
    if f.le is not None and value > f.le:
        raise ConfigError(f"{key}: must be ≤ {_num(f.le)}, got {_show(value)}")
    if f.check is not None:
        problem = f.check(value)
        if problem:
            raise ConfigError(f"{key}: {problem}")
    return value


def _merge(base: Dict[str, Any], new: Mapping[str, Any], prefix: str = "") -> None:
    """Merges a parsed YAML mapping into ``base`` (the defaults), rejecting unknown keys."""
    for k, v in new.items():
        key = f"{prefix}{k}"
        if key == "model.overrides":
            if not isinstance(v, Mapping):
                raise ConfigError(f"{key}: expected a mapping of MambaIRv2Config fields, got {_show(v)}")
            base["overrides"].update(v)
        elif key in FLAT_DEFAULTS:
            base[k] = v
        elif any(f.startswith(key + ".") for f in FLAT_DEFAULTS):
            if not isinstance(v, Mapping):
                raise ConfigError(f"{key}: expected a section (mapping), got {_show(v)}")
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
    r = cfg["realsr"]
    for n in ("", "2"):
        if len(r[f"kernel_list{n}"]) != len(r[f"kernel_prob{n}"]):
            raise ConfigError(f"realsr.kernel_prob{n}: one probability per kernel of realsr.kernel_list{n} "
                              f"({len(r[f'kernel_list{n}'])}), got {len(r[f'kernel_prob{n}'])}")
    if bool(cfg["val"]["lpips_vgg16"]) != bool(cfg["val"]["lpips_weights"]):
        raise ConfigError("val.lpips_vgg16 and val.lpips_weights go together (LPIPS needs both files)")
    if cfg["val"]["protocol"] == "official" and cfg["val"]["tile"]:
        raise ConfigError("val.tile applies to val.protocol whole (the official protocol has its own crops)")
    if cfg["output_dir"] is None:
        cfg["output_dir"] = str(Path("runs") / cfg["name"])
    return Config(cfg)


def _check_model(cfg: Dict[str, Any]) -> None:
    try:
        mc = model_config(cfg)
    except ConfigError as exc:
        raise ConfigError(_model_message(cfg, exc)) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model: {exc}") from None
    task = cfg["data"]["task"]
    if task == "realsr":
        task = "sr"
    if task != "auto" and task != mc.task and not (task in ("denoise", "jpeg") and mc.upscale == 1):
        raise ConfigError(f"data.task {task!r} does not fit the model (a {mc.task} model)")
    task = mc.task if task == "auto" else task
    channels = 1 if task == "jpeg" else 3
    if mc.in_chans != channels:
        raise ConfigError(f"the model takes {mc.in_chans}-channel images, but {task} training reads "
                          f"{'gray' if channels == 1 else 'RGB'} ones: set model.overrides.in_chans={channels} "
                          "or choose another variant")


def _model_message(cfg: Mapping[str, Any], exc: "ConfigError") -> str:
    """A network config error in the training config's words: ``model.overrides.<field> …``
    for a field the overrides set, ``model.scale …`` for the scale, ``model: …`` otherwise."""
    text, field = str(exc), exc.field
    if text.startswith("model"):
        return text
    overrides = cfg["model"]["overrides"]
    if field and field in overrides:
        key = f"model.overrides.{field}"
    elif field == "upscale":
        key = "model.scale"
    else:
        return f"model: {text}"
    if text.startswith(field + " "):
        return key + text[len(field):]
    return f"{key}: {text}"


def model_config(cfg: Mapping[str, Any]):
    """The network configuration a training config describes (any family's variant, see
    ``mambairv2 info --variants``); ``data.task: realsr`` marks it ``degradation: realsr``, which
    the checkpoints store so that the result is named a real-world SR model."""
    from ..models.registry import family_of_variant

    m = cfg["model"]
    overrides = dict(m["overrides"])
    bad = [k for k in overrides if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"model.overrides: field names are strings, got {_show(bad[0])}")
    if cfg["data"]["task"] == "realsr":
        overrides["degradation"] = "realsr"
    return family_of_variant(m["variant"]).variant_config(m["variant"], m["scale"], **overrides)


def check_model_memory(config: Any, device: Any = "cpu") -> None:
    """Refuses, before it is built, a network whose training state (weights, gradients, Adam's
    moments, the EMA copy) exceeds the memory usable on ``device``: counted from ``config``."""
    from ..models.registry import family_of
    from ..utils.memory import usable_memory_bytes

    values = family_of(config).state_size(config).values
    need, have = values * TRAIN_BYTES_PER_PARAM, usable_memory_bytes(device)
    if need > have:
        raise ConfigError(f"model.overrides: this network has {values:,} parameters; training them needs "
                          f"{need / 2**30:,.1f} GiB, more than the {have / 2**30:.1f} GiB usable here "
                          "(choose a smaller embed_dim or depths)")


def task_of(cfg: Mapping[str, Any]) -> str:
    """``sr``, ``realsr`` (SR on the real-world degradations), ``denoise`` or ``jpeg``."""
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
        text = read_config_text(p)
        try:
            data = load_yaml(text, str(p))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise ConfigError(f"{p}: not valid YAML{where}") from None
    return build_config(data or {}, overrides, source=str(path))


def read_config_text(p: Path) -> str:
    """The text of config file ``p``: a regular file of UTF-8 text of at most MAX_CONFIG_BYTES.

    Raises:
        ConfigError: a folder, a FIFO or device, too large, unreadable or not text.
    """
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not a config file")
    if not p.is_file():  # a FIFO or a device (/dev/zero) would be read forever
        raise ConfigError(f"{p}: not a regular file; give a YAML config file")
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: larger than {MAX_CONFIG_BYTES >> 20} MiB, not a training config")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file (not UTF-8); give a YAML config file") from None


def dump_config(cfg: Mapping[str, Any], docs: bool = False) -> str:
    """The config as YAML text (saved next to the checkpoints); ``docs``: each key followed by
    its field's doc as a comment (``--print-config``; still valid YAML)."""
    if not docs:
        return yaml.safe_dump(_plain(cfg), sort_keys=False)
    lines: List[str] = []

    def emit(node: Mapping[str, Any], prefix: str, indent: str) -> None:
        for k, v in node.items():
            key = f"{prefix}{k}"
            if isinstance(v, Mapping) and key in SECTIONS:
                lines.append(f"{indent}{k}:")
                emit(v, key + ".", indent + "  ")
                continue
            value = _flow(_plain(v))
            doc = f"  # {FIELDS[key].doc}" if key in FIELDS else ""
            lines.append(f"{indent}{k}: {value}{doc}")

    emit(cfg, "", "")
    return "\n".join(lines) + "\n"


def _flow(value: Any) -> str:
    """One value as inline YAML."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 9, sort_keys=False).strip()
    return text[:-4].rstrip() if text.endswith("\n...") else text  # a scalar document's end mark


def changed_fields(cfg: Mapping[str, Any]) -> List[str]:
    """``key = value  (doc)`` for every key whose value differs from its default (``--dry-run``)."""
    out = []
    for key, f in FIELDS.items():
        value = Config(cfg).get_path(key)
        if key == "output_dir" or _plain(value) == f.default:
            continue
        out.append(f"{key} = {_flow(_plain(value))}  ({f.doc})")
    return out


def describe_fields() -> str:
    """Every config key with its default, what it accepts and its doc (``train --help``)."""
    out = ["config keys (--set KEY=VALUE, or the same nesting in the YAML file):"]
    for key, f in FIELDS.items():
        out.append(f"  {key} = {_flow(f.default)}  [{f.accepts()}]")
        out.append(f"      {f.doc}")
    return "\n".join(out)


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
