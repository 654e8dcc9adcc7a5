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
recurrence, no exp of positive numbers, hence no overflow) and differentiable, with a backward
written by hand (:class:`_ChunkedScan`) that keeps only the chunks' entry states; under
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
    if not torch.is_grad_enabled() or not any(t.requires_grad for t in (s.u, s.delta, s.A, s.B, s.C)):
        A = s.A.view(1, dim, n, 1)
        chunk_decay = torch.exp((delta.sum(0) * A).clamp_(min=MIN_LOG_DECAY))  # B×D×N×nc
        y = _sweeps_inplace(delta, delta_u, Bs, Cs, A, chunk_decay)
    else:
        y = _ChunkedScan.apply(delta, delta_u, Bs, Cs, s.A)
    y = y.permute(1, 2, 3, 0).reshape(batch, dim, nc * T)[:, :, :length]  # T×B×D×nc → B×D×L
    return s.finish(y)


def _sweeps_inplace(delta: Tensor, delta_u: Tensor, Bs: Tensor, Cs: Tensor, A: Tensor,
                    chunk_decay: Tensor, entry_out: Optional[list] = None) -> Tensor:
    T = delta.shape[0]
    shape = chunk_decay.shape  # B×D×N×nc
    decay = torch.empty(shape, dtype=A.dtype, device=A.device)
    h = torch.zeros(shape, dtype=A.dtype, device=A.device)
    for t in range(T):
        torch.mul(delta[t], A, out=decay).clamp_(min=MIN_LOG_DECAY).exp_()
        h.mul_(decay).addcmul_(delta_u[t], Bs[t])
    h = _entry_states(chunk_decay, h)
    if entry_out is not None:
        entry_out.append(h.clone())
    scratch = torch.empty_like(h)
    y = torch.empty((T,) + shape[:2] + shape[3:], dtype=A.dtype, device=A.device)  # T×B×D×nc
    for t in range(T):
        torch.mul(delta[t], A, out=decay).clamp_(min=MIN_LOG_DECAY).exp_()
        h.mul_(decay).addcmul_(delta_u[t], Bs[t])
        torch.sum(torch.mul(h, Cs[t], out=scratch), dim=2, out=y[t])
    return y


class _ChunkedScan(torch.autograd.Function):
    """The chunked scan with a hand-written backward.

    Autograd through the step loops would save every step's intermediates and replay them op by
    op; instead only the chunks' entry states are kept, and the backward recomputes the states
    of the sequence once and runs the adjoint recurrence ``g_t = a_{t+1}·g_{t+1} + C_t·dy_t``
    backwards with the same chunking (a local sweep, a log-depth carry over chunks from the
    right, a final sweep that accumulates the gradients step by step).

    Inputs in the step layout of :func:`selective_scan_chunked`: Δ and Δ·u ``T×B×D×1×nc``,
    B and C ``T×B×(1|D)×N×nc``, A ``D×N``. Output ``y``: ``T×B×D×nc``.
    """

    @staticmethod
    def forward(ctx, delta: Tensor, delta_u: Tensor, Bs: Tensor, Cs: Tensor, A: Tensor) -> Tensor:
        A4 = A.view(1, A.shape[0], A.shape[1], 1)
        with torch.no_grad():
            chunk_decay = torch.exp((delta.sum(0) * A4).clamp_(min=MIN_LOG_DECAY))
            entry: list = []
            y = _sweeps_inplace(delta, delta_u, Bs, Cs, A4, chunk_decay, entry_out=entry)
        ctx.save_for_backward(delta, delta_u, Bs, Cs, A, chunk_decay, entry[0])
        return y

    @staticmethod
    def backward(ctx, gy: Tensor):  # type: ignore[override]
        delta, delta_u, Bs, Cs, A, chunk_decay, entry = ctx.saved_tensors
        T = delta.shape[0]
        A4 = A.view(1, A.shape[0], A.shape[1], 1)
        gy = gy.unsqueeze(3)  # T×B×D×1×nc
        shared = Bs.shape[2] == 1  # B and C shared by all channels: their gradients sum over D

        def decay(t: int, out: Tensor) -> Tensor:
            return torch.mul(delta[t], A4, out=out).clamp_(min=MIN_LOG_DECAY).exp_()

        # states h_t of the whole sequence (T slabs), recomputed from the chunks' entry states
        H = torch.empty((T,) + entry.shape, dtype=entry.dtype, device=entry.device)
        a = torch.empty_like(entry)
        h = entry
        for t in range(T):
            h = torch.mul(h, decay(t, a), out=H[t]).addcmul_(delta_u[t], Bs[t])

        # adjoint carried into each chunk from the chunks on its right
        g = torch.zeros_like(entry)
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                g.mul_(a)
            g.addcmul_(gy[t], Cs[t])
            decay(t, a)
        g.mul_(a)  # a_0·g_0: what a chunk passes to the one before it
        carry = _entry_states(chunk_decay.flip(-1), g.flip(-1)).flip(-1)

        g_delta = torch.empty_like(delta)
        g_delta_u = torch.empty_like(delta_u)
        g_B = torch.empty_like(Bs)
        g_C = torch.empty_like(Cs)
        g_A = torch.zeros_like(entry)
        scratch = torch.empty_like(entry)
        g = carry
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                g.mul_(a)
            g.addcmul_(gy[t], Cs[t])
            decay(t, a)
            _reduce(torch.mul(H[t], gy[t], out=scratch), shared, out=g_C[t])
            torch.sum(torch.mul(g, Bs[t], out=scratch), dim=2, keepdim=True, out=g_delta_u[t])
            _reduce(torch.mul(g, delta_u[t], out=scratch), shared, out=g_B[t])
            ga = torch.mul(g, H[t - 1] if t else entry, out=scratch).mul_(a)  # ∂L/∂a_t · a_t
            g_A.addcmul_(ga, delta[t])
            torch.sum(ga.mul_(A4), dim=2, keepdim=True, out=g_delta[t])
        g_A = g_A.sum(dim=(0, 3))  # ∂a/∂A = a·Δ, ∂a/∂Δ = a·A
        return g_delta, g_delta_u, g_B, g_C, g_A


def _reduce(x: Tensor, shared: bool, out: Tensor) -> Tensor:
    """Sums ``x`` (B×D×N×nc) over channels into ``out`` (B×1×N×nc) when B/C are shared by all
    channels, otherwise copies it."""
    return torch.sum(x, dim=1, keepdim=True, out=out) if shared else out.copy_(x)
