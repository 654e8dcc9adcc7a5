"""What every part of the package outside ``models/`` may know about an architecture family.

A :class:`Family` is one record per architecture (MambaIRv2, MambaIR v1): its config and network
classes, its named variants, how to recognise and read its state dicts, and the facts the doors
need (padding multiple, the authors' test-time tiling, routing, the paper analyses it supports).
The records are declared next to each family's code (``models/mambairv2/__init__.py``,
``models/mambair/__init__.py``) and listed once in :mod:`mambairv2.models.registry`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, Mapping, Optional, Tuple

import torch

from .layers.sizes import Size

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Family:
    """One architecture family."""

    #: short id, stored in checkpoints' configurations (``arch`` values map to it)
    name: str
    #: how a person calls it ("MambaIRv2", "MambaIR")
    display: str
    config_class: type
    network_class: type
    #: variant name → config fields (SR scale given separately)
    variants: Mapping[str, Mapping[str, Any]]
    #: the variants that take a scale (2, 3, 4)
    sr_variants: Tuple[str, ...]
    #: ``variant_config(name, scale, **overrides)`` → config
    variant_config: Callable[..., Any]
    #: ``variant_name(config)`` → the variant it equals, or ``custom``
    variant_name: Callable[[Any], str]
    #: whether a state dict belongs to this family (cheap key test; detection may still refuse it)
    owns: Callable[[StateDict], bool]
    #: ``detect(state_dict, source)`` → config; CheckpointError with a one-line reason otherwise
    detect: Callable[[StateDict, str], Any]
    #: the ``arch`` values its configs write into stored configurations
    arch_names: FrozenSet[str]
    #: ``state_size(config)`` → the tensors and values of its state dict, counted without
    #: building (:class:`~mambairv2.models.layers.sizes.Size`)
    state_size: Callable[[Any], Size]
    #: the paper analyses this family has (``attention``, ``sgn``; ERF, LAM and complexity
    #: apply to every family)
    analyses: FrozenSet[str] = frozenset()
    #: whether eval-mode routing can be chosen (MambaIRv2's SGN: argmax or Gumbel)
    routing: bool = False
    #: ``tile_defaults(config)`` → the authors' test-time tiling {"tile", "tile_overlap"} or None
    tile_defaults: Callable[[Any], Optional[Dict[str, int]]] = lambda config: None
    #: the network's parts the paper analyses hook, by name (``ASSM``, ``SelectiveScan``,
    #: ``WindowAttention`` classes, ``permute_tokens``); empty where the family has none
    parts: Mapping[str, Any] = field(default_factory=dict)

    def pad_multiple(self, config: Any) -> int:
        """The size multiple the network pads inputs to internally (its window, or 1)."""
        return int(getattr(config, "window_size", 1))

    def config_from_dict(self, stored: Mapping[str, Any]) -> Any:
        """A config from a stored dict (:meth:`to_dict` output of this family's config)."""
        return self.config_class.from_dict(stored)

    def build(self, config: Any) -> torch.nn.Module:
        """A freshly initialised network of ``config``."""
        return self.network_class(config)
