"""Pixel losses: L1 (SR) and Charbonnier (denoising, JPEG)."""
from __future__ import annotations

import torch
import torch.nn as nn

Tensor = torch.Tensor


class L1Loss(nn.Module):
    """Mean absolute error."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).abs().mean()


class CharbonnierLoss(nn.Module):
    """Mean of ``sqrt((pred - target)² + eps²)``, a smooth L1."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = float(eps)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        diff = pred - target
        return torch.sqrt(diff * diff + self.eps * self.eps).mean()


def build_loss(name: str, charbonnier_eps: float = 1e-3) -> nn.Module:
    """``l1`` or ``charbonnier``."""
    if name == "l1":
        return L1Loss()
    if name == "charbonnier":
        return CharbonnierLoss(charbonnier_eps)
    raise ValueError(f"unknown loss {name!r}")
