"""``describe``: which implementation each operator uses on a device/dtype, and why."""
from __future__ import annotations

from typing import Dict, Union

import torch

from .attention import choose as choose_attention
from .fused import choose as choose_linear_act
from .layer_norm import choose as choose_layer_norm
from .routing import choose as choose_routing
from .selective_scan import choose as choose_scan
from .dispatch import Choice, Probe, autocast_cpu


def describe(device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32,
             requires_grad: bool = False, head_dim: int = 12, d_state: int = 8) -> Dict[str, Choice]:
    """For each operator, the implementation a call on ``device``/``dtype`` would use under the
    selection in force (``requires_grad``: whether autograd records the call; ``head_dim`` and
    ``d_state``: the model's attention head width and scan state size, default: the light model's).
    """
    device_type = torch.device(device).type
    probe = Probe(device_type, dtype, requires_grad, device_type == "cpu" and autocast_cpu())
    return {
        "selective_scan": choose_scan(probe, 1, d_state),
        "window_attention": choose_attention(probe, head_dim),
        "sgn_route": choose_routing(probe),
        "layer_norm": choose_layer_norm(probe),
        "linear_act": choose_linear_act(probe),
    }
