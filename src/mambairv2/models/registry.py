"""The architecture families, listed once, and the questions every door asks about a model:
which family (of a config, a model, a state dict or a stored configuration), a fresh network of
a variant, and a plain description. This is the only place where MambaIR and MambaIRv2 differ."""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

import torch

from ..errors import CheckpointError
from .degradation import model_task, task_name
from .family import Family
from .mambair import FAMILY as MAMBAIR
from .mambairv2 import FAMILY as MAMBAIRV2

#: every family, newest first (the first whose key test accepts a state dict reads it)
FAMILIES: Tuple[Family, ...] = (MAMBAIRV2, MAMBAIR)
#: every variant name ``create_model`` takes, MambaIRv2's first
MODEL_NAMES: Tuple[str, ...] = tuple(n for f in FAMILIES for n in f.variants)


def family_of(thing: Any) -> Family:
    """The family of a network, a config, a state dict or a stored configuration dict."""
    config = getattr(thing, "config", thing)
    for family in FAMILIES:
        if isinstance(config, (family.config_class, family.network_class)):
            return family
    if isinstance(thing, Mapping):
        if "arch" in thing and not any(isinstance(v, torch.Tensor) for v in thing.values()):
            for family in FAMILIES:
                if thing["arch"] in family.arch_names:
                    return family
            return MAMBAIRV2  # our older MambaIRv2 safetensors store no "arch"
        if not any(isinstance(v, torch.Tensor) for v in thing.values()):
            return MAMBAIRV2
        for family in FAMILIES:
            if family.owns(thing):
                return family
        return MAMBAIRV2  # its detection says what is missing
    raise TypeError(f"not a MambaIR/MambaIRv2 model, config or state dict: {type(thing).__name__}")


def part_classes(name: str) -> Tuple[type, ...]:
    """Every family's class of a hooked part (``ASSM``, ``SelectiveScan``, ``WindowAttention``),
    for ``isinstance`` tests of the paper analyses; empty when no family has one."""
    return tuple(f.parts[name] for f in FAMILIES if name in f.parts)


def family_of_variant(name: str) -> Family:
    """The family that declares variant ``name``; ValueError listing every variant otherwise."""
    for family in FAMILIES:
        if name in family.variants:
            return family
    raise ValueError(f"unknown variant {name!r}; variants: {', '.join(MODEL_NAMES)}")


def create_model(name: str, scale: int = 4, **overrides: Any) -> torch.nn.Module:
    """A freshly initialised network of a paper variant (train mode, as ``nn.Module`` starts).

    MambaIRv2: ``light``, ``small``, ``base``, ``large`` (SR, ``scale`` 2/3/4), ``denoise``
    (colour) and ``jpeg`` (grayscale). MambaIR (v1): ``mambair-light`` and ``mambair`` (classic;
    also the real-world SR model's architecture at x4) with ``scale`` 2/3/4, ``mambair-denoise``
    and ``mambair-jpeg``. ``overrides`` are fields of the family's config class.
    """
    family = family_of_variant(name)
    return family.build(family.variant_config(name, scale, **overrides))


def detect(sd: Mapping[str, torch.Tensor], source: str = "state dict") -> Any:
    """The configuration of a state dict, by the family that owns it (CheckpointError otherwise)."""
    return family_of(sd).detect(sd, source)


#: How much more than a file holds its configuration may describe (tensors, values) and still be
#: built, so that the key-by-key comparison can name what differs; beyond, it is refused unbuilt.
STATE_SIZE_SLACK = 2


def check_state_size(sd: Mapping[str, torch.Tensor], config: Any, source: str = "state dict") -> None:
    """Refuses ``config`` for ``sd`` when its network needs far more tensors or values than
    ``sd`` holds (over :data:`STATE_SIZE_SLACK` times): counted from the configuration alone, no
    tensor built, so a configuration that claims a huge network (stored depths or widths, or
    depths detected from a key's block index) costs nothing. Within the slack, the network is
    built and compared with the file key by key."""
    need = family_of(config).state_size(config)
    have = (len(sd), sum(v.numel() for v in sd.values()))
    if need.tensors > STATE_SIZE_SLACK * have[0] or need.values > STATE_SIZE_SLACK * have[1]:
        raise CheckpointError(f"{source}: its configuration ({config.arch}, depths {_shown(list(config.depths))}, "
                              f"embed_dim {config.embed_dim}) needs {need.tensors:,} tensors of {need.values:,} "
                              f"values, the file holds {have[0]:,} tensors of {have[1]:,}: not this file's network")


