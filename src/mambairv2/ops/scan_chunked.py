"""Chunked selective scan in pure PyTorch.

The sequence of ``L`` tokens is cut into ``nc`` chunks of ``T`` tokens. Step ``t`` of every chunk
is one slab ``B×D×N×nc`` (chunks innermost, so broadcasts over N vectorise) that is sized to
stay in cache. Two sweeps of ``T`` vectorised steps run all chunks at once:

1. from a zero state, giving each chunk's local end state;
2. after the carry over chunks (``entry[c] = decay[c-1]·entry[c-1] + local_end[c-1]``, a
   log-depth scan along the chunk axis), again from each chunk's true entry state, reading
   out ``y``.

``exp(Δ·A)`` and ``Δ·B·u`` are recomputed per step instead of materialised for the whole
sequence (``L·D·N`` floats), which is what makes it fast on CPUs. It is exact (the same
recurrence, no exp of positive numbers, hence no overflow) and differentiable; under
``torch.no_grad`` it runs in place in a few preallocated slabs.
"""
from __future__ import annotations

from typing import Optional

import torch

from .scan_common import ScanInputs

Tensor = torch.Tensor
SLAB_ELEMENTS = 200_000  # per-step working set (~0.8 MB in float32): sized for L2 caches
# On GPUs each step costs a few kernel launches whatever the slab size: short chunks (one wide
# slab) keep the sweeps short until the slabs outgrow the GPU. Measured on an H100 (light x4):
# T = 8 best at 256² (L = 65536), T = 32 at 512² (L = 262144).
GPU_TOKENS_PER_STEP = 8192
# exp(Δ·A) is clamped below at exp(-60) ≈ 9e-27: an exp whose result is subnormal, and products
# with it, run up to 70× slower on x86 CPUs, and the state's change is < 1e-26 relative, far
# below float64 rounding of anything it is added to.
MIN_LOG_DECAY = -60.0


def default_chunk_size(batch: int, dim: int, d_state: int, length: int, device: torch.device) -> int:
    """Chunk length ``T``: on CPUs such that one step's slab has about ``SLAB_ELEMENTS``
    elements, on GPUs about ``length / GPU_TOKENS_PER_STEP`` (at least 8, at most 64)."""
    if device.type != "cpu":
        return max(8, min(64, length // GPU_TOKENS_PER_STEP))
    t = -(-batch * dim * d_state * length // SLAB_ELEMENTS)
    return max(8, min(256, t))


def _entry_states(decay: Tensor, local_end: Tensor) -> Tensor:
    """State entering each chunk along the last dim, ``x_c = decay_{c-1}·x_{c-1} +
    local_end_{c-1}`` with ``x_0 = 0``, by a log-depth (Hillis–Steele) scan; decay products stay ≤ 1."""
    a, b = decay, local_end
    nc = b.shape[-1]
    shift = 1
    while shift < nc:
        b = torch.cat([b[..., :shift], torch.addcmul(b[..., shift:], a[..., shift:], b[..., :-shift])], dim=-1)
        a = torch.cat([a[..., :shift], a[..., shift:] * a[..., :-shift]], dim=-1)
        shift *= 2
    return torch.cat([torch.zeros_like(b[..., :1]), b[..., :-1]], dim=-1)


def selective_scan_chunked(s: ScanInputs, chunk_size: Optional[int] = None) -> Tensor:
    """Same result as the reference recurrence. Returns ``B×D×L``."""
    batch, dim, length = s.u.shape
    n = s.A.shape[1]
    T = int(chunk_size) if chunk_size else default_chunk_size(batch, dim, n, length, s.u.device)
    T = max(1, min(T, length))
    nc = -(-length // T)
    pad = nc * T - length

    def steps(x: Tensor) -> Tensor:
        """…×L → T×…×nc (zero-padded at the end: Δ = 0 leaves the state unchanged)."""
        if pad:
            x = torch.nn.functional.pad(x, (0, pad))
        x = x.reshape(*x.shape[:-1], nc, T)
        return x.permute(x.dim() - 1, *range(x.dim() - 1)).contiguous()

    delta = steps(s.delta).unsqueeze(3)  # T×B×D×1×nc
    delta_u = delta * steps(s.u).unsqueeze(3)  # T×B×D×1×nc
    Bs = steps(s.B_per_channel())  # T×B×(1|D)×N×nc
    Cs = steps(s.C_per_channel())
    A = s.A.view(1, dim, n, 1)
    chunk_decay = torch.exp((delta.sum(0) * A).clamp_(min=MIN_LOG_DECAY))  # B×D×N×nc

    if not torch.is_grad_enabled() or not any(t.requires_grad for t in (s.u, s.delta, s.A, s.B, s.C)):
        y = _sweeps_inplace(delta, delta_u, Bs, Cs, A, chunk_decay)
    else:
        y = _sweeps(delta, delta_u, Bs, Cs, A, chunk_decay)
    y = y.permute(1, 2, 3, 0).reshape(batch, dim, nc * T)[:, :, :length]  # T×B×D×nc → B×D×L
    return s.finish(y)


def _sweeps_inplace(delta: Tensor, delta_u: Tensor, Bs: Tensor, Cs: Tensor, A: Tensor,
                    chunk_decay: Tensor) -> Tensor:
    T = delta.shape[0]
    shape = chunk_decay.shape  # B×D×N×nc
    decay = torch.empty(shape, dtype=A.dtype, device=A.device)
    h = torch.zeros(shape, dtype=A.dtype, device=A.device)
    for t in range(T):
        torch.mul(delta[t], A, out=decay).clamp_(min=MIN_LOG_DECAY).exp_()
        h.mul_(decay).addcmul_(delta_u[t], Bs[t])
    h = _entry_states(chunk_decay, h)
    scratch = torch.empty_like(h)
    y = torch.empty((T,) + shape[:2] + shape[3:], dtype=A.dtype, device=A.device)  # T×B×D×nc
    for t in range(T):
        torch.mul(delta[t], A, out=decay).clamp_(min=MIN_LOG_DECAY).exp_()
        h.mul_(decay).addcmul_(delta_u[t], Bs[t])
        torch.sum(torch.mul(h, Cs[t], out=scratch), dim=2, out=y[t])
    return y


def _sweeps(delta: Tensor, delta_u: Tensor, Bs: Tensor, Cs: Tensor, A: Tensor,
            chunk_decay: Tensor) -> Tensor:
    """Out-of-place twin of :func:`_sweeps_inplace`, for autograd."""
    T = delta.shape[0]
    h = torch.zeros_like(chunk_decay)
    for t in range(T):
        h = h * torch.exp((delta[t] * A).clamp(min=MIN_LOG_DECAY)) + delta_u[t] * Bs[t]
    h = _entry_states(chunk_decay, h)
    ys = []
    for t in range(T):
        h = h * torch.exp((delta[t] * A).clamp(min=MIN_LOG_DECAY)) + delta_u[t] * Bs[t]
        ys.append((h * Cs[t]).sum(2))
    return torch.stack(ys, dim=0)
