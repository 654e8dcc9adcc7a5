"""``sgn_route``: the inference routing of the ASSM (semantic-guided neighbouring): each token's
prompt index (the argmax of its routing logits), the stable sort of the tokens by that index
(SGN-unfold) and its inverse permutation (SGN-fold).

Implementations: ``pytorch`` (max + stable sort + scatter; the reference), ``compiled``
(``routing_kernel.c``, CPU float32 inference: one pass, counting sort) and ``export`` (argmax
and a sort of unique keys, :func:`sgn_order_unique_key`: what ONNX can express without ties).
"""
from __future__ import annotations

from typing import Tuple

import torch

from .dispatch import Choice, Probe, cpu_inference_choice
from .routing_compiled import routing_kernel_available, routing_kernel_error, sgn_route_compiled

Tensor = torch.Tensor


def choose(probe: Probe) -> Choice:
    """The implementation for routing logits on ``probe``'s device/dtype."""
    return cpu_inference_choice("sgn_route", probe, "compiled", routing_kernel_available, routing_kernel_error)

def sgn_order(groups: Tensor) -> Tuple[Tensor, Tensor]:
    """The permutation sorting tokens by group (stable: ties keep raster order) and its inverse.
    ``groups``: ``B×L`` integers → two ``B×L`` int64 index tensors."""
    order = torch.sort(groups, dim=-1, stable=True).indices
    inverse = torch.empty_like(order).scatter_(
        -1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order))
    return order, inverse


def sgn_order_unique_key(groups: Tensor) -> Tuple[Tensor, Tensor]:
    """:func:`sgn_order` as an ordinary sort of the unique keys ``group·L + position``: ONNX's
    sort (``TopK``) promises no order among equal keys, and unique keys have none, so a graph
    keeps the stable order."""
    length = groups.shape[-1]
    position = torch.arange(length, device=groups.device)
    order = torch.argsort(groups * length + position, dim=-1)
    inverse = torch.zeros_like(order).scatter(-1, order, position.expand_as(order))
    return order, inverse


def sgn_route(logits: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """``logits``: ``B×L×T`` → ``(groups, order, inverse)``, each ``B×L`` int64: the first argmax
    per token, the stable sort of the tokens by group, and its inverse."""
    name = choose(Probe.of(logits)).name
    if name == "compiled":
        return sgn_route_compiled(logits)
    if name == "export":
        groups = logits.argmax(-1)  # ONNX ArgMax: the first maximum, as max().indices
        return (groups, *sgn_order_unique_key(groups))
    # max(-1) gives the same (first) index as argmax and is twice as fast on CPUs
    groups = logits.max(-1).indices
    return (groups, *sgn_order(groups))