#: What to do about a stored configuration that cannot be read.
REDO_STORED = "convert the original checkpoint again ('mambairv2 convert')"


def config_from_stored(stored: Any, source: str = "file") -> Any:
    """The configuration a checkpoint stored beside its tensors (a JSON object of the family's
    config fields), its JSON types checked field by field before any is used.

    Raises:
        CheckpointError: not an object, a field of the wrong type, or values the family refuses.
    """
    if not isinstance(stored, Mapping):
        raise CheckpointError(f"{source}: the stored configuration is a JSON {_json_kind(stored)}, not an "
                              f"object; {REDO_STORED}")
    arch = stored.get("arch", "")
    if not isinstance(arch, str):
        raise CheckpointError(f"{source}: the stored configuration's arch is {_shown(arch)}, not a name; {REDO_STORED}")
    family = family_of(stored)
    hints = typing.get_type_hints(family.config_class)
    for f in dataclasses.fields(family.config_class):
        if f.name in stored and not _fits(stored[f.name], hints[f.name]):
            raise CheckpointError(f"{source}: the stored configuration's {f.name} is {_shown(stored[f.name])}, "
                                  f"not {_type_words(hints[f.name])}; {REDO_STORED}")
    try:
        return family.config_from_dict(stored)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: invalid stored configuration ({exc}); {REDO_STORED}") from None


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value is of a config field's annotated type (``bool`` is no number)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        return any(_fits(value, a) for a in args)
    if origin in (tuple, list):
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_words(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        return " or ".join(_type_words(a) for a in args)
    if origin in (tuple, list):
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(args[0], str(args[0]))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(hint, str(hint))


def _json_kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null", int: "number",
            float: "number"}.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


def set_routing(model: torch.nn.Module, mode: str = "argmax", seed: Optional[int] = None) -> torch.nn.Module:
    """Eval-mode routing for families that route (MambaIRv2's SGN); others have none to set."""
    if family_of(model).routing:
        model.set_routing(mode, seed)
    return model


def use_routing_generator(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Makes every routing layer draw its Gumbel noise from ``generator`` (training re-seeds it
    per step, so a resumed run draws the same noise); nothing for families that do not route."""
    assm = family_of(model).parts.get("ASSM")
    if assm is None:
        return
    for mod in model.modules():
        if isinstance(mod, assm):
            mod.generator = generator


@dataclass(frozen=True)
class ModelInfo:
    """What a person wants to know about a network."""

    family: str        # "MambaIRv2" / "MambaIR"
    arch: str          # the authors' class name
    variant: str       # paper variant or "custom"
    task: str          # "sr", "realsr" (real-world SR), "denoise", "jpeg"
    scale: int
    in_chans: int
    pad_multiple: int
    params: int

    @property
    def label(self) -> str:
        """``MambaIRv2 light x4 (SR)`` / ``MambaIR mambair x4 (real-world SR)`` /
        ``MambaIRv2 denoise (denoising)``-style label."""
        scale = f" x{self.scale}" if self.scale > 1 else ""
        return f"{self.family} {self.variant}{scale} ({task_name(self.task)})"


def describe(model: torch.nn.Module) -> ModelInfo:
    """The :class:`ModelInfo` of a network of any family."""
    family = family_of(model)
    c = model.config
    return ModelInfo(family=family.display, arch=c.arch, variant=family.variant_name(c), task=model_task(c),
                     scale=int(c.upscale), in_chans=int(c.in_chans), pad_multiple=family.pad_multiple(c),
                     params=sum(p.numel() for p in model.parameters()))
