"""The ``compiled`` scan backend: ``scan_kernel.c`` built on first use by the system's C compiler.

The kernel runs the recurrence in one pass over the sequence (the state of a block of channels
stays in registers), so on CPUs it does the work of the chunked scan's dozen elementwise sweeps
at once and reads the model's token-major tensors in place. It handles float32 inference: no
autograd, B and C shared by all channels (one group, as in the released models).

The shared library is cached in ``$MAMBAIRV2_CACHE_DIR`` (default ``~/.cache/mambairv2``) under a
name that hashes the source, the flags, the compiler and the CPU, and loaded with ``ctypes`` (no
Python headers, no torch build tools). Where no compiler works, :func:`kernel_available` is False
and ``auto`` keeps the pure-PyTorch chunked scan. Set ``MAMBAIRV2_NO_KERNEL=1`` to never build it.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Optional

import torch

from .scan_common import ScanInputs

Tensor = torch.Tensor
SOURCE = Path(__file__).with_name("scan_kernel.c")
MAX_STATE = 64  # NMAX of the kernel
MAX_RANK = 64  # RMAX of the kernel
_FLAG_SETS = (["-O3", "-march=native", "-fno-math-errno"], ["-O3", "-fno-math-errno"])

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_error: Optional[str] = None


def cache_dir() -> Path:
    """Where built kernels are kept."""
    env = os.environ.get("MAMBAIRV2_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mambairv2"


def _cpu_signature() -> str:
    """The CPU model and feature flags (``-march=native`` code must not run on another CPU)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    keep = [ln for ln in lines if ln.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(sorted(set(keep)))


def _compiler() -> Optional[str]:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _build(cc: str) -> Path:
    source = SOURCE.read_bytes()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    errors = []
    for flags in _FLAG_SETS:
        key = hashlib.sha256(b"\0".join([source, " ".join(flags).encode(), version.encode(),
                                         _cpu_signature().encode(), platform.machine().encode()]))
        target = cache_dir() / f"scan_kernel-{key.hexdigest()[:16]}.so"
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            cmd = [cc, *flags, "-shared", "-fPIC", "-pthread", str(SOURCE), "-o", tmp, "-lm"]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if proc.returncode == 0:
                os.replace(tmp, target)  # atomic: concurrent builders never see a partial file
                return target
            errors.append(f"{' '.join(cmd)}: {proc.stderr.strip()[-500:]}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError("; ".join(errors))


def _load() -> Optional[ctypes.CDLL]:
    global _lib, _error
    with _lock:
        if _lib is not None or _error is not None:
            return _lib
        if os.environ.get("MAMBAIRV2_NO_KERNEL", "") not in ("", "0"):
            _error = "disabled by MAMBAIRV2_NO_KERNEL"
            return None
        cc = _compiler()
        if cc is None:
            _error = "no C compiler found (cc, gcc or clang; or set CC)"
            return None
        try:
            lib = ctypes.CDLL(str(_build(cc)))
        except Exception as exc:  # noqa: BLE001 - any failure means: use the PyTorch scan
            _error = f"building the scan kernel failed: {exc}"
            warnings.warn(f"mambairv2: {_error}; using the pure-PyTorch chunked scan", RuntimeWarning)
            return None
        fn = lib.mambairv2_scan_f32
        p, i64, i64p = ctypes.c_void_p, ctypes.c_int64, ctypes.POINTER(ctypes.c_int64)
        fn.argtypes = [i64, i64, i64, i64, p, i64p, p, i64p, p, p, i64p, p, i64p, p, p, ctypes.c_int,
                       p, i64p, i64, p, p, i64p, ctypes.c_int]
        fn.restype = ctypes.c_int
        _lib = lib
        return _lib


def kernel_available() -> bool:
    """Whether the compiled kernel is (or can be) built and loaded here."""
    return _load() is not None


def kernel_error() -> Optional[str]:
    """Why the kernel is unavailable (None if it is available or was not tried yet)."""
    return _error


def kernel_supports(u: Tensor, B: Tensor, A: Tensor) -> bool:
    """Whether a call with these arguments can use the kernel (CPU, float32, no autograd,
    B/C shared by all channels, d_state ≤ 64)."""
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (u, B, A))
    groups = B.shape[1] if B.dim() == 4 else 1
    return (u.device.type == "cpu" and u.dtype == torch.float32 and not grad and groups == 1
            and A.shape[-1] <= MAX_STATE)


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
    lib = _load()
    if lib is None:
        raise RuntimeError(f"the compiled scan kernel is unavailable: {_error}")
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
    bias = None if delta_bias is None else delta_bias.float().contiguous()
    dtl = delta_low.float() if low else None
    if low and dtl.stride(1) != 1 and dtl.stride(2) != 1:
        dtl = dtl.contiguous()
    dtw = delta_proj.float().contiguous() if low else None
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
