"""Chunked selective scan in pure PyTorch.

The sequence of ``L`` tokens is cut into ``nc`` chunks of ``T`` tokens. Step ``t`` of every chunk
is one slab ``B×D×N×nc`` (chunks innermost, so broadcasts over N vectorise) that is sized to
stay in cache. Two sweeps of ``T`` vectorised steps run all chunks at once:

1. from a zero state, giving each chunk's local end state;
2. after the carry over chunks (``entry[c] = decay[c-1]·entry[c-1] + local_end[c-1]``, a
   log-depth scan along the chunk axis), again from each chunk's true entry state, reading
   out ``y``.

``exp(Δ·A)`` and ``Δ·B·u`` are recomputed per step instead of materialised for the whole
sequence (``L·D·N`` floats). It is exact (the same recurrence, no exp of positive numbers,
hence no overflow) and differentiable, with a backward written by hand (:class:`_ChunkedScan`)
that keeps only the chunks' entry states; without autograd on GPUs it runs in place in a few
preallocated slabs.

Without autograd on CPUs (:func:`_scan_blocks`) it takes fewer, larger operations instead: the
tokens in blocks of about ``BLOCK_ELEMENTS / (B·D·N)``, each block's decays and inputs
``B×Lb×N×D`` (D innermost, read from the token-major ``B×L×D`` layout the network gives, without
transposes) computed once, then the recurrence by a log-depth (Brent–Kung) scan along the tokens
in place, the state carried from block to block: each ``exp`` taken once, some fifty operations
per block whatever its length.
"""
from __future__ import annotations

import math
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
# state entries per block of the CPU inference scan (two such buffers, 4 MB each in float32:
# within L2 + L3; 2 and 4 times larger blocks measured slower on a 2-core EPYC)
BLOCK_ELEMENTS = 1_000_000


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
    """Same result as the reference recurrence. Returns ``B×D×L``. ``chunk_size``: the chunk
    length ``T``, or for CPU inference the tokens per block (default: from the sizes)."""
    inference = not torch.is_grad_enabled() or not any(t.requires_grad for t in (s.u, s.delta, s.A, s.B, s.C))
    if inference and s.u.device.type == "cpu":
        return _scan_blocks(s, chunk_size)
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
    if inference:
        A = s.A.view(1, dim, n, 1)
        chunk_decay = torch.exp((delta.sum(0) * A).clamp_(min=MIN_LOG_DECAY))  # B×D×N×nc
        y = _sweeps_inplace(delta, delta_u, Bs, Cs, A, chunk_decay)
    else:
        y = _ChunkedScan.apply(delta, delta_u, Bs, Cs, s.A)
    y = y.permute(1, 2, 3, 0).reshape(batch, dim, nc * T)[:, :, :length]  # T×B×D×nc → B×D×L
    return s.finish(y)


def _token_major(x: Tensor) -> Tensor:
    """``B×D×L`` → ``B×L×D`` with D contiguous: a view where it already is (the network's
    layout), else a copy."""
    t = x.transpose(1, 2)
    return t if t.stride(-1) == 1 else t.contiguous()


def _prefix_in_place(a: Tensor, h: Tensor) -> None:
    """Along dim 1, in place: ``h[l] ← a[l]·h[l−1] + h[l]`` (every state of the recurrence) by a
    Brent–Kung scan, about 4·log2(L) operations; ``a`` is left holding partial decay products,
    clamped below at ``exp(MIN_LOG_DECAY)`` (subnormal products run many times slower)."""
    n = h.shape[1]
    floor = math.exp(MIN_LOG_DECAY)
    d = 1
    while 2 * d <= n:  # position 2kd−1 gets the span of the 2d tokens ending there
        h[:, 2 * d - 1 :: 2 * d].addcmul_(a[:, 2 * d - 1 :: 2 * d], h[:, d - 1 : n - d : 2 * d])
        if 4 * d <= n:  # the products a later level reads
            a[:, 2 * d - 1 :: 2 * d].mul_(a[:, d - 1 : n - d : 2 * d]).clamp_(min=floor)
        d *= 2
    while d > 1:  # position (2k+3)d−1 joins the complete prefix that ends d tokens before it
        d //= 2
        if 3 * d - 1 < n:
            h[:, 3 * d - 1 :: 2 * d].addcmul_(a[:, 3 * d - 1 :: 2 * d], h[:, 2 * d - 1 : n - d : 2 * d])


def _scan_blocks(s: ScanInputs, block: Optional[int] = None) -> Tensor:
    """The recurrence without autograd, block by block of ``block`` tokens (default: about
    ``BLOCK_ELEMENTS`` state entries per block): decays and inputs of the whole block in
    ``B×Lb×N×G×Dg`` (G B/C groups of Dg channels), :func:`_prefix_in_place`, then ``y``; the last
    state enters the next block. Returns ``B×D×L`` (a view of token-major memory)."""
    batch, dim, length = s.u.shape
    n = s.A.shape[1]
    g = s.B.shape[1] if s.B.shape[1] == s.C.shape[1] else dim
    Bm = s.B if s.B.shape[1] == g else s.B_per_channel()
    Cm = s.C if s.C.shape[1] == g else s.C_per_channel()
    dg = dim // g
    lb = int(block) if block else max(1, BLOCK_ELEMENTS // (batch * dim * n))
    lb = -(-length // -(-length // lb))  # blocks of equal length
    delta = _token_major(s.delta)
    delta5 = delta.view(batch, length, 1, g, dg)
    du5 = (delta * _token_major(s.u)).view(batch, length, 1, g, dg)
    A5 = s.A.t().contiguous().view(1, 1, n, g, dg)  # D contiguous: the broadcast vectorises (6× faster)
    B5 = Bm.permute(0, 3, 2, 1).unsqueeze(-1)  # B×L×N×G×1 views
    C5 = Cm.permute(0, 3, 2, 1).unsqueeze(-1)
    a_buf = torch.empty((batch, lb, n, g, dg), dtype=s.A.dtype, device=s.A.device)
    h_buf = torch.empty_like(a_buf)
    y = torch.empty((batch, length, g, dg), dtype=s.A.dtype, device=s.A.device)
    h_in: Optional[Tensor] = None
    for l0 in range(0, length, lb):
        l1 = min(l0 + lb, length)
        a, h = a_buf[:, : l1 - l0], h_buf[:, : l1 - l0]
        torch.mul(delta5[:, l0:l1], A5, out=a).clamp_(min=MIN_LOG_DECAY).exp_()
        torch.mul(du5[:, l0:l1], B5[:, l0:l1], out=h)
        if h_in is not None:
            h[:, 0].addcmul_(a[:, 0], h_in)
        _prefix_in_place(a, h)
        if l1 < length:
            h_in = h[:, -1].clone()
        torch.sum(torch.mul(h, C5[:, l0:l1], out=a), dim=2, out=y[:, l0:l1])
    return s.finish(y.view(batch, length, dim).transpose(1, 2))


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
