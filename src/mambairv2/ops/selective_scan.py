"""``selective_scan``: one function, several backends.

- ``reference``: the sequential recurrence (the oracle; slow).
- ``chunked``: exact chunked formulation in pure PyTorch; fast on CPU and GPU, supports autograd.
- ``compiled``: a small C kernel built on first use by the system's compiler (CPU, float32,
  inference only, one B/C group); see ``scan_compiled``.
- ``mamba_ssm``: the CUDA kernel of the ``mamba_ssm`` package (CUDA tensors, no float64).
- ``auto``: ``mamba_ssm`` for CUDA inputs when it is importable and the dtype is not float64;
  ``compiled`` for CPU inputs it supports when it builds; otherwise ``chunked``.

``scan_backend(name)`` selects the backend for everything run inside it; an explicit
``backend=`` argument other than ``"auto"`` wins over it.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Iterator, Optional, Sequence

import torch

from .scan_chunked import selective_scan_chunked
from .scan_common import ScanInputs
from .scan_compiled import MAX_RANK, kernel_available, kernel_supports, selective_scan_compiled
from .scan_reference import selective_scan_reference

Tensor = torch.Tensor
BACKENDS = ("auto", "reference", "chunked", "compiled", "mamba_ssm")

_backend: contextvars.ContextVar[str] = contextvars.ContextVar("mambairv2_scan_backend", default="auto")


@functools.lru_cache(maxsize=1)
def mamba_ssm_available() -> bool:
    """Whether the optional ``mamba_ssm`` CUDA kernel can be imported."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


@contextlib.contextmanager
def scan_backend(name: str) -> Iterator[None]:
    """Use backend ``name`` for every ``selective_scan`` call made inside the block."""
    _check(name)
    token = _backend.set(name)
    try:
        yield
    finally:
        _backend.reset(token)


def current_backend() -> str:
    """The backend selected by the innermost ``scan_backend`` block ("auto" outside any)."""
    return _backend.get()


def resolve_backend(u: Tensor, backend: str = "auto", B: Optional[Tensor] = None,
                    A: Optional[Tensor] = None, others: Sequence[Optional[Tensor]] = ()) -> str:
    """The concrete backend that ``selective_scan`` would use for ``u`` (and ``B``, ``A`` and
    the call's ``others`` tensors, which decide whether the compiled CPU kernel applies: it has
    no autograd; without them a single-group, small-state call is assumed)."""
    _check(backend)
    if backend == "auto":
        backend = _backend.get()
    if backend == "auto":
        if u.is_cuda and u.dtype != torch.float64 and mamba_ssm_available():
            return "mamba_ssm"
        probe_b = B if B is not None else u.new_empty(1, 1, 1)
        probe_a = A if A is not None else u.new_empty(1, 1)
        if kernel_supports(u, probe_b, probe_a, *others) and kernel_available():
            return "compiled"
        return "chunked"
    return backend


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                   delta_softplus: bool = False, backend: str = "auto",
                   delta_proj: Optional[Tensor] = None) -> Tensor:
    """Selective scan with the semantics of ``mamba_ssm``'s ``selective_scan_fn`` (no z gate).

    Args:
        u, delta: ``B×D×L``; with ``delta_proj``, delta is a rank-R input ``B×R×L``.
        A: ``D×N`` (real).
        B, C: ``B×N×L`` or ``B×G×N×L`` (G groups dividing D; the released model uses G = 1).
        D: ``D`` skip weights, or None.
        delta_bias: ``D``, added to delta before the optional softplus.
        delta_softplus: apply ``softplus`` to delta (+ bias).
        backend: see the module docstring.
        delta_proj: ``D×R``: Δ is ``delta_proj @ delta`` (Mamba's low-rank dt projection, without
            its bias), computed inside the compiled kernel, before the scan elsewhere.
    Returns:
        ``y``: ``B×D×L`` in u's dtype (computed in float32, or float64 for float64 input).
    """
    others = (delta, C, D, delta_bias, delta_proj)
    name = resolve_backend(u, backend, B, A, others)
    if name == "compiled" and not kernel_supports(u, B, A, *others):
        raise RuntimeError("backend 'compiled' needs float32 CPU tensors without autograd, "
                           "B/C groups dividing D and d_state <= 64")
    if delta_proj is not None:
        if delta.dim() != 3 or delta_proj.dim() != 2 or delta.shape[1] != delta_proj.shape[1]:
            raise ValueError(f"delta (B×R×L) and delta_proj (D×R) do not match: {tuple(delta.shape)}, "
                             f"{tuple(delta_proj.shape)}")
        if name == "compiled" and delta.shape[1] <= MAX_RANK:
            return selective_scan_compiled(u, None, A, B, C, D, delta_bias, delta_softplus,
                                           delta_low=delta, delta_proj=delta_proj)
        delta = torch.nn.functional.linear(delta.transpose(1, 2), delta_proj).transpose(1, 2)
    if name == "mamba_ssm":
        return _mamba_ssm(u, delta, A, B, C, D, delta_bias, delta_softplus)
    if name == "compiled":
        return selective_scan_compiled(u, delta, A, B, C, D, delta_bias, delta_softplus)
    s = ScanInputs.prepare(u, delta, A, B, C, D, delta_bias, delta_softplus)
    if name == "reference":
        return selective_scan_reference(s)
    return selective_scan_chunked(s)


def _mamba_ssm(u, delta, A, B, C, D, delta_bias, delta_softplus) -> Tensor:
    if not mamba_ssm_available():
        raise RuntimeError("backend 'mamba_ssm' requested but the mamba_ssm package is not importable")
    if not u.is_cuda:
        raise RuntimeError("backend 'mamba_ssm' needs CUDA tensors")
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    if B.dim() == 3:
        B = B.unsqueeze(1)
    if C.dim() == 3:
        C = C.unsqueeze(1)
    out = selective_scan_fn(u.contiguous(), delta.contiguous(), A.float().contiguous(),
                            B.contiguous(), C.contiguous(),
                            None if D is None else D.float().contiguous(), z=None,
                            delta_bias=None if delta_bias is None else delta_bias.float().contiguous(),
                            delta_softplus=delta_softplus, return_last_state=False)
    return out.to(u.dtype)


def _check(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"unknown scan backend {name!r}; choose one of {', '.join(BACKENDS)}")
