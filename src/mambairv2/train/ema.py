"""Exponential moving average of the weights (BasicSR's ``net_g_ema``)."""
from __future__ import annotations

import copy
from typing import Dict

import torch
import torch.nn as nn


class EMA:
    """A float32 copy of a model updated as ``ema = d·ema + (1−d)·weights`` after each step.

    With ``warmup`` the decay is ``min(decay, (1+n)/(10+n))`` for update ``n``, so the average
    does not drag the random initialisation along in short runs. Buffers are copied.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = False) -> None:
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.updates = 0
        self.module = copy.deepcopy(model).float().eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        ema_params = dict(self.module.named_parameters())
        for name, p in model.named_parameters():
            ema_params[name].mul_(d).add_(p.detach().float(), alpha=1 - d)
        ema_buffers = dict(self.module.named_buffers())
        for name, b in model.named_buffers():
            ema_buffers[name].copy_(b)
        self.updates += 1

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, sd: Dict[str, torch.Tensor], updates: int) -> None:
        self.module.load_state_dict(sd, strict=True)
        self.updates = int(updates)
