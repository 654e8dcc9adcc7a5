"""``layer_norm`` over the last dimension: PyTorch's, or ``layer_norm_kernel.c`` for float32
CPU inference (2.5× faster at the light model's 48 channels)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dispatch import Choice, Probe, cpu_inference_choice
from .layer_norm_compiled import layer_norm_compiled, layer_norm_kernel_available, layer_norm_kernel_error

Tensor = torch.Tensor


def choose(probe: Probe) -> Choice:
    """The implementation on ``probe``'s device/dtype."""
    return cpu_inference_choice("layer_norm", probe, "compiled", layer_norm_kernel_available,
                                layer_norm_kernel_error)

def layer_norm(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float) -> Tensor:
    """``F.layer_norm(x, (C,), weight, bias, eps)`` for ``x`` of shape ``…×C``."""
    if (weight is not None and bias is not None and x.numel()
            and choose(Probe.of(x, weight, bias)).name == "compiled"):
        return layer_norm_compiled(x, weight, bias, eps)
    # the normalised size from the weight where there is one: a constant when traced (ONNX)
    size = weight.shape[0] if weight is not None else x.shape[-1]
    return F.layer_norm(x, (size,), weight, bias, eps)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last dimension (same parameters and state dict) computed by
    :func:`layer_norm`."""

    def forward(self, x: Tensor) -> Tensor:
        if len(self.normalized_shape) != 1:
            return super().forward(x)
        return layer_norm(x, self.weight, self.bias, self.eps)
