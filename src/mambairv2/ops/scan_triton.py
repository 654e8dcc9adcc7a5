"""Selective scan in Triton: one fused forward kernel and a recomputing backward kernel.

- Forward: Δ's bias and softplus, ``exp(Δ·A)``, the recurrence (state in registers along L,
  B/C read once per group and shared by its channels), ``C·h`` and the ``D·u`` skip in one pass.
  Long sequences with few channels are cut into segments scanned in parallel: a first pass
  gives each segment's end state, carried over segments in torch, a second pass the output.
  The state is float32 for float32/bf16/fp16 inputs, float64 for float64 inputs.
- Backward: recomputes the states chunk by chunk from the state entering each chunk, the only
  thing the forward keeps (``batch×D×N`` per ``BLOCK_L`` tokens, not ``L·D·N``), and runs the
  adjoint recurrence in reverse. Deterministic: no atomics; the gradients of B and C (sums over
  the channels of a group) are written per program and summed in a fixed order by torch.

The kernels live in :mod:`scan_triton_kernels`, imported on first use, so this module and the
package import without triton. They run compiled on CUDA tensors, or under Triton's CPU
interpreter on CPU tensors when ``TRITON_INTERPRET=1`` is set before the kernels are first
imported (Triton decides when a kernel is defined, once per process).

Block sizes are module-level settings, unmeasured guesses on GPUs so far:
``benchmarks/gpu_check.py`` sweeps them.
"""
from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Dict, Optional, Tuple

import torch

from .scan_chunked import _entry_states
from .scan_common import _groups, compute_dtype

Tensor = torch.Tensor

# tokens per chunk, and the size of a program's BLOCK_D×BLOCK_N×BLOCK_L working set (decides
# BLOCK_D). Not timed on a GPU yet; chosen from ptxas (sm_90a, 4 warps, float32, N = 16): at
# 2048 elements the forward uses 167 registers and no spills, the backward 255 registers and
# 8 bytes of spills; at 4096 the backward spills 32-800 bytes.
FORWARD_BLOCK_L = 64
FORWARD_ELEMENTS = 2048
BACKWARD_BLOCK_L = 64
BACKWARD_ELEMENTS = 2048
NUM_WARPS = 4
# the forward splits the sequence into segments (scanned in parallel, their states carried
# over in a second pass) when fewer than TARGET_PROGRAMS programs would run: a GPU has 100+
# SMs, while e.g. the light model at batch 1 gives 48 channels
TARGET_PROGRAMS = 512
MIN_SEGMENT = 4096


@functools.lru_cache(maxsize=1)
def _import_error() -> Optional[str]:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        return f"triton is not importable ({type(exc).__name__}: {exc})"
    return None


def interpreting() -> bool:
    """Whether the kernels run (or, not yet imported, would run) under Triton's interpreter."""
    kernels = sys.modules.get(f"{__package__}.scan_triton_kernels")
    if kernels is not None:
        from triton.runtime.interpreter import InterpretedFunction

        return isinstance(kernels.scan_forward_kernel, InterpretedFunction)
    try:
        from triton import knobs

        return bool(knobs.runtime.interpret)
    except ImportError:  # triton < 3.4 reads the variable directly
        return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_unavailable_reason() -> Optional[str]:
    """Why :func:`selective_scan_triton` cannot run here, or None when it can."""
    err = _import_error()
    if err is not None:
        return err
    if interpreting():
        return None
    if not torch.cuda.is_available():
        return "no CUDA device, and TRITON_INTERPRET=1 (Triton's CPU interpreter) is not set"
    return None


def triton_available() -> bool:
    """Whether the Triton scan can run: triton importable and a CUDA device or the interpreter."""
    return triton_unavailable_reason() is None


def _kernels():
    err = triton_unavailable_reason()
    if err is not None:
        raise RuntimeError(f"backend 'triton' is unavailable: {err}")
    kernels = importlib.import_module(f"{__package__}.scan_triton_kernels")
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    if isinstance(kernels.scan_forward_kernel, InterpretedFunction) != isinstance(tl.standard.zeros,
                                                                                 InterpretedFunction):
        raise RuntimeError("backend 'triton': TRITON_INTERPRET changed between importing triton and "
                           "the scan kernels; set it before triton is first imported")
    return kernels


