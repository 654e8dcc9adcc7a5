"""The ``compiled`` scan backend: ``scan_kernel.c``, built on first use (see ``native``).

The kernel runs the recurrence in one pass over the sequence (the state of a block of channels
stays in registers), so on CPUs it does the work of the chunked scan's dozen elementwise sweeps
at once and reads the model's token-major tensors in place. It handles float32 inference: no
autograd; B and C shared by all channels (one group, as in the released MambaIRv2 models), or
several groups (MambaIR v1's four directions), one kernel call per group. Where it cannot
be built, :func:`kernel_available` is False and ``selective_scan.choose`` keeps the chunked scan.
"""
from __future__ import annotations

import ctypes
from typing import Optional

import torch

from .native import I64, I64_PTR, INT, PTR, NativeKernel, as_dtype
from .scan_common import ScanInputs

Tensor = torch.Tensor
MAX_STATE = 64  # NMAX of the kernel
MAX_RANK = 64  # RMAX of the kernel

_KERNEL = NativeKernel("scan_kernel.c", "scan kernel", "mambairv2_scan_f32",
                       [I64, I64, I64, I64, PTR, I64_PTR, PTR, I64_PTR, PTR, PTR, I64_PTR, PTR, I64_PTR, PTR, PTR,
                        INT, PTR, I64_PTR, I64, PTR, PTR, I64_PTR, INT])


def kernel_available() -> bool:
    """Whether the compiled scan kernel is (or can be) built and loaded here."""
    return _KERNEL.available()


def kernel_error() -> Optional[str]:
    """Why the scan kernel is unavailable (None if it is available or was not tried yet)."""
    return _KERNEL.error()


def _strides(t: Tensor) -> ctypes.Array:
    return (ctypes.c_int64 * 3)(*t.stride())


def selective_scan_compiled(u: Tensor, delta: Optional[Tensor], A: Tensor, B: Tensor, C: Tensor,
                            D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                            delta_softplus: bool = False, delta_low: Optional[Tensor] = None,
                            delta_proj: Optional[Tensor] = None) -> Tensor:
    """``selective_scan`` through the kernel (arguments as there; float32 CPU tensors). With
    ``delta_low`` (``B×R×L``) and ``delta_proj`` (``D×R``) instead of ``delta``, Δ is
    ``delta_proj @ delta_low``, computed in the kernel.

    ``y`` is returned with the memory layout of ``u``: for a transposed token-major ``u``
    (``x.transpose(1, 2)`` of a ``B×L×D`` tensor) it is such a view too, so nothing is copied.
    """
    lib = _KERNEL.load()
    if lib is None:
        raise RuntimeError(f"the compiled scan kernel is unavailable: {_KERNEL.error()}")
    if max(B.shape[1] if B.dim() == 4 else 1, C.shape[1] if C.dim() == 4 else 1) > 1:
        return _per_group(u, delta, A, B, C, D, delta_bias, delta_softplus, delta_low, delta_proj)
    low = delta_low is not None
    if low:
        batch, dim, length = u.shape
        if (delta_proj is None or delta_low.dim() != 3 or delta_low.shape[0] != batch
                or delta_low.shape[2] != length or tuple(delta_proj.shape) != (dim, delta_low.shape[1])):
            raise ValueError("delta_low must be B×R×L and delta_proj D×R")
        delta = u  # stands in for the shape checks: the kernel computes Δ from delta_low
    s = ScanInputs.prepare(u, delta, A, B, C, D)  # checks shapes; bias and softplus run in the kernel
    Bk, Ck = s.B[:, 0], s.C[:, 0]  # B×N×L views (one group)
    if Bk.stride(1) != 1 and Bk.stride(2) != 1:
        Bk = Bk.contiguous()
    if Ck.stride(1) != 1 and Ck.stride(2) != 1:
        Ck = Ck.contiguous()
    A = s.A.contiguous()
    Dskip = None if s.D is None else s.D.contiguous()
    bias = None if delta_bias is None else as_dtype(delta_bias, torch.float32).contiguous()
    dtl = as_dtype(delta_low, torch.float32) if low else None
    if low and dtl.stride(1) != 1 and dtl.stride(2) != 1:
        dtl = dtl.contiguous()
    dtw = as_dtype(delta_proj, torch.float32).contiguous() if low else None
    batch, dim, length = s.u.shape
    token_major = s.u.stride(1) == 1
    y = torch.empty(batch, length, dim).transpose(1, 2) if token_major else torch.empty(batch, dim, length)
    rc = lib.mambairv2_scan_f32(batch, dim, length, A.shape[1],
                                s.u.data_ptr(), _strides(s.u), s.delta.data_ptr(), _strides(s.delta),
                                A.data_ptr(), Bk.data_ptr(), _strides(Bk), Ck.data_ptr(), _strides(Ck),
                                None if Dskip is None else Dskip.data_ptr(),
                                None if bias is None else bias.data_ptr(), int(bool(delta_softplus)),
                                dtl.data_ptr() if low else None, _strides(dtl) if low else None,
                                dtl.shape[1] if low else 0, dtw.data_ptr() if low else None,
                                y.data_ptr(), _strides(y), torch.get_num_threads())
    if rc:
        raise RuntimeError(f"scan kernel failed (code {rc})")
    return y


def _per_group(u: Tensor, delta: Optional[Tensor], A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
               delta_bias: Optional[Tensor], delta_softplus: bool, delta_low: Optional[Tensor],
               delta_proj: Optional[Tensor]) -> Tensor:
    """Several B/C groups (channel block g uses group g): one kernel call per group."""
    if B.dim() != 4 or C.dim() != 4 or B.shape[1] != C.shape[1] or u.shape[1] % B.shape[1]:
        raise ValueError("the number of B/C groups must be the same for B and C and divide D")
    groups = B.shape[1]
    step = u.shape[1] // groups
    ys = []
    for g in range(groups):
        ch = slice(g * step, (g + 1) * step)
        ys.append(selective_scan_compiled(
            u[:, ch], None if delta is None else delta[:, ch], A[ch], B[:, g], C[:, g],
            None if D is None else D[ch], None if delta_bias is None else delta_bias[ch], delta_softplus,
            delta_low, None if delta_proj is None else delta_proj[ch]))
    return torch.cat(ys, 1)
