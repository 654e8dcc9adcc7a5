"""Fused operators for float32 inference on CPUs: a linear layer (with its bias) or a
convolution and the activation after it in one oneDNN primitive (PyTorch's ``mkldnn._linear_pointwise`` and
``_convolution_pointwise`` ops, the ones ``torch.compile`` uses on CPUs), so that the
activation runs on data still in cache instead of in another pass over memory.

They apply only to CPU float32 tensors without autograd and outside autocast, where PyTorch
was built with oneDNN; everywhere else the plain modules run. Results equal the plain ops to
float32 rounding. ``fusion(False)`` turns them off (for comparisons).

:class:`LayerNorm` is ``nn.LayerNorm`` (same parameters and state dict) that runs through a
small compiled kernel in the same conditions (see ``ops.layer_norm_compiled``).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.layer_norm_compiled import layer_norm_compiled, layer_norm_kernel_applies

Tensor = torch.Tensor
_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("mambairv2_fusion", default=True)


@contextlib.contextmanager
def fusion(enabled: bool) -> Iterator[None]:
    """Enable or disable the fused operators for everything run inside the block."""
    token = _enabled.set(bool(enabled))
    try:
        yield
    finally:
        _enabled.reset(token)


def fusion_enabled() -> bool:
    """False inside ``fusion(False)``."""
    return _enabled.get()


@functools.lru_cache(maxsize=1)
def _ops_available() -> bool:
    try:
        ops = torch.ops.mkldnn
        return (torch.backends.mkldnn.is_available() and hasattr(ops, "_linear_pointwise")
                and hasattr(ops, "_convolution_pointwise"))
    except (AttributeError, RuntimeError):
        return False


def _autocast_cpu() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def applies(x: Tensor) -> bool:
    """Whether the fused path is used for ``x``."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not _autocast_cpu() and _enabled.get() and _ops_available())


def linear(x: Tensor, layer: nn.Linear) -> Tensor:
    """``layer(x)`` for tokens ``…×C``; fused, the bias is added by the matmul's epilogue instead
    of being broadcast into the output before it (a full pass over the output)."""
    if not applies(x):
        return layer(x)
    flat = x.reshape(-1, x.shape[-1])
    out = torch.ops.mkldnn._linear_pointwise(flat, layer.weight, layer.bias, "none", [], "")
    return out.view(*x.shape[:-1], out.shape[-1])


def linear_gelu(x: Tensor, layer: nn.Linear) -> Tensor:
    """``gelu(layer(x))`` (exact, erf-based GELU) for tokens ``…×C``."""
    if not applies(x):
        return F.gelu(layer(x))
    flat = x.reshape(-1, x.shape[-1])
    out = torch.ops.mkldnn._linear_pointwise(flat, layer.weight, layer.bias, "gelu", [], "none")
    return out.view(*x.shape[:-1], out.shape[-1])


def conv_act(x: Tensor, conv: nn.Conv2d, act: str) -> Tensor:
    """``act(conv(x))`` for ``act`` in ``gelu`` (exact) or ``sigmoid``; channels-last stays
    channels-last."""
    if not applies(x) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        y = conv(x)
        return F.gelu(y) if act == "gelu" else torch.sigmoid(y)
    return torch.ops.mkldnn._convolution_pointwise(
        x, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation),
        conv.groups, act, [], "none" if act == "gelu" else "")


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last dimension; float32 CPU inference goes through the compiled
    kernel (2.5× faster at 48 channels), everything else through PyTorch."""

    def forward(self, x: Tensor) -> Tensor:
        if (len(self.normalized_shape) == 1 and _enabled.get() and not _autocast_cpu()
                and layer_norm_kernel_applies(x, self.weight, self.bias)):
            return layer_norm_compiled(x, self.weight, self.bias, self.eps)
        return super().forward(x)
