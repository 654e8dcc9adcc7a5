"""``linear_act`` / ``conv_act``: a linear layer or convolution with the activation after it.

Implementations: ``pytorch`` (the module, then the activation) and ``onednn``: one oneDNN
primitive (PyTorch's ``mkldnn._linear_pointwise`` / ``_convolution_pointwise`` ops, the ones
``torch.compile`` uses on CPUs), so the bias and the activation run on data still in cache
instead of in further passes over memory; for float32 CPU inference where PyTorch has oneDNN.
Results equal the plain ops to float32 rounding. Under CPU bfloat16 autocast the same primitive
runs in bfloat16 (input, weight and bias rounded to bfloat16, accumulation in float32, a
bfloat16 result), as autocast runs ``nn.Linear`` and ``nn.Conv2d``.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dispatch import Choice, Probe, cpu_inference_choice, selected

Tensor = torch.Tensor
ACTIVATIONS = ("none", "gelu", "sigmoid")


@functools.lru_cache(maxsize=1)
def onednn_available() -> bool:
    """Whether this PyTorch has the oneDNN pointwise-fused linear and convolution ops."""
    try:
        ops = torch.ops.mkldnn
        return (torch.backends.mkldnn.is_available() and hasattr(ops, "_linear_pointwise")
                and hasattr(ops, "_convolution_pointwise"))
    except (AttributeError, RuntimeError):
        return False


#: float32 linear layers of fewer token rows take PyTorch's GEMM: there oneDNN's fixed cost
#: per call outweighs its fused epilogue (1 thread, CPU time, 16–144 channels: MKL 1.2–2.4×
#: faster at 256 rows, about even with GELU at 1024, oneDNN ahead from 2048 rows)
ONEDNN_MIN_ROWS = 1024


def choose(probe: Probe, rows: Optional[int] = None) -> Choice:
    """The implementation on ``probe``'s device/dtype; ``rows``: the token rows of a linear
    layer's input (None: a convolution, or a call of any size)."""
    choice = cpu_inference_choice("linear_act", probe, "onednn", onednn_available,
                                  lambda: "PyTorch built without oneDNN pointwise ops")
    if (rows is not None and rows < ONEDNN_MIN_ROWS and choice.name == "onednn" and not probe.autocast
            and selected("linear_act") == "auto"):
        return Choice("pytorch", f"{rows} rows (< {ONEDNN_MIN_ROWS}: PyTorch's GEMM is faster)")
    return choice


def _operands(x: Tensor, layer: nn.Module, probe: Probe):
    """``x``, the weight and the bias in the dtype the primitive runs in: bfloat16 under CPU
    bfloat16 autocast (which does not reach the oneDNN ops), else as they are."""
    weight, bias = layer.weight, layer.bias
    if probe.bfloat16_autocast:
        half = torch.bfloat16
        return x.to(half), weight.to(half), None if bias is None else bias.to(half)
    return x, weight, bias


def _activate(y: Tensor, act: str) -> Tensor:
    if act == "gelu":
        return F.gelu(y)
    if act == "sigmoid":
        return torch.sigmoid(y)
    return y


def _plain_linear(x: Tensor, layer: nn.Linear) -> Tensor:
    """``layer(x)``; for a plain ``nn.Linear`` without hooks as ``F.linear``, without the
    module call (a few µs, as much as the product of a small image's tokens)."""
    if type(layer) is nn.Linear and not (layer._forward_hooks or layer._forward_pre_hooks):
        return F.linear(x, layer.weight, layer.bias)
    return layer(x)


def linear_act(x: Tensor, layer: nn.Linear, act: str = "none") -> Tensor:
    """``act(layer(x))`` for tokens ``…×C`` (``act``: ``none``, ``gelu`` (exact) or ``sigmoid``);
    fused, the bias is added by the matmul's epilogue instead of in a pass over the output."""
    probe = Probe.of(x, layer.weight)
    if choose(probe, x.numel() // x.shape[-1] if x.shape[-1] else 0).name != "onednn":
        return _activate(_plain_linear(x, layer), act)
    x, weight, bias = _operands(x, layer, probe)
    flat = x.reshape(-1, x.shape[-1])
    algorithm = "none" if act == "gelu" else ""
    out = torch.ops.mkldnn._linear_pointwise(flat, weight, bias, act, [], algorithm)
    return out.view(*x.shape[:-1], out.shape[-1])


def conv_act(x: Tensor, conv: nn.Conv2d, act: str) -> Tensor:
    """``act(conv(x))`` for ``act`` in ``gelu`` (exact) or ``sigmoid``; channels-last stays
    channels-last."""
    probe = Probe.of(x, conv.weight)
    if choose(probe).name != "onednn" or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return _activate(conv(x), act)
    x, weight, bias = _operands(x, conv, probe)
    return torch.ops.mkldnn._convolution_pointwise(
        x, weight, bias, list(conv.padding), list(conv.stride), list(conv.dilation),
        conv.groups, act, [], "none" if act == "gelu" else "")


def conv_gate(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """``x · sigmoid(conv(x))``; without autograd the product overwrites the gate's fresh buffer."""
    gate = conv_act(x, conv, "sigmoid")
    if torch.is_grad_enabled() and (gate.requires_grad or x.requires_grad):
        return x * gate  # sigmoid's backward needs its output: no in-place product
    return gate.mul_(x) if gate.dtype == x.dtype else x * gate


def linear(x: Tensor, layer: nn.Linear) -> Tensor:
    """``layer(x)`` for tokens ``…×C`` (see :func:`linear_act`)."""
    return linear_act(x, layer, "none")
