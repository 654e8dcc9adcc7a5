"""Operators of MambaIRv2, each one function with its reference path next to its fast paths:

- :func:`selective_scan` (``selective_scan.py``): reference, chunked, compiled, mamba_ssm, triton,
  export;
- :func:`window_attention` (``attention.py``): reference, sdpa, compiled;
- :func:`sgn_route` (``routing.py``): pytorch, compiled, export;
- :func:`layer_norm` / :class:`LayerNorm` (``layer_norm.py``): pytorch, compiled;
- :func:`linear_act` / :func:`conv_act` (``fused.py``): pytorch, onednn.

:func:`precision_plan` / :func:`compute_precision` (``precision.py``) decide how a compute
dtype runs (CPU bfloat16: autocast, float32 weights, the recurrences and softmax in float32).

One switch, :func:`implementation`, selects among them (``dispatch.py``); :func:`describe`
says what each will use and why. ``implementation("export")`` selects what a tracer records as
one graph for every size; modules with a second, size-specific formulation ask
:func:`shape_generic`.
"""
from .attention import window_attention
from .describe import describe
from .dispatch import OPS, SELECTIONS, Choice, implementation, selected, shape_generic
from .fused import conv_act, conv_gate, linear, linear_act
from .layer_norm import LayerNorm, layer_norm
from .precision import Precision, check_cpu_bfloat16, compute_precision, precision_plan
from .routing import sgn_order, sgn_order_unique_key, sgn_route
from .scan_compiled import kernel_available, kernel_error
from .selective_scan import BACKENDS, mamba_ssm_available, resolve_backend, selective_scan

__all__ = ["BACKENDS", "OPS", "SELECTIONS", "Choice", "LayerNorm", "Precision", "check_cpu_bfloat16",
           "compute_precision", "precision_plan", "conv_act", "conv_gate", "describe",
           "implementation", "kernel_available", "kernel_error", "layer_norm", "linear", "linear_act",
           "mamba_ssm_available", "resolve_backend", "selected", "selective_scan", "sgn_order", "sgn_order_unique_key", "sgn_route", "shape_generic",
           "window_attention"]
