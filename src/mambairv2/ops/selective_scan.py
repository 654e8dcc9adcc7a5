"""``selective_scan``: one function, several implementations.

- ``reference``: the sequential recurrence (the oracle; slow).
- ``chunked``: exact chunked formulation in pure PyTorch; fast on CPU and GPU, supports autograd.
- ``compiled``: a small C kernel built on first use by the system's compiler (CPU, float32,
  inference only; several B/C groups run as one kernel call per group); see ``scan_compiled``.
- ``mamba_ssm``: the CUDA kernel of the ``mamba_ssm`` package (CUDA tensors, no float64).
- ``triton``: Triton kernels with a backward (CUDA tensors, or Triton's CPU interpreter with
  ``TRITON_INTERPRET=1``); see ``scan_triton``.
- ``export``: chunked with a fixed chunk length and a fixed number of carry levels, so that a
  traced graph serves every length (``torch.onnx.export``); see ``scan_export``.

Which one runs is chosen by :func:`choose` from the selection of ``ops.implementation``
(``auto``: ``mamba_ssm`` for CUDA inputs when importable and not float64, else ``triton`` for
CUDA inputs when triton is importable; ``compiled`` for CPU float32 inference where it builds;
otherwise ``chunked``; ``pytorch``: ``chunked``;
``reference``: ``reference``; ``export``: ``export``). An explicit ``backend=`` argument other than ``"auto"`` wins.
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import torch

from .dispatch import OPS, Choice, Probe, selected
from .scan_chunked import selective_scan_chunked
from .scan_common import ScanInputs
from .scan_export import selective_scan_export, softplus_export
from .scan_compiled import MAX_RANK, MAX_STATE, kernel_available, kernel_error, selective_scan_compiled
from .scan_reference import selective_scan_reference
from .scan_triton import selective_scan_triton, triton_available, triton_unavailable_reason

Tensor = torch.Tensor
BACKENDS = ("auto",) + OPS["selective_scan"]


@functools.lru_cache(maxsize=1)
def mamba_ssm_available() -> bool:
    """Whether the optional ``mamba_ssm`` CUDA kernel can be imported."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


def choose(probe: Probe, groups: int = 1, d_state: int = 1, backend: str = "auto") -> Choice:
    """The implementation for a scan of ``groups`` B/C groups and ``d_state`` states on
    ``probe``'s device/dtype (``backend``: an explicit request, else the selection in force)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown scan backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    sel = backend if backend != "auto" else selected("selective_scan")
    if sel == "pytorch":
        return Choice("chunked", "selected 'pytorch'")
    if sel != "auto":
        return Choice(sel, f"selected {sel!r}")
    if probe.device == "cuda":
        if probe.dtype == torch.float64:
            return Choice("chunked", "float64: mamba_ssm has no float64 kernel")
        if mamba_ssm_available():
            return Choice("mamba_ssm", "mamba_ssm is importable")
        if triton_available():
            return Choice("triton", "mamba_ssm is not installed; triton is importable")
        return Choice("chunked", f"neither mamba_ssm nor triton is usable ({triton_unavailable_reason()})")
    if probe.device != "cpu":
        return Choice("chunked", f"no dedicated kernel for {probe.device}")
    why = _compiled_unsupported(probe, groups, d_state)
    if why:
        return Choice("chunked", why)
    if not kernel_available():
        return Choice("chunked", f"compiled kernel unavailable: {kernel_error()}")
    return Choice("compiled", "float32 CPU inference")


def _compiled_unsupported(probe: Probe, groups: int, d_state: int) -> Optional[str]:
    """Why the compiled kernel cannot run such a call (None: it can)."""
    if probe.device != "cpu":
        return f"the compiled kernel runs on CPU, not {probe.device}"
    if probe.grad:
        return "gradients needed (the compiled kernel has no backward)"
    if probe.not_cpu_float32_inference():
        return f"{probe.not_cpu_float32_inference()}: the compiled kernel is float32"
    if d_state > MAX_STATE:
        return f"d_state {d_state} > {MAX_STATE}"
    return None


def resolve_backend(u: Tensor, backend: str = "auto", B: Optional[Tensor] = None,
                    A: Optional[Tensor] = None, others: Sequence[Optional[Tensor]] = ()) -> str:
    """The implementation ``selective_scan`` would use for these arguments."""
    groups = B.shape[1] if B is not None and B.dim() == 4 else 1
    d_state = A.shape[-1] if A is not None else 1
    return choose(Probe.of(u, B, A, *others), groups, d_state, backend).name


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
        backend: an explicit implementation (see the module docstring); ``"auto"`` follows
            ``ops.implementation``.
        delta_proj: ``D×R``: Δ is ``delta_proj @ delta`` (Mamba's low-rank dt projection, without
            its bias), computed inside the compiled kernel, as a matmul before the scan elsewhere.
    Returns:
        ``y``: ``B×D×L`` in u's dtype (computed in float32, or float64 for float64 input).
    """
    probe = Probe.of(u, delta, A, B, C, D, delta_bias, delta_proj)
    groups = B.shape[1] if B.dim() == 4 else 1
    name = choose(probe, groups, A.shape[-1], backend).name
    if name == "compiled":
        why = _compiled_unsupported(probe, groups, A.shape[-1])
        if why:
            raise RuntimeError(f"scan implementation 'compiled' cannot run this call: {why}")
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
    if name == "triton":
        return selective_scan_triton(u, delta, A, B, C, D, delta_bias, delta_softplus)
    if name == "compiled":
        return selective_scan_compiled(u, delta, A, B, C, D, delta_bias, delta_softplus)
    if name == "export":
        return selective_scan_export(ScanInputs.prepare(u, delta, A, B, C, D, delta_bias, delta_softplus,
                                                        softplus=softplus_export))
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
