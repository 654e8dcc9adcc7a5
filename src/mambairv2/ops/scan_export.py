"""Selective scan for export (the ``"export"`` implementation): one fixed set of operators for
every sequence length, so that a tracer (``torch.onnx.export``) records a graph that serves
every image size.

The sequence is cut into chunks of ``CHUNK`` steps (padded at the end by repeating the last
token: the recurrence is causal, so padded steps only change states that are thrown away). Two
sweeps of ``CHUNK`` vectorised steps run all chunks at once, as in the chunked scan: one from a
zero state giving each chunk's local end state, one from each chunk's true entry state reading
out ``y``. The entry states come from the same chunked scheme applied to the chunks' (decay, end
state) pairs, level after level, until one chunk is left; the number of levels is fixed by
``max_tokens`` (levels a shorter sequence does not need run on a single chunk and change
nothing). Every loop here runs a number of times fixed in Python: nothing depends on the size.

The layout is chosen for onnxruntime's CPU kernels (benchmarks/onnx_latency.py --profile):
each step's decays and inputs are computed once and used by both sweeps, the states are
``B×G×N×nc×Dg`` so that every broadcast runs over contiguous channel spans, every step is a
contiguous slice, and Δ's softplus is spelled out in elementwise operators.
"""
from __future__ import annotations

import math

import torch

from .scan_common import ScanInputs

Tensor = torch.Tensor

#: Steps per chunk (each step is a few operators in the graph).
CHUNK = 16
#: Longest sequence (padded height × width) the graph's levels of chunking cover.
MAX_TOKENS = 4096 * 4096
MIN_LOG_DECAY = -60.0  # as the chunked scan: exp(Δ·A) clamped at ≈ 9e-27 (no subnormals)


def _pad_index(length: Tensor | int, chunk: int, device: torch.device) -> Tensor:
    """Indices ``0 … L−1`` then ``L−1`` repeated up to a multiple of ``chunk``: a gather whose
    indices the graph computes from ``L`` (a padding amount read from a size would be traced
    as a constant)."""
    chunks = (length + chunk - 1) // chunk
    return torch.clamp(torch.arange(chunks * chunk, device=device), max=length - 1)


def _chunks(x: Tensor, chunk: int) -> Tensor:
    """``M×…`` → ``chunk×nc×…``: the sequence axis padded and cut into chunks, step first (each
    step a contiguous slice)."""
    padded = x.index_select(0, _pad_index(x.shape[0], chunk, x.device))
    return padded.reshape(-1, chunk, *x.shape[1:]).transpose(0, 1)


def _entering(h: Tensor) -> Tensor:
    """``h`` moved one place along the sequence axis: the state entering each element."""
    return torch.cat([torch.zeros_like(h[:1]), h[:-1]], 0)


def linear_recurrence(a: Tensor, b: Tensor, chunk: int = CHUNK, max_length: int = MAX_TOKENS) -> Tensor:
    """``h_i = a_i·h_{i−1} + b_i`` along the first axis from ``h_{−1} = 0`` (all ``h``, same shape)
    for any length up to ``max_length``, with loops whose counts depend on ``max_length`` only."""
    length = a.shape[0]
    if max_length <= chunk:  # one chunk: a plain sweep
        index = _pad_index(length, chunk, a.device)
        a, b = a.index_select(0, index), b.index_select(0, index)
        h, out = b[0], [b[0]]
        for t in range(1, chunk):
            h = a[t] * h + b[t]
            out.append(h)
        return torch.stack(out)[:length]
    a, b = _chunks(a, chunk), _chunks(b, chunk)  # chunk×nc×…
    h, decay = b[0], a[0]
    for t in range(1, chunk):
        h = a[t] * h + b[t]
        decay = decay * a[t]
    h = _entering(linear_recurrence(decay, h, chunk, math.ceil(max_length / chunk)))
    out = []
    for t in range(chunk):
        h = a[t] * h + b[t]
        out.append(h)
    return torch.stack(out, 1).reshape(-1, *a.shape[2:])[:length]


def softplus_export(x: Tensor) -> Tensor:
    """``softplus(x) = max(x, 0) + log(1 + exp(−|x|))`` as elementwise operators (onnxruntime's
    own ``Softplus`` is several times slower than this sequence on CPU)."""
    return torch.relu(x) + torch.log1p(torch.exp(-x.abs()))


def _step_major_index(length: Tensor | int, chunk: int, device: torch.device) -> Tensor:
    """Token ``min(c·chunk + t, L−1)`` at place ``t·nc + c``: the padded sequence cut into ``nc``
    chunks, ordered step by step."""
    index = _pad_index(length, chunk, device)
    return index.reshape(-1, chunk).t().reshape(-1)


def _steps(x: Tensor, chunk: int) -> Tensor:
    """``B×G×K×L`` → ``chunk×nc×B×G×K``: the sequence padded and cut into ``nc`` chunks, step
    first. One row gather of the sequence-first tensor puts the steps outermost, so that every
    step is one contiguous slice (no transpose in front of the per-step slices for onnxruntime
    to move past them)."""
    rows = x.permute(3, 0, 1, 2).index_select(0, _step_major_index(x.shape[-1], chunk, x.device))
    return rows.reshape(chunk, -1, *x.shape[:-1])


def selective_scan_export(s: ScanInputs, chunk: int = CHUNK, max_tokens: int = MAX_TOKENS) -> Tensor:
    """Same result as the reference recurrence for sequences up to ``max_tokens``. Returns ``B×D×L``.

    States are laid out ``nc×B×G×N×Dg`` (channels innermost): every broadcast (Δ against ``A``,
    Δ·u against ``B``) then runs over contiguous spans of ``Dg`` channels, several times faster
    in onnxruntime than the spans of ``N`` of a ``…×Dg×N`` layout, and the read-out ``C·h`` is
    one batched matrix product."""
    batch, dim, length = s.u.shape
    groups, n = s.B.shape[1], s.A.shape[1]
    delta = _steps(s.delta.reshape(batch, groups, -1, length), chunk).unsqueeze(-2)  # chunk×nc×B×G×1×Dg
    delta_u = delta * _steps(s.u.reshape(batch, groups, -1, length), chunk).unsqueeze(-2)
    Bs = _steps(s.B, chunk).unsqueeze(-1)  # chunk×nc×B×G×N×1
    Cs = _steps(s.C, chunk).unsqueeze(-2)  # chunk×nc×B×G×1×N
    A = s.A.view(groups, -1, n).transpose(1, 2)  # G×N×Dg
    decays = [torch.exp(torch.clamp(delta[t] * A, min=MIN_LOG_DECAY)) for t in range(chunk)]
    inputs = [delta_u[t] * Bs[t] for t in range(chunk)]  # each nc×B×G×N×Dg
    h = inputs[0]  # 1. each chunk from a zero state: its local end state
    for t in range(1, chunk):
        h = decays[t] * h + inputs[t]
    chunk_decay = torch.exp(torch.clamp(delta.sum(0) * A, min=MIN_LOG_DECAY))
    h = _entering(linear_recurrence(chunk_decay, h, chunk, math.ceil(max_tokens / chunk)))
    ys = []
    for t in range(chunk):  # 2. again from the true entry states, reading out y
        h = decays[t] * h + inputs[t]
        ys.append(torch.matmul(Cs[t], h))  # nc×B×G×1×Dg
    y = torch.stack(ys, 1).reshape(-1, batch, groups, dim // groups)[:length]  # L×B×G×Dg
    return s.finish(y.permute(1, 2, 3, 0).reshape(batch, dim, length))
