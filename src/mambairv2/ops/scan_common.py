"""Argument handling shared by the selective-scan backends."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Scans accumulate in float32, or float64 when given float64 (half types are upcast)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@dataclass
class ScanInputs:
    """Normalised scan arguments: Δ already biased and softplus-ed, everything in one dtype.

    u, delta: B×D×L; A: D×N; B, C: B×G×N×L (G groups dividing D); D: D or None.
    """

    u: Tensor
    delta: Tensor
    A: Tensor
    B: Tensor
    C: Tensor
    D: Optional[Tensor]
    out_dtype: torch.dtype

    @classmethod
    def prepare(cls, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                delta_softplus: bool = False,
                softplus: Callable[[Tensor], Tensor] = F.softplus) -> "ScanInputs":
        """Checks the shapes and normalises; ``softplus`` is the function applied to Δ (+ bias)
        when ``delta_softplus`` (an implementation may pass its own formulation)."""
        if u.dim() != 3 or delta.shape != u.shape:
            raise ValueError(f"u and delta must both be B×D×L, got {tuple(u.shape)} and {tuple(delta.shape)}")
        batch, dim, length = u.shape
        if A.dim() != 2 or A.shape[0] != dim:
            raise ValueError(f"A must be D×N with D={dim}, got {tuple(A.shape)}")
        n = A.shape[1]
        ct = compute_dtype(u.dtype)
        B = _groups(B, batch, n, length, "B")
        C = _groups(C, batch, n, length, "C")
        if dim % B.shape[1] or dim % C.shape[1]:
            raise ValueError("the number of B/C groups must divide D")
        delta = delta.to(ct)
        if delta_bias is not None:
            delta = delta + delta_bias.to(ct).view(1, dim, 1)
        if delta_softplus:
            delta = softplus(delta)
        return cls(u.to(ct), delta, A.to(ct), B.to(ct), C.to(ct),
                   None if D is None else D.to(ct), u.dtype)

    def B_per_channel(self) -> Tensor:
        """B as B×(1|D)×N×L (groups expanded to channels when G > 1)."""
        return _per_channel(self.B, self.u.shape[1])

    def C_per_channel(self) -> Tensor:
        return _per_channel(self.C, self.u.shape[1])

    def finish(self, y: Tensor) -> Tensor:
        """Adds the skip term D·u and casts back to the input dtype."""
        if self.D is not None:
            y = y + self.u * self.D.view(1, -1, 1)
        return y.to(self.out_dtype)


def _groups(t: Tensor, batch: int, n: int, length: int, name: str) -> Tensor:
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.dim() != 4 or t.shape[0] != batch or t.shape[2] != n or t.shape[3] != length:
        raise ValueError(f"{name} must be B×N×L or B×G×N×L with B={batch}, N={n}, L={length}, "
                         f"got {tuple(t.shape)}")
    return t


def _per_channel(t: Tensor, dim: int) -> Tensor:
    g = t.shape[1]
    return t if g == 1 else t.repeat_interleave(dim // g, dim=1)
