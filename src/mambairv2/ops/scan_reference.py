"""Reference selective scan: the sequential recurrence, step by step. The oracle for the
other backends (slow: one Python iteration per token)."""
from __future__ import annotations

import torch

from .scan_common import ScanInputs


def selective_scan_reference(s: ScanInputs) -> torch.Tensor:
    """h_l = exp(Δ_l·A)·h_{l-1} + Δ_l·B_l·u_l ;  y_l = C_l·h_l (+ D·u_l). Returns ``B×D×L``."""
    batch, dim, length = s.u.shape
    delta_a = torch.exp(s.delta.unsqueeze(-1) * s.A.unsqueeze(1))  # B×D×L×N
    delta_b_u = (s.delta * s.u).unsqueeze(-1) * s.B_per_channel().permute(0, 1, 3, 2)  # B×D×L×N
    C = s.C_per_channel()  # B×(1|D)×N×L
    h = s.u.new_zeros(batch, dim, s.A.shape[1])
    ys = []
    for i in range(length):
        h = delta_a[:, :, i] * h + delta_b_u[:, :, i]
        ys.append(torch.einsum("bdn,bdn->bd", h, C[:, :, :, i].expand_as(h)))
    y = torch.stack(ys, dim=2)
    return s.finish(y)
