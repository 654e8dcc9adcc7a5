"""Pixel losses: L1 (SR) and Charbonnier (denoising, JPEG); the vanilla GAN loss."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

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


def gan_loss(logits: Tensor, real: bool) -> Tensor:
    """The vanilla GAN loss: binary cross-entropy of the logits against 1 (real) or 0 (fake),
    averaged over every logit."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)
