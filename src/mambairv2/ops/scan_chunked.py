"""Chunked selective scan in pure PyTorch.

The sequence is cut into ``n_chunks`` chunks of ``T`` tokens and laid out ``T×B×D×chunks×N`` so
that step ``t`` of every chunk is one contiguous slab. Two sweeps of ``T`` vectorised steps run
all chunks at once:

1. from a zero state, giving each chunk's local end state;
2. after a carry over chunks (``state_in[c] = decay[c-1]·state_in[c-1] + local_end[c-1]``, a
   log-depth scan), again from each chunk's true entry state, reading out ``y``.

Python steps: about ``2·T + log2(n_chunks)`` instead of ``L``, each over a cache-sized slab. It is exact (same
recurrence, no exp of positive numbers, so no overflow), works with autograd, and under
``torch.no_grad`` runs in place in preallocated buffers.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .scan_common import ScanInputs

Tensor = torch.Tensor


def default_chunk_size(length: int) -> int:
    """About sqrt(L), which balances the in-chunk sweeps against the carry over chunks."""
    return max(8, min(256, int(math.ceil(math.sqrt(length)))))


def _entry_states(decay: Tensor, local_end: Tensor) -> Tensor:
    """State entering each chunk, ``x_c = decay_{c-1}·x_{c-1} + local_end_{c-1}`` (x_0 = 0), by a
    log-depth (Hillis–Steele) scan over the chunk axis (dim 2): products of decays stay ≤ 1."""
    a, b = decay, local_end
    nc = b.shape[2]
    shift = 1
    while shift < nc:
        b = torch.cat([b[:, :, :shift], torch.addcmul(b[:, :, shift:], a[:, :, shift:], b[:, :, :-shift])], dim=2)
        a = torch.cat([a[:, :, :shift], a[:, :, shift:] * a[:, :, :-shift]], dim=2)
        shift *= 2
    return torch.cat([torch.zeros_like(b[:, :, :1]), b[:, :, :-1]], dim=2)


def selective_scan_chunked(s: ScanInputs, chunk_size: Optional[int] = None) -> Tensor:
    """Same result as the reference recurrence. Returns ``B×D×L``."""
    batch, dim, length = s.u.shape
    n = s.A.shape[1]
    T = int(chunk_size) if chunk_size else default_chunk_size(length)
    T = max(1, min(T, length))
    nc = -(-length // T)
    pad = nc * T - length

    def to_steps(x: Tensor) -> Tensor:
        """B×D×L → T×B×D×chunks (zero-padded at the end: Δ=0 keeps the state unchanged)."""
        if pad:
            x = torch.nn.functional.pad(x, (0, pad))
        return x.reshape(x.shape[0], x.shape[1], nc, T).permute(3, 0, 1, 2).contiguous()

    def bc_to_steps(x: Tensor) -> Tensor:
        """B×G×N×L → T×B×G×chunks×N."""
        if pad:
            x = torch.nn.functional.pad(x, (0, pad))
        return x.reshape(batch, x.shape[1], n, nc, T).permute(4, 0, 1, 3, 2).contiguous()

    delta = to_steps(s.delta)  # T×B×D×nc
    u = to_steps(s.u)
    Bs = bc_to_steps(s.B_per_channel())
    Cs = bc_to_steps(s.C_per_channel())
    A = s.A.view(1, 1, dim, 1, n)

    delta_a = torch.exp(delta.unsqueeze(-1) * A)  # T×B×D×nc×N
    delta_b_u = (delta * u).unsqueeze(-1) * Bs  # T×B×D×nc×N
    chunk_decay = torch.exp(delta.sum(0).unsqueeze(-1) * A[0])  # B×D×nc×N

    inplace = not torch.is_grad_enabled() or not any(
        t.requires_grad for t in (s.u, s.delta, s.A, s.B, s.C))

    # sweep 1: local end state of every chunk
    if inplace:
        h = delta_b_u[0].clone()
        for t in range(1, T):
            h.mul_(delta_a[t]).add_(delta_b_u[t])
    else:
        h = delta_b_u[0]
        for t in range(1, T):
            h = delta_a[t] * h + delta_b_u[t]
    local_end = h

    # carry across chunks: the state entering each chunk
    h = _entry_states(chunk_decay, local_end)  # B×D×nc×N

    # sweep 2: true states, read out y
    if inplace:
        states = delta_b_u  # overwritten in place with the states
        for t in range(T):
            torch.addcmul(states[t], delta_a[t], h, out=states[t])
            h = states[t]
        y = torch.einsum("tbdcn,tbdcn->tbdc", states, Cs.expand_as(states)) if Cs.shape[2] != 1 else \
            torch.einsum("tbdcn,tbcn->tbdc", states, Cs[:, :, 0])
    else:
        ys = []
        for t in range(T):
            h = delta_a[t] * h + delta_b_u[t]
            ys.append((h * Cs[t]).sum(-1))
        y = torch.stack(ys, dim=0)  # T×B×D×nc

    y = y.permute(1, 2, 3, 0).reshape(batch, dim, nc * T)[:, :, :length]
    return s.finish(y)