def _pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def _blocks(dg: int, n: int, block_l: int, elements: int) -> Dict[str, int]:
    bn = _pow2(n)
    bd = max(1, min(_pow2(dg), elements // (bn * block_l)))
    return dict(BLOCK_D=bd, BLOCK_N=bn, BLOCK_L=block_l)


def _check_device(*tensors: Optional[Tensor]) -> None:
    if interpreting():  # the interpreter reads tensors on any device
        return
    for t in tensors:
        if t is not None and not t.is_cuda:
            raise RuntimeError(f"backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1), "
                               f"got a tensor on {t.device}")


def _strides3(t: Tensor) -> Tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def _common_args(u, delta, A, B, C, groups):
    batch, dim, length = u.shape
    return (length, groups, dim // groups, A.shape[1], *_strides3(u), *_strides3(delta),
            A.stride(0), A.stride(1), *B.stride(), *C.stride())


def _segments(programs: int, length: int, block_l: int) -> Tuple[int, int]:
    """(segments, tokens per segment) splitting the sequence so that about
    ``TARGET_PROGRAMS`` programs run, with segments of at least ``MIN_SEGMENT`` tokens."""
    nchunks = -(-length // block_l)
    segs = 1
    if programs < TARGET_PROGRAMS:
        segs = max(1, min(-(-TARGET_PROGRAMS // programs), length // max(1, MIN_SEGMENT)))
    per_seg = -(-nchunks // segs)
    return -(-nchunks // per_seg), per_seg * block_l


def _forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
             delta_bias: Optional[Tensor], softplus: bool, save_states: bool
             ) -> Tuple[Tensor, Optional[Tensor]]:
    k = _kernels()
    batch, dim, length = u.shape
    groups, n = B.shape[1], A.shape[1]
    ct = compute_dtype(u.dtype)
    # the backward recomputes chunks of its own length from the states saved at their entry
    block_l = BACKWARD_BLOCK_L if save_states else FORWARD_BLOCK_L
    blocks = _blocks(dim // groups, n, block_l, FORWARD_ELEMENTS)
    dgrid = -(-(dim // groups) // blocks["BLOCK_D"])
    segs, seg_len = _segments(batch * groups * dgrid, length, block_l)
    y = torch.empty_like(u)
    states = (torch.empty(batch, dim, -(-length // block_l), n, dtype=ct, device=u.device) if save_states
              else torch.empty(1, 1, 1, 1, dtype=ct, device=u.device))
    seg_states = torch.empty(batch, dim, segs, n, dtype=ct, device=u.device)
    dsum = torch.empty(batch, dim, segs, dtype=ct, device=u.device)
    common = _common_args(u, delta, A, B, C, groups)
    args = (u, delta, A, B, C, D if D is not None else A, delta_bias if delta_bias is not None else A,
            y, states, seg_states, dsum, *common[:4], seg_len, *common[4:], *_strides3(y), *states.stride())
    flags = dict(HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(softplus),
                 FP64=ct == torch.float64, num_warps=NUM_WARPS, **blocks)
    grid = (batch * groups, dgrid, segs)
    if segs > 1:  # each segment's end state from zero, carried over segments, then the scan proper
        k.scan_forward_kernel[grid](*args, SAVE_STATES=False, HAS_INIT=False, LOCAL_END=True, **flags)
        decay = torch.exp(A.to(ct).view(1, dim, n, 1) * dsum.unsqueeze(2))  # batch×D×N×segments
        entry = _entry_states(decay, seg_states.permute(0, 1, 3, 2))
        seg_states.copy_(entry.permute(0, 1, 3, 2))
    k.scan_forward_kernel[grid](*args, SAVE_STATES=save_states, HAS_INIT=segs > 1, LOCAL_END=False, **flags)
    return y, (states if save_states else None)


def _backward(dy: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
              D: Optional[Tensor], delta_bias: Optional[Tensor], softplus: bool, states: Tensor):
    k = _kernels()
    batch, dim, length = u.shape
    groups, n = B.shape[1], A.shape[1]
    ct = compute_dtype(u.dtype)
    blocks = _blocks(dim // groups, n, BACKWARD_BLOCK_L, BACKWARD_ELEMENTS)
    dgrid = -(-(dim // groups) // blocks["BLOCK_D"])
    du = torch.empty(batch, dim, length, dtype=ct, device=u.device)
    ddelta = torch.empty_like(du)
    dA = torch.empty(batch, dim, n, dtype=ct, device=u.device)
    dB = torch.empty(batch, groups, dgrid, n, length, dtype=ct, device=u.device)
    dC = torch.empty_like(dB)
    k.scan_backward_kernel[(batch * groups, dgrid)](
        u, delta, A, B, C, D if D is not None else A, delta_bias if delta_bias is not None else A,
        dy, states, du, ddelta, dA, dB, dC, *_common_args(u, delta, A, B, C, groups),
        *_strides3(dy), *states.stride(),
        HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(softplus),
        FP64=ct == torch.float64, num_warps=NUM_WARPS, **blocks)
    dD = None if D is None else (dy.to(ct) * u.to(ct)).sum(dim=(0, 2))
    dbias = None if delta_bias is None else ddelta.sum(dim=(0, 2))
    return du, ddelta, dA.sum(0), dB.sum(2), dC.sum(2), dD, dbias


class _TritonScan(torch.autograd.Function):
    """Autograd wrapper: keeps the inputs and the chunks' entry states."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, softplus):  # type: ignore[override]
        y, states = _forward(u, delta, A, B, C, D, delta_bias, softplus, save_states=True)
        ctx.softplus = softplus
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, states)
        return y

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        u, delta, A, B, C, D, delta_bias, states = ctx.saved_tensors
        grads = _backward(dy, u, delta, A, B, C, D, delta_bias, ctx.softplus, states)
        inputs = (u, delta, A, B, C, D, delta_bias)
        out = tuple(None if g is None or not need else g.to(x.dtype)
                    for g, x, need in zip(grads, inputs, ctx.needs_input_grad))
        return out + (None,)


def selective_scan_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                          D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                          delta_softplus: bool = False) -> Tensor:
    """Selective scan with :func:`~mambairv2.ops.selective_scan`'s shapes and semantics
    (u, delta ``B×D×L``; A ``D×N``; B, C ``B×N×L`` or ``B×G×N×L``; D, delta_bias ``D``), any
    strides. Returns ``y`` ``B×D×L`` in u's dtype and memory layout; differentiable in every
    tensor argument."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must both be B×D×L, got {tuple(u.shape)} and {tuple(delta.shape)}")
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must be D×N with D={dim}, got {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("backend 'triton' supports real A only")
    B4 = _groups(B, batch, A.shape[1], length, "B")
    C4 = _groups(C, batch, A.shape[1], length, "C")
    if B4.shape[1] != C4.shape[1] or dim % B4.shape[1]:
        raise ValueError("backend 'triton' needs B and C with the same number of groups, dividing D")
    _check_device(u, delta, A, B, C, D, delta_bias)
    tensors = (u, delta, A, B4, C4, D, delta_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        y = _TritonScan.apply(*tensors, bool(delta_softplus))
    else:
        y, _ = _forward(*tensors, bool(delta_softplus), save_states=False)
    return y
