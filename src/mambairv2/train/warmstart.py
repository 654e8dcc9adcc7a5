"""Warm start: initialise a model from another checkpoint, as the authors' option files do
(``pretrain_network_g`` with ``strict_load_g``).

- strict: every tensor of the model must be in the file with the same shape, and nothing else
  (x3 from x2 is therefore not strict: the upsampling head differs);
- non-strict (BasicSR's ``strict_load_g: false``): every tensor whose name and shape match is
  copied, the head included where it fits; the others stay as initialised.

A file of another variant (e.g. a small x2 file into a light model) is an error naming both,
unless ``partial=True`` asks for loading whatever fits.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List

import torch

from ..models import family_of, resolve
from ..models.checkpoint import CheckpointError, read_state_dict
from ..models.registry import detect


@dataclass
class WarmStartReport:
    """What a warm start did: tensors copied, and the model's tensors left as initialised
    (missing from the file, or of another shape), plus the file's tensors that were unused."""

    loaded: int
    total: int
    not_loaded: List[str] = field(default_factory=list)
    unused: List[str] = field(default_factory=list)

    def line(self, path: str, strict: bool) -> str:
        """One log line: ``warm start from X (strict): 120/122 tensors loaded; ...``."""
        text = (f"warm start from {path} ({'strict' if strict else 'non-strict'}): "
                f"{self.loaded}/{self.total} tensors loaded")
        if self.not_loaded:
            text += f"; left as initialised: {_names(self.not_loaded)}"
        if self.unused:
            text += f"; unused from the file: {_names(self.unused)}"
        return text


def _names(keys: List[str], shown: int = 4) -> str:
    more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def describe(config: Any) -> str:
    """``light x2``, ``denoise``, ``custom (embed_dim 16) x2``."""
    name = family_of(config).variant_name(config)
    if name == "custom":
        name = f"custom (embed_dim {config.embed_dim}, depths {list(config.depths)})"
    return f"{name} x{config.upscale}" if config.task == "sr" else name


def same_architecture(a: Any, b: Any) -> bool:
    """Whether two configs differ at most in the SR scale (the upsampling head); the
    degradation a network was trained on is no part of its architecture."""
    if family_of(a) is not family_of(b):
        return False
    # degradation=None: a real-world SR config refuses upscale 1, and it does not compare anyway
    neutral = dict(upscale=1, upsampler="", degradation=None)
    return a.replace(**neutral) == b.replace(**neutral) if (a.task == "sr" and b.task == "sr") else a == b


def warm_start(model: torch.nn.Module, path: str, strict: bool = False, partial: bool = False,
               verbose: bool = True) -> WarmStartReport:
    """Copies the tensors of checkpoint ``path`` into ``model`` (see the module docstring).

    Raises:
        CheckpointError: unreadable file; a file of another variant without ``partial``;
            with ``strict``, any missing, unexpected or reshaped tensor; nothing fits.
    """
    sd, _ = read_state_dict(resolve(path, variants=False).path)  # a file or a downloaded name
    try:
        source = detect(sd, str(path))
    except CheckpointError:
        source = None
    if source is not None and not partial and not same_architecture(source, model.config):
        raise CheckpointError(f"model.init_from {path} holds a {describe(source)} model, but the config "
                              f"trains a {describe(model.config)} model; point init_from at a "
                              f"{describe(model.config)} checkpoint, or set model.init_partial=true "
                              "to load the tensors that fit")
    own = model.state_dict()
    fits: Dict[str, torch.Tensor] = {k: v for k, v in sd.items()
                                     if k in own and tuple(v.shape) == tuple(own[k].shape)}
    report = WarmStartReport(len(fits), len(own), [k for k in own if k not in fits],
                             [k for k in sd if k not in fits])
    if strict and (report.not_loaded or report.unused):
        raise CheckpointError(f"model.init_from {path}: strict warm start (model.init_strict) but the tensors "
                              f"differ: missing or reshaped {_names(report.not_loaded) or 'none'}; "
                              f"unexpected {_names(report.unused) or 'none'}")
    if not fits:
        raise CheckpointError(f"model.init_from {path}: no tensor fits the model (another architecture?)")
    with torch.no_grad():
        for k, v in fits.items():
            own[k].copy_(v.to(own[k].dtype))
    if verbose:
        print(report.line(path, strict), file=sys.stderr)
    return report
