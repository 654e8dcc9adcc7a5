"""``sgn_route``: the inference routing of the ASSM (semantic-guided neighbouring): each token's
prompt index (the argmax of its routing logits), the stable sort of the tokens by that index
(SGN-unfold) and its inverse permutation (SGN-fold).

Implementations: ``pytorch`` (max + stable sort + scatter; the reference) and ``compiled``
(``routing_kernel.c``, CPU float32 inference: one pass, counting sort).
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


def sgn_route(logits: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """``logits``: ``B×L×T`` → ``(groups, order, inverse)``, each ``B×L`` int64: the first argmax
    per token, the stable sort of the tokens by group, and its inverse."""
    if choose(Probe.of(logits)).name == "compiled":
        return sgn_route_compiled(logits)
    # max(-1) gives the same (first) index as argmax and is twice as fast on CPUs
    groups = logits.max(-1).indices
    return (groups, *sgn_order(groups))
